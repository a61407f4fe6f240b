#!/usr/bin/env bash
# experiments/slurm/sweep.sbatch and sweep_merge.sbatch run as Slurm would
# run them (plain bash with an array task's variables): two tasks, each its
# shard into a local log copied to the sweep directory, then the merge step;
# a resubmitted task skips what the merged log holds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"
cat > "$tmp/exp.lua" <<LUA
require("gqe").experiment {
  name = "slurm-sweep",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 16, layers = 1, experts = 2, groups = 1, head_dim = 8 },
    train = { steps = 4, batch = 2, seq = 16, log_every = 4, eval_every = 4, eval_batches = 1,
              checkpoint_dir = "$tmp/ckpt" },
  },
  grid  = { ["model.k"] = { 1, 2 } },
  seeds = { 1, 2 },
}
LUA
export GQE GQE_SWEEP_DIR=$tmp/sweeps TMPDIR=$tmp SLURM_ARRAY_JOB_ID=7 SLURM_ARRAY_TASK_COUNT=2
unset SLURM_ARRAY_TASK_MIN SLURM_PROCID SLURM_NTASKS
for task in 0 1; do
  SLURM_ARRAY_TASK_ID=$task bash experiments/slurm/sweep.sbatch "$tmp/exp.lua" > "$tmp/task$task.out" 2>&1 \
    || { cat "$tmp/task$task.out"; fail "array task $task"; }
  grep -q "shard $((task + 1)) of 2" "$tmp/task$task.out" || fail "task $task shard line"
done
[ "$(sqlite3 "$tmp/sweeps/shard-7-1.db" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 2 ] || fail "shard-7-1.db"
bash experiments/slurm/sweep_merge.sbatch > "$tmp/merge.out" 2>&1 || { cat "$tmp/merge.out"; fail "merge step"; }
[ "$(sqlite3 "$tmp/sweeps/merged.db" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 4 ] || fail "merged.db"
# Resubmitting task 1 trains nothing: its runs are in merged.db.
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_JOB_ID=8 bash experiments/slurm/sweep.sbatch "$tmp/exp.lua" > "$tmp/again.out" 2>&1 \
  || { cat "$tmp/again.out"; fail "resubmitted task"; }
grep -q "2 of 2 runs already finished in $tmp/sweeps/merged.db - skipped" "$tmp/again.out" || { cat "$tmp/again.out"; fail "resubmission skip"; }
bash experiments/slurm/sweep_merge.sbatch > "$tmp/merge.out" 2>&1 || { cat "$tmp/merge.out"; fail "second merge step"; }
[ "$(sqlite3 "$tmp/sweeps/merged.db" "SELECT count(*) FROM runs")" = 4 ] || fail "merged.db after a resubmission"
"$GQE" compare slurm-sweep --db "$tmp/sweeps/merged.db" | grep -q "4 runs counted, 2 groups by model.k" || fail "compare"
echo "test_slurm_examples: ok"
