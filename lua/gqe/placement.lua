-- GPU placement for sweeps on one node: which GPUs a sweep may use
-- (--gpus, default every visible one), how many runs share one
-- (--per-gpu M), and which GPUs the next run gets. A run that asks for
-- several GPUs (train.nproc ranks, one GPU each) takes that many whole
-- GPUs; runs start in the expansion's order, each when its GPUs are free.
-- Pure: device counts and the environment are passed in.
local placement = {}

local fail = require "gqe.fail"

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- The GPUs this process sees, as the ids a child's CUDA_VISIBLE_DEVICES
-- names them by: CUDA_VISIBLE_DEVICES' entries (indices, UUIDs or MIG
-- ids) when it is set, else 0..count-1. count is the CUDA device count
-- (0 without a driver or GPU), which already honours CUDA_VISIBLE_DEVICES.
function placement.visible(count, getenv)
  getenv = getenv or os.getenv
  local ids, cvd = {}, getenv("CUDA_VISIBLE_DEVICES")
  if cvd then
    for entry in (cvd .. ","):gmatch("([^,]*),") do
      if trim(entry) ~= "" and #ids < count then ids[#ids + 1] = trim(entry) end
    end
  end
  for i = #ids, count - 1 do ids[#ids + 1] = tostring(i) end
  return ids
end

-- --gpus "0,2" (positions among the visible GPUs, counting from 0, as CUDA
-- numbers them) -> their ids; nil spec: every visible GPU.
function placement.select(spec, visible)
  if spec == nil then return visible end
  local where = #visible == 0 and "no GPU is visible (CUDA device count 0)" or
                string.format("%d GPU%s visible: 0..%d", #visible, #visible == 1 and " is" or "s are", #visible - 1)
  if spec == true or trim(tostring(spec)) == "" then fail("--gpus needs a list like 0,1,2,3 (%s)", where) end
  local out, seen = {}, {}
  for entry in (tostring(spec) .. ","):gmatch("([^,]*),") do
    local i = math.tointeger(tonumber(trim(entry)))
    if not i or i < 0 then fail("--gpus %s: '%s' is not a GPU number (%s)", spec, trim(entry), where) end
    if i >= #visible then fail("--gpus %s: GPU %d does not exist (%s)", spec, i, where) end
    if seen[i] then fail("--gpus %s: GPU %d is listed twice", spec, i) end
    seen[i] = true
    out[#out + 1] = visible[i + 1]
  end
  return out
end

-- --per-gpu M -> M (a positive integer; default 1).
function placement.per_gpu(spec)
  if spec == nil then return 1 end
  local m = math.tointeger(tonumber(tostring(spec)))
  if not m or m < 1 then fail("--per-gpu must be a positive integer (runs sharing one GPU), got '%s'", tostring(spec)) end
  return m
end

-- A pool of GPUs with per_gpu slots each.
local Pool = {}
Pool.__index = Pool

function placement.pool(gpus, per_gpu)
  local p = setmetatable({ gpus = gpus, per_gpu = per_gpu or 1, load = {} }, Pool)
  for _, g in ipairs(gpus) do p.load[g] = 0 end
  return p
end

-- Runs that fit at once when every run needs one GPU.
function Pool:slots() return #self.gpus * self.per_gpu end

-- Fails at once for a run that could never start here.
function Pool:check(need, what)
  if need > #self.gpus then
    fail("%s asks for %d GPUs (train.nproc) but the sweep has %d (--gpus %s)", what, need, #self.gpus,
         #self.gpus > 0 and table.concat(self.gpus, ",") or "none")
  end
end

-- The GPUs for a run needing `need` of them, now, or nil while they are
-- taken. One GPU: the least loaded with a free slot (the first on a tie),
-- so runs spread before they share. Several: that many idle GPUs, whole.
function Pool:acquire(need)
  need = need or 1
  if need == 1 then
    local best
    for _, g in ipairs(self.gpus) do
      if self.load[g] < self.per_gpu and (not best or self.load[g] < self.load[best]) then best = g end
    end
    if not best then return nil end
    self.load[best] = self.load[best] + 1
    return { best }
  end
  local idle = {}
  for _, g in ipairs(self.gpus) do
    if self.load[g] == 0 and #idle < need then idle[#idle + 1] = g end
  end
  if #idle < need then return nil end
  for _, g in ipairs(idle) do self.load[g] = self.per_gpu end
  return idle
end

function Pool:release(got)
  if #got == 1 then
    self.load[got[1]] = self.load[got[1]] - 1
  else
    for _, g in ipairs(got) do self.load[g] = 0 end
  end
end

-- The number of GPUs a run's resolved config asks for.
function placement.need(cfg)
  local t = cfg and cfg.train or {}
  if t.device ~= "cuda" then return 0 end
  return math.tointeger(t.nproc) or 1
end

-- "CUDA_VISIBLE_DEVICES=2,3" for a child placed on those GPUs.
function placement.env(got)
  return "CUDA_VISIBLE_DEVICES=" .. table.concat(got, ",")
end

-- "GPU 1" / "GPUs 2,3" for progress lines.
function placement.describe(got)
  return (#got == 1 and "GPU " or "GPUs ") .. table.concat(got, ",")
end

-- The pool for a sweep's runs from --gpus and --per-gpu, or nil when no
-- run needs a GPU, or none is visible and --gpus was not given (each run
-- then fails with train's own message). count: the CUDA device count, or
-- a function returning it.
function placement.for_sweep(runs, flags, count, getenv)
  local need_any = false
  for _, r in ipairs(runs) do
    if placement.need(r.config) > 0 then need_any = true end
  end
  if not need_any then
    if flags.gpus ~= nil or flags["per-gpu"] ~= nil then
      fail("--%s: no run of this experiment uses a GPU (set train.device=cuda)", flags.gpus ~= nil and "gpus" or "per-gpu")
    end
    return nil
  end
  if type(count) == "function" then count = count() end   -- asked only for GPU sweeps
  if count == 0 and flags.gpus == nil then return nil end
  local pool = placement.pool(placement.select(flags.gpus, placement.visible(count, getenv)),
                              placement.per_gpu(flags["per-gpu"]))
  for _, r in ipairs(runs) do pool:check(placement.need(r.config), "run " .. r.name) end
  return pool
end

-- A placer for the sweep runner (acquire(run) -> slot or nil, release(slot),
-- size) that puts GPU runs on the pool's GPUs: it takes a slot of `inner`
-- (the runner's own: how many runs at once, their threads) and, for a run
-- that needs GPUs, those GPUs too; the slot's env pins the worker to them
-- and its label names them.
function placement.placer(pool, inner)
  return {
    size = inner.size,
    acquire = function(_, run)
      local slot = inner:acquire(run)
      if not slot then return nil end
      local need = placement.need(run.config)
      if need == 0 then return { inner = slot, env = slot.env, label = slot.label } end
      local got = pool:acquire(need)
      if not got then inner:release(slot); return nil end
      local env = { placement.env(got) }
      for _, e in ipairs(slot.env or {}) do env[#env + 1] = e end
      return { inner = slot, gpus = got, env = env, label = placement.describe(got) }
    end,
    release = function(_, slot)
      if slot.gpus then pool:release(slot.gpus) end
      inner:release(slot.inner)
    end,
  }
end

-- Flags of the sweep runner that take a value (for config.parse_args).
placement.flags_with_value = { gpus = true, ["per-gpu"] = true }

return placement
