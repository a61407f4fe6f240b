#!/usr/bin/env bash
# Sweeps over nodes and GPUs: two shards of one experiment into two logs,
# merged, compare sees every run; --skip-from skips what the merged log
# holds finished; Slurm's array variables pick the shard; runs placed on
# (fake) GPUs, a crashing run neither stops the sweep nor keeps its GPU;
# SIGINT to the process group of a --jobs 2 sweep leaves no process behind.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"
unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_PROCID SLURM_NTASKS CUDA_VISIBLE_DEVICES

# $1: steps; the script's own lines before gqe.experiment come from $PRE.
write_exp() {
  cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
${PRE:-}
gqe.experiment {
  name = "sweep",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 16, layers = 1, experts = 2, groups = 1, head_dim = 8 },
    train = { steps = $1, batch = 2, seq = 16, log_every = 5, eval_every = $1, eval_batches = 1,
              checkpoint_dir = "$tmp/ckpt" },
  },
  grid  = { ["model.k"] = { 1, 2 } },
  seeds = { 1, 2, 3 },
}
LUA
}
write_exp 4
all=$("$GQE" "$tmp/exp.lua" --dry-run)
# --dry-run shows the shard's slice: together the shards list every run once.
"$GQE" "$tmp/exp.lua" --dry-run --shard 0/2 > "$tmp/s0"
"$GQE" "$tmp/exp.lua" --dry-run --shard 1/2 > "$tmp/s1"
grep -q "shard 1 of 2 (index 0, from --shard): 3 of 6 runs" "$tmp/s0" || { cat "$tmp/s0"; fail "shard line"; }
[ "$(grep -ho 'k=[0-9],seed=[0-9]' "$tmp/s0" "$tmp/s1" | sort | tr '\n' ' ')" = \
  "$(grep -o 'k=[0-9],seed=[0-9]' <<<"$all" | sort | tr '\n' ' ')" ] || fail "shards do not cover the runs once"
# Slurm array task 2 of 2 (ids 1..2) is shard index 1.
SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=2 "$GQE" "$tmp/exp.lua" --dry-run > "$tmp/slurm"
grep -q "shard 2 of 2 (index 1, from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)" "$tmp/slurm" || { cat "$tmp/slurm"; fail "Slurm shard"; }
diff <(grep -o 'k=[0-9],seed=[0-9]' "$tmp/slurm") <(grep -o 'k=[0-9],seed=[0-9]' "$tmp/s1") || fail "Slurm shard differs from --shard 1/2"
if "$GQE" "$tmp/exp.lua" --shard 2/2 --dry-run 2>"$tmp/err"; then fail "--shard 2/2 accepted"; fi
grep -q "shard index 2 is out of range for 2 shards" "$tmp/err" || fail "--shard message"

