-- Which router? softmax (the paper), sigmoid and random (a control that
-- learns nothing), each with k = 1 and 2: 6 configurations x 2 seeds.
--
--   build/gqe experiments/ablate_router.lua --jobs 2
--   build/gqe experiments/ablate_router.lua --dry-run
--   build/gqe experiments/ablate_router.lua model.k=2 train.steps=50
--   gqe compare router-ablation ; gqe report router-ablation
local gqe = require "gqe"

local runs = gqe.experiment {
  name = "router-ablation",
  base = {
    data  = { kind = "text", path = "data/brown.txt" },
    model = { dim = 128, layers = 4, attention = "gqe", experts = 8, groups = 4,
              k = 1, head_dim = 16, variant = "gqe", router = "softmax" },
    optim = { name = "adamw", lr = 3e-3, weight_decay = 0.1 },
    train = { steps = 300, batch = 16, seq = 128, eval_every = 50 },
  },
  grid  = { ["model.router"] = { "softmax", "sigmoid", "random" }, ["model.k"] = { 1, 2 } },
  seeds = { 1, 2 },
}
if runs.dry_run then return end
print()
print(gqe.summary_table(runs))
