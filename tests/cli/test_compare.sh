#!/usr/bin/env bash
# gqe compare reads the counted_runs view (the latest finished row of each
# distinct config) and agrees with the README's ablation recipe; --csv, --json,
# --baseline, the 95% CI, the n < 3 warning, and clear errors for an unknown
# experiment, metric, baseline or flag.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
"$GQE" tests/cli/compare_fixture.lua "$db" || fail "fixture"

"$GQE" compare abl --db "$db" >"$tmp/out" 2>"$tmp/err" || fail "compare failed: $(cat "$tmp/err")"
cat "$tmp/out"
grep -q "5 runs counted, 2 groups by model.router" "$tmp/out" || fail "counted runs"
grep -q "counted: the latest finished row of each distinct config; not counted: 1 killed, 1 superseded" "$tmp/out" ||
  fail "the rule and the rows left out are not stated"
# softmax: 2.01, 2.02, 2.03 -> 2.0200 +- 0.0100, CI = 2.02 -+ 4.3027 * 0.01 / sqrt(3)
grep -qE "router=softmax +3 +2\.0200 \+- 0\.0100 +\[1\.9952, 2\.0448\]" "$tmp/out" || fail "softmax row"
# sigmoid: the killed row (9) and the superseded row (2.5) are not counted
grep -qE "router=sigmoid +2 +2\.2500 \+- 0\.0707 +\[1\.6147, 2\.8853\]" "$tmp/out" || fail "sigmoid row"
grep -q "warning: fewer than 3 seeds in router=sigmoid (n=2)" "$tmp/err" || fail "n < 3 warning"
grep -q "softmax (n=3)" "$tmp/err" && fail "warning for a group with 3 seeds"

# The README's recipe reads the same rows.
sql=$(q "SELECT value || '=' || printf('%.4f', avg(final_val_loss)) || '/' || count(*) FROM ablation
         WHERE experiment = 'abl' AND key = 'model.router' GROUP BY value ORDER BY value" | tr '\n' ' ')
[ "$sql" = "sigmoid=2.2500/2 softmax=2.0200/3 " ] || fail "ablation view disagrees with compare: $sql"

"$GQE" compare abl --db "$db" --csv --baseline router=softmax >"$tmp/csv" 2>/dev/null
head -1 "$tmp/csv" | grep -q "^group,model.router,seeds,final_mean,final_std,final_ci95_low" || fail "csv header"
[ "$(wc -l <"$tmp/csv")" = 3 ] || fail "csv rows"
grep -q "^router=sigmoid,sigmoid,2,2.25,.*,0.230000" "$tmp/csv" || fail "csv baseline difference"

"$GQE" compare abl --db "$db" --json --baseline 'router=sigmoid,seed=2' >"$tmp/json" 2>/dev/null
[ "$(sqlite3 :memory: "SELECT json_extract(readfile('$tmp/json'), '$.baseline')")" = router=sigmoid ] ||
  fail "json baseline (a run name selects its group)"
[ "$(sqlite3 :memory: "SELECT json_array_length(readfile('$tmp/json'), '$.not_counted')")" = 2 ] || fail "json not_counted"
[ "$(sqlite3 :memory: "SELECT printf('%.2f', json_extract(readfile('$tmp/json'), '$.groups[0].diff_vs_baseline.final_mean'))")" = -0.23 ] ||
  fail "json difference"
"$GQE" compare abl --db "$db" --baseline router=sigmoid >"$tmp/base" 2>/dev/null
grep -qE "router=softmax .* -0\.2300 \+- " "$tmp/base" || fail "text baseline column"

bad() {  # message, args...
  local want=$1; shift
  if "$GQE" compare "$@" --db "$db" >"$tmp/o" 2>"$tmp/e"; then fail "compare $* succeeded"; fi
  grep -qF -- "$want" "$tmp/e" || { cat "$tmp/e"; fail "compare $*: no '$want'"; }
}
bad "unknown metric 'val/los' (did you mean val/loss?); metrics of experiment 'abl': perf/tokens_per_s, train/loss, val/loss" abl --metric val/los
bad "unknown experiment 'abx' (did you mean 'abl'?); experiments in this database: abl" abx
bad "unknown flag --csvv for \`gqe compare\` (did you mean --csv?)" abl --csvv
bad "unknown flag -n; valid flags: --metric, --baseline, --csv, --json, --db, --help" abl -n
bad "unknown baseline 'nope'; groups: router=softmax; router=sigmoid" abl --baseline nope
bad "--csv and --json exclude each other" abl --csv --json
bad "unexpected argument 'extra': at most 1 (EXPERIMENT) (usage: gqe compare" abl extra
bad "missing EXPERIMENT (usage: gqe compare" --csv
"$GQE" compare --help >"$tmp/help"
grep -q "usage: gqe compare" "$tmp/help" || fail "--help"
echo "test_compare: ok"
