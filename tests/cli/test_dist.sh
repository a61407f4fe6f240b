#!/usr/bin/env bash
# Data parallel on the CPU: ranks over MPI (mpirun, and `gqe launch` which
# starts mpirun) against one process. The maths of one big batch (2 ranks
# at batch B/2 log the losses of 1 rank at batch B, head usage identical;
# grad_accum A equals a batch A times larger, on 1 and 2 ranks), one run in
# the log, exact resume of a stopped 2-rank run, and the faults: a rank
# killed or hanging, configs that differ, a missing MPI library, bad
# launcher flags. Skipped (77) where mpirun is absent.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not installed: skipped"; exit 77; }
# CI runs as root, on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { local n=$1; shift; timeout 120 mpirun --oversubscribe -np "$n" "$@"; }
cat lua/gqe/*.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "dist", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 32, layers = 2, experts = 4, groups = 2, k = 1, head_dim = 8 },
  train = { steps = 8, batch = 4, seq = 32, log_every = 1, eval_every = 4, eval_batches = 2, progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA

# run NAME RANKS override...: a run into its own database $tmp/NAME.db
run() {
  local name=$1 n=$2; shift 2
  mpi "$n" "$GQE" "$tmp/run.lua" train.db="$tmp/$name.db" train.checkpoint_dir="$tmp/ck_$name" "$@" \
    >"$tmp/$name.out" 2>&1 || { cat "$tmp/$name.out"; fail "run $name on $n ranks exited non-zero"; }
}
# same A B [KEYS]: every train/loss, val/loss (and train/aux and val/acc, the
# top-1 accuracy pooled over the ranks, unless KEYS says otherwise) within
# 1e-6 relative, head usage identical
same() {
  local a=$tmp/$1.db b=$tmp/$2.db keys=${3:-"'train/loss', 'train/aux', 'val/loss', 'val/acc'"}
  local n bad
  n=$(sqlite3 "$a" "ATTACH '$b' AS o; SELECT count(*) FROM metrics m JOIN o.metrics p USING (step, key)
                     WHERE key IN ($keys)")
  [ "$n" -ge 10 ] || fail "$1 vs $2: only $n losses to compare"
  bad=$(sqlite3 "$a" "ATTACH '$b' AS o; SELECT key || '@' || step || ': ' || m.value || ' vs ' || p.value
                       FROM metrics m JOIN o.metrics p USING (step, key)
                       WHERE key IN ($keys)
                         AND abs(m.value - p.value) > 1e-6 * abs(p.value) LIMIT 3")
  [ -z "$bad" ] || fail "$1 vs $2 differ: $bad"
  local ua ub
  ua=$(sqlite3 "$a" "SELECT group_concat(tokens) FROM (SELECT tokens FROM head_usage ORDER BY step, layer, grp, expert)")
  ub=$(sqlite3 "$b" "SELECT group_concat(tokens) FROM (SELECT tokens FROM head_usage ORDER BY step, layer, grp, expert)")
  [ -n "$ua" ] && [ "$ua" = "$ub" ] || fail "$1 vs $2: head usage differs: $ua / $ub"
}

# 1. Two ranks at batch 2 are one rank at batch 4.
run ref 1
run dp2 2 train.batch=2
same dp2 ref
echo "ok: 2 ranks x batch 2 = 1 rank x batch 4 (losses, aux, val, head usage)"
# The communicator's path at world size 1 (GQE_DIST forces it), ZeRO-1 included.
GQE_DIST=mpi run w1 1 train.zero=true
same w1 ref
echo "ok: GQE_DIST=mpi at world size 1 = no communicator"

# One run in the log: rank 0's row, recording the world; one checkpoint.
[ "$(sqlite3 "$tmp/dp2.db" "SELECT count(*) FROM runs")" = 1 ] || fail "2-rank run: not exactly one runs row"
[ "$(sqlite3 "$tmp/dp2.db" "SELECT device FROM runs")" = "cpu x2" ] || fail "runs.device does not record 2 ranks"
[ "$(sqlite3 "$tmp/dp2.db" "SELECT host FROM runs")" = "$(hostname)" ] || fail "runs.host is not this host"
[ "$(sqlite3 "$tmp/dp2.db" "SELECT value FROM params WHERE key='dist.world'")" = 2 ] || fail "params lack dist.world=2"
[ "$(sqlite3 "$tmp/dp2.db" "SELECT count(*) FROM checkpoints")" = 1 ] || fail "not exactly one checkpoint"
[ "$(ls "$tmp"/ck_dp2/dist/run*/ | wc -l)" = 1 ] || fail "checkpoint files: $(ls -R "$tmp"/ck_dp2)"
tps1=$(sqlite3 "$tmp/dp2.db" "SELECT value FROM metrics WHERE key='perf/tokens' AND step=8")
[ "$tps1" = "$(sqlite3 "$tmp/ref.db" "SELECT value FROM metrics WHERE key='perf/tokens' AND step=8")" ] ||
  fail "perf/tokens is not the global count"
