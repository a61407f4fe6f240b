#!/usr/bin/env bash
# NaN and Inf, forced by legitimate configurations: a learning rate of 1e30
# blows the weights up in step 1, so step 2's gradient is NaN; an init_std of
# 3e38 overflows the logits, so step 1's loss is NaN. The run is marked
# diverged with the step, what is known is logged, the exit is non-zero;
# with train.on_nan=skip the bad steps are skipped, counted, and the run
# finishes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
head -c 20000 lua/gqe/train.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "nan", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 5, batch = 2, seq = 16, log_every = 1, eval_every = 2, eval_batches = 1,
            db = "$db", checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
local s = gqe.train(cfg)
print("status " .. s.status)
LUA
last_run() { q "SELECT $1 FROM runs ORDER BY id DESC LIMIT 1"; }

# 1. NaN gradient at step 2.
if "$GQE" "$tmp/run.lua" optim.lr=1e30 >"$tmp/out" 2>"$tmp/err"; then fail "lr=1e30 run exited 0"; fi
grep -q "diverged: train/grad_norm is [-]*nan at step 2" "$tmp/err" || { cat "$tmp/err"; fail "message lacks what and where"; }
grep -q "train.on_nan=skip" "$tmp/err" || fail "message does not point at train.on_nan"
[ "$(last_run status)" = diverged ] || fail "status not diverged"
[ "$(last_run step)" = 2 ] || fail "runs.step is not the diverged step"
last_run error | grep -q "at step 2" || fail "stored error lacks the step"
[ -n "$(last_run ended)" ] || fail "diverged run has no end time"
r=$(last_run id)
# What is known: step 1 complete, step 2's loss (finite) and its NaN norm (NULL).
[ "$(q "SELECT count(*) FROM metrics WHERE run_id=$r AND step=1 AND key LIKE 'train/%'")" -ge 4 ] || fail "step 1 not logged"
[ "$(q "SELECT value IS NOT NULL FROM metrics WHERE run_id=$r AND step=2 AND key='train/loss'")" = 1 ] || fail "step 2 loss not logged"
[ "$(q "SELECT value IS NULL FROM metrics WHERE run_id=$r AND step=2 AND key='train/grad_norm'")" = 1 ] || fail "step 2 grad_norm not logged as NULL"
[ "$(q "SELECT count(*) FROM metrics WHERE run_id=$r AND step>2")" = 0 ] || fail "steps after the divergence were logged"

# 2. NaN loss at step 1.
if "$GQE" "$tmp/run.lua" model.init_std=3e38 >"$tmp/out" 2>"$tmp/err"; then fail "init_std=3e38 run exited 0"; fi
grep -q "diverged: train/loss is [-]*nan at step 1" "$tmp/err" || { cat "$tmp/err"; fail "NaN loss message"; }
[ "$(last_run status)" = diverged ] || fail "status not diverged (loss)"
[ "$(last_run step)" = 1 ] || fail "runs.step is not 1"

# 3. train.on_nan=skip: every step after the first is skipped and counted.
"$GQE" "$tmp/run.lua" optim.lr=1e30 train.on_nan=skip >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "skip run failed"; }
grep -q "status finished" "$tmp/out" || fail "skip run did not finish"
grep -q "train/grad_norm is [-]*nan at step 3: step skipped" "$tmp/err" || { cat "$tmp/err"; fail "no skip message"; }
r=$(last_run id)
[ "$(last_run status)" = finished ] || fail "skip run status"
[ "$(q "SELECT value FROM metrics WHERE run_id=$r AND key='train/skipped' AND step=5")" = 4.0 ] || fail "skipped count"
[ "$(q "SELECT count(*) FROM metrics WHERE run_id=$r AND key='val/loss' AND value IS NOT NULL")" -ge 2 ] || fail "evals during skip"

[ "$(q "SELECT count(*) FROM runs WHERE status='running'")" = 0 ] || fail "a run was left running"
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check"
echo "test_robust_nan: ok"
