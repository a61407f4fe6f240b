#!/usr/bin/env bash
# SIGTERM: the current step finishes, a checkpoint is written and registered,
# the log is flushed up to that step, the run is marked killed with the
# signal and the step, and the exit status is non-zero; `gqe resume` goes on
# from there. A second signal exits at once (status 128+15 from the handler)
# and leaves the database consistent: integrity ok, nothing half written, and
# the run shown as crashed rather than running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pid=
cleanup() { [ -n "$pid" ] && kill -9 $pid 2>/dev/null; }
cat lua/gqe/*.lua > "$tmp/text.txt"   # the val tail must hold a batch of the big model

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "signal", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 100000, batch = 2, seq = 16, log_every = 1, eval_every = 1000, eval_batches = 1,
            db = "$db", checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA
# Waits until run $1 has logged step $2.
wait_step() {
  for _ in $(seq 1 600); do
    [ "$(q "SELECT coalesce(max(step),0) FROM metrics WHERE run_id=$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
    kill -0 $pid 2>/dev/null || { cat "$tmp/err"; fail "run $1 ended early"; }
    sleep 0.05
  done
  fail "run $1 did not reach step $2"
}

# 1. One SIGTERM.
"$GQE" "$tmp/run.lua" 2>"$tmp/err" &
pid=$!
wait_step 1 5
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e; pid=
[ "$rc" -ne 0 ] || fail "a run stopped by SIGTERM exited 0"
[ "$rc" -ne 143 ] || fail "one SIGTERM should stop the run cleanly, not exit at once"
[ "$(q "SELECT status FROM runs WHERE id=1")" = killed ] || { cat "$tmp/err"; fail "status not killed"; }
msg=$(q "SELECT error FROM runs WHERE id=1")
step=$(sed -n 's/.*SIGTERM at step \([0-9]*\).*/\1/p' <<<"$msg")
[ -n "$step" ] || fail "error does not name the signal and step: $msg"
grep -q "killed: SIGTERM at step $step" "$tmp/err" || { cat "$tmp/err"; fail "stderr does not say the run was killed"; }
[ "$(q "SELECT max(step) FROM checkpoints WHERE run_id=1")" = "$step" ] || fail "no checkpoint at step $step"
[ -f "$(q "SELECT path FROM checkpoints WHERE run_id=1 AND step=$step")" ] || fail "checkpoint file missing"
[ "$(q "SELECT max(step) FROM metrics WHERE run_id=1 AND key='train/loss'")" = "$step" ] || fail "log not flushed to step $step"
[ "$(q "SELECT count(DISTINCT step) FROM metrics WHERE run_id=1 AND key='train/loss'")" = "$step" ] || fail "steps missing"
[ "$(q "SELECT step FROM runs WHERE id=1")" = "$step" ] || fail "runs.step is not $step"
[ -n "$(q "SELECT ended FROM runs WHERE id=1")" ] || fail "no end time"
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check"
q "UPDATE runs SET config = json_set(config, '$.train.steps', $((step + 5))) WHERE id=1"
"$GQE" resume 1 --db "$db" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "gqe resume after SIGTERM"; }
[ "$(q "SELECT status || ' ' || step FROM runs WHERE id=1")" = "finished $((step + 5))" ] || fail "resume did not finish"
echo "SIGTERM: stopped at step $step, checkpointed, resumed"

# 2. Two signals during one long step: the second exits at once. A bigger
#    model makes each step last long enough for both to land inside it.
big="model.dim=256 model.layers=4 model.head_dim=64 train.batch=16 train.seq=256 train.checkpoint_every=1"
"$GQE" "$tmp/run.lua" $big 2>"$tmp/err" &
pid=$!
wait_step 2 1
# Step 1's checkpoint registered: the process is inside step 2.
for _ in $(seq 1 600); do
  [ "$(q "SELECT count(*) FROM checkpoints WHERE run_id=2")" -ge 1 ] && break; sleep 0.05
done
# A first signal now stops a step within a layer, so the second is made
# pending with it: stopped, the process gets SIGINT then SIGTERM (two kinds,
# since two of one kind would merge), and they land together on SIGCONT.
kill -STOP $pid; kill -INT $pid; kill -TERM $pid; kill -CONT $pid
set +e; wait $pid; rc=$?; set -e; pid=
# The second to arrive exits at once with its own status (130 or 143).
[ "$rc" -eq 143 ] || [ "$rc" -eq 130 ] || { cat "$tmp/err"; fail "second signal: exit $rc, expected 130 or 143 at once"; }
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check after two signals"
[ "$(q "PRAGMA foreign_key_check")" = "" ] || fail "foreign keys after two signals"
last=$(q "SELECT max(step) FROM metrics WHERE run_id=2 AND key='train/loss'")
[ "$(q "SELECT step FROM runs WHERE id=2")" = "$last" ] || fail "runs.step differs from the last logged step"
# Checkpoints are registered only after the rename: every one listed exists
# and loads.
for p in $(q "SELECT path FROM checkpoints WHERE run_id=2"); do
  echo "local t = require('gqe').load_safetensors('$p'); assert(next(t))" > "$tmp/load.lua"
  "$GQE" "$tmp/load.lua" || fail "registered checkpoint $p does not load"
done
"$GQE" runs --db "$db" > "$tmp/runs" || fail "gqe runs"
# Crashed when the handler's exit cut the step short (the usual case);
# killed when the first signal's stop had already been recorded.
grep -E "^ *2 +signal +tiny +(crashed|killed)" "$tmp/runs" >/dev/null || { cat "$tmp/runs"; fail "run 2 not shown as crashed"; }
[ "$(q "SELECT count(*) FROM runs WHERE status='running'")" = 0 ] || fail "a run is left running"
echo "second SIGTERM: exited at once after step $last, database consistent"
echo "test_robust_signal: ok"
