-- Quickstart: a dense GQA baseline against a GQE model (N=8 query-head
-- experts in G=4 groups, k=1 per group, shared head) on the Brown corpus,
-- trained on the CPU in a couple of minutes, logged to runs.db, compared
-- and reported (reports/quickstart/index.html).
--
--   build/gqe experiments/quickstart.lua                 (make run does this)
--   build/gqe experiments/quickstart.lua train.steps=50  (any key overrides)
--   build/gqe experiments/quickstart.lua train.device=cuda model.dim=512 train.steps=2000
local gqe = require "gqe"

local runs = gqe.experiment {
  name = "quickstart",
  base = {
    data  = { kind = "text", path = "data/brown.txt" },
    model = { dim = 128, layers = 4, experts = 8, groups = 4, k = 1, head_dim = 16,
              variant = "gqe", router = "softmax" },
    optim = { name = "adamw", lr = 3e-3, weight_decay = 0.1 },
    schedule = { kind = "cosine", warmup = 20 },
    train = { steps = 150, batch = 16, seq = 128, eval_every = 50, eval_batches = 4, log_every = 10 },
  },
  -- Same widths, same KV heads: the dense model computes all 8 query heads
  -- per token, GQE 4 routed + 1 shared.
  grid  = { ["model.attention"] = { "gqa", "gqe" } },
  seeds = { 1 },
  -- Two worker processes with one thread each: on a small CPU this beats
  -- one process with two threads per run (pass --jobs 1 to run in turn).
  jobs  = 2,
}
if runs.dry_run then return end

print()
print(gqe.summary_table(runs))
local ok, res = pcall(gqe.report.write, "quickstart", { db = runs.db_path })
print(ok and ("\nreport: " .. res) or ("\nno report: " .. tostring(res)))
