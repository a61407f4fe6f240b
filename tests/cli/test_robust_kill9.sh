#!/usr/bin/env bash
# kill -9 in the middle of a run: the database stays intact (integrity_check
# ok), every row committed before the kill is still there and complete (each
# flush is one transaction, so no step is half logged), `gqe runs` shows the
# run as crashed rather than running, and `gqe resume` continues it from its
# last checkpoint to the same losses as a run that was never killed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pid=
cleanup() { [ -n "$pid" ] && kill -9 $pid 2>/dev/null; }
head -c 30000 lua/gqe/train.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "kill9", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  schedule = { kind = "constant" },   -- the same lr whatever train.steps says
  train = { steps = 100000, batch = 2, seq = 16, log_every = 1, eval_every = 7, eval_batches = 1,
            checkpoint_every = 10, db = "$db", checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA

# 1. Start, let it log and checkpoint, read what is committed, kill -9.
"$GQE" "$tmp/run.lua" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 600); do
  [ "$(q "SELECT coalesce(max(step),0) FROM checkpoints" 2>/dev/null || echo 0)" -ge 20 ] && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/err"; fail "the run ended before it was killed"; }
  sleep 0.05
done
seen=$(q "SELECT count(*) FROM metrics WHERE run_id=1")
[ "$seen" -gt 0 ] || fail "nothing logged before the kill"
[ "$(q "SELECT status FROM runs WHERE id=1")" = running ] || fail "run not 'running' while it runs"
kill -9 $pid
wait $pid 2>/dev/null && fail "killed process exited 0"
pid=

# 2. The file is intact and holds at least what was committed before.
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check after kill -9"
[ "$(q "PRAGMA foreign_key_check")" = "" ] || fail "foreign keys broken after kill -9"
after=$(q "SELECT count(*) FROM metrics WHERE run_id=1")
[ "$after" -ge "$seen" ] || fail "rows lost: $seen seen before the kill, $after after"
last=$(q "SELECT max(step) FROM metrics WHERE run_id=1")
# Every step up to the last flush has all six training metrics...
for k in train/loss train/aux train/lr train/grad_norm perf/tokens_per_s perf/tokens; do
  n=$(q "SELECT count(DISTINCT step) FROM metrics WHERE run_id=1 AND key='$k' AND step BETWEEN 1 AND $last")
  [ "$n" = "$last" ] || fail "$k: $n of $last steps logged"
done
# ...the run's step went up in the same transaction, and the summaries agree.
[ "$(q "SELECT step FROM runs WHERE id=1")" = "$last" ] || fail "runs.step differs from the last logged step"
[ "$(q "SELECT count(*) FROM metric_summary s JOIN metrics m ON m.run_id=s.run_id AND m.key=s.key
        AND m.step=s.last_step WHERE s.run_id=1 AND s.last IS m.value")" = \
  "$(q "SELECT count(*) FROM metric_summary WHERE run_id=1")" ] || fail "metric_summary disagrees with metrics"
# The evaluation of step 7n flushes after that step's own metrics, so a kill
# between the two flushes leaves the last evaluation unlogged.
evals=$(( last / 7 ))
nval=$(q "SELECT count(*) FROM metrics WHERE run_id=1 AND key='val/loss'")
[ "$nval" = "$evals" ] || { [ $(( last % 7 )) = 0 ] && [ "$nval" = $(( evals - 1 )) ]; } || fail "val/loss rows missing: $nval of $evals"
[ "$(q "SELECT count(*) FROM head_usage WHERE run_id=1")" = $(( nval * 4 )) ] || fail "head_usage rows missing"

# 3. gqe runs: crashed, not running, with the reason.
"$GQE" runs --db "$db" > "$tmp/runs" || fail "gqe runs"
cat "$tmp/runs"
grep -E "^ *1 +kill9 +tiny +crashed" "$tmp/runs" >/dev/null || fail "gqe runs does not show the run as crashed"
[ "$(q "SELECT status FROM runs WHERE id=1")" = crashed ] || fail "status not crashed in the database"
q "SELECT error FROM runs WHERE id=1" | grep -q "no longer exists" || fail "crash reason does not mention the dead process"
[ -n "$(q "SELECT ended FROM runs WHERE id=1")" ] || fail "crashed run has no end time"

# Runs of other hosts: crashed once their heartbeat is older than 10 minutes.
q "INSERT INTO runs(experiment_id, name, status, host, pid, started, heartbeat, step)
   SELECT experiment_id, 'far-stale', 'running', 'elsewhere', 1, 0, strftime('%s','now') - 3600, 5 FROM runs WHERE id=1;
   INSERT INTO runs(experiment_id, name, status, host, pid, started, heartbeat, step)
   SELECT experiment_id, 'far-alive', 'running', 'elsewhere', 1, 0, strftime('%s','now') - 5, 5 FROM runs WHERE id=1;"
"$GQE" runs --db "$db" > "$tmp/runs" || fail "gqe runs (other hosts)"
grep -E "far-stale +crashed .*no heartbeat from elsewhere" "$tmp/runs" >/dev/null || { cat "$tmp/runs"; fail "stale heartbeat not crashed"; }
grep -E "far-alive +running" "$tmp/runs" >/dev/null || { cat "$tmp/runs"; fail "a live run of another host marked crashed"; }
q "DELETE FROM runs WHERE name LIKE 'far-%'"

# 4. Resume from the last checkpoint to 20 steps past it; the losses equal
#    those of a run of that length that was never killed (run 2).
ck=$(q "SELECT max(step) FROM checkpoints WHERE run_id=1")
end=$((ck + 20))
q "UPDATE runs SET config = json_set(config, '$.train.steps', $end) WHERE id=1"
"$GQE" resume 1 --db "$db" > "$tmp/resume" 2>&1 || { cat "$tmp/resume"; fail "gqe resume after kill -9"; }
[ "$(q "SELECT status FROM runs WHERE id=1")" = finished ] || fail "resumed run not finished"
[ "$(q "SELECT step FROM runs WHERE id=1")" -ge "$end" ] || fail "resumed run did not reach step $end"
"$GQE" "$tmp/run.lua" train.steps=$end >/dev/null 2>&1 || fail "reference run"
same=$(q "SELECT count(*) FROM metrics x JOIN metrics y ON y.run_id=2 AND y.key=x.key AND y.step=x.step
          WHERE x.run_id=1 AND x.key='train/loss' AND x.step <= $end AND x.value = y.value")
[ "$same" = "$end" ] || fail "losses after resume differ from an uninterrupted run ($same of $end equal)"
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check at the end"
echo "killed at step $last (checkpoint $ck), resumed to $end bit for bit"
echo "test_robust_kill9: ok"
