-- Every arm on multi-query associative recall (32 key-value pairs per row
-- of 256 tokens, vocabulary 8192): recall accuracy at the query positions.
--   build/gqe results/2026-12-06-gqe-small/recall.lua train.device=cuda --per-gpu 4
local gqe = require "gqe"
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

local runs = gqe.experiment {
  name = "study-recall",
  base = {
    data  = { kind = "recall", vocab = 8192, num_pairs = 32 },
    model = { dim = 256, layers = 2, attention = "gqe", variant = "gqe", router = "softmax",
              experts = 16, groups = 8, k = 1, head_dim = 32 },
    optim = { name = "adamw", lr = 3e-3, beta1 = 0.9, beta2 = 0.95, weight_decay = 0.1 },
    schedule = { kind = "wsd", warmup = 50, decay_frac = 0.3 },
    train = { steps = 2000, batch = 64, seq = 256, eval_every = 250, eval_batches = 8, log_every = 50,
              device = "cuda", precision = "bf16" },
  },
  arms = arms.all(),
  seeds = arms.seeds,
}
if runs.dry_run then return end
print()
print(gqe.summary_table(runs))