[ -z "$(sqlite3 "$tmp/ref.db" "SELECT value FROM params WHERE key='dist.world'")" ] || fail "1 process records dist.world"

# 2. Gradient accumulation: A micro-batches are one batch A times larger, on
# one rank and on two. The balanced router steps on the whole step's load;
# an aux loss that trains sees each micro-batch's load, so that case runs
# with train.aux_coef=0; train/aux is the micro-batches' mean, not compared.
run bal 1 model.router=balanced
run bal_acc 1 model.router=balanced train.batch=2 train.grad_accum=2
run bal_acc_dp2 2 model.router=balanced train.batch=1 train.grad_accum=2
noaux="'train/loss', 'val/loss'"
same bal_acc bal "$noaux"
same bal_acc_dp2 bal "$noaux"
run noaux 1 train.aux_coef=0
run noaux_acc_dp2 2 train.aux_coef=0 train.batch=1 train.grad_accum=2
same noaux_acc_dp2 noaux "$noaux"
echo "ok: grad_accum 2 = batch x 2 on 1 and 2 ranks"

# 3. gqe launch: the same run, the ranks started for us.
"$GQE" launch --nproc 2 "$tmp/run.lua" train.batch=2 train.db="$tmp/launch.db" train.checkpoint_dir="$tmp/ck_l" \
  >"$tmp/launch.out" 2>&1 || { cat "$tmp/launch.out"; fail "gqe launch --nproc 2 exited non-zero"; }
same launch ref
echo "ok: gqe launch --nproc 2"

