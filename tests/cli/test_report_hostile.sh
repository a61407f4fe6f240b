#!/usr/bin/env bash
# gqe report on a crafted run log whose experiment, run names, param keys
# and values, metric key and output directory hold gnuplot and shell
# injections (a newline then `!cmd`, system(...), $(...), backquotes, quotes,
# backslashes): the report is written, and none of the commands ran.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v gnuplot >/dev/null || { echo "gnuplot missing: run make deps"; exit 1; }
mark=$tmp/marks
mkdir -p "$mark"
# Each payload would create a file in $mark if anything executed it.
payloads=(
  "a'"$'\n'"!touch $mark/bang1"$'\n'"'"
  $'x\n!touch '"$mark/bang2"
  "b' . system('touch $mark/system1') . '"
  "c\" . system(\"touch $mark/system2\") . \""
  "\$(touch $mark/subst1)"
  "\`touch $mark/backtick1\`"
  "d\\\\'; \\\\\"; \\\\"$'\n'"system('touch $mark/system3')"
)
printf '%s\0' "${payloads[@]}" > "$tmp/payloads"
cat > "$tmp/fixture.lua" <<'LUA'
local gqe = require "gqe"
local db = gqe.db.open(arg[1])
local f = assert(io.open(arg[2], "rb"))
local payloads = {}
for p in f:read("a"):gmatch("([^%z]*)%z") do payloads[#payloads + 1] = p end
f:close()
local exp = db:experiment("hostile")
for i, p in ipairs(payloads) do
  for seed = 1, 2 do
    local c = gqe.config.resolve { data = { path = p }, model = { experts = 4, groups = 2, layers = 1 },
                                   train = { seed = seed } }
    local id = db:begin_run { experiment_id = exp, name = p .. seed, config_json = gqe.config.to_json(c),
      config_hash = gqe.config.hash(c), params = gqe.config.params(c), host = gqe.hostname(), pid = gqe.pid(),
      device = "cpu", seed = seed }
    for step = 10, 50, 10 do
      db:log(id, step, "train/loss", 3 - step / 50 + i * 0.01)
      db:log(id, step, p, step)                     -- a metric named by the payload
      db:log(id, step, "routing/entropy_l0", 0.9)
    end
    db:eval(id, 50, "val", "loss", 2 + i * 0.01 + seed * 0.001)
    db:head_usage(id, 50, 0, 0, 0, 10, 0.5, 0.5)
    db:head_usage(id, 50, 0, 0, 1, 10, 0.5, 0.5)
    db:end_run(id, "finished", nil)
  end
end
-- The same payloads as the name of an experiment.
db:experiment(payloads[1])
db:close()
LUA
"$GQE" "$tmp/fixture.lua" "$db" "$tmp/payloads" || fail "fixture"
# A crafted database: param keys that are payloads, as another tool could write them.
q "INSERT INTO params(run_id, key, value) SELECT id, 'model.x' || char(10) || '!touch $mark/key1' || char(10), id FROM runs"
q "INSERT INTO params(run_id, key, value) SELECT id, 'model.y'' . system(''touch $mark/key2'') . ''', 'v' || id FROM runs"

out="$tmp/out dir '\$(touch $mark/outdir1)' \`touch $mark/outdir2\`"
"$GQE" report hostile --db "$db" --out "$out" >"$tmp/stdout" 2>"$tmp/stderr" || { cat "$tmp/stderr"; ls $mark; fail "report failed"; }
[ -s "$out/index.html" ] || fail "no index.html"
n=$(grep -o '<img src="[^"]*"' "$out/index.html" | wc -l)
[ "$n" -ge 4 ] || fail "only $n images"
# A payload as the metric, and curves per seed.
"$GQE" report hostile --db "$db" --out "$out" --metric "${payloads[1]}" --curves seeds >/dev/null 2>"$tmp/stderr" ||
  { cat "$tmp/stderr"; fail "report --metric PAYLOAD failed"; }
# Nothing the payloads ask for was done, here or in the working directory.
[ -z "$(ls -A "$mark")" ] || fail "a command ran: $(ls "$mark")"
for f in bang1 bang2 system1 system2 system3 subst1 backtick1 key1 key2 outdir1 outdir2; do
  [ ! -e "$f" ] || fail "a command ran in the working directory: $f"
done
# In the gnuplot script payload text survives only inside single-quoted
# labels stripped of quotes, backslashes and newlines: no line starts with a
# payload, and no character that could end or escape a string is left.
if grep -n -E "^[[:space:]]*(!|system|touch|[a-d]')" "$out/plots.gp"; then fail "a payload starts a line of plots.gp"; fi
# (a backslash ends a continued line and appears nowhere else)
if sed 's/\\$//' "$out/plots.gp" | grep -n -e '"' -e '\\' -e '`' -e '\$('; then fail "quote, backslash or substitution in plots.gp"; fi
[ "$(grep -c "'" "$out/plots.gp")" -gt 0 ] || fail "no labels at all"
while IFS= read -r line; do
  stripped=$(sed -E "s/'[^']*'//g" <<<"$line")
  grep -q "touch" <<<"$stripped" && fail "payload outside a label: $line"
done < "$out/plots.gp"
# Fourteen arms: the first twelve get twelve colours, and no two arms share
# both colour and dash pattern.
styles=$(grep -o "curve1_g[0-9]*_r1.dat' using 1:2 with linespoints pi [0-9]* ps 0.8 lw [0-9.]* lc rgb '#[0-9a-f]*' dt [0-9]*" "$out/plots.gp" |
  sed -E "s/.*lc rgb '(#[0-9a-f]*)' dt ([0-9]*)/\1 \2/")
[ "$(wc -l <<<"$styles")" = 14 ] || fail "expected 14 arms in the curves"
[ "$(cut -d' ' -f1 <<<"$styles" | head -12 | sort -u | wc -l)" = 12 ] || fail "12 arms without 12 colours"
[ "$(sort -u <<<"$styles" | wc -l)" = 14 ] || fail "two arms share colour and dash"
# The HTML shows the names escaped.
grep -q "system(&#39;touch" "$out/index.html" || fail "payload not shown (escaped) in the page"
grep -q "<script" "$out/index.html" && fail "unescaped markup"
echo "test_report_hostile: ok ($n images, no command ran)"
