-- Checkpoints and `gqe resume`. The file format is the core's (one
-- safetensors file: parameters under their PyTorch names, optimizer state,
-- router biases and counters, step and config in the metadata, written
-- atomically); this module decides when and where to write them, registers
-- them in the run log, and continues a run in its own database row.
--
-- It uses the bindings gqe.checkpoint.save(path, lm, opt, {step=,
-- data_index=, config=}) and gqe.checkpoint.load(path, lm, opt) -> {step=,
-- data_index=, config=}; a build without them trains without checkpoints
-- and `gqe resume` says so.
local gqe = require "gqe"
local config = require "gqe.config"
local json = require "gqe.json"

local checkpoint = {}

local function binding()
  local b = rawget(gqe, "checkpoint")
  if type(b) == "table" and type(b.save) == "function" and type(b.load) == "function" then return b end
  return nil
end

function checkpoint.available() return binding() ~= nil end

local function file_name(s) return (tostring(s):gsub("[^%w%-_.=,]", "_")) end

-- <train.checkpoint_dir>/<experiment>/run<id>/step<N>.safetensors
function checkpoint.path(ctx, step)
  return string.format("%s/%s/run%d/step%08d.safetensors", ctx.c.train.checkpoint_dir,
                       file_name(ctx.exp_name or "default"), ctx.run_id, step)
end

-- Creates the run's checkpoint directory; train.lua calls it before the
-- first step too, so an unusable train.checkpoint_dir fails the run at once
-- rather than at its first checkpoint.
function checkpoint.ensure_dir(ctx)
  local dir = checkpoint.path(ctx, 0):match("^(.*)/[^/]*$")
  if ctx.checkpoint_dir_made == dir then return end
  local ok = os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  if not ok then
    error(string.format("train.checkpoint_dir: cannot create directory %s (set train.checkpoint_dir to a writable place)", dir), 0)
  end
  ctx.checkpoint_dir_made = dir
end

-- The function train.lua calls every train.checkpoint_every steps, at the
-- end and on a signal; nil when this build cannot write checkpoints.
function checkpoint.saver(c)
  if not checkpoint.available() then return nil end
  local cjson = config.to_json(c)
  return function(ctx, step)
    local path = checkpoint.path(ctx, step)
    checkpoint.ensure_dir(ctx)
    -- Batch i is drawn for step i, so the next batch index is step + 1.
    -- a sharded optimizer (train.zero) is gathered into the unsharded format
    local opt = ctx.opt.gather and ctx.opt:gather() or ctx.opt
    binding().save(path, ctx.lm, opt, { step = step, data_index = step + 1, config = cjson })
    if opt ~= ctx.opt then opt:close() end
    ctx.db:checkpoint(ctx.run_id, step, path)
    ctx.last_checkpoint = step
  end
end

-- Called by train.run after the model and optimizer are built.
function checkpoint.restore(ctx, resume)
  local opt = ctx.opt.full and ctx.opt:full() or ctx.opt   -- sharded: load whole, keep this rank's shard
  local ok, info = pcall(binding().load, resume.path, ctx.lm, opt)
  if opt ~= ctx.opt then
    if ok then ctx.opt:scatter(opt) end
    opt:close()
  end
  if not ok then
    -- Most of the core's messages name the file; make sure every one does.
    local msg = tostring(info)
    if not msg:find(resume.path, 1, true) then msg = string.format("%s (checkpoint %s)", msg, resume.path) end
    error(msg, 0)
  end
  ctx.start_step = info.step
  ctx.last_checkpoint = info.step
  -- The best validation loss so far comes from the log.
  local m = ctx.db:query("SELECT min, last FROM metric_summary WHERE run_id = ? AND key = 'val/loss'", ctx.run_id)[1]
  if m then ctx.best_val, ctx.final_val = m.min, m.last end
end

-- `gqe resume RUN_ID`: the run's config from its row, its latest
-- checkpoint, then training goes on from there in the same row.
function checkpoint.resume(db, run_id)
  if not checkpoint.available() then
    error("gqe resume needs checkpoint support (gqe.checkpoint.save / load), which this build " ..
          "of gqe does not have; the run can only be started again", 0)
  end
  local r = db:query([[SELECT r.id, r.name, r.status, r.config, e.name AS experiment FROM runs r
    JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?]], run_id)[1]
  if not r then error(string.format("no run %d in this database (see `gqe runs`)", run_id), 0) end
  if r.status == "finished" then error(string.format("run %d already finished", run_id), 0) end
  -- Only rank 0 of a data-parallel resume judges the row: the others may
  -- read it after rank 0 has already set it running again.
  if r.status == "running" and gqe.dist.env().rank == 0 then
    db:mark_crashed(gqe.hostname(), 600)
    r.status = db:query("SELECT status FROM runs WHERE id = ?", run_id)[1].status
    if r.status == "running" then
      error(string.format("run %d is still running (pid alive or heartbeat recent); stop it first", run_id), 0)
    end
  end
  local ck = db:query("SELECT step, path FROM checkpoints WHERE run_id = ? ORDER BY step DESC, id DESC LIMIT 1", run_id)[1]
  if not ck then error(string.format("run %d has no checkpoint to resume from (train.checkpoint_every)", run_id), 0) end
  local f = io.open(ck.path, "rb")
  if not f then error(string.format("run %d: checkpoint file %s is missing", run_id, ck.path), 0) end
  f:close()
  local c = json.decode(r.config)
  return require("gqe.train").run(c, { db = db, experiment = r.experiment, name = r.name,
                                       resume = { run_id = run_id, path = ck.path, step = ck.step } })
end

return checkpoint
