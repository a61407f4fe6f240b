-- The gqe Lua library, run once with the C module table as its argument:
-- adds the experiment harness (train, experiment, config, report, cli) to
-- the functions the bindings registered.
local gqe = ...
assert(type(gqe) == "table", "gqe/init.lua must be run with the gqe module table as its argument")
package.loaded["gqe"] = package.loaded["gqe"] or gqe

gqe.json = require "gqe.json"
gqe.config = require "gqe.config"

-- gqe.train(config [, opts]) -> summary. See gqe/train.lua for opts.
function gqe.train(cfg, opts)
  return require("gqe.train").run(cfg, opts)
end

-- gqe.experiment{name=, base=, grid=, arms=, seeds=} [, args] -> summaries.
-- args defaults to the script's arg (overrides, --jobs N, --dry-run, --db).
function gqe.experiment(def, args)
  return require("gqe.experiment").run(def, args)
end

-- gqe.load_run(RUN_ID or checkpoint path [, {db=, device=, optimizer=true}])
-- -> lm, opt, info: a run's model rebuilt from its stored config and loaded
-- from its latest checkpoint. See gqe/models.lua.
function gqe.load_run(what, opts)
  return require("gqe.models").load_run(what, opts)
end

-- A text table of experiment summaries: run, validation loss, bits per
-- byte, top-1 validation accuracy, active query heads per token, tokens/s, parameters, wall time.
function gqe.summary_table(summaries)
  return require("gqe.experiment").print_table(summaries, {
    { "run", "name" }, { "status", "status" }, { "val loss", "final_val_loss", "%.4f" },
    { "best val", "best_val_loss", "%.4f" }, { "bits/byte", "val_bpb", "%.4f" },
    { "val acc", "val_acc", "%.4f" },
    { "active heads", "active_heads", "%d" }, { "tokens/s", "tokens_per_s", "%.0f" },
    { "params", "params", "%d" }, { "wall s", "wall_s", "%.1f" } })
end

-- Modules loaded on first use, so a script that only trains does not pay
-- for the report code.
local lazy = { cli = "gqe.cli", report = "gqe.report", results = "gqe.results",
               experiments = "gqe.experiment", text = "gqe.text", evaluate = "gqe.evaluate" }
local mt = getmetatable(gqe) or {}
local old_index = mt.__index
mt.__index = function(t, k)
  local m = lazy[k]
  if m then
    local v = require(m)
    rawset(t, k, v)
    return v
  end
  if type(old_index) == "function" then return old_index(t, k) end
  if type(old_index) == "table" then return old_index[k] end
  return nil
end
setmetatable(gqe, mt)

return gqe
