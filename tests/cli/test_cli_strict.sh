#!/usr/bin/env bash
# Strict command lines: unknown flags, malformed overrides and stray words
# are errors that name the valid ones (with a did-you-mean) and start
# nothing; --help on every command prints its usage and does nothing else;
# `gqe` alone prints the usage and fails; an unknown experiment or status
# is an error listing the known ones.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"
cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
gqe.experiment {
  name = "strict",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 16, layers = 1, experts = 4, groups = 2, head_dim = 4 },
    train = { steps = 2, batch = 2, seq = 16, eval_every = 2, eval_batches = 1, progress = false,
              checkpoint_dir = "$tmp/ckpt" },
  },
  grid  = { ["model.k"] = { 1, 2 } },
}
LUA

# rejects "message pattern" args...: exit 1, the pattern on stderr, no run in the log.
rejects() {
  local want=$1; shift
  set +e; "$GQE" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/out" "$tmp/err"; fail "$*: exit $rc, expected 1"; }
  grep -q -E -- "$want" "$tmp/err" || { cat "$tmp/err"; fail "$*: message does not match '$want'"; }
  if [ -s "$db" ]; then [ "$(q "SELECT count(*) FROM runs")" = 0 ] || fail "$*: a run started"; fi
}
exp=$tmp/exp.lua
rejects "unknown flag --dryrun .*did you mean --dry-run\?.*valid flags: --jobs, --dry-run, --restart, --gpus, --per-gpu, --shard, --skip-from, --db, --help" \
  "$exp" --dryrun --db "$db"
rejects "unknown flag --dry_run .*did you mean --dry-run\?" "$exp" --dry_run --db "$db"
rejects "unknown flag -n; valid flags:" "$exp" -n --db "$db"
rejects "unknown flag --job .*did you mean --jobs\?" "$exp" --job 2 --db "$db"
rejects "--jobs must be an integer >= 1, got 'two'" "$exp" --jobs two --db "$db"
rejects "malformed override 'k=2': overrides are section.key=value .*did you mean model.k=2\?" "$exp" k=2 --db "$db"
rejects "unexpected argument 'model.k' \(an override is written model.k=VALUE" "$exp" model.k 2 --db "$db"
rejects "unknown key model.kk; valid keys of model" "$exp" model.kk=2 --db "$db"

# The log exists from here on.
"$GQE" "$exp" --db "$db" >/dev/null 2>&1 || fail "a plain run"
[ "$(q "SELECT count(*) FROM runs WHERE status = 'finished'")" = 2 ] || fail "plain run"
q "DELETE FROM runs" >/dev/null   # keep the no-run check of rejects meaningful
rejects "unknown flag --cvs for \`gqe compare\`" compare strict --cvs --db "$db"
rejects "unknown flag --metric-name .*did you mean --metric\?" compare strict --metric-name x --db "$db"
rejects "unknown flag --statu .*\(did you mean --status\?\)" runs --statu finished --db "$db"
rejects "unknown status 'finshed' \(did you mean 'finished'\?\); statuses: queued, running, finished" \
  runs --status finshed --db "$db"
rejects "unknown experiment 'strcit' \(did you mean 'strict'\?\); experiments in .*: strict" compare strcit --db "$db"
rejects "unknown experiment 'nope'; experiments in .*: strict" report nope --db "$db"
rejects "unknown experiment 'nope'" runs nope --db "$db"
rejects "unknown experiment 'nope'" resume nope --db "$db"
rejects "missing EXPERIMENT \(usage: gqe compare" compare --db "$db"
rejects "unexpected argument 'b'" compare a b --db "$db"
rejects "unknown flag --iter .*did you mean --iters\?" bench --iter 3
rejects "unexpected argument 'now'" data now
rejects "--jobs applies to .gqe resume EXPERIMENT., not to one run" resume 1 --jobs 2 --db "$db"
rejects "unknown command 'comapre' \(did you mean 'compare'\?\)" comapre strict

# --status works.
"$GQE" runs --status killed --db "$db" | grep -q "no killed runs" || fail "runs --status"

# --help: usage on stdout, exit 0, nothing done (bench would print sgemm; the
# script would train).
for c in runs compare report resume bench data help; do
  out=$("$GQE" $c --help) || fail "$c --help exited non-zero"
  grep -q "^usage: gqe $c" <<<"$out" || { echo "$out"; fail "$c --help: no usage"; }
  grep -q "sgemm [0-9]" <<<"$out" && fail "$c --help ran the command"
  out2=$("$GQE" help $c) || fail "help $c"
  [ "$out" = "$out2" ] || fail "help $c differs from $c --help"
done
out=$("$GQE" "$exp" --help --db "$tmp/help.db") || fail "FILE.lua --help"
grep -q "^usage: gqe .*exp.lua .*--jobs N" <<<"$out" || fail "FILE.lua --help: usage"
[ ! -e "$tmp/help.db" ] || fail "FILE.lua --help touched the run log"

# gqe alone: the usage on stderr, a failure.
set +e; "$GQE" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" != 0 ] || fail "gqe alone exited 0"
grep -q "^usage: gqe" "$tmp/err" || fail "gqe alone: no usage"
"$GQE" help >/dev/null || fail "gqe help exits 0"
echo "test_cli_strict: ok"
