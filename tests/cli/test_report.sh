#!/usr/bin/env bash
# gqe report on a small database fabricated through the gqe.db API: the page
# exists, every <img> it names exists and is a PNG, and it carries what an
# ablation needs (arms apart, CIs, n < 3 warning, best and baseline marked).
#   tests/cli/test_report.sh [--keep DIR]   (leaves the report in DIR)
set -euo pipefail
keep_tmp=
if [ "${1:-}" = --keep ]; then keep_tmp=$2; fi
. "$(dirname "$0")/lib.sh"
command -v gnuplot >/dev/null || { echo "gnuplot missing: run make deps"; exit 1; }
rm -f "$db"*

# Three routers x two k (six arms), three seeds for softmax and two for the
# others, fake curves with an early loss spike, routing balance and head usage
# at five evaluations (seed 2 of balanced k=1 collapses onto one expert in
# layer 1), plus one failed run.
cat > "$tmp/fixture.lua" <<'LUA'
local gqe = require "gqe"
local db = gqe.db.open(arg[1])
local exp = db:experiment("fab")
for ri, router in ipairs { "softmax", "sigmoid", "balanced" } do
  for _, k in ipairs { 1, 2 } do
    for seed = 1, (router == "softmax" and 3 or 2) do
      local c = gqe.config.resolve { model = { router = router, k = k, experts = 4, groups = 2, layers = 2 },
                                     train = { seed = seed } }
      local id = db:begin_run { experiment_id = exp, name = string.format("router=%s,k=%d,seed=%d", router, k, seed),
        config_json = gqe.config.to_json(c), config_hash = gqe.config.hash(c), params = gqe.config.params(c),
        host = gqe.hostname(), pid = gqe.pid(), device = "cpu", seed = seed }
      local off = 0.04 * ri + (k == 2 and -0.05 or 0) + seed * 0.01
      for step = 10, 200, 10 do
        local spike = step == 20 and 40 or 0
        db:log(id, step, "train/loss", 2 + 3 * math.exp(-step / 40) + off + spike)
        db:log(id, step, "perf/tokens_per_s", 1000 * k + seed)
        db:log(id, step, "perf/tokens", step * 512)
      end
      for step = 40, 200, 40 do
        db:eval(id, step, "val", "loss", 2.1 + 3 * math.exp(-step / 40) + off)
        for layer = 0, 1 do
          local collapse = router == "balanced" and k == 1 and seed == 2 and layer == 1
          db:log(id, step, "routing/entropy_l" .. layer, collapse and 0.3 or 0.9 + 0.02 * ri - 0.1 * step / 200)
          db:log(id, step, "routing/cv_l" .. layer, collapse and 1.6 or 0.2 + 0.05 * ri + 0.1 * step / 200)
          for g = 0, 1 do
            for e = 0, 1 do
              local frac = (e == 0) and 0.5 + 0.1 * layer + 0.05 * g or 0.5 - 0.1 * layer - 0.05 * g
              if collapse then frac = (e == 0) and 0.94 or 0.06 end
              db:head_usage(id, step, layer, g, e, math.floor(frac * 512), frac, frac)
            end
          end
        end
      end
      db:end_run(id, "finished", nil)
    end
  end
end
local c = gqe.config.resolve {}
local id = db:begin_run { experiment_id = exp, name = "broken", config_json = gqe.config.to_json(c),
  config_hash = gqe.config.hash(c), params = gqe.config.params(c), host = gqe.hostname(), pid = gqe.pid(),
  device = "cpu", seed = 1 }
db:end_run(id, "failed", "data.path: cannot open x.txt")
db:close()
LUA
"$GQE" "$tmp/fixture.lua" "$db" || fail "fixture"

out=$("$GQE" report fab --db "$db" --out "$tmp/report" --baseline k=1,router=softmax)
echo "$out"
html=$tmp/report/index.html
[ -s "$html" ] || fail "no index.html"
imgs=$(grep -o '<img src="[^"]*"' "$html" | sed 's/<img src="//; s/"$//')
n=$(wc -w <<<"$imgs")
# train + val curves, 2 axes (k, router), routing entropy and cv, 6 head-usage maps (one per arm)
[ "$n" -eq 12 ] || fail "expected 12 images, found $n"
for f in $imgs; do
  [ -s "$tmp/report/$f" ] || fail "image $f missing"
  [ "$(head -c 8 "$tmp/report/$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
done
grep -q "broken" "$html" || fail "failed run not listed"
grep -q "k=2,router=sigmoid" "$html" || fail "arm label missing"
grep -q "Fewer than 3 seeds" "$html" || fail "n < 3 warning missing"
grep -q '<span class="tag">best</span>' "$html" || fail "best arm not marked"
grep -q '<span class="tag">baseline</span>' "$html" || fail "baseline not marked"
grep -q "loss axis clipped" "$html" || fail "the early spike is not clipped"
grep -q "with yerrorbars" "$tmp/report/plots.gp" || fail "axis plot without error bars"
grep -q "yerrorlines" "$tmp/report/plots.gp" && fail "axis plot joins categories"
# The report is a function of the log: rebuilt, its page is the same file.
"$GQE" report fab --db "$db" --out "$tmp/again" --baseline k=1,router=softmax >/dev/null || fail "second report"
cmp -s "$tmp/report/index.html" "$tmp/again/index.html" || fail "a rebuilt report differs from the first"
# Each axis plot is labelled with its ablation axis, never with gnuplot text.
grep -q "^set xlabel 'model.k'" "$tmp/report/plots.gp" || fail "axis plot without the axis name as its label"
grep -q "^set xlabel 'set " "$tmp/report/plots.gp" && fail "a gnuplot command became an axis label"
# Twelve arms get twelve different colours.
[ "$(grep -o "lc rgb '#[0-9a-f]*' dt" "$tmp/report/plots.gp" | sort -u | wc -l)" -ge 6 ] || fail "arms share colours"
# Per-seed curves and a log loss axis.
"$GQE" report fab --db "$db" --out "$tmp/seeds" --curves seeds --loss-axis log >/dev/null || fail "--curves seeds"
grep -q "set logscale y" "$tmp/seeds/plots.gp" || fail "--loss-axis log"
[ "$(grep -c "_r[0-9]*.dat' using 1:2 with linespoints" "$tmp/seeds/plots.gp")" -ge 26 ] || fail "per-seed curves"
# compare on the same data: 6 arms.
"$GQE" compare fab --db "$db" >"$tmp/compare" 2>/dev/null
[ "$(grep -c "k=.,router=" "$tmp/compare")" = 6 ] || fail "compare groups"
# Unknown experiment, metric or flag: clear errors.
if "$GQE" report nope --db "$db" 2>"$tmp/err"; then fail "unknown experiment accepted"; fi
grep -q -E "unknown experiment 'nope'|no runs of experiment 'nope'" "$tmp/err" || fail "unknown experiment message"
if "$GQE" report fab --db "$db" --metric val/los --out "$tmp/x" 2>"$tmp/err"; then fail "unknown metric accepted"; fi
grep -q "unknown metric 'val/los'" "$tmp/err" || fail "unknown metric message"
if "$GQE" report fab --db "$db" --outt "$tmp/x" 2>"$tmp/err"; then fail "unknown flag accepted"; fi
grep -q "unknown flag --outt for \`gqe report\` (did you mean --out?)" "$tmp/err" || fail "unknown flag message"
echo "test_report: ok ($n images)"
