-- The paper's comparison on the CPU: dense GQA against the three variants on
-- the bytes of the Brown corpus (no tokenizer), small enough for two cores.
-- Val loss, bits per byte and Brown cloze accuracy at the end of each run.
--   build/gqe results/2026-12-06-gqe-small/bytes.lua --jobs 2
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

arms.experiment("study-bytes", {
  data  = { kind = "text", path = "data/brown.txt" },
  model = { dim = 128, layers = 4, head_dim = 16 },
  optim = { lr = 3e-3 },
  schedule = { warmup = 20, decay_frac = 0.3 },
  train = { steps = 400, batch = 16, seq = 128, eval_every = 400, eval_batches = 16, log_every = 20 },
  eval = { tasks = { cloze = "data/brown_cloze.jsonl" } },
}, arms.variants)
