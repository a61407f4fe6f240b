-- Long context: the Brown model at 8192 tokens per sequence (2 sequences a
-- step, the same 16K tokens per step as brown.lua), dense GQA against GQE.
--   build/gqe results/2026-12-06-gqe-small/long.lua train.device=cuda
local gqe = require "gqe"
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

local runs = gqe.experiment {
  name = "study-long",
  base = {
    data  = { kind = "shards", path = "data/brown_gpt2_train.bin", val_path = "data/brown_gpt2_val.bin" },
    model = { vocab = 50304, dim = 512, layers = 4, attention = "gqe", variant = "gqe", router = "softmax",
              experts = 16, groups = 8, k = 1, head_dim = 64 },
    optim = { name = "adamw", lr = 1e-3, beta1 = 0.9, beta2 = 0.95, weight_decay = 0.1 },
    schedule = { kind = "wsd", warmup = 12, decay_frac = 0.3 },
    train = { steps = 120, batch = 2, seq = 8192, eval_every = 40, eval_batches = 8, log_every = 10,
              device = "cuda", precision = "bf16" },
  },
  arms = { { ["model.attention"] = "gqa" }, {} },
  seeds = arms.seeds,
}
if runs.dry_run then return end
print()
print(gqe.summary_table(runs))
