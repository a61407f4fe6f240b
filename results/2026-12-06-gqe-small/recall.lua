-- Every arm on multi-query associative recall (32 key-value pairs per row
-- of 256 tokens, vocabulary 8192): recall accuracy at the query positions.
--   build/gqe results/2026-12-06-gqe-small/recall.lua --per-gpu 8
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

arms.experiment("study-recall", {
  data  = { kind = "recall", vocab = 8192, num_pairs = 32 },
  model = { dim = 256, layers = 2, head_dim = 32 },
  optim = { lr = 3e-3 },
  schedule = { warmup = 50, decay_frac = 0.3 },
  train = { steps = 2000, batch = 64, seq = 256, eval_every = 250, eval_batches = 8, log_every = 50,
            device = "cuda", precision = "bf16" },
}, arms.all())
