-- Shard slicing for sweeps over many nodes: shard I of N (0-based) takes
-- runs I+1, I+1+N, I+1+2N, ... of the experiment's full expansion. The
-- slice depends only on the expansion's order, never on what has run, so a
-- rerun of a shard takes the same runs, every run is in exactly one shard,
-- and neighbouring configs (the seeds of one arm) spread over the nodes.
-- Pure: the environment is passed in as a getenv function.
local shard = {}

local fail = require "gqe.fail"

local function int(s) return math.tointeger(tonumber(s or "")) end

-- "I/N" -> I, N; an error naming the flag for anything else.
function shard.parse(spec, what)
  what = what or "--shard"
  local i, n = tostring(spec):match("^%s*(%d+)%s*/%s*(%d+)%s*$")
  i, n = int(i), int(n)
  if not i or not n then fail("%s must be I/N (shard I of N, counting from 0), got '%s'", what, tostring(spec)) end
  if n < 1 then fail("%s: the shard count must be at least 1, got %d", what, n) end
  if i >= n then fail("%s: shard index %d is out of range for %d shards (0..%d)", what, i, n, n - 1) end
  return i, n
end

-- The shard this process takes: {index, count, source}, from --shard, else
-- a Slurm array task (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
-- SLURM_ARRAY_TASK_COUNT), else a Slurm task (SLURM_PROCID of SLURM_NTASKS,
-- when there are several), else nil (every run).
function shard.from(flag, getenv)
  getenv = getenv or os.getenv
  if flag ~= nil and flag ~= false then
    local i, n = shard.parse(flag)
    return { index = i, count = n, source = "--shard" }
  end
  local id, count = getenv("SLURM_ARRAY_TASK_ID"), getenv("SLURM_ARRAY_TASK_COUNT")
  if id and count then
    local min = getenv("SLURM_ARRAY_TASK_MIN") or "0"
    local what = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
    if not int(id) or not int(count) or not int(min) then
      fail("%s: expected integers, got %s, %s (SLURM_ARRAY_TASK_MIN %s)", what, id, count, min)
    end
    -- An array with a step (--array=0-15:4) has ids that do not fill 0..N-1.
    local step = int(getenv("SLURM_ARRAY_TASK_STEP") or "1") or 1
    if (int(id) - int(min)) % step ~= 0 then fail("%s: task id %s is not on the array's step %d", what, id, step) end
    local i, n = shard.parse(string.format("%d/%s", (int(id) - int(min)) // step, count), what)
    return { index = i, count = n, source = what }
  end
  local rank, ntasks = getenv("SLURM_PROCID"), getenv("SLURM_NTASKS")
  if rank and ntasks and int(ntasks) and int(ntasks) > 1 then
    local what = "SLURM_PROCID/SLURM_NTASKS"
    local i, n = shard.parse(string.format("%s/%s", rank, ntasks), what)
    return { index = i, count = n, source = what }
  end
  return nil
end

-- Positions (1-based, ascending) of the runs of shard s among n runs.
function shard.positions(n, s)
  local out = {}
  if not s then
    for p = 1, n do out[p] = p end
    return out
  end
  for p = s.index + 1, n, s.count do out[#out + 1] = p end
  return out
end

-- The runs of a list that shard s takes, in order.
function shard.select(runs, s)
  local out = {}
  for _, p in ipairs(shard.positions(#runs, s)) do out[#out + 1] = runs[p] end
  return out
end

-- "shard 2/4 (from SLURM_ARRAY_TASK_ID/...)": 1-based for people.
function shard.describe(s)
  return string.format("shard %d of %d (index %d, from %s)", s.index + 1, s.count, s.index, s.source)
end

-- The set {[run name .. "\0" .. config hash] = true} of runs finished in
-- experiment `name` of the run log at path (--skip-from MERGED.db). The log
-- is read from a private copy: it often sits on a shared file system, where
-- many nodes opening one SQLite file at once is unsafe.
function shard.finished_in(path, name, copy_to)
  local gqe = require "gqe"
  if not copy_to then copy_to = os.tmpname(); os.remove(copy_to) end
  local src = io.open(path, "rb")
  if not src then fail("--skip-from: %s does not exist", path) end
  local function copy(from, to)
    local out = assert(io.open(to, "wb"))
    while true do
      local chunk = from:read(1 << 20)
      if not chunk then break end
      out:write(chunk)
    end
    out:close()
    from:close()
  end
  copy(src, copy_to)
  local wal = io.open(path .. "-wal", "rb")
  if wal then copy(wal, copy_to .. "-wal") end
  local ok, db = pcall(gqe.db.open, copy_to)
  if not ok then fail("--skip-from %s: %s", path, tostring(db)) end
  local done = {}
  local rows = db:query([[SELECT r.name, r.config_hash FROM runs r JOIN experiments e ON e.id = r.experiment_id
                           WHERE e.name = ? AND r.status = 'finished']], name)
  db:close()
  for _, r in ipairs(rows) do done[r.name .. "\0" .. (r.config_hash or "")] = true end
  for _, f in ipairs { copy_to, copy_to .. "-wal", copy_to .. "-shm" } do os.remove(f) end
  return done
end

-- The runner's hook: the runs this process takes (its shard, less those
-- finished in --skip-from), saying what it left out through say(text).
function shard.apply(runs, flags, name, say)
  local s = shard.from(flags.shard)
  local out = shard.select(runs, s)
  if s then say(string.format("experiment %s: %s: %d of %d runs", name, shard.describe(s), #out, #runs)) end
  local from = flags["skip-from"]
  if from then
    if from == true then fail("--skip-from needs a run log: --skip-from MERGED.db") end
    local done, left = shard.finished_in(from, name), {}
    for _, r in ipairs(out) do
      if not done[r.name .. "\0" .. (r.hash or "")] then left[#left + 1] = r end
    end
    say(string.format("experiment %s: %d of %d runs already finished in %s - skipped", name, #out - #left, #out, from))
    out = left
  end
  return out
end

-- Flags of the sweep runner that take a value (for config.parse_args).
shard.flags_with_value = { shard = true, ["skip-from"] = true }

return shard
