#!/usr/bin/env bash
# The balanced router balances by its bias alone. With variant hard_concat
# the router gets no gradient (GQE.md's table), so only its initial weights
# and the bias b[g,m] += gamma * sign(mean load - load) set the split. With
# zero router weights every token of a group scores the same, the whole group
# goes to one expert and the sign rule flips it whole each step: the busiest
# expert's share stays 1.0 at every step. Random initial weights give scores
# a spread, so each bias step moves a fraction of the tokens. Measured (this
# script's sizes, Brown bytes, seed 1): worst group 0.65-0.83 and mean over
# layers and groups 0.56-0.66 at steps 10-40; with zero weights 1.0 and 1.0.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -s data/brown.txt ] || fail "data/brown.txt missing: run make data"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "cli-balanced", name = "balanced",
  data  = { kind = "text", path = "data/brown.txt" },
  model = { dim = 128, layers = 2, experts = 8, groups = 4, k = 1, head_dim = 16,
            variant = "hard_concat", router = "balanced" },
  optim = { name = "adamw", lr = 3e-3 },
  schedule = { kind = "cosine", warmup = 10 },
  train = { steps = 40, batch = 16, seq = 128, log_every = 10, eval_every = 10, eval_batches = 2,
            db = "$db", checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
local s = gqe.train(cfg)
print(string.format("run %d %s", s.run_id, s.status))
LUA

out=$("$GQE" "$tmp/run.lua" 2>"$tmp/err") || { cat "$tmp/err"; fail "training run exited non-zero"; }
grep -q finished <<<"$out" || { cat "$tmp/err"; fail "run did not finish: $out"; }
shares="SELECT step, layer, grp, max(frac) AS m FROM head_usage GROUP BY step, layer, grp"
q "SELECT step, printf('%.2f', max(m)), printf('%.3f', avg(m)) FROM ($shares) GROUP BY step"
[ "$(q "SELECT count(DISTINCT step) FROM head_usage")" = 4 ] || fail "head usage at steps 10, 20, 30, 40"
# At every step from 10: no group above 0.9 and the mean over layers and
# groups <= 0.7 (balanced is 0.5; a zero-initialised router gives 1.0, 1.0).
bad=$(q "SELECT step FROM ($shares) GROUP BY step HAVING max(m) > 0.9 OR avg(m) > 0.7")
[ -z "$bad" ] || fail "balanced router not balanced at step(s) $(echo $bad): busiest expert's share above 0.9 in a group, or above 0.7 on average"
echo "balanced router: every group's busiest expert <= 0.9, mean <= 0.7, from step 10"
