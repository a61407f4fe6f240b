-- Long context: the Brown model at 8192 tokens per sequence (2 sequences a
-- step, the same 16K tokens per step as brown.lua), dense GQA against GQE.
--   build/gqe results/2026-12-06-gqe-small/long.lua --per-gpu 1
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

arms.experiment("study-long", {
  data = arms.brown_base.data, model = arms.brown_base.model, optim = arms.brown_base.optim,
  schedule = { warmup = 12, decay_frac = 0.3 },
  train = { steps = 120, batch = 2, seq = 8192, eval_every = 40, eval_batches = 8, log_every = 10,
            device = "cuda", precision = "bf16" },
}, { { ["model.attention"] = "gqa" }, {} })
