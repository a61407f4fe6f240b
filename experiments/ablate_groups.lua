-- KV groups at a fixed number of experts: N=8 query-head experts, G in
-- 1, 2, 4, 8 (M = N/G experts per group, k=1). G=8 leaves one expert per
-- group, i.e. plain GQA with the weighted and shared slots on top.
--
--   build/gqe experiments/ablate_groups.lua --jobs 2
local gqe = require "gqe"

local runs = gqe.experiment {
  name = "ablate-groups",
  base = {
    data  = { kind = "text", path = "data/brown.txt" },
    model = { dim = 128, layers = 4, attention = "gqe", experts = 8, k = 1, head_dim = 16,
              variant = "gqe", router = "softmax" },
    optim = { name = "adamw", lr = 3e-3, weight_decay = 0.1 },
    train = { steps = 300, batch = 16, seq = 128, eval_every = 50 },
  },
  grid  = { ["model.groups"] = { 1, 2, 4, 8 } },
  seeds = { 1, 2 },
}
if runs.dry_run then return end
print()
print(gqe.summary_table(runs))
