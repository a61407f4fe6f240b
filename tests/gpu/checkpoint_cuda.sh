#!/usr/bin/env bash
# Checkpoints of a run on the GPU (run on the GPU machine:
# `bash tests/gpu/checkpoint_cuda.sh`): the checksum and identity are
# computed from device tensors, SIGTERM inside a run on cuda checkpoints and
# marks it killed, `gqe resume` finishes it, and a checkpoint with a flipped
# bit is skipped for the previous one. Needs only build/gqe (its own Lua
# reads the run log). Exit 77 without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/build/gqe
tmp=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cat > "$tmp/has_cuda.lua" <<'LUA'
os.exit(require("gqe").cuda_available() and 0 or 77)
LUA
"$G" "$tmp/has_cuda.lua" || { echo "skipped: no CUDA device"; exit 77; }
for _ in $(seq 1 40); do cat lua/gqe/*.lua; done > "$tmp/text.txt"
cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
gqe.train { experiment = "gpu", name = os.getenv("NAME"), data = { path = "$tmp/text.txt" },
  model = { dim = 256, layers = 4, experts = 8, groups = 4, k = 1, max_seq = 256 },
  schedule = { kind = "constant" },
  train = { steps = tonumber(os.getenv("STEPS")), batch = 8, seq = 256, log_every = 1, eval_every = 10,
            eval_batches = 2, checkpoint_every = 5, device = "cuda", db = "$tmp/runs.db",
            checkpoint_dir = "$tmp/ckpt", progress = false } }
LUA
# sql "STATEMENT": the first column of each row, through the binary's Lua.
sql() {
  cat > "$tmp/q.lua" <<LUA
local db = require("gqe").db.open("$tmp/runs.db")
for _, r in ipairs(db:query([[$1]])) do local _, v = next(r); print(v) end
db:close()
LUA
  "$G" "$tmp/q.lua"
}

NAME=straight STEPS=40 "$G" "$tmp/run.lua" 2>"$tmp/err" || { cat "$tmp/err"; fail "run on cuda"; }
NAME=cut STEPS=100000 "$G" "$tmp/run.lua" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 600); do
  [ "$(sql "SELECT count(*) FROM checkpoints WHERE run_id = 2")" -ge 2 ] && break
  sleep 0.1
done
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e; pid=
[ "$rc" -ne 0 ] || fail "killed run exited 0"
[ "$(sql "SELECT status FROM runs WHERE id = 2")" = killed ] || { cat "$tmp/err"; fail "run not killed"; }
step=$(sql "SELECT max(step) FROM checkpoints WHERE run_id = 2")
sql "UPDATE runs SET config = json_set(config, '\$.train.steps', $((step + 7))) WHERE id = 2 RETURNING id" >/dev/null
"$G" resume 2 --db "$tmp/runs.db" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "resume on cuda"; }
grep -q "resumed and finished at step $((step + 7))" "$tmp/out" || { cat "$tmp/out"; fail "resume output"; }

newest=$(sql "SELECT path FROM checkpoints WHERE run_id = 1 ORDER BY step DESC LIMIT 1")
size=$(stat -c %s "$newest")
printf '\x01' | dd of="$newest" bs=1 seek=$((size - 9)) conv=notrunc status=none
sql "UPDATE runs SET status = 'killed', config = json_set(config, '\$.train.steps', 45) WHERE id = 1 RETURNING id" >/dev/null
"$G" resume 1 --db "$tmp/runs.db" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "resume past a damaged checkpoint"; }
grep -q "checksum mismatch" "$tmp/out" && grep -q "resuming from the older checkpoint .*step 35" "$tmp/out" ||
  { cat "$tmp/out"; fail "no fall-back past the damaged checkpoint"; }
[ "$(sql "SELECT status || ' ' || step FROM runs WHERE id = 1")" = "finished 45" ] || fail "run 1 did not finish"
echo "checkpoint_cuda: killed at step $step and resumed; a damaged checkpoint skipped for step 35"