# 4. A stopped 2-rank run resumes to exactly the losses of the uninterrupted
# one, with the optimizer state whole and sharded (train.zero); a sharded
# run's checkpoint also resumes on one process.
long="train.batch=2 train.steps=400 train.log_every=1 train.eval_every=100"
losses() { sqlite3 "$1" "SELECT step || ' ' || printf('%.9g', value) FROM metrics WHERE key IN ('train/loss', 'val/loss') ORDER BY key, step"; }
stop_resume() { # NAME override...
  local name=$1; shift
  # shellcheck disable=SC2086
  run "full_$name" 2 $long "$@"
  # shellcheck disable=SC2086
  "$GQE" launch --nproc 2 "$tmp/run.lua" $long train.db="$tmp/stop_$name.db" train.checkpoint_dir="$tmp/ck_stop_$name" "$@" \
    >"$tmp/stop_$name.out" 2>&1 &
  lp=$!
  cleanup() { kill -9 "$lp" 2>/dev/null || true; }
  for _ in $(seq 600); do
    s=$(sqlite3 -cmd ".timeout 2000" "$tmp/stop_$name.db" "SELECT max(step) FROM metrics" 2>/dev/null || true)
    [ "${s:-0}" -ge 20 ] 2>/dev/null && break
    sleep 0.05
  done
  kill -TERM "$lp"
  rc=0; wait "$lp" || rc=$?
  [ "$rc" != 0 ] || fail "$name: a launcher stopped by SIGTERM exited 0"
  st=$(sqlite3 "$tmp/stop_$name.db" "SELECT status || ' ' || step FROM runs")
  [ "${st%% *}" = killed ] || { cat "$tmp/stop_$name.out"; fail "$name: stopped run is '$st', not killed"; }
  stop_step=${st##* }
  [ "$stop_step" -lt 400 ] || fail "$name: the run finished before the signal: make it longer"
  [ "$(sqlite3 "$tmp/stop_$name.db" "SELECT count(*) FROM checkpoints WHERE step=$stop_step")" = 1 ] ||
    fail "$name: no checkpoint at the stop"
  cp "$tmp/stop_$name.db" "$tmp/one_$name.db"
  mpi 2 "$GQE" resume 1 --db "$tmp/stop_$name.db" >"$tmp/resume.out" 2>&1 || { cat "$tmp/resume.out"; fail "$name: 2-rank resume failed"; }
  [ "$(sqlite3 "$tmp/stop_$name.db" "SELECT status FROM runs")" = finished ] || fail "$name: resumed run not finished"
  diff <(losses "$tmp/full_$name.db") <(losses "$tmp/stop_$name.db") >/dev/null ||
    fail "$name: resumed 2-rank run differs from the uninterrupted one"
  echo "ok ($name): SIGTERM to gqe launch stops every rank at step $stop_step with one checkpoint; resume is exact"
}
stop_resume plain
stop_resume zero train.zero=true
"$GQE" resume 1 --db "$tmp/one_zero.db" >"$tmp/resume1.out" 2>&1 || { cat "$tmp/resume1.out"; fail "sharded checkpoint: 1-process resume failed"; }
[ "$(sqlite3 "$tmp/one_zero.db" "SELECT status FROM runs")" = finished ] || fail "sharded checkpoint: 1-process resume not finished"
echo "ok: a 2-rank sharded checkpoint resumes on one process"

# ZeRO-1 with a world size that leaves elements over (3 ranks): one process's losses.
run z_ref 1 train.batch=3
run z3 3 train.batch=1 train.zero=true
same z3 z_ref
echo "ok: train.zero on 3 ranks = 1 rank x batch 3"

# Waits until the run log DB has step 5, then prints the pid of rank 1 of
# the ranks whose command line holds TAG.
rank1_after_step5() {  # db tag
  for _ in $(seq 600); do
    s=$(sqlite3 -cmd ".timeout 2000" "$1" "SELECT max(step) FROM metrics" 2>/dev/null || true)
    [ "${s:-0}" -ge 5 ] 2>/dev/null && break
    sleep 0.05
  done
  pgrep -f "$2" | while read -r p; do
    [ "$(tr '\0' '\n' < /proc/"$p"/environ 2>/dev/null | grep -c '^OMPI_COMM_WORLD_RANK=1$')" = 1 ] && echo "$p"; done | head -1
}

# 5. A rank killed: the others end (mpirun ends them), the run is not left running.
"$GQE" launch --nproc 2 "$tmp/run.lua" $long train.db="$tmp/kill.db" train.checkpoint_dir="$tmp/ck_kill" \
  >"$tmp/kill.out" 2>&1 &
lp=$!
rank1=$(rank1_after_step5 "$tmp/kill.db" ck_kill)
[ -n "$rank1" ] || fail "rank 1 not found"
kill -9 "$rank1"
rc=0; timeout 90 tail --pid="$lp" -f /dev/null || fail "the launcher did not end after rank 1 was killed"
wait "$lp" || rc=$?
[ "$rc" != 0 ] || fail "launcher exited 0 after a rank was killed"
"$GQE" runs --db "$tmp/kill.db" > "$tmp/kill.runs"
grep -Eq " (crashed|failed) " "$tmp/kill.runs" || { cat "$tmp/kill.runs"; fail "run with a killed rank not shown crashed/failed"; }
echo "ok: kill -9 of rank 1 ends the job; the run shows $(grep -Eo '(crashed|failed)' "$tmp/kill.runs" | head -1)"

# 6. A hanging rank: rank 0 gives up after train.dist_timeout and records why.
run_hang() {
  mpi 2 "$GQE" "$tmp/run.lua" $long train.db="$tmp/hang.db" train.checkpoint_dir="$tmp/ck_hang" \
    train.dist_timeout=3 >"$tmp/hang.out" 2>&1
}
run_hang &
hp=$!
rank1=$(rank1_after_step5 "$tmp/hang.db" ck_hang)
[ -n "$rank1" ] || fail "rank 1 not found"
kill -STOP "$rank1"
rc=0; wait "$hp" || rc=$?
kill -9 "$rank1" 2>/dev/null || true
[ "$rc" != 0 ] || fail "a job with a hung rank exited 0"
st=$(sqlite3 "$tmp/hang.db" "SELECT status FROM runs")
err=$(sqlite3 "$tmp/hang.db" "SELECT error FROM runs")
[ "$st" = failed ] || fail "run with a hung rank is '$st', not failed"
grep -q "did not complete within 3 s: another rank died or hangs" <<<"$err" || fail "reason not recorded: $err"
echo "ok: a hung rank fails the run after train.dist_timeout"

# 7. gqe launch's own ranks (the GPU way, torchrun's variables), watched by a
# script that needs no GPU: a rank that fails is named to rank 0 and the
# others are stopped; a signal to the launcher reaches every rank.
cat > "$tmp/ranks.lua" <<'LUA'
local gqe = require "gqe"
gqe.signals_install()   -- before the line the test waits for
local e = gqe.dist.env()
print(string.format("rank %d of %d, local %d, master %s:%d, %s", e.rank, e.world, e.local_rank, e.master_addr,
  e.master_port, e.source))
io.stdout:flush()
if e.rank == 0 then io.open(arg[2], "w"):close() end   -- rank 0 is up and handles signals
if e.rank == 1 and arg[1] == "fail" then
  while not io.open(arg[2], "r") do gqe.sleep(0.02) end
  os.exit(3)
end
local t0 = gqe.clock()
while not gqe.interrupted() and gqe.clock() - t0 < 60 do gqe.sleep(0.05) end
print(string.format("rank %d stopped by %s; launcher: %s", e.rank, tostring(gqe.interrupted()),
  tostring(require("gqe.launch").fault_note())))
os.exit(1)
LUA
rc=0; "$GQE" launch --backend nccl --nproc 2 --port 29611 "$tmp/ranks.lua" fail "$tmp/r0.ready" >"$tmp/ranks.out" 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat "$tmp/ranks.out"; fail "launcher exit $rc, not the failed rank's 3"; }
for want in "rank 0 of 2, local 0, master 127.0.0.1:29611, torchrun" "rank 1 of 2, local 1, master 127.0.0.1:29611, torchrun" \
            "gqe launch: rank 1 exited with code 3; stopping the other ranks" \
            "rank 0 stopped by SIGTERM; launcher: rank 1 exited with code 3"; do
  grep -q "$want" "$tmp/ranks.out" || { cat "$tmp/ranks.out"; fail "launcher: missing '$want'"; }
