# Shared start of the CLI tests, sourced (never run: tests/run_all.sh runs
# only test_*.sh). After it the shell is in the repository root, with
#   GQE      build/gqe (checked to exist)
#   tmp      a fresh directory, removed on exit; a script that needs more
#            done on exit (kill a background run) redefines cleanup()
#   db       $tmp/runs.db, the run log the scripts point their runs at
#   fail     prints "FAIL: ..." and exits 1
#   q        one SQL statement against $db (waits out a writer's lock)
# and OMP_NUM_THREADS=1: tiny models run faster so, and do not stall on a
# busy machine.
# A script that wants its files kept (test_report.sh --keep DIR) sets
# keep_tmp=DIR before sourcing: that directory is used and left in place.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
GQE=$PWD/build/gqe
[ -x "$GQE" ] || { echo "build/gqe missing: run make"; exit 1; }
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1

cleanup() { :; }
if [ -n "${keep_tmp:-}" ]; then
  tmp=$keep_tmp; mkdir -p "$tmp"
else
  tmp=$(mktemp -d); trap 'cleanup || true; rm -rf "$tmp"' EXIT
fi
db=$tmp/runs.db
# Where the sqlite3 shell is missing (the GPU machine), q reads through
# build/gqe's own SQLite instead; it then prints single-column results only.
if command -v sqlite3 >/dev/null; then
  q() { sqlite3 -cmd ".timeout 5000" "$db" "$1"; }
else
  q() {
    cat > "$tmp/.q.lua" <<'LUA'
local db = require("gqe").db.open(os.getenv("GQE_Q_DB"))
for _, r in ipairs(db:query(os.getenv("GQE_Q"))) do local _, v = next(r); print(v == nil and "" or v) end
db:close()
LUA
    GQE_Q_DB=$db GQE_Q=$1 "$GQE" "$tmp/.q.lua"
  }
fi

# Bad inputs given as overrides to the script's $tmp/run.lua:
#   expect "message (a grep -E pattern)" override...: queues a case;
#   run_cases: runs the queue in one gqe process (tests/cli/robust_batch.lua),
#     each case must fail with a matching message;
#   cli "message" override...: one case through build/gqe on its own, for the
#     exit status: 1, and "gqe: message" on stderr.
wants=()
expect() {
  local want=$1; shift
  wants+=("$want")
  (IFS=$'\037'; printf '%s\n' "$*") >> "$tmp/cases"
}
run_cases() {
  "$GQE" tests/cli/robust_batch.lua "$tmp/run.lua" "$tmp/cases" >"$tmp/results" 2>"$tmp/batch.err" ||
    { cat "$tmp/batch.err"; fail "the batch of cases did not complete"; }
  local i=0 line args
  while IFS= read -r line; do
    args=$(sed -n "$((i + 1))p" "$tmp/cases" | tr '\037' ' ')
    [ "${line%%$'\t'*}" = error ] || fail "$args: accepted"
    grep -q -E -- "${wants[$i]}" <<<"$line" || fail "$args: message does not match '${wants[$i]}': $line"
    i=$((i + 1))
  done < "$tmp/results"
  [ "$i" = "${#wants[@]}" ] || fail "$i results for ${#wants[@]} cases"
}
cli() {
  local want=$1; shift
  set +e; "$GQE" "$tmp/run.lua" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  [ "$rc" -eq 1 ] || { cat "$tmp/err"; fail "$*: exit $rc, expected 1"; }
  grep -q -E -- "^gqe: .*$want" "$tmp/err" || { cat "$tmp/err"; fail "$*: message does not match '$want'"; }
}
