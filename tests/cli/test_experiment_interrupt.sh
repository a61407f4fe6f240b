#!/usr/bin/env bash
# Interrupts and reruns of a --jobs 2 sweep, as a terminal and a scheduler
# deliver them:
#  1. Ctrl-C (SIGINT to the whole process group): each run finishes its
#     step, writes a checkpoint and is marked killed; no process is left;
#     the closing line counts right. --dry-run then says "will resume".
#  2. A rerun resumes both runs in their own rows and logs exactly the
#     losses of uninterrupted runs.
#  3. SIGTERM to the sweep's process alone: the same, and `gqe resume
#     EXPERIMENT` resumes both.
#  4. A second signal stops everything at once; the database stays intact.
#  5. A closed stdout (`gqe resume ... | head`) never kills a run.
#  6. --jobs 1: Ctrl-C kills the running run, the next never starts; a rerun
#     resumes the one and starts the other.
#  7. The sweep's process killed with SIGKILL: its workers stop as on
#     SIGTERM (checkpoint, killed) instead of running on unwatched; --restart
#     then starts both again from step 0 in their own rows.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; }

cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
gqe.experiment {
  name = "int",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 64, layers = 2, experts = 4, groups = 2, head_dim = 16 },
    train = { steps = 40, batch = 8, seq = 64, log_every = 1, eval_every = 20, eval_batches = 1,
              checkpoint_every = 0, checkpoint_dir = "$tmp/ckpt" },
  },
  grid  = { ["model.router"] = { "softmax", "sigmoid" } },
  seeds = { 1 },
}
LUA

# Waits until ${2:-2} runs of $1 logged ${3:-3} steps.
wait_steps() {
  for _ in $(seq 600); do
    [ "$(sqlite3 -cmd ".timeout 5000" "$1" "SELECT count(*) FROM runs WHERE step >= ${3:-3} AND status = 'running'" 2>/dev/null || echo 0)" = "${2:-2}" ] && return 0
    sleep 0.1
  done
  fail "the runs did not start"
}
# Starts the sweep in its own process group (as a shell job is), db $1, extra args after.
start_sweep() {
  local d=$1; shift
  setsid "$GQE" "$tmp/exp.lua" --db "$d" "${@:---jobs=2}" >"$tmp/out" 2>"$tmp/err" &
  sweep=$!
  pids+=("$sweep")
}
# No process of the group $1 is left: waits for them to end and for init to
# reap them; fails if any but a zombie is left after that.
no_process_left() {
  for _ in $(seq 100); do
    [ -z "$(ps -o stat= -g "$1" || true)" ] && return 0
    sleep 0.1
  done
  [ -z "$(ps -o stat= -g "$1" | grep -v '^Z' || true)" ] && return 0
  ps -o pid,pgid,stat,args -g "$1" || true
  fail "$2: a process of the sweep is still running"
}
losses() { sqlite3 "$1" "SELECT r.name, m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.key = 'train/loss' ORDER BY 1, 2"; }

# The reference: the same sweep, uninterrupted.
"$GQE" "$tmp/exp.lua" --jobs 2 --db "$tmp/ref.db" train.progress=false >/dev/null 2>&1 || fail "reference sweep"
losses "$tmp/ref.db" > "$tmp/ref.losses"
[ "$(wc -l < "$tmp/ref.losses")" = 80 ] || fail "reference: expected 80 losses"

# 1. Ctrl-C to the process group.
start_sweep "$db"
wait_steps "$db"
kill -INT -- "-$sweep"
set +e; wait "$sweep"; rc=$?; set -e
cat "$tmp/out" "$tmp/err"
[ "$rc" != 0 ] || fail "an interrupted sweep exited 0"
no_process_left "$sweep" "Ctrl-C"
[ "$(q "SELECT count(*) FROM runs WHERE status = 'killed'")" = 2 ] || { q "SELECT id, status, error FROM runs"; fail "Ctrl-C: both runs must be killed"; }
# One checkpoint each, at the step where the run stopped.
[ "$(q "SELECT count(*) FROM runs r WHERE (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id AND c.step = r.step) = 1")" = 2 ] \
  || { q "SELECT r.id, r.step, c.step FROM runs r LEFT JOIN checkpoints c ON c.run_id = r.id"; fail "Ctrl-C: a checkpoint at the stopping step"; }