# Two nodes, each its own log; node 1 trains only its first run for now.
"$GQE" "$tmp/exp.lua" --shard 0/2 --db "$tmp/n0.db" >/dev/null
"$GQE" "$tmp/exp.lua" --shard 1/2 --db "$tmp/n1.db" model.k=1 >/dev/null
[ "$(sqlite3 "$tmp/n1.db" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 1 ] || fail "node 1 partial run"
"$GQE" merge "$tmp/merged.db" "$tmp/n0.db" "$tmp/n1.db" >/dev/null
[ "$(sqlite3 "$tmp/merged.db" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 4 ] || fail "merged runs"
# Node 1 again, with a fresh local disk: --skip-from skips what is merged.
out=$("$GQE" "$tmp/exp.lua" --shard 1/2 --db "$tmp/n1b.db" --skip-from "$tmp/merged.db")
echo "$out"
grep -q "1 of 3 runs already finished in $tmp/merged.db - skipped" <<<"$out" || fail "--skip-from line"
[ "$(grep -c ": finished, val/loss" <<<"$out")" = 2 ] || fail "--skip-from should train 2 runs"
"$GQE" merge "$tmp/merged.db" "$tmp/n1b.db" >/dev/null
out=$("$GQE" compare sweep --db "$tmp/merged.db")
echo "$out"
grep -q "6 runs counted, 2 groups by model.k" <<<"$out" || fail "compare after merging every shard"
"$GQE" report sweep --db "$tmp/merged.db" --out "$tmp/report" >/dev/null || fail "report on the merged log"
[ "$(grep -o 'k=[12],seed=[123]' "$tmp/report/index.html" | sort -u | wc -l)" = 6 ] || fail "report misses runs"
if "$GQE" "$tmp/exp.lua" --skip-from "$tmp/none.db" --db "$db" 2>"$tmp/err"; then fail "missing --skip-from accepted"; fi
grep -q -- "--skip-from: $tmp/none.db does not exist" "$tmp/err" || fail "--skip-from message"

# Placement on two fake GPUs (CUDA_VISIBLE_DEVICES=7,9), two runs per GPU:
# this machine has no GPU, so every cuda run fails at start; the sweep goes
# on, each failed run's GPU is reused, the summary lists every failure.
# (The sweep itself is told a GPU is there, or it would refuse the cuda runs
# once before starting any.)
PRE='gqe.cuda_device_count = function() return 2 end; gqe.cuda_available = function() return true end' write_exp 4
if CUDA_VISIBLE_DEVICES=7,9 "$GQE" "$tmp/exp.lua" train.device=cuda --per-gpu 2 --db "$tmp/gpu.db" \
     >"$tmp/out" 2>"$tmp/err"; then fail "cuda runs on a CPU machine finished"; fi
cat "$tmp/out"
[ "$(grep -c "started on GPU 7 (pid" "$tmp/out")" -ge 2 ] || fail "runs on GPU 7"
[ "$(grep -c "started on GPU 9 (pid" "$tmp/out")" -ge 2 ] || fail "runs on GPU 9"
[ "$(grep -c "started on GPU" "$tmp/out")" = 6 ] || fail "every run should start"
grep -q "6 runs: 0 finished now, 6 failed" "$tmp/err" || { cat "$tmp/err"; fail "failure summary"; }
if "$GQE" "$tmp/exp.lua" train.device=cuda --gpus 2 --dry-run 2>"$tmp/err"; then fail "--gpus 2 of 2 accepted"; fi
grep -q "GPU 2 does not exist (2 GPUs are visible: 0..1)" "$tmp/err" || { cat "$tmp/err"; fail "--gpus message"; }
if "$GQE" "$tmp/exp.lua" --gpus 0 --dry-run 2>"$tmp/err"; then fail "--gpus with cpu runs accepted"; fi
grep -q "no run of this experiment uses a GPU" "$tmp/err" || fail "--gpus cpu message"

# SIGINT to the sweep's process group (a terminal's Ctrl-C) while two
# workers train: the sweep exits and leaves no process behind. (How the
# runs are marked and resumed is test_experiment.sh's part.)
PRE= write_exp 100000
setsid "$GQE" "$tmp/exp.lua" --jobs 2 --db "$tmp/int.db" >"$tmp/out" 2>&1 &
leader=$!
cleanup() { for p in $(pgrep -f -- "$tmp/" || true); do kill -9 "$p" 2>/dev/null || true; done; }
for _ in $(seq 600); do
  [ "$(sqlite3 -cmd ".timeout 2000" "$tmp/int.db" "SELECT count(*) FROM runs WHERE step > 0" 2>/dev/null || echo 0)" = 2 ] && break
  sleep 0.1
done
[ "$(grep -c "started (pid" "$tmp/out")" = 2 ] || { cat "$tmp/out"; fail "two workers should be running"; }
kill -INT -- "-$leader"
for _ in $(seq 600); do kill -0 "$leader" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$leader" 2>/dev/null; then fail "the sweep did not stop on SIGINT"; fi
wait "$leader" || true
sleep 0.5
left=$(pgrep -f -- "$tmp/" || true)
[ -z "$left" ] || { ps -o pid,args -p $left; fail "processes left after SIGINT"; }
echo "test_sweep: ok"
