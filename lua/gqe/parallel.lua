-- Data parallelism for gqe.train: one run over the ranks a launcher started
-- (gqe launch, torchrun-style variables, mpirun, srun). The maths is that
-- of one big batch: a step's global batch is train.batch x train.grad_accum
-- x ranks sequences; rank r's micro-batch a of step s is the data set's
-- batch number (s * grad_accum + a) * ranks + r at train.batch rows, i.e.
-- rows of the step's global batch that no other rank reads, chosen by the
-- seed, the rank and the step alone. Gradients are summed over ranks and
-- micro-batches and divided by their count; routing statistics are the
-- global batch's. Only rank 0 writes the run log and checkpoints.
--
-- A single process (no launcher variables) opens no communicator and
-- loads neither MPI nor NCCL; GQE_DIST=nccl|mpi forces one at world size 1.
local gqe = require "gqe"
local config = require "gqe.config"

local parallel = {}
local P = {}
P.__index = P

local function getenv(name)
  local v = gqe.getenv and gqe.getenv(name) or os.getenv(name)
  return v ~= "" and v or nil
end

-- The run log of ranks other than 0: every call is accepted and nothing is
-- written, so the training loop reads the same on every rank; SELECTs read
-- the database `real` when one is open (a resume finds its checkpoints).
function parallel.follower_db(real)
  return setmetatable({}, { __index = function(_, k)
    if k == "query" then
      return function(_, sql, ...)
        if real and sql:match("^%s*[Ss][Ee][Ll][Ee][Cc][Tt]") then return real:query(sql, ...) end
        return {}
      end
    end
    if k == "begin_run" or k == "experiment" then return function() return 0 end end
    return function() end
  end })
end

-- A binding's error as the user should read it: the core's message alone.
local function call(f, ...)
  local ok, res = pcall(f, ...)
  if not ok then error((tostring(res):gsub("^[^\n]-%.lua:%d+: ", "")), 0) end
  return res
end

-- Opens the job's communicator for config c (resolved) when there is more
-- than one rank, and checks that every rank resolved the same config.
function parallel.setup(c)
  local t = c.train
  local self = setmetatable({ rank = 0, world = 1, accum = t.grad_accum, local_rank = 0 }, P)
  self.zero = t.zero
  local env = call(gqe.dist.env)
  local forced = getenv("GQE_DIST")
  if env.world == 1 and not forced then return self end
  local backend = forced or (t.device == "cuda" and "nccl" or "mpi")
  if backend == "mpi" and t.device == "cuda" then
    error("train.device=cuda runs over NCCL; GQE_DIST=mpi serves only train.device=cpu", 0)
  elseif backend == "nccl" and t.device ~= "cuda" then
    error("NCCL serves train.device=cuda only; CPU ranks run over MPI (mpirun or `gqe launch`)", 0)
  end
  self.comm = call(gqe.dist.open, { backend = backend, timeout = t.dist_timeout })
  self.rank, self.world, self.local_rank = self.comm:rank(), self.comm:world(), self.comm:local_rank()
  self:check_same_config(c)
  self.hosts, self.devices = self:describe(t.device)
  return self
end

