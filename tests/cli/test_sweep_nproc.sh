#!/usr/bin/env bash
# A sweep run of several ranks (train.nproc): on the CPU the sweep starts it
# as an mpirun group through `gqe launch`, beside a one-process run.
#  1. --jobs 2: the 2-rank run at batch 2 logs the losses of the 1-rank run
#     at batch 4 (within 1e-6 relative), one row, world 2 in its hash.
#  2. The same without --jobs (one run at a time: the ranks are still
#     started), and a rerun skips both runs as finished.
#  3. SIGINT to the sweep's process alone: every rank checkpoints and
#     stops, the run is marked killed, no rank process is left; a rerun
#     resumes it in its row.
#  4. gqe.train with train.nproc=2 in a single process says how to start it.
# Skipped (77) where mpirun is absent.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not installed: skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cat lua/gqe/*.lua > "$tmp/text.txt"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; }

cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
gqe.experiment {
  name = "np",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 32, layers = 2, experts = 4, groups = 2, k = 1, head_dim = 8 },
    train = { steps = tonumber(os.getenv("STEPS") or 8), batch = 4, seq = 32, log_every = 1, eval_every = 4,
              eval_batches = 2, checkpoint_dir = "$tmp/ckpt" },
  },
  arms = { { ["train.nproc"] = 1, ["train.batch"] = 4 }, { ["train.nproc"] = 2, ["train.batch"] = 2 } },
}
LUA

