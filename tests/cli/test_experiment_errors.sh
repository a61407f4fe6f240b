#!/usr/bin/env bash
# A problem that fails every run of a sweep (missing data, no GPU, a bad
# config) is reported once, before any run starts, and leaves no rows.
# With --jobs 2, every running run's progress (step, loss, tokens/s, ETA)
# and the experiment's ETA are printed at its logging intervals.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"
cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
gqe.experiment {
  name = "errs",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 16, layers = 1, experts = 4, groups = 2, head_dim = 4 },
    train = { steps = 20, batch = 2, seq = 16, log_every = 5, eval_every = 10, eval_batches = 1,
              checkpoint_dir = "$tmp/ckpt" },
  },
  grid  = { ["model.k"] = { 1, 2 } },
  seeds = { 1, 2 },
}
LUA

# once "pattern" args...: exit 1, the pattern on exactly one line of the
# output, no runs in the log.
once() {
  local want=$1; shift
  set +e; "$GQE" "$tmp/exp.lua" --db "$db" "$@" >"$tmp/out" 2>&1; local rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/out"; fail "$*: exit $rc, expected 1"; }
  [ "$(grep -c -E -- "$want" "$tmp/out")" = 1 ] || { cat "$tmp/out"; fail "$*: '$want' not said exactly once"; }
  if [ -s "$db" ]; then [ "$(q "SELECT count(*) FROM runs")" = 0 ] || fail "$*: rows left behind"; fi
  cat "$tmp/out"
}
once "missing.txt" --jobs 2 data.path="$tmp/missing.txt"
grep -q "needed by 4 of 4 runs); no run was started" "$tmp/out" || fail "missing data: which runs"
once "train.device is 'cuda' but" --jobs 2 train.device=cuda
grep -q "nvcc" "$tmp/out" && ! grep -q "built without CUDA" "$tmp/out" && fail "no GPU blamed on the build"
grep -q -E "built without CUDA|NVIDIA driver .*GPU\(s\) listed by the driver" "$tmp/out" || fail "no GPU: what was looked for"
once "model.groups" --jobs 2 model.groups=3
once "shorter|too short|holds" --jobs 2 train.seq=100000

# Progress with --jobs 2: a line per running run and one for the experiment.
"$GQE" "$tmp/exp.lua" --jobs 2 --db "$db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/out" "$tmp/err"; fail "sweep"; }
cat "$tmp/err"
for i in 1 2 3 4; do
  grep -q -E "^  \[$i/4 k=[12],seed=[12]\] step (5|10|15|20)/20  loss [0-9.]+  tok/s [0-9]+  eta " "$tmp/err" \
    || fail "no progress line for run $i"
done
grep -q -E "^  experiment errs: [0-9] of 4 runs done, [0-9] running, [0-9] queued, eta " "$tmp/err" || fail "no experiment line"
# One at a time: each run's own progress line, then the experiment's.
"$GQE" "$tmp/exp.lua" --db "$tmp/one.db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/out" "$tmp/err"; fail "sweep, --jobs 1"; }
grep -q -E "^\[1/4 k=1,seed=1\] step 5/20  loss [0-9.]+  lr .*  tok/s [0-9]+  eta " "$tmp/err" || fail "--jobs 1: run progress"
grep -q -E "^  experiment errs: 0 of 4 runs done, 1 running, 3 queued, eta " "$tmp/err" || fail "--jobs 1: experiment line"
# A closed stdout and stderr (`| head -1`) stop the output, not the runs.
set +e; "$GQE" "$tmp/exp.lua" --jobs 2 --db "$tmp/pipe.db" 2>&1 | head -1 >/dev/null; rc=${PIPESTATUS[0]}; set -e
[ "$rc" = 0 ] || fail "sweep into a closed pipe exited $rc"
[ "$(sqlite3 "$tmp/pipe.db" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 4 ] || fail "closed pipe: runs did not finish"
echo "test_experiment_errors: ok"
