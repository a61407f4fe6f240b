-- Every arm on an easier associative recall: 8 key-value pairs per row of
-- 64 tokens, vocabulary 1024 (recall.lua's 32 pairs in 256 tokens were not
-- learned by any arm within its budget).
--   build/gqe results/2026-12-06-gqe-small/recall8.lua --per-gpu 8
local arms = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/arms.lua")

arms.experiment("study-recall-8", {
  data  = { kind = "recall", vocab = 1024, num_pairs = 8 },
  model = { dim = 128, layers = 2, head_dim = 16 },
  optim = { lr = 1e-3 },
  schedule = { warmup = 100, decay_frac = 0.3 },
  train = { steps = 3000, batch = 256, seq = 64, eval_every = 500, eval_batches = 4, log_every = 100,
            device = "cuda", precision = "bf16" },
}, arms.all())
