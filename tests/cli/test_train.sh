#!/usr/bin/env bash
# End to end: a tiny training run through build/gqe into a temporary run log;
# then the failure paths a user meets (bad key, missing data, a signal).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "cli-train", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 32, layers = 2, experts = 4, groups = 2, k = 1, head_dim = 8 },
  train = { steps = 20, batch = 4, seq = 32, log_every = 5, eval_every = 10, eval_batches = 2, db = "$db",
            checkpoint_dir = "$tmp/ckpt" },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
local s = gqe.train(cfg)
print(string.format("run %d %s val %.4f bpb %.4f heads %d params %d", s.run_id, s.status,
  s.final_val_loss, s.val_bpb, s.active_heads, s.params))
LUA

# 1. A run that finishes, with everything logged.
out=$("$GQE" "$tmp/run.lua" 2>"$tmp/err") || { cat "$tmp/err"; fail "training run exited non-zero"; }
echo "$out"
grep -q "finished" <<<"$out" || fail "no summary line"
grep -q "heads 3" <<<"$out" || fail "active heads should be G*k+1 = 3"
grep -q "step 20/20" "$tmp/err" || fail "no progress lines on stderr"
[ "$(q "SELECT status FROM runs")" = finished ] || fail "run not finished"
[ "$(q "SELECT count(*) FROM metrics WHERE key='train/loss'")" = 4 ] || fail "train/loss every 5 steps"
for k in train/aux train/lr train/grad_norm perf/tokens_per_s perf/tokens routing/entropy_l0 routing/cv_l1 val/bpb; do
  [ "$(q "SELECT count(*) FROM metrics WHERE key='$k'")" -gt 0 ] || fail "metric $k missing"
done
[ "$(q "SELECT count(*) FROM metrics WHERE key='val/loss'")" = 2 ] || fail "val/loss at steps 10 and 20"
[ "$(q "SELECT count(*) FROM head_usage")" = 16 ] || fail "head usage: 2 evals x 2 layers x 4 experts"
[ "$(q "SELECT sum(tokens) FROM head_usage WHERE step=20 AND layer=0")" -gt 0 ] || fail "no tokens routed"
[ "$(q "SELECT value FROM params WHERE key='model.k'")" = 1 ] || fail "params not flattened"
[ "$(q "SELECT count(*) FROM params")" -gt 40 ] || fail "params incomplete"
q "SELECT config FROM runs" | grep -q '"model":{' || fail "config JSON missing"
[ -n "$(q "SELECT pid FROM runs")" ] || fail "pid missing"

# 2. A typo: non-zero exit, the valid keys listed, no run left running.
if "$GQE" "$tmp/run.lua" model.kk=2 2>"$tmp/err"; then fail "unknown key accepted"; fi
grep -q "unknown key model.kk; valid keys of model:" "$tmp/err" || { cat "$tmp/err"; fail "unknown key message"; }

# 3. Missing data: the run is marked failed with the file in the message.
if "$GQE" "$tmp/run.lua" data.path="$tmp/nope.txt" 2>"$tmp/err"; then fail "missing data accepted"; fi
[ "$(q "SELECT status FROM runs ORDER BY id DESC LIMIT 1")" = failed ] || fail "missing data: run not failed"
q "SELECT error FROM runs ORDER BY id DESC LIMIT 1" | grep -q "nope.txt" || fail "error does not name the file"
[ "$(q "SELECT count(*) FROM runs WHERE status='running'")" = 0 ] || fail "a run was left running"

# 4. SIGINT: the step finishes, the run is marked killed, exit is non-zero.
"$GQE" "$tmp/run.lua" train.steps=100000 train.progress=false 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 300); do
  [ "$(q "SELECT coalesce(max(step),0) FROM metrics WHERE run_id=(SELECT max(id) FROM runs)" 2>/dev/null || echo 0)" -gt 0 ] && break
  sleep 0.1
done
kill -INT $pid
if wait $pid; then fail "interrupted run exited 0"; fi
[ "$(q "SELECT status FROM runs ORDER BY id DESC LIMIT 1")" = killed ] || { cat "$tmp/err"; fail "interrupted run not killed"; }
q "SELECT error FROM runs ORDER BY id DESC LIMIT 1" | grep -q SIGINT || fail "kill message lacks the signal"

# 5. Resume: a run interrupted part way and resumed with `gqe resume` logs
#    the same losses, bit for bit, as one that ran straight through.
common="train.steps=200 train.log_every=1 train.eval_every=100 train.checkpoint_every=50 train.progress=false"
"$GQE" "$tmp/run.lua" $common >/dev/null 2>&1 || fail "uninterrupted run"
a=$(q "SELECT max(id) FROM runs")
"$GQE" "$tmp/run.lua" $common >/dev/null 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 300); do
  [ "$(q "SELECT coalesce(max(step),0) FROM metrics WHERE run_id=$a+1" 2>/dev/null || echo 0)" -gt 10 ] && break
  sleep 0.05
done
kill -INT $pid; wait $pid || true
b=$((a+1))
st=$(q "SELECT status FROM runs WHERE id=$b")
if [ "$st" = killed ]; then
  [ "$(q "SELECT count(*) FROM checkpoints WHERE run_id=$b")" -gt 0 ] || fail "no checkpoint on SIGINT"
  stopped=$(q "SELECT max(step) FROM checkpoints WHERE run_id=$b")
  "$GQE" resume $b --db "$db" > "$tmp/resume.out" 2>&1 || { cat "$tmp/resume.out"; fail "gqe resume"; }
  [ "$(q "SELECT status FROM runs WHERE id=$b")" = finished ] || fail "resumed run not finished"
  echo "interrupted at step $stopped, resumed to 200"
else
  echo "note: the run finished before the signal arrived; resume not exercised"
fi
same=$(q "SELECT count(*) FROM metrics x JOIN metrics y ON y.run_id=$b AND y.key=x.key AND y.step=x.step
          WHERE x.run_id=$a AND x.key='train/loss' AND x.value = y.value")
[ "$same" = 200 ] || fail "resumed losses differ from the uninterrupted run ($same of 200 equal)"

# 6. gqe runs lists them.
"$GQE" runs --db "$db" | tee "$tmp/runs" | grep -q "cli-train" || fail "gqe runs"
echo "test_train: ok"
