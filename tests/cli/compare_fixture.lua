-- A run log for test_compare.sh: router=softmax x 3 seeds, router=sigmoid x 2
-- seeds of which seed 1 has a killed row and a superseded finished row.
local gqe = require "gqe"
local db = gqe.db.open(arg[1])
local exp = db:experiment("abl")
local function run(router, seed, status, val)
  local c = gqe.config.resolve { model = { router = router, experts = 4, groups = 2, layers = 1 }, train = { seed = seed } }
  local id = db:begin_run { experiment_id = exp, name = string.format("router=%s,seed=%d", router, seed),
    config_json = gqe.config.to_json(c), config_hash = gqe.config.hash(c), params = gqe.config.params(c),
    host = gqe.hostname(), pid = gqe.pid(), device = "cpu", seed = seed }
  db:log(id, 10, "train/loss", val + 1)
  db:log(id, 10, "perf/tokens_per_s", 1000)
  if status ~= "killed" then db:eval(id, 10, "val", "loss", val) end
  db:end_run(id, status, status == "killed" and "SIGINT at step 5" or nil)
end
for seed = 1, 3 do run("softmax", seed, "finished", 2.0 + seed * 0.01) end
run("sigmoid", 1, "killed", 9)
run("sigmoid", 1, "finished", 2.5)    -- superseded below
run("sigmoid", 1, "finished", 2.2)
run("sigmoid", 2, "finished", 2.3)
db:close()
