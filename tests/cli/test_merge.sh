#!/usr/bin/env bash
# gqe merge: run logs written apart (one per node) fold into one. Ids are
# remapped with metrics, params, evals, head usage and checkpoints following
# them; a run in several logs is kept once (finished first, then most
# steps); a second merge changes nothing; integrity_check and the views
# answer afterwards; bad inputs are refused before anything is written.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
logs() { "$GQE" tests/cli/merge_logs.lua "$@" >/dev/null; }
m() { sqlite3 "$tmp/out.db" "$1"; }

# Node A: two finished runs and one killed at step 5; node B: that run
# finished, one more, and a second experiment; node C: a crashed copy.
logs "$tmp/a.db" sweep "k=1,seed=1:finished:10" "k=2,seed=1:finished:10" "k=1,seed=2:killed:5"
logs "$tmp/b.db" sweep "k=1,seed=2:finished:10" "k=2,seed=2:finished:10"
logs "$tmp/b.db" other "k=1,seed=1:finished:4"
logs "$tmp/c.db" sweep "k=2,seed=2:crashed:3"
# The output starts with a run of its own, so input ids collide with it.
logs "$tmp/out.db" own "k=3,seed=1:finished:2"

out=$("$GQE" merge "$tmp/out.db" "$tmp/a.db" "$tmp/b.db" "$tmp/c.db")
echo "$out"
grep -q "b.db: 3 runs: 2 added, 1 replaced" <<<"$out" || fail "the killed copy was not replaced by the finished one"
grep -q "c.db: 1 runs: 0 added, 0 replaced.*1 skipped" <<<"$out" || fail "the crashed copy was not skipped"
grep -q "3 experiments, 6 runs (6 finished); integrity ok" <<<"$out" || fail "totals"
[ "$(m "SELECT count(*) FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE e.name = 'sweep'")" = 4 ] \
  || fail "sweep should hold 4 runs"
[ "$(m "SELECT count(DISTINCT id) FROM runs")" = 6 ] || fail "run ids collide"
# Counts follow the runs: 10 steps x (train/loss, perf/tokens) + val/loss.
for name in "k=1,seed=1" "k=2,seed=1" "k=1,seed=2" "k=2,seed=2"; do
  [ "$(m "SELECT count(*) FROM metrics t JOIN runs r ON r.id = t.run_id WHERE r.name = '$name' AND r.experiment_id = (SELECT id FROM experiments WHERE name = 'sweep')")" = 21 ] \
    || fail "$name: metrics not 21"
  for tbl in params:2 evals:1 head_usage:2 checkpoints:1 metric_summary:3; do
    [ "$(m "SELECT count(*) FROM ${tbl%%:*} t JOIN runs r ON r.id = t.run_id WHERE r.name = '$name' AND r.experiment_id = (SELECT id FROM experiments WHERE name = 'sweep')")" = "${tbl##*:}" ] \
      || fail "$name: ${tbl%%:*} rows not ${tbl##*:}"
  done
done
[ "$(m "SELECT step FROM runs WHERE name = 'k=1,seed=2'")" = 10 ] || fail "the finished copy should win"
[ "$(m "SELECT count(*) FROM metrics WHERE run_id NOT IN (SELECT id FROM runs)")" = 0 ] || fail "orphan metrics"
[ "$(m "SELECT count(*) FROM bench")" = 5 ] || fail "bench rows: one per log writer"
[ "$(m "PRAGMA integrity_check")" = ok ] || fail "integrity_check"
[ -z "$(m "PRAGMA foreign_key_check")" ] || fail "foreign_key_check"
[ "$(m "SELECT count(*) FROM run_overview WHERE experiment = 'sweep' AND varied IS NOT NULL")" = 4 ] || fail "run_overview"
[ "$(m "SELECT count(*) FROM ablation WHERE experiment = 'sweep' AND key = 'model.k'")" = 4 ] || fail "ablation view"
[ "$(m "SELECT count(*) FROM head_usage_latest WHERE experiment = 'sweep'")" = 8 ] || fail "head_usage_latest view"
out=$("$GQE" compare sweep --db "$tmp/out.db")
echo "$out"
grep -q "4 runs counted, 2 groups by model.k" <<<"$out" || fail "compare does not see every node's runs"

# Idempotent: merging the same logs again changes no row.
before=$(m "SELECT group_concat(id || name || status || step) FROM runs; SELECT count(*) FROM metrics; SELECT count(*) FROM bench; SELECT count(*) FROM checkpoints")
out=$("$GQE" merge "$tmp/out.db" "$tmp/c.db" "$tmp/b.db" "$tmp/a.db")
grep -q "0 added, 0 replaced" <<<"$out" || fail "second merge added runs: $out"
[ "$(m "SELECT group_concat(id || name || status || step) FROM runs; SELECT count(*) FROM metrics; SELECT count(*) FROM bench; SELECT count(*) FROM checkpoints")" = "$before" ] \
  || fail "a second merge changed the log"

