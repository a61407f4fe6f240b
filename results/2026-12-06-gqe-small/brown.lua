-- Every arm on GPT-2 tokens of the Brown corpus (make data writes the shards
-- and the cloze task from held-out documents): val loss, bits per byte,
-- cloze accuracy, tokens/s.
--   build/gqe results/2026-12-06-gqe-small/brown.lua train.device=cuda --per-gpu 4
local gqe = require "gqe"
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

local runs = gqe.experiment {
  name = "study-brown",
  base = {
    data  = { kind = "shards", path = "data/brown_gpt2_train.bin", val_path = "data/brown_gpt2_val.bin" },
    model = { vocab = 50304, dim = 512, layers = 4, attention = "gqe", variant = "gqe", router = "softmax",
              experts = 16, groups = 8, k = 1, head_dim = 64 },
    optim = { name = "adamw", lr = 1e-3, beta1 = 0.9, beta2 = 0.95, weight_decay = 0.1 },
    schedule = { kind = "wsd", warmup = 20, decay_frac = 0.3 },
    train = { steps = 200, batch = 32, seq = 512, eval_every = 100, eval_batches = 8, log_every = 10,
              device = "cuda", precision = "bf16" },
    eval = { tasks = { cloze = "data/brown_cloze.jsonl" } },
  },
  arms = arms.all(),
  seeds = arms.seeds,
}
if runs.dry_run then return end
print()
print(gqe.summary_table(runs))
