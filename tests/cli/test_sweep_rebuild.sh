#!/usr/bin/env bash
# Rebuilding gqe while a sweep runs (the binary replaced under it): runs that
# start afterwards use the build the sweep started with, through
# /proc/PID/exe, instead of failing to start (exit 127, "left no result")
# or running other code.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"
cp "$GQE" "$tmp/gqe"
cat > "$tmp/exp.lua" <<LUA
require("gqe").experiment {
  name = "rebuild",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 32, layers = 1, experts = 4, groups = 2, head_dim = 8 },
    train = { steps = 150, batch = 4, seq = 32, log_every = 10, eval_every = 150, eval_batches = 1,
              checkpoint_dir = "$tmp/ckpt" },
  },
  seeds = { 1, 2, 3 },
}
LUA
"$tmp/gqe" "$tmp/exp.lua" --jobs 2 --db "$db" > "$tmp/out" 2>&1 &
sweep=$!
for _ in $(seq 1 300); do
  [ "$(grep -c "started" "$tmp/out" || true)" -ge 2 ] && break
  sleep 0.05
done
[ "$(grep -c "started" "$tmp/out" || true)" -ge 2 ] || fail "two runs did not start"
# The rebuild: a new file takes the old one's name, as the linker's does.
cp "$tmp/gqe" "$tmp/gqe.new" && mv -f "$tmp/gqe.new" "$tmp/gqe"
first_done=$(grep -c ": finished" "$tmp/out" || true)
wait "$sweep" || { cat "$tmp/out"; fail "the sweep failed after the rebuild"; }
[ "$first_done" -lt 3 ] || fail "all runs finished before the rebuild: the test proves nothing"
[ "$(q "SELECT count(*) FROM runs WHERE status = 'finished'")" = 3 ] || { cat "$tmp/out"; fail "three finished runs"; }
if grep -q "left no result\|deleted" "$tmp/out"; then cat "$tmp/out"; fail "a worker could not start"; fi
echo "test_sweep_rebuild: ok (a run started after the binary was replaced)"
