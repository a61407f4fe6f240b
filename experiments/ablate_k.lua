-- How many experts per group should a token use? N=8 experts in G=2 groups
-- (M=4 per group), k from 1 to 4: active query heads G*k + 1.
--
--   build/gqe experiments/ablate_k.lua --jobs 2
--   build/gqe experiments/ablate_k.lua train.device=cuda model.dim=1024 model.experts=16 model.groups=4 ...
local gqe = require "gqe"

local runs = gqe.experiment {
  name = "ablate-k",
  base = {
    data  = { kind = "text", path = "data/brown.txt" },
    model = { dim = 128, layers = 4, attention = "gqe", experts = 8, groups = 2, head_dim = 16,
              variant = "gqe", router = "softmax" },
    optim = { name = "adamw", lr = 3e-3, weight_decay = 0.1 },
    train = { steps = 300, batch = 16, seq = 128, eval_every = 50 },
  },
  grid  = { ["model.k"] = { 1, 2, 3, 4 } },
  seeds = { 1, 2 },
}
if runs.dry_run then return end
print()
print(gqe.summary_table(runs))