# same DB: the two runs' train/loss and val/loss agree within 1e-6 relative
same() {
  local n bad
  n=$(sqlite3 "$1" "SELECT count(*) FROM metrics a JOIN metrics b ON b.step = a.step AND b.key = a.key JOIN runs ra ON ra.id = a.run_id
                    JOIN runs rb ON rb.id = b.run_id
                    WHERE ra.name LIKE '%nproc=1%' AND rb.name LIKE '%nproc=2%' AND a.key IN ('train/loss', 'val/loss')")
  [ "$n" -ge 10 ] || fail "$1: only $n losses to compare: $(sqlite3 "$1" "SELECT id, name, status FROM runs")"
  bad=$(sqlite3 "$1" "SELECT a.key || '@' || a.step || ': ' || a.value || ' vs ' || b.value
                      FROM metrics a JOIN metrics b ON b.step = a.step AND b.key = a.key JOIN runs ra ON ra.id = a.run_id
                      JOIN runs rb ON rb.id = b.run_id
                      WHERE ra.name LIKE '%nproc=1%' AND rb.name LIKE '%nproc=2%' AND a.key IN ('train/loss', 'val/loss')
                        AND abs(a.value - b.value) > 1e-6 * abs(a.value) LIMIT 3")
  [ -z "$bad" ] || fail "$1: 2 ranks x batch 2 differ from 1 rank x batch 4: $bad"
}

# 1. --jobs 2
"$GQE" "$tmp/exp.lua" --jobs 2 --db "$tmp/j2.db" train.progress=false >"$tmp/j2.out" 2>&1 ||
  { cat "$tmp/j2.out"; fail "--jobs 2 sweep exited non-zero"; }
same "$tmp/j2.db"
[ "$(sqlite3 "$tmp/j2.db" "SELECT count(*) FROM runs WHERE status = 'finished'")" = 2 ] || fail "not 2 finished rows"
[ "$(sqlite3 "$tmp/j2.db" "SELECT device FROM runs WHERE name LIKE '%nproc=2%'")" = "cpu x2" ] ||
  fail "the 2-rank run does not record 2 ranks"
echo "ok: --jobs 2 sweep: 2 MPI ranks x batch 2 = 1 rank x batch 4"

# 2. one at a time, then a rerun skips both
"$GQE" "$tmp/exp.lua" --db "$tmp/j1.db" train.progress=false >"$tmp/j1.out" 2>&1 ||
  { cat "$tmp/j1.out"; fail "sweep without --jobs exited non-zero"; }
same "$tmp/j1.db"
[ "$(sqlite3 "$tmp/j1.db" "SELECT group_concat(config_hash) FROM runs ORDER BY id")" = \
  "$(sqlite3 "$tmp/j2.db" "SELECT group_concat(config_hash) FROM runs ORDER BY id")" ] || fail "hashes differ between the sweeps"
"$GQE" "$tmp/exp.lua" --db "$tmp/j1.db" train.progress=false >"$tmp/j1b.out" 2>&1 || fail "rerun exited non-zero"
[ "$(sqlite3 "$tmp/j1.db" "SELECT count(*) FROM runs")" = 2 ] || { cat "$tmp/j1b.out"; fail "the rerun did not skip the finished runs"; }
echo "ok: without --jobs the ranks are started too; a rerun skips both runs"

# 3. SIGINT to the sweep alone, while both runs train (--jobs 3: the 2-rank
# run takes two of the slots)
STEPS=2000 setsid "$GQE" "$tmp/exp.lua" --jobs 3 --db "$tmp/int.db" train.eval_every=1000 >"$tmp/int.out" 2>&1 &
sweep=$!
pids+=("$sweep")
for _ in $(seq 600); do
  [ "$(sqlite3 -cmd ".timeout 5000" "$tmp/int.db" "SELECT count(*) FROM runs WHERE name LIKE '%nproc=2%' AND step >= 3" 2>/dev/null || echo 0)" = 1 ] && break
  sleep 0.1
done
[ "$(ps -o pid= -g "$sweep" | wc -l)" -ge 4 ] || { ps -o pid,args -g "$sweep"; fail "the ranks are not running"; }
kill -INT "$sweep"
rc=0; wait "$sweep" || rc=$?
[ "$rc" != 0 ] || fail "an interrupted sweep exited 0"
for _ in $(seq 100); do
  [ -z "$(ps -o stat= -g "$sweep" | grep -v '^Z' || true)" ] && break
  sleep 0.1
done
[ -z "$(ps -o stat= -g "$sweep" | grep -v '^Z' || true)" ] || { ps -o pid,stat,args -g "$sweep"; fail "a rank outlived the sweep"; }
[ "$(sqlite3 "$tmp/int.db" "SELECT status FROM runs WHERE name LIKE '%nproc=2%'")" = killed ] ||
  { cat "$tmp/int.out"; fail "the 2-rank run is not marked killed"; }
[ "$(sqlite3 "$tmp/int.db" "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.name LIKE '%nproc=2%'")" -ge 1 ] ||
  fail "the 2-rank run wrote no checkpoint"
echo "ok: SIGINT to the sweep: the ranks checkpoint and stop, none is left"
STEPS=2000 "$GQE" "$tmp/exp.lua" --jobs 3 --db "$tmp/int.db" train.eval_every=1000 train.progress=false >"$tmp/int2.out" 2>&1 ||
  { cat "$tmp/int2.out"; fail "the rerun of the interrupted sweep exited non-zero"; }
grep -q "nproc=2.*resuming run" "$tmp/int2.out" || { cat "$tmp/int2.out"; fail "the 2-rank run was not resumed"; }
[ "$(sqlite3 "$tmp/int.db" "SELECT group_concat(status) FROM runs")" = "finished,finished" ] ||
  fail "after the rerun: $(sqlite3 "$tmp/int.db" "SELECT id, name, status FROM runs")"
echo "ok: a rerun resumes the 2-rank run in its row and finishes it"

# 4. a single process cannot become two ranks
cat > "$tmp/one.lua" <<LUA
local gqe = require "gqe"
gqe.train { data = { path = "$tmp/text.txt" }, train = { steps = 2, nproc = 2, db = "$tmp/one.db" } }
LUA
out=$("$GQE" "$tmp/one.lua" 2>&1) && fail "gqe.train with train.nproc=2 in one process succeeded"
echo "$out" | grep -q "gqe launch --nproc 2" || fail "no hint to gqe launch: $out"
echo "ok: gqe.train with train.nproc=2 alone names gqe launch"