done
"$GQE" launch --backend nccl --nproc 2 --port 29612 "$tmp/ranks.lua" wait "$tmp/r0b.ready" >"$tmp/sig.out" 2>&1 &
lp=$!
for _ in $(seq 200); do [ "$(grep -c '^rank . of 2' "$tmp/sig.out")" = 2 ] && break; sleep 0.05; done
kill -INT "$lp"
rc=0; wait "$lp" || rc=$?
[ "$rc" != 0 ] || fail "an interrupted launcher exited 0"
for r in 0 1; do
  grep -q "rank $r stopped by SIGINT; launcher: nil" "$tmp/sig.out" || { cat "$tmp/sig.out"; fail "SIGINT did not reach rank $r"; }
done
echo "ok: gqe launch names a failed rank to rank 0 and forwards SIGINT to every rank"

# 8. Bad launches.
rc=0; mpi 1 "$GQE" "$tmp/run.lua" train.db="$tmp/mm.db" : -np 1 "$GQE" "$tmp/run.lua" train.db="$tmp/mm.db" train.seed=7 \
  >"$tmp/mm.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "ranks with different configs trained"
grep -q "the config differs between ranks: rank 1 resolved another config than rank 0 (first difference here: train.seed = 7, rank 0 has 1)" \
  "$tmp/mm.out" || { cat "$tmp/mm.out"; fail "config mismatch message"; }
[ "$(sqlite3 "$tmp/mm.db" "SELECT count(*) FROM runs" 2>/dev/null || echo 0)" = 0 ] || fail "a mismatched launch started a run"

rc=0; GQE_MPI_LIBRARY=/nonexistent/libmpi.so.40 mpi 2 "$GQE" "$tmp/run.lua" train.db="$tmp/nompi.db" >"$tmp/nompi.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "ranks without MPI trained"
grep -q "needs MPI, but /nonexistent/libmpi.so.40 could not be opened" "$tmp/nompi.out" || { cat "$tmp/nompi.out"; fail "missing MPI message"; }

for bad in "--nproc 0|--nproc must be a positive integer" "--nproc|--nproc needs a value" "|--nproc N is required" \
           "--nproc 2|no script given" "--nproc 2 --backend gloo x.lua|--backend must be nccl or mpi" \
           "--nproc 2 --bogus 1 x.lua|unknown flag --bogus"; do
  flags=${bad%%|*}; want=${bad##*|}
  rc=0
  # shellcheck disable=SC2086
  "$GQE" launch $flags >"$tmp/bad.out" 2>&1 || rc=$?
  [ "$rc" = 1 ] || fail "gqe launch $flags: exit $rc"
  grep -q -- "$want" "$tmp/bad.out" || { cat "$tmp/bad.out"; fail "gqe launch $flags: message lacks '$want'"; }
done
# GPU ranks from a torchrun-style launch cannot use MPI: refused with the way out.
rc=0; RANK=0 WORLD_SIZE=2 "$GQE" "$tmp/run.lua" train.db="$tmp/tr.db" >"$tmp/tr.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a CPU rank from torchrun variables trained alone"
grep -q "needs ranks started by mpirun or srun" "$tmp/tr.out" || { cat "$tmp/tr.out"; fail "torchrun + cpu message"; }
echo "ok: bad launches refused with clear messages"
