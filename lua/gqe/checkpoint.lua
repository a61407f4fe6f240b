-- Checkpoints and `gqe resume`. The file format is the core's (one
-- safetensors file: parameters under their PyTorch names, optimizer state,
-- router biases and counters, step, config, run uid, config hash and a
-- checksum in the metadata, written atomically); this module decides when
-- and where to write them, registers and prunes them in the run log, and
-- continues a run in its own database row.
--
-- It uses the bindings gqe.checkpoint.save(path, lm, opt, {step=,
-- data_index=, config=, run_uid=, config_hash=}) and
-- gqe.checkpoint.load(path, lm, opt[, {run_uid=, config_hash=, step=}]) ->
-- {step=, data_index=, config=, run_uid=, config_hash=, verified=}; a build
-- without them trains without checkpoints and `gqe resume` says so.
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

local paths = require "gqe.paths"

-- <train.checkpoint_dir>/<experiment>/run<id>-<uid>/step<N>.safetensors: the
-- run's random uid (runs.uid) keeps runs of two databases apart, and the
-- experiment name is one safe path component (gqe.paths).
function checkpoint.path(ctx, step)
  return string.format("%s/%s/run%d-%s/step%08d.safetensors", ctx.c.train.checkpoint_dir,
                       paths.component(ctx.exp_name or "default"), ctx.run_id, ctx.run_uid or "nouid", step)
end

-- Creates the run's checkpoint directory; train.lua calls it before the
-- first step too, so an unusable train.checkpoint_dir fails the run at once
-- rather than at its first checkpoint.
function checkpoint.ensure_dir(ctx)
  local dir = checkpoint.path(ctx, 0):match("^(.*)/[^/]*$")
  if ctx.checkpoint_dir_made == dir then return end
  if not paths.mkdir(dir) then
    error(string.format("train.checkpoint_dir: cannot create directory %s (set train.checkpoint_dir to a writable place)", dir), 0)
  end
  ctx.checkpoint_dir_made = dir
end

-- The function train.lua calls every train.checkpoint_every steps, and with
-- final = true at the end and on a signal; nil when this build cannot write
-- checkpoints. Retention (train.keep_checkpoints = N, 0 keeps all): the run
-- keeps its newest N checkpoints, plus the final one; the rows of pruned
-- files leave the checkpoints table in the transaction that records the new
-- one, and the files are removed after it commits.
function checkpoint.saver(c)
  if not checkpoint.available() then return nil end
  local cjson = config.to_json(c)
  local hash = config.hash(c)
  local keep = c.train.keep_checkpoints or 0
  return function(ctx, step, final)
    local path = checkpoint.path(ctx, step)
    checkpoint.ensure_dir(ctx)
    -- Batch i is drawn for step i, so the next batch index is step + 1.
    -- a sharded optimizer (train.zero) is gathered into the unsharded format
    local opt = ctx.opt.gather and ctx.opt:gather() or ctx.opt
    local ok, err = pcall(binding().save, path, ctx.lm, opt, { step = step, data_index = step + 1, config = cjson,
                                                              run_uid = ctx.run_uid, config_hash = ctx.config_hash or hash })
    if opt ~= ctx.opt then opt:close() end
    if not ok then error(err, 0) end
    local pruned = ctx.db:checkpoint(ctx.run_id, step, path, keep > 0 and (final and keep + 1 or keep) or 0)
    for _, old in ipairs(pruned or {}) do
      if old ~= path then os.remove(old) end
    end
    ctx.last_checkpoint = step
  end
end

local function warn(ctx, fmt, ...)
  io.stderr:write(string.format("%s warning: " .. fmt .. "\n", ctx.label or "", ...))
end

-- One candidate: its checksum and identity (run uid, config hash, step) are
-- checked by the core before anything is restored, so a file that fails
-- leaves the model and optimizer as they were.
local function try_load(ctx, cand, row)
  local f = io.open(cand.path, "rb")
  if not f then return nil, "the file is missing" end
  f:close()
  local expect = { step = cand.step }
  if not ctx.legacy_ok then expect.run_uid, expect.config_hash = ctx.run_uid, row.config_hash end
  -- a sharded optimizer (train.zero) loads the whole state and keeps its shard
  local opt = ctx.opt.full and ctx.opt:full() or ctx.opt
  local ok, info = pcall(binding().load, cand.path, ctx.lm, opt, expect)
  if opt ~= ctx.opt then
    if ok then ctx.opt:scatter(opt) end
    opt:close()
  end
  if not ok then
    local why = tostring(info):gsub("^checkpoint%.load: ", ""):gsub("^" .. cand.path:gsub("%p", "%%%0") .. ": ", "")
    return nil, why
  end
  if not info.verified then warn(ctx, "%s has no checksum (an older gqe wrote it): its data is not verified", cand.path) end
  return info
