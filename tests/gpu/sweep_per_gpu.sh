#!/usr/bin/env bash
# On a GPU machine: with --gpus 0 --per-gpu 2, the two runs of a sweep
# train at once on that one GPU (both placed there before either ends,
# their training intervals overlap in the run log) and both finish.
# Exits 77 (skipped) where no CUDA device is visible.
set -euo pipefail
. "$(dirname "$0")/../cli/lib.sh"
echo 'print(require("gqe").cuda_device_count())' > "$tmp/count.lua"
if [ "$("$GQE" "$tmp/count.lua")" = 0 ]; then echo "skipped: no CUDA device visible"; exit 77; fi
cat lua/gqe/*.lua > "$tmp/text.txt"
cat > "$tmp/exp.lua" <<LUA
require("gqe").experiment {
  name = "per-gpu",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 64, layers = 2, experts = 4, groups = 2, head_dim = 16 },
    train = { device = "cuda", steps = 300, batch = 8, seq = 64, log_every = 50, eval_every = 300,
              eval_batches = 2, checkpoint_dir = "$tmp/ckpt" },
  },
  seeds = { 1, 2 },
}
LUA
"$GQE" "$tmp/exp.lua" --gpus 0 --per-gpu 2 --db "$db" | tee "$tmp/out"
[ "$(grep -c "started on GPU" "$tmp/out")" = 2 ] || fail "two runs placed on a GPU"
# Both placed before either ended: the first end line comes after both starts.
first_end=$(grep -n ": finished\|: failed\|did not finish" "$tmp/out" | head -1 | cut -d: -f1)
last_start=$(grep -n "started on GPU" "$tmp/out" | tail -1 | cut -d: -f1)
[ "$last_start" -lt "$first_end" ] || fail "the second run waited for the first"
[ "$(grep "started on GPU" "$tmp/out" | sed 's/.*started on \(GPU [^ ]*\).*/\1/' | sort -u | wc -l)" = 1 ] \
  || fail "the runs should share one GPU"
[ "$(q "SELECT count(*) FROM runs WHERE status = 'finished' AND device LIKE 'cuda%'")" = 2 ] || fail "two finished cuda runs"
[ "$(q "SELECT max(started) < min(ended) FROM runs")" = 1 ] || fail "training intervals do not overlap"
echo "sweep_per_gpu: ok"