grep -q "left no result" "$tmp/out" && fail "Ctrl-C: a worker died without a result"
grep -q "interrupted (SIGINT), 2 runs: 0 finished now, 2 killed (rerun to resume them)" "$tmp/err" || fail "Ctrl-C: closing line"
[ "$(grep -c "^gqe: " "$tmp/err")" = 1 ] || fail "Ctrl-C: one closing error"

# --dry-run tells what a rerun does.
"$GQE" "$tmp/exp.lua" --dry-run --db "$db" > "$tmp/dry"
cat "$tmp/dry"
[ "$(grep -c "will resume from step" "$tmp/dry")" = 2 ] || fail "dry run: will resume"
"$GQE" "$tmp/exp.lua" --dry-run --db "$db" train.seed=2 | grep -q "seed=2  *new" || fail "dry run: new"

# 2. The rerun resumes both in their own rows; the losses are the uninterrupted ones.
"$GQE" "$tmp/exp.lua" --jobs 2 --db "$db" train.progress=false > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "rerun"; }
cat "$tmp/out"
[ "$(grep -c "resuming run [12] from step" "$tmp/out")" = 2 ] || fail "rerun: both resume"
[ "$(q "SELECT count(*) FROM runs")" = 2 ] || fail "rerun: new rows"
[ "$(q "SELECT count(*) FROM runs WHERE status = 'finished'")" = 2 ] || fail "rerun: not finished"
losses "$db" > "$tmp/losses"
cmp -s "$tmp/ref.losses" "$tmp/losses" || { diff "$tmp/ref.losses" "$tmp/losses" | head; fail "resumed losses differ from uninterrupted runs"; }
"$GQE" "$tmp/exp.lua" --dry-run --db "$db" | grep -c "finished (run" | grep -qx 2 || fail "dry run: finished"

