-- The paper's Table 2 at small size: dense GQA against the three GQE
-- variants (gqe = routed slots + weighted sum + shared head, hard_concat,
-- weighted_concat), same width, experts and KV groups.
--
--   build/gqe experiments/paper_table2.lua --jobs 2
--   full size on a GPU (the paper: d=1024, 16 layers, N=16, G=8, seq 2048):
--   build/gqe experiments/paper_table2.lua train.device=cuda model.dim=1024 model.layers=16 \
--       model.experts=16 model.groups=8 model.head_dim=64 train.seq=2048 train.batch=8 \
--       train.steps=20000 schedule.kind=wsd data.kind=shards data.path=data/fineweb_train_000001.bin
local gqe = require "gqe"

local runs = gqe.experiment {
  name = "paper-table2",
  base = {
    data  = { kind = "text", path = "data/brown.txt" },
    model = { dim = 128, layers = 4, experts = 8, groups = 4, k = 1, head_dim = 16, router = "softmax" },
    optim = { name = "adamw", lr = 3e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-7, weight_decay = 0.1 },
    schedule = { kind = "wsd", warmup = 20, decay_frac = 0.2 },
    train = { steps = 300, batch = 16, seq = 128, eval_every = 50 },
  },
  arms = {
    { ["model.attention"] = "gqa" },
    { ["model.attention"] = "gqe", ["model.variant"] = "weighted_concat" },
    { ["model.attention"] = "gqe", ["model.variant"] = "hard_concat" },
    { ["model.attention"] = "gqe", ["model.variant"] = "gqe" },
  },
  seeds = { 1, 2 },
}
if runs.dry_run then return end
print()
print(gqe.summary_table(runs))
