#!/usr/bin/env bash
# Signals and limits that arrive where the training loop does not look:
# SIGTERM during a long evaluation stops it at the next batch, the run
# checkpoints at its step and is marked killed; a file-size limit (ulimit -f,
# whose SIGXFSZ would kill a process silently) fails the run like a full disk:
# exit 1, a message, the run marked failed, the database intact. A corrupt
# database gets its message alone, without a Lua traceback.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pid=
cleanup() { [ -n "$pid" ] && kill -9 $pid 2>/dev/null; }
cat lua/gqe/*.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "limits", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 100, batch = 2, seq = 16, log_every = 2, eval_every = 3, eval_batches = 100000000,
            db = "$db", checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA

# 1. SIGTERM inside an evaluation of 10^8 batches (hours) at step 3: step 2
#    is the last logging step before it; the signal lands inside it, and
#    runs.step must still say 3, the step the error names.
"$GQE" "$tmp/run.lua" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 600); do
  [ "$(q "SELECT coalesce(max(step),0) FROM metrics WHERE run_id=1" 2>/dev/null || echo 0)" -ge 2 ] && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/err"; fail "run ended early"; }
  sleep 0.05
done
sleep 1
kill -TERM $pid
# Bounded: a few batches at most, not the evaluation's hours.
for _ in $(seq 1 1200); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
kill -0 $pid 2>/dev/null && fail "SIGTERM during evaluation not honoured within a minute"
set +e; wait $pid; rc=$?; set -e; pid=
[ "$rc" -ne 0 ] || fail "killed run exited 0"
[ "$(q "SELECT status || ' ' || step FROM runs WHERE id=1")" = "killed 3" ] ||
  fail "after SIGTERM in evaluation: $(q "SELECT status, step, error FROM runs WHERE id=1")"
[ "$(q "SELECT max(step) FROM checkpoints WHERE run_id=1")" = 3 ] || fail "no checkpoint at step 3"
q "SELECT error FROM runs WHERE id=1" | grep -q "SIGTERM at step 3" || fail "error: $(q "SELECT error FROM runs WHERE id=1")"
echo "SIGTERM during evaluation: checkpoint at step 3, killed"

# 2. SIGTERM inside a long training step (a model whose step takes seconds,
#    random routers): the step is abandoned between two layers, the run
#    checkpoints at its last complete step and is killed; the resume then
#    logs exactly the losses of an uninterrupted run.
cat > "$tmp/long.lua" <<LUA
local gqe = require "gqe"
local cfg = { experiment = "long", name = os.getenv("NAME"), data = { path = "$tmp/text.txt" },
  model = { dim = 256, layers = 4, experts = 4, groups = 2, k = 1, router = "random", max_seq = 512 },
  schedule = { kind = "constant" },
  train = { steps = 3, batch = 4, seq = 512, log_every = 1, eval_every = 1000, eval_batches = 1,
            db = "$db", checkpoint_dir = "$tmp/ckpt", progress = false } }
gqe.train(cfg)
LUA
NAME=straight "$GQE" "$tmp/long.lua" 2>"$tmp/err" || { cat "$tmp/err"; fail "uninterrupted long run"; }
NAME=cut "$GQE" "$tmp/long.lua" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 1200); do
  [ "$(q "SELECT count(*) FROM runs r JOIN metrics m ON m.run_id = r.id WHERE r.name = 'cut'" 2>/dev/null || echo 0)" -gt 0 ] && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/err"; fail "long run ended early"; }
  sleep 0.05
done
sleep 0.5
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e; pid=
[ "$rc" -ne 0 ] || fail "long run killed mid-step exited 0"
cut=$(q "SELECT id FROM runs WHERE name='cut'")
[ "$(q "SELECT status FROM runs WHERE id=$cut")" = killed ] || fail "long run: $(q "SELECT status, error FROM runs WHERE id=$cut")"
q "SELECT error FROM runs WHERE id=$cut" | grep -q "SIGTERM at step 1 (step 2 abandoned)" ||
  fail "the step in progress was not abandoned: $(q "SELECT error FROM runs WHERE id=$cut")"
[ "$(q "SELECT step FROM runs WHERE id=$cut")" = 1 ] || fail "runs.step is not 1"
[ "$(q "SELECT max(step) FROM checkpoints WHERE run_id=$cut")" = 1 ] || fail "no checkpoint at step 1"
"$GQE" resume "$cut" --db "$db" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "resume after an abandoned step"; }
straight=$(q "SELECT group_concat(value, ' ') FROM (SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id
  WHERE r.name = 'straight' AND m.key = 'train/loss' ORDER BY m.step)")
resumed=$(q "SELECT group_concat(value, ' ') FROM (SELECT value FROM metrics WHERE run_id = $cut AND key = 'train/loss' ORDER BY step)")
[ "$straight" = "$resumed" ] || fail "losses after the resume differ: $resumed, uninterrupted: $straight"
echo "SIGTERM inside a long step: abandoned, checkpoint at step 1, resumed to the same losses"

# 3. A file-size limit, SIGXFSZ left at its default (the shell's ulimit as a
#    scheduler would set it): the writes fail, the run fails with a message.
set +e; (ulimit -f 200; exec "$GQE" "$tmp/run.lua" train.steps=1000000 train.eval_batches=1 train.eval_every=1000 \
  train.db="$tmp/limited.db") >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] || { cat "$tmp/err"; fail "file-size limit: exit $rc, expected 1 (153 = killed by SIGXFSZ)"; }
grep -q "limited.db" "$tmp/err" || { cat "$tmp/err"; fail "file-size limit: the message does not name the database"; }
[ "$(sqlite3 "$tmp/limited.db" "PRAGMA integrity_check")" = ok ] || fail "file-size limit: integrity_check"
[ "$(sqlite3 "$tmp/limited.db" "SELECT status FROM runs")" = failed ] ||
  fail "file-size limit: run is $(sqlite3 "$tmp/limited.db" "SELECT status FROM runs")"
echo "file-size limit: run failed with a message, database intact"
# 4. A corrupt database: the message says so, with no Lua traceback under it.
corrupt=0
for pg in 2 3 4 5 6 7 8; do
  cp "$db" "$tmp/c.db"
  head -c 4096 /dev/urandom | dd of="$tmp/c.db" bs=4096 seek=$pg conv=notrunc status=none
  set +e; "$GQE" runs --db "$tmp/c.db" >"$tmp/out" 2>&1; rc=$?; set -e
  grep -q "traceback" "$tmp/out" && { cat "$tmp/out"; fail "corrupt page $pg: a traceback"; }
  if [ "$rc" != 0 ]; then
    grep -q -E "^gqe: .*c.db: (the database file is corrupt|not an SQLite database)" "$tmp/out" ||
      { cat "$tmp/out"; fail "corrupt page $pg: message"; }
    corrupt=$((corrupt + 1))
  fi
done
[ "$corrupt" -gt 0 ] || fail "no corrupted page was noticed"
echo "corrupt database: $corrupt of 7 damaged pages reported, no traceback"
echo "test_robust_limits: ok"
