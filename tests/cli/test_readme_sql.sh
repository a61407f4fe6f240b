#!/usr/bin/env bash
# Every ```sql block of the README runs without error against a database
# that a tiny quickstart-like experiment filled.
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 40000 README.md > "$tmp/text.txt"
cat >> "$tmp/text.txt" < README.md
cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
gqe.experiment{
  name = "quickstart",
  base = {
    data  = { kind = "text", path = "$tmp/text.txt" },
    model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
    optim = { name = "adamw", lr = 3e-3 },
    train = { steps = 4, batch = 2, seq = 16, eval_every = 2, eval_batches = 1, log_every = 1, progress = false },
  },
  grid = { ["model.attention"] = { "gqa", "gqe" } },
  seeds = { 1 },
}
LUA
OMP_NUM_THREADS=1 build/gqe "$tmp/exp.lua" --db "$tmp/runs.db" > "$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; exit 1; }
# A run that fails (its data file is missing), so the last recipe has a row
# (a single gqe.train: an experiment refuses it before any run starts).
cat > "$tmp/bad.lua" <<LUA
require("gqe").train{ experiment = "broken", data = { kind = "text", path = "$tmp/missing.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 }, train = { progress = false } }
LUA
OMP_NUM_THREADS=1 GQE_DB="$tmp/runs.db" build/gqe "$tmp/bad.lua" > "$tmp/bad.txt" 2>&1 && { echo "FAIL: a run with a missing data file succeeded"; exit 1; }
awk '/^```sql$/{on=1; n++; next} /^```$/{on=0} on{print > "'"$tmp"'/q" n ".sql"}' README.md
count=0
for q in "$tmp"/q*.sql; do
    out=$(sqlite3 -bail "$tmp/runs.db" < "$q" 2>&1) || { echo "FAIL: README recipe $(basename "$q") failed:"; cat "$q"; echo "$out"; exit 1; }
    [ -n "$out" ] || { echo "FAIL: README recipe $(basename "$q") returned no rows:"; cat "$q"; exit 1; }
    count=$((count + 1))
done
[ "$count" -ge 5 ] || { echo "FAIL: expected at least 5 SQL recipes, found $count"; exit 1; }
echo "readme sql: $count recipes ran and returned rows"
# The first recipe and `gqe compare` read the same rows (view counted_runs):
# same run count and mean best validation loss per value.
build/gqe compare quickstart --db "$tmp/runs.db" --json > "$tmp/compare.json" 2>/dev/null
from_compare=$(sqlite3 :memory: "SELECT group_concat(v, ' ') FROM (SELECT json_extract(g.value, '$.values.\"model.attention\"')
  || '|' || json_extract(g.value, '$.seeds') || '|' || round(json_extract(g.value, '$.best.mean'), 4) AS v
  FROM json_each(readfile('$tmp/compare.json'), '$.groups') g ORDER BY v)")
from_recipe=$(sqlite3 "$tmp/runs.db" < "$tmp/q1.sql" | sort | tr '\n' ' ' | sed 's/ $//')
[ -n "$from_recipe" ] && [ "$from_compare" = "$from_recipe" ] || { echo "FAIL: compare ($from_compare) and the ablation recipe ($from_recipe) disagree"; exit 1; }
echo "readme sql: the ablation recipe agrees with gqe compare ($from_recipe)"
