#!/usr/bin/env bash
# A 2x2 grid at tiny sizes: --dry-run lists it, --jobs 2 runs it in two
# worker processes into one database, a rerun skips every finished run,
# compare prints one row per group.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cat lua/gqe/*.lua > "$tmp/text.txt"

cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
local runs = gqe.experiment {
  name = "cli-grid",
  base = {
    data  = { path = "$tmp/text.txt" },
    model = { dim = 32, layers = 2, experts = 4, groups = 2, head_dim = 8 },
    train = { steps = 20, batch = 4, seq = 32, log_every = 5, eval_every = 10, eval_batches = 2,
              checkpoint_dir = "$tmp/ckpt" },
  },
  grid  = { ["model.router"] = { "softmax", "sigmoid" }, ["model.k"] = { 1, 2 } },
  seeds = { 1 },
}
if not runs.dry_run then print(gqe.summary_table(runs)) end
LUA

# --dry-run: four runs listed, nothing written.
out=$("$GQE" "$tmp/exp.lua" --dry-run --db "$db")
echo "$out"
grep -q "4 runs (dry run" <<<"$out" || fail "dry run count"
grep -q "k=2,router=sigmoid,seed=1" <<<"$out" || fail "dry run names"
[ ! -s "$db" ] || [ "$(q "SELECT count(*) FROM runs")" = 0 ] || fail "dry run wrote runs"

# --jobs 2: all four finish, each in its own process.
out=$("$GQE" "$tmp/exp.lua" --jobs 2 --db "$db")
echo "$out"
[ "$(grep -c ": started (pid" <<<"$out")" = 4 ] || fail "four worker processes"
[ "$(grep -c ": finished, val/loss" <<<"$out")" = 4 ] || fail "four finish lines"
[ "$(q "SELECT count(*) FROM runs WHERE status='finished'")" = 4 ] || fail "four finished runs"
[ "$(q "SELECT count(DISTINCT pid) FROM runs")" -ge 2 ] || fail "runs not in separate processes"
[ "$(q "SELECT count(*) FROM runs r JOIN params p ON p.run_id=r.id WHERE p.key='model.k' AND p.value='2'")" = 2 ] \
  || fail "grid values not in params"
[ "$(q "SELECT count(*) FROM metrics WHERE key='val/loss'")" = 8 ] || fail "val/loss rows lost"

# Rerun: everything skipped, no new rows.
out=$("$GQE" "$tmp/exp.lua" --jobs 2 --db "$db")
[ "$(grep -c "already finished" <<<"$out")" = 4 ] || { echo "$out"; fail "rerun did not skip"; }
[ "$(q "SELECT count(*) FROM runs")" = 4 ] || fail "rerun added runs"

# A changed config is not the same run: one override reruns the k=1 half.
out=$("$GQE" "$tmp/exp.lua" model.k=1 train.steps=10 --db "$db")
[ "$(q "SELECT count(*) FROM runs")" = 6 ] || fail "changed config should run again"

# compare: groups by the varied keys.
out=$("$GQE" compare cli-grid --db "$db")
echo "$out"
grep -q "final val/loss" <<<"$out" || fail "compare header"
grep -q "active heads" <<<"$out" || fail "compare header (heads)"
# The override changed the config, so it changed the names (steps=10): six
# configs, six names, six groups, none dropped.
[ "$(grep -c "router=" <<<"$out")" = 6 ] || fail "compare rows"
[ "$(q "SELECT count(DISTINCT name) FROM runs")" = 6 ] || fail "two configs share a name"
# An edited base: the same names would mean other configs, so the keys that
# differ are appended; a rerun of the edited script skips what it ran.
sed 's/dim = 32,/dim = 36,/' "$tmp/exp.lua" > "$tmp/edited.lua"
"$GQE" "$tmp/edited.lua" --dry-run --db "$db" | grep -c "router=softmax,seed=1,dim=36  *new" | grep -qx 2 \
  || fail "edited base: names"
"$GQE" "$tmp/edited.lua" --jobs 2 --db "$db" train.progress=false >/dev/null 2>&1 || fail "edited base: run"
[ "$(q "SELECT count(DISTINCT name) FROM runs")" = "$(q "SELECT count(DISTINCT config_hash) FROM runs")" ] \
  || fail "two configs share a name"
out=$("$GQE" "$tmp/edited.lua" --db "$db")
[ "$(grep -c "already finished" <<<"$out")" = 4 ] || { echo "$out"; fail "edited base: rerun did not skip"; }

# A bad grid key fails before any run starts.
sed 's/model.router/model.routr/' "$tmp/exp.lua" > "$tmp/bad.lua"
if "$GQE" "$tmp/bad.lua" --db "$db" 2>"$tmp/err"; then fail "bad grid key accepted"; fi
grep -q "unknown key model.routr; valid keys of model" "$tmp/err" || fail "bad grid key message"
echo "test_experiment: ok"