end

-- Called by train.run after the model and optimizer are built: restores the
-- newest checkpoint of the run that passes every check (checksum, run uid,
-- config hash, step); each one that fails is named in a warning and the next
-- older one is tried.
function checkpoint.restore(ctx, resume)
  local cands = ctx.db:query("SELECT id, step, path FROM checkpoints WHERE run_id = ? ORDER BY step DESC, id DESC",
                             ctx.run_id)
  if #cands == 0 and resume.path then cands = { { step = resume.step, path = resume.path } } end
  if #cands == 0 then
    error(string.format("run %d has no checkpoint to resume from (train.checkpoint_every)", ctx.run_id), 0)
  end
  local row = ctx.db:query("SELECT config_hash, step FROM runs WHERE id = ?", ctx.run_id)[1] or {}
  -- A run logged before checkpoints carried an identity: accept files
  -- without one, still checking the step and, where present, the checksum.
  ctx.legacy_ok = true
  for _, cnd in ipairs(cands) do
    if cnd.path:find(ctx.run_uid or "\0", 1, true) then ctx.legacy_ok = false end
  end
  local info, used, reasons = nil, nil, {}
  for _, cand in ipairs(cands) do
    local why
    info, why = try_load(ctx, cand, row)
    if info then used = cand; break end
    reasons[#reasons + 1] = string.format("%s: %s", cand.path, why)
    warn(ctx, "checkpoint %s (step %d) is not usable: %s; trying an older one", cand.path, cand.step, why)
  end
  if not info then
    error(string.format("run %d: no usable checkpoint (%s)", ctx.run_id, table.concat(reasons, "; ")), 0)
  end
  if used ~= cands[1] then
    -- The rows of the files that failed leave the table (the files stay as
    -- they are): they are no checkpoints of this run, and retention, which
    -- keeps the newest rows, must not keep them over the ones written next.
    for _, cand in ipairs(cands) do
      if cand == used then break end
      if cand.id then ctx.db:query("DELETE FROM checkpoints WHERE id = ?", cand.id) end
    end
    warn(ctx, "resuming from the older checkpoint %s (step %d); the newer ones' rows are removed from the "
         .. "checkpoints table, their files left in place", used.path, used.step)
  end
  if (row.step or 0) > info.step then
    warn(ctx, "resuming from step %d; the run log holds metrics up to step %d, which the steps after %d log again",
         info.step, row.step, info.step)
  end
  ctx.start_step = info.step
  ctx.step = info.step
  ctx.last_checkpoint = info.step
  -- The best validation loss so far comes from the log.
  local m = ctx.db:query("SELECT min, last FROM metric_summary WHERE run_id = ? AND key = 'val/loss'", ctx.run_id)[1]
  if m then ctx.best_val, ctx.final_val = m.min, m.last end
end

-- `gqe resume RUN_ID`: the run's config from its row; train.run claims the
-- row (atomically: a second resume of a running run is refused), restores
-- the newest valid checkpoint and trains on in the same row.
function checkpoint.resume(db, run_id)
  if not checkpoint.available() then
    error("gqe resume needs checkpoint support (gqe.checkpoint.save / load), which this build " ..
          "of gqe does not have; the run can only be started again", 0)
  end
  local r = db:query([[SELECT r.id, r.name, r.status, r.config, e.name AS experiment FROM runs r
    JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?]], run_id)[1]
  if not r then error(string.format("no run %d in this database (see `gqe runs`)", run_id), 0) end
  if r.status == "finished" then error(string.format("run %d already finished", run_id), 0) end
  -- A dead process's run becomes crashed, so it can be claimed. Only rank 0
  -- of a data-parallel resume judges the row: the others may read it after
  -- rank 0 has already claimed it.
  if r.status == "running" and gqe.dist.env().rank == 0 then db:mark_crashed(gqe.hostname(), 600) end
  local ck = db:query("SELECT count(*) AS n FROM checkpoints WHERE run_id = ?", run_id)[1]
  if ck.n == 0 then error(string.format("run %d has no checkpoint to resume from (train.checkpoint_every)", run_id), 0) end
  local c = require("gqe.models").stored_config(r.config, "run " .. run_id)
  return require("gqe.train").run(c, { db = db, experiment = r.experiment, name = r.name,
                                       resume = { run_id = run_id } })
end

return checkpoint