# Refused inputs: nothing written, a message naming the file.
refuse() { # pattern, args...
  local want=$1; shift
  set +e; "$GQE" merge "$@" >"$tmp/o" 2>"$tmp/e"; local rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/o" "$tmp/e"; fail "merge $*: exit $rc"; }
  grep -q -E "^gqe: .*$want" "$tmp/e" || { cat "$tmp/e"; fail "merge $*: message does not match '$want'"; }
}
cp "$tmp/a.db" "$tmp/new.db"; sqlite3 "$tmp/new.db" "PRAGMA user_version = 99"
refuse "new.db has schema version 99, newer than this gqe build's" "$tmp/out.db" "$tmp/new.db"
echo "not a database" > "$tmp/junk.db"
refuse "junk.db is not an SQLite database" "$tmp/out.db" "$tmp/junk.db"
sqlite3 "$tmp/other.db" "CREATE TABLE t(x)"
refuse "other.db is not a gqe run log" "$tmp/out.db" "$tmp/other.db"
refuse "input $tmp/missing.db does not exist" "$tmp/out.db" "$tmp/missing.db"
refuse "is the output itself" "$tmp/out.db" "$tmp/out.db"
refuse "missing OUT.db and at least one IN.db \(usage: gqe merge" "$tmp/out.db"
refuse "unknown flag --force for .gqe merge." "$tmp/out.db" "$tmp/a.db" --force
"$GQE" merge --help | grep -q "^usage: gqe merge OUT.db IN.db" || fail "merge --help"
[ "$(m "SELECT group_concat(id || name || status || step) FROM runs; SELECT count(*) FROM metrics; SELECT count(*) FROM bench; SELECT count(*) FROM checkpoints")" = "$before" ] \
  || fail "a refused merge changed the log"

# With run uids in both logs: a uid names one run even under another name
# (here with more steps, so it replaces the row); different uids of one
# experiment, name, config and seed are still one run; runs from a log
# without uids get one.
logs "$tmp/u1.db" sweep "k=1,seed=1:finished:3"
logs "$tmp/u2.db" sweep "k=1,seed=1:finished:3"
logs "$tmp/u3.db" sweep "renamed:finished:5"
logs "$tmp/u4.db" sweep "k=2,seed=1:finished:3"
logs "$tmp/u.db" sweep
sqlite3 "$tmp/u1.db" "UPDATE runs SET uid = 'a1'"; sqlite3 "$tmp/u2.db" "UPDATE runs SET uid = 'b2'"
sqlite3 "$tmp/u3.db" "UPDATE runs SET uid = 'a1'"
# u4 as a schema-1 log, from before run uids.
sqlite3 "$tmp/u4.db" "ALTER TABLE runs DROP COLUMN uid; PRAGMA user_version = 1"
"$GQE" merge "$tmp/u.db" "$tmp/u1.db" "$tmp/u2.db" >/dev/null
[ "$(sqlite3 "$tmp/u.db" "SELECT count(*) || ',' || group_concat(uid) FROM runs")" = "1,a1" ] || fail "one run by name, config and seed"
"$GQE" merge "$tmp/u.db" "$tmp/u3.db" "$tmp/u4.db" >/dev/null
[ "$(sqlite3 "$tmp/u.db" "SELECT name || ':' || uid || ':' || step FROM runs WHERE uid = 'a1'")" = "renamed:a1:5" ] \
  || fail "uid identity across a rename"
[ "$(sqlite3 "$tmp/u.db" "SELECT count(*) FROM runs WHERE uid IS NULL OR length(uid) = 0")" = 0 ] || fail "runs without a uid"
[ "$(sqlite3 "$tmp/u.db" "SELECT count(*) FROM runs")" = 2 ] || fail "uid merge count"

# An input from an older gqe lacks columns the output has: they stay empty.
logs "$tmp/old.db" old "k=1,seed=1:finished:3"
sqlite3 "$tmp/old.db" "ALTER TABLE runs DROP COLUMN pid; ALTER TABLE bench DROP COLUMN notes"
"$GQE" merge "$tmp/out.db" "$tmp/old.db" | grep -q "old.db: 1 runs: 1 added" || fail "older input"
[ "$(m "SELECT pid IS NULL FROM runs WHERE experiment_id = (SELECT id FROM experiments WHERE name = 'old')")" = 1 ] \
  || fail "a column the input lacks should stay empty"
echo "test_merge: ok"
