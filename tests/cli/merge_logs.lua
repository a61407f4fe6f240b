-- Writes a small run log through the gqe.db API, for the merge tests:
--   gqe tests/cli/merge_logs.lua DB EXPERIMENT NAME:STATUS:STEPS ...
-- Each run gets params (model.k and train.seed parsed from a name like
-- "k=2,seed=1"), config hash "h-NAME", train/loss and val/loss at every step
-- (value 10/step + k/100), head usage and an eval at its last step, one
-- checkpoint, and the log one bench row.
local gqe = require "gqe"
local path, exp = arg[1], arg[2]
local db = gqe.db.open(path)
local exp_id = db:experiment(exp)
for i = 3, #arg do
  local name, status, steps = arg[i]:match("^([^:]+):(%a+):(%d+)$")
  assert(name, "bad run spec " .. arg[i])
  steps = tonumber(steps)
  local k, seed = tonumber(name:match("k=(%d+)") or 1), tonumber(name:match("seed=(%d+)") or 1)
  local run = db:begin_run { experiment_id = exp_id, name = name, config_hash = "h-" .. name, seed = seed,
                             config_json = string.format('{"model":{"k":%d},"train":{"seed":%d}}', k, seed),
                             params = { ["model.k"] = k, ["train.seed"] = seed } }
  for s = 1, steps do
    db:log(run, s, "train/loss", 10 / s + k / 100)
    db:log(run, s, "perf/tokens", 1000 * s)
  end
  if steps > 0 then
    db:eval(run, steps, "val", "loss", 10 / steps + k / 100)
    for e = 0, 1 do db:head_usage(run, steps, 0, 0, e, 50, 0.5, 0.5) end
    db:checkpoint(run, steps, "ckpt/" .. name .. ".ckpt")
  end
  db:end_run(run, status)
end
db:bench { name = "cpu_train", key = "sgemm_gflops", value = 1.5, unit = "GFLOP/s", device = "cpu" }
db:close()
