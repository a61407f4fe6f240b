-- Every arm on GPT-2 tokens of the Brown corpus (make data writes the shards
-- and the cloze task from held-out documents): val loss, bits per byte,
-- cloze accuracy, tokens/s.
--   build/gqe results/2026-12-06-gqe-small/brown.lua --per-gpu 6
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

arms.experiment("study-brown", {
  data = arms.brown_base.data, model = arms.brown_base.model, optim = arms.brown_base.optim,
  schedule = { warmup = 20, decay_frac = 0.3 },
  train = { steps = 200, batch = 32, seq = 512, eval_every = 100, eval_batches = 8, log_every = 10,
            device = "cuda", precision = "bf16" },
  eval = { tasks = { cloze = "data/brown_cloze.jsonl" } },
}, arms.all())