# 3. SIGTERM to the sweep's process alone; `gqe resume EXPERIMENT`.
db3=$tmp/term.db
start_sweep "$db3"
wait_steps "$db3"
kill -TERM "$sweep"
set +e; wait "$sweep"; rc=$?; set -e
[ "$rc" != 0 ] || fail "SIGTERM: exited 0"
no_process_left "$sweep" "SIGTERM"
[ "$(sqlite3 "$db3" "SELECT count(*) FROM runs WHERE status = 'killed'")" = 2 ] || { cat "$tmp/err"; fail "SIGTERM: both runs must be killed"; }
"$GQE" resume int --jobs 2 --db "$db3" > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "gqe resume EXPERIMENT"; }
[ "$(sqlite3 "$db3" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 2 ] || fail "resume EXPERIMENT: not finished"
[ "$(sqlite3 "$db3" "SELECT count(*) FROM runs")" = 2 ] || fail "resume EXPERIMENT: new rows"
cmp -s "$tmp/ref.losses" <(losses "$db3") || fail "gqe resume EXPERIMENT: losses differ"

# 4. A second signal before the runs could stop: everything stops at once,
# said once, the database stays intact, and a rerun would start both again
# in their rows. (The group is stopped while both signals are sent, so the
# second is not merged into the first and lands before the runs could end.)
db4=$tmp/twice.db
start_sweep "$db4"
wait_steps "$db4"
kill -STOP -- "-$sweep"; kill -INT -- "-$sweep"; kill -TERM -- "-$sweep"; kill -CONT -- "-$sweep"
set +e; wait "$sweep"; rc=$?; set -e
cat "$tmp/out" "$tmp/err"
[ "$rc" = 130 ] || [ "$rc" = 143 ] || fail "second signal: exit $rc, expected 130 or 143"
[ "$(grep -c "stopped at once" "$tmp/err")" = 1 ] || fail "second signal: said once"
no_process_left "$sweep" "second signal"
[ "$(sqlite3 "$db4" "PRAGMA integrity_check")" = ok ] || fail "second signal: database damaged"
"$GQE" "$tmp/exp.lua" --dry-run --db "$db4" | tee "$tmp/dry" | grep -c "will restart from step 0 (run [12])" | grep -qx 2 \
  || { cat "$tmp/dry"; fail "second signal: dry run"; }

# 5. A closed pipe does not kill a resumed run (run 1 of the SIGTERM sweep,
# which prints its progress, goes back to its checkpoint at the signal).
sqlite3 "$db3" "UPDATE runs SET status = 'killed' WHERE id = 1; DELETE FROM checkpoints WHERE run_id = 1 AND step = 40"
set +e; "$GQE" resume 1 --db "$db3" 2>&1 | head -c 1 >/dev/null; rc=${PIPESTATUS[0]}; set -e
[ "$rc" = 0 ] || fail "SIGPIPE: gqe resume exited $rc"
[ "$(sqlite3 "$db3" "SELECT status FROM runs WHERE id = 1")" = finished ] || fail "SIGPIPE: the resumed run did not finish"
cmp -s "$tmp/ref.losses" <(losses "$db3") || fail "SIGPIPE: losses differ"
# 6. --jobs 1.
db6=$tmp/one.db
start_sweep "$db6" --jobs=1
wait_steps "$db6" 1
kill -INT -- "-$sweep"
set +e; wait "$sweep"; rc=$?; set -e
[ "$rc" != 0 ] || fail "--jobs 1: exited 0"
grep -q "interrupted (SIGINT), 2 runs: 0 finished now, 1 killed (rerun to resume them), 1 not started" "$tmp/err" \
  || { cat "$tmp/out" "$tmp/err"; fail "--jobs 1: closing line"; }
"$GQE" "$tmp/exp.lua" --db "$db6" train.progress=false > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "--jobs 1: rerun"; }
grep -q "\[1/2\] router=softmax,seed=1: started (resuming run 1 from step" "$tmp/out" || { cat "$tmp/out"; fail "--jobs 1: resume"; }
[ "$(sqlite3 "$db6" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 2 ] || fail "--jobs 1: not finished"
cmp -s "$tmp/ref.losses" <(losses "$db6") || fail "--jobs 1: losses differ"

# 7. SIGKILL to the sweep's process.
db7=$tmp/kill9.db
start_sweep "$db7"
wait_steps "$db7"
kill -KILL "$sweep"
set +e; wait "$sweep"; set -e
for _ in $(seq 300); do [ -z "$(ps -o stat= -g "$sweep" || true)" ] && break; sleep 0.1; done
no_process_left "$sweep" "SIGKILL to the sweep"
[ "$(sqlite3 "$db7" "SELECT count(*) FROM runs WHERE status = 'killed'")" = 2 ] || fail "SIGKILL to the sweep: runs not killed"
# --restart: both again from step 0, in their own rows.
"$GQE" "$tmp/exp.lua" --jobs 2 --restart --db "$db7" train.progress=false > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "--restart"; }
cat "$tmp/out"
[ "$(grep -c "(run [12], from step 0)" "$tmp/out")" = 2 ] || fail "--restart: both from step 0"
[ "$(sqlite3 "$db7" "SELECT count(*) FROM runs")" = 2 ] || fail "--restart: new rows"
[ "$(sqlite3 "$db7" "SELECT count(*) FROM checkpoints WHERE step < 40")" = 0 ] || fail "--restart: old checkpoints kept"
cmp -s "$tmp/ref.losses" <(losses "$db7") || fail "--restart: losses differ"
echo "test_experiment_interrupt: ok"
