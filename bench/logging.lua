-- Cost of logging every step (make bench): the quickstart GQE model trains
-- on the CPU while every step writes the six per-step metrics and flushes
-- them in one transaction, as train.lua does with train.log_every = 1. The
-- time inside the logging calls is reported against the time of the step.
--   build/gqe bench/logging.lua [steps] [db]
local gqe = require "gqe"
local steps, path = require("gqe.flags").positional("build/gqe bench/logging.lua [steps] [db]", arg, {
  { "steps", 20, int = 1 }, { "db", nil } })
path = path or os.tmpname()

local lm = gqe.nn.LM{vocab = 256, dim = 128, layers = 4, max_seq = 128, attention = "gqe",
                     experts = 8, groups = 4, k = 1, head_dim = 16, seed = 1}
local opt = gqe.optim.AdamW(lm, {lr = 3e-3, weight_decay = 0.1})
local g = gqe.randn({16, 129}, {seed = 1})
local ids = {}
for b = 1, 16 do
  ids[b] = {}
  for t = 1, 129 do ids[b][t] = math.floor(math.abs(g:get(b, t)) * 97) % 256 end
end
local all = gqe.tensor(ids, {dtype = "i32"})
local tok, tgt = {}, {}
for b = 1, 16 do
  tok[b], tgt[b] = {}, {}
  for t = 1, 128 do tok[b][t] = ids[b][t]; tgt[b][t] = ids[b][t + 1] end
end
tok, tgt = gqe.tensor(tok, {dtype = "i32"}), gqe.tensor(tgt, {dtype = "i32"})
all = nil

local db = gqe.db.open(path)
local exp = db:experiment("bench-logging")
local run = db:begin_run{experiment_id = exp, name = "logging", config_json = "{}", config_hash = "0",
                         params = {}, device = "cpu", seed = 1}
local step_time, log_time = 0, 0
for step = 1, steps do
  local t0 = gqe.clock()
  local loss, _, aux = lm:loss(tok, tgt, 0.01)
  lm:backward()
  local gn = opt:clip(1.0)
  opt:step()
  opt:zero_grad()
  local t1 = gqe.clock()
  db:log(run, step, "train/loss", loss)
  db:log(run, step, "train/aux", aux)
  db:log(run, step, "train/lr", 3e-3)
  db:log(run, step, "train/grad_norm", gn)
  db:log(run, step, "perf/tokens_per_s", 2048 / (t1 - t0))
  db:log(run, step, "perf/tokens", step * 2048)
  db:flush()
  local t2 = gqe.clock()
  step_time, log_time = step_time + (t1 - t0), log_time + (t2 - t1)
end
db:end_run(run, "finished", nil)
local pct = 100 * log_time / step_time
pcall(db.bench, db, {name = "logging", key = "overhead_pct", value = pct, unit = "%",
                     notes = string.format("%d steps, quickstart GQE model, log_every=1", steps)})
db:close()
print(string.format("step %.1f ms, logging + flush %.3f ms per step", 1e3 * step_time / steps, 1e3 * log_time / steps))
print(string.format("logging every step costs %.2f%% of step time", pct))
