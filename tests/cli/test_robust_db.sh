#!/usr/bin/env bash
# A run log that cannot be written: a read-only database file, a directory
# that cannot hold one, and a disk that fills up mid-run (a small tmpfs in a
# private mount namespace when this machine allows it, and a file-size limit,
# which needs no privileges). The run must stop with an error naming the
# file and the reason rather than train on without a log, exit 1, and leave
# the database intact with no run shown as running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# The read-only cases leave files the removal could not delete.
cleanup() { chmod -R u+w "$tmp" 2>/dev/null; }
chmod 755 "$tmp"
head -c 20000 lua/gqe/train.lua > "$tmp/text.txt"
chmod 644 "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "db", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 3, batch = 2, seq = 16, log_every = 1, eval_every = 5, eval_batches = 1,
            checkpoint_every = 0, checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA
chmod 644 "$tmp/run.lua"

# 1. Read-only. Root writes through file modes, so as root the run goes
#    through setpriv as nobody.
as_user=()
if [ "$(id -u)" = 0 ]; then
  if command -v setpriv >/dev/null; then as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  else echo "note: root without setpriv: read-only cases skipped"; as_user=(skip); fi
  if [ "${as_user[0]}" != skip ] && ! "${as_user[@]}" test -x "$GQE"; then
    echo "note: user nobody cannot run $GQE (a private checkout?): read-only cases skipped"; as_user=(skip)
  fi
fi
if [ "${as_user[0]:-}" != skip ]; then
  mkdir -m 777 "$tmp/ro"
  ro=$tmp/ro/runs.db
  "${as_user[@]}" "$GQE" "$tmp/run.lua" train.db="$ro" train.checkpoint_dir="$tmp/ro/ckpt" >/dev/null 2>&1 ||
    fail "could not make the database"
  chmod 444 "$ro"; chmod 555 "$tmp/ro"
  set +e; "${as_user[@]}" "$GQE" "$tmp/run.lua" train.db="$ro" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/err"; fail "read-only database: exit $rc"; }
  grep -q "^gqe: db.open: $ro: open: the database is read-only (check the permissions" "$tmp/err" ||
    { cat "$tmp/err"; fail "read-only database: message"; }
  [ "$(sqlite3 "$ro" "SELECT count(*) || ' ' || group_concat(status) FROM runs")" = "1 finished" ] ||
    fail "read-only database changed"
  # A directory where no database can be created.
  set +e; "${as_user[@]}" "$GQE" "$tmp/run.lua" train.db="$tmp/ro/sub/new.db" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
  [ "$rc" = 1 ] && grep -q "$tmp/ro/sub/new.db: cannot open the database" "$tmp/err" ||
    { cat "$tmp/err"; fail "unwritable directory"; }
  set +e; "${as_user[@]}" "$GQE" "$tmp/run.lua" train.db="$tmp/ro/new.db" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
  [ "$rc" = 1 ] && grep -q "$tmp/ro/new.db: cannot open the database" "$tmp/err" ||
    { cat "$tmp/err"; fail "read-only directory"; }
  chmod 755 "$tmp/ro"
  echo "read-only: refused before training"
fi
# Not a database at all.
cp "$tmp/text.txt" "$tmp/notadb.db"
set +e; "$GQE" "$tmp/run.lua" train.db="$tmp/notadb.db" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "$tmp/notadb.db: not an SQLite database" "$tmp/err" || { cat "$tmp/err"; fail "not a database"; }

# 2. Full. full_case DB WANT LAUNCHER...: a long run into DB, launched with
#    LAUNCHER (which limits the space), must stop by itself with WANT.
full_case() {
  local db=$1 want=$2; shift 2
  set +e; "$@" "$GQE" "$tmp/run.lua" train.db="$db" train.steps=1000000 >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/err"; fail "full ($want): exit $rc, expected 1"; }
  grep -q "db:flush: $db: flush: $want" "$tmp/err" || { cat "$tmp/err"; fail "full: message lacks '$want'"; }
  [ "$(sqlite3 "$db" "PRAGMA integrity_check")" = ok ] || fail "full ($want): integrity_check"
  local step last
  step=$(sqlite3 "$db" "SELECT step FROM runs ORDER BY id DESC LIMIT 1")
  last=$(sqlite3 "$db" "SELECT coalesce(max(step), 0) FROM metrics WHERE run_id=(SELECT max(id) FROM runs)")
  [ "$step" = "$last" ] || fail "full ($want): runs.step $step but metrics reach $last"
  [ "$step" -lt 1000000 ] || fail "full ($want): trained to the end"
  "$GQE" runs --db "$db" >"$tmp/runs" 2>&1 || true
  [ "$(sqlite3 "$db" "SELECT count(*) FROM runs WHERE status='running'")" = 0 ] ||
    { cat "$tmp/runs"; fail "full ($want): a run is left running after gqe runs"; }
  echo "full ($want): stopped at step $step, database intact"
}
# A file-size limit (EFBIG): SIGXFSZ ignored, so writes fail instead.
limited() { (trap '' XFSZ; ulimit -f 256; exec "$@"); }
full_case "$tmp/limited.db" "disk I/O error" limited

# ENOSPC on a 400 KiB tmpfs, in a mount namespace of our own so the mount
# goes away with it; the checks run inside too.
cat > "$tmp/tmpfs.sh" <<SH
set -e
mkdir -p "$tmp/full"
mount -t tmpfs -o size=400k tmpfs "$tmp/full" 2>/dev/null || exit 77
$(declare -f fail full_case)
GQE=$GQE; tmp=$tmp
full_case "$tmp/full/runs.db" "disk full"
SH
set +e
if [ "$(id -u)" = 0 ]; then unshare -m bash "$tmp/tmpfs.sh"; else unshare -r -m bash "$tmp/tmpfs.sh"; fi 2>"$tmp/ns.err"
rc=$?; set -e
case $rc in
  0) ;;
  77|1) if [ $rc = 1 ] && ! grep -q -i "unshare" "$tmp/ns.err"; then cat "$tmp/ns.err"; fail "tmpfs case"; fi
        echo "note: no tmpfs in a private namespace here: the disk-full case ran with a file-size limit only";;
  *) cat "$tmp/ns.err"; fail "tmpfs case: exit $rc";;
esac
echo "test_robust_db: ok"
