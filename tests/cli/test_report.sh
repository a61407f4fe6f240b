#!/usr/bin/env bash
# gqe report on a small database fabricated through the gqe.db API: the page
# exists, and every <img> it names exists and is a PNG.
#   tests/cli/test_report.sh [--keep DIR]   (leaves the report in DIR)
set -euo pipefail
keep_tmp=
if [ "${1:-}" = --keep ]; then keep_tmp=$2; fi
. "$(dirname "$0")/lib.sh"
command -v gnuplot >/dev/null || { echo "gnuplot missing: run make deps"; exit 1; }
rm -f "$db"*

# Two routers x two k x two seeds of fake curves, head usage at two
# evaluations, plus one failed run.
cat > "$tmp/fixture.lua" <<'LUA'
local gqe = require "gqe"
local db = gqe.db.open(arg[1])
local exp = db:experiment("fab")
for _, router in ipairs { "softmax", "sigmoid" } do
  for _, k in ipairs { 1, 2 } do
    for seed = 1, 2 do
      local c = gqe.config.resolve { model = { router = router, k = k, experts = 4, groups = 2, layers = 2 },
                                     train = { seed = seed } }
      local id = db:begin_run { experiment_id = exp, name = string.format("router=%s,k=%d,seed=%d", router, k, seed),
        config_json = gqe.config.to_json(c), config_hash = gqe.config.hash(c), params = gqe.config.params(c),
        host = gqe.hostname(), pid = gqe.pid(), device = "cpu", seed = seed }
      local off = (router == "sigmoid" and 0.1 or 0) + (k == 2 and -0.05 or 0) + seed * 0.01
      for step = 10, 100, 10 do
        db:log(id, step, "train/loss", 2 + 3 * math.exp(-step / 40) + off)
        db:log(id, step, "perf/tokens_per_s", 1000 * k + seed)
        db:log(id, step, "perf/tokens", step * 512)
      end
      for step = 50, 100, 50 do
        db:eval(id, step, "val", "loss", 2.1 + 3 * math.exp(-step / 40) + off)
        for layer = 0, 1 do
          for g = 0, 1 do
            for e = 0, 1 do
              local frac = (e == 0) and 0.5 + 0.1 * layer + 0.05 * g or 0.5 - 0.1 * layer - 0.05 * g
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

out=$("$GQE" report fab --db "$db" --out "$tmp/report")
echo "$out"
html=$tmp/report/index.html
[ -s "$html" ] || fail "no index.html"
imgs=$(grep -o '<img src="[^"]*"' "$html" | sed 's/<img src="//; s/"$//')
n=$(wc -w <<<"$imgs")
# train + val curves, 2 axes (k, router), 4 heatmaps (one per group)
[ "$n" -eq 8 ] || fail "expected 8 images, found $n"
for f in $imgs; do
  [ -s "$tmp/report/$f" ] || fail "image $f missing"
  [ "$(head -c 8 "$tmp/report/$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
done
grep -q "broken" "$html" || fail "failed run not listed"
grep -q "k=2,router=sigmoid" "$html" || fail "group label missing"
# compare on the same data: 4 groups, 2 seeds each.
"$GQE" compare fab --db "$db" | tee "$tmp/compare"
[ "$(grep -c "k=.,router=" "$tmp/compare")" = 4 ] || fail "compare groups"
# A report of an unknown experiment is a clear error.
if "$GQE" report nope --db "$db" 2>"$tmp/err"; then fail "unknown experiment accepted"; fi
grep -q -E "unknown experiment 'nope'|no runs of experiment 'nope'" "$tmp/err" || fail "unknown experiment message"
echo "test_report: ok ($n images)"