-- Each rank hashes its resolved config (overrides and files included); a
-- mismatch stops every rank before training, naming the ranks that differ.
function P:check_same_config(c)
  local mine = config.to_json(c)
  local theirs = self.comm:broadcast_string(mine, 0)
  local flags = {}
  for r = 1, self.world do flags[r] = 0 end
  if theirs ~= mine then flags[self.rank + 1] = 1 end
  flags = self.comm:all_reduce_numbers(flags, "sum")
  local bad = {}
  for r = 1, self.world do if flags[r] > 0 then bad[#bad + 1] = tostring(r - 1) end end
  if #bad > 0 then
    local diff = ""
    if theirs ~= mine then
      local a, b = config.flatten(gqe.json.decode(mine)), config.flatten(gqe.json.decode(theirs))
      for _, k in ipairs(config.sorted_keys(a)) do
        if tostring(a[k]) ~= tostring(b[k]) then
          diff = string.format(" (first difference here: %s = %s, rank 0 has %s)", k, tostring(a[k]), tostring(b[k]))
          break
        end
      end
    end
    error(string.format("rank %d: the config differs between ranks: rank%s %s resolved another config than rank 0%s; "
      .. "every rank must run the same script with the same overrides", self.rank, #bad > 1 and "s" or "",
      table.concat(bad, ", "), diff), 0)
  end
end

-- Host names (distinct, in rank order) and devices of the job, for the runs row.
function P:describe(device)
  local hosts, seen = {}, {}
  for r = 0, self.world - 1 do
    local h = self.comm:broadcast_string(self.rank == r and gqe.hostname() or "", r)
    if not seen[h] then seen[h] = true; hosts[#hosts + 1] = h end
  end
  return table.concat(hosts, ","), string.format("%s x%d", device, self.world)
end

function P:is_root() return self.rank == 0 end

-- The data set's batch number of this rank's micro-batch `micro` (0-based) of `step`.
function P:train_index(step, micro)
  return (step * self.accum + micro) * self.world + self.rank
end
-- Validation batch i is the same global batch, split the same way.
P.val_index = P.train_index

-- Backward of micro-batch `micro`. On several ranks every rank runs it
-- (a NaN loss included: the collectives must match), and the last
-- micro-batch's starts each block's all-reduce as soon as its gradients are
-- final, overlapping the rest of backward.
function P:backward(lm, micro, loss_finite)
  if not self.comm then
    if loss_finite then lm:backward() end
    return
  end
  if self.zero then lm:backward(); return end   -- reduce-scattered after backward
  local last = micro == self.accum - 1
  if last then self.comm:overlap_grads(lm, true) end
  local ok, err = pcall(lm.backward, lm)
  if last then self.comm:overlap_grads(lm, false) end
  if not ok then error(err, 0) end
end

-- The mean gradient of the global batch from the accumulated sums (the
-- all-reduces backward started are waited for in any case).
function P:reduce_grads(lm, use)
  if self.comm and self.zero then return end   -- the sharded optimizer's clip reduces
  if self.comm then
    self.comm:finish_grads(lm, use and 1 / (self.accum * self.world) or 1)
  elseif use and self.accum > 1 then
    gqe.dist.scale_grads(lm, 1 / self.accum)
  end
end

-- Means over the ranks of a list of numbers, and whether any rank saw a
-- signal (so that all of them stop after the same step).
function P:agree(values, signalled)
  if not self.comm then return values, signalled end
  local n = #values
  local v = {}
  for i = 1, n do v[i] = values[i] end
  v[n + 1] = signalled and 1 or 0
  v = self.comm:all_reduce_numbers(v, "sum")
  local out = {}
  for i = 1, n do out[i] = v[i] / self.world end
  return out, v[n + 1] > 0 and (signalled or "SIGTERM") or false
end

-- With micro-batches, the balanced router's bias step needs the load of
-- all of them: a table to sum them in (nil when the last forward's will do).
function P:balanced_loads(c)
  if self.accum == 1 or c.model.attention ~= "gqe" or c.model.router ~= "balanced" then return nil end
  return {}
end
function P.add_loads(loads, lm, layers)
  local i = 0
  for l = 1, layers do
    local counts = lm:usage(l)
    if type(counts) == "userdata" then counts = counts:totable() end
    for e = 1, #counts do i = i + 1; loads[i] = (loads[i] or 0) + counts[e] end
  end
end

-- The optimizer: opt itself, or with train.zero on several ranks its
-- sharded twin (ZeRO-1) behind the same methods; make() builds another opt.
-- Checkpoints keep the unsharded format: gather() returns a whole
-- optimizer for the time of a save (every rank calls it), full() an empty
-- one to load into and scatter(full) takes this rank's shard of it.
function P:optimizer(opt, lm, make)
  if not (self.comm and self.zero) then return opt end
  local z = gqe.dist.zero(self.comm, opt)
  opt:close()
  local par = self
  local w = { sharded = z }
  function w.clip(_, max_norm) return z:reduce(1 / (par.accum * par.world), max_norm) end
  function w.step(_, lr) z:step(lr) end
  function w.zero_grad() lm:zero_grad() end
  function w.full() return make() end
  function w.gather() local f = make(); z:gather(f); return f end
  function w.scatter(_, f) z:scatter(f) end
  return w
end

-- What ranks other than 0 do at a checkpoint: help gather sharded state.
function P:follower_checkpoint()
  if not (self.comm and self.zero) then return false end
  return function(ctx, step)
    ctx.opt:gather():close()
    ctx.last_checkpoint = step
  end
end

-- The routing statistics of every forward become the global ones.
function P:share_routing(lm, on)
  if self.comm then self.comm:share_routing(lm, on) end
end

-- The run's hash: a world size other than 1 changes the global batch.
function P:hash(h, c)
  -- config.hash already holds the world of a run that asked for it (train.nproc)
  if self.world == 1 or (c and c.train.nproc == self.world) then return h end
  return config.fnv1a64(h .. "|world=" .. self.world)
end

-- The ranks leave together when the run ended the same way on all of them
-- (finished, killed, diverged): none exits while rank 0 still writes the
-- checkpoint and the log, for mpirun or srun would then end it.
function P:close(status)
  if not self.comm then return end
  if status ~= "failed" then pcall(self.comm.barrier, self.comm) end
  self.comm:close()
  self.comm = nil
end

return parallel
