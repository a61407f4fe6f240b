-- `gqe launch --nproc N FILE.lua [overrides]`: one data-parallel run on N
-- ranks of this node. GPU ranks (NCCL) are started here, one per GPU, with
-- torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
-- MASTER_PORT); CPU ranks (MPI) are started by mpirun, MPI's own launcher.
-- SIGINT and SIGTERM reach every rank (they stop together after one
-- checkpoint). A rank that dies makes the launcher stop the others and
-- tell rank 0 which rank it was, so the run's row names it; ranks that
-- survive it longer than --timeout seconds are killed.
local gqe = require "gqe"

local launch = {}

local usage = "usage: gqe launch --nproc N [--backend nccl|mpi] [--timeout SECONDS] [--port PORT] FILE.lua [section.key=value ...]"

local fail = require "gqe.fail"

local self_exe = require("gqe.paths").self_exe

local function on_path(prog)
  local p = io.popen("command -v " .. prog .. " 2>/dev/null")
  local path = p and p:read("l")
  if p then p:close() end
  return path ~= "" and path or nil
end

-- Flags before the script; everything from the script on is the rank's argv.
function launch.parse(args)
  local o = { timeout = 60 }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--help" or a == "-h" then return nil end
    local key, val = a:match("^%-%-([%w-]+)=(.*)$")
    if not key and a:match("^%-%-") then key, val = a:sub(3), args[i + 1]; i = i + 1 end
    if not key then break end
    if val == nil then fail("gqe launch: --%s needs a value\n%s", key, usage) end
    if key == "nproc" then
      o.nproc = tonumber(val)
      if not o.nproc or o.nproc < 1 or o.nproc % 1 ~= 0 then fail("gqe launch: --nproc must be a positive integer, got '%s'", val) end
    elseif key == "backend" then
      if val ~= "nccl" and val ~= "mpi" then fail("gqe launch: --backend must be nccl or mpi, got '%s'", val) end
      o.backend = val
    elseif key == "timeout" then
      o.timeout = tonumber(val)
      if not o.timeout or o.timeout <= 0 then fail("gqe launch: --timeout must be a positive number of seconds, got '%s'", val) end
    elseif key == "port" then
      o.port = tonumber(val)
      if not o.port or o.port < 1 or o.port > 65535 then fail("gqe launch: --port must be in 1..65535, got '%s'", val) end
    else
      fail("gqe launch: unknown flag --%s\n%s", key, usage)
    end
    i = i + 1
  end
  if not o.nproc then fail("gqe launch: --nproc N is required\n%s", usage) end
  o.script = args[i]
  if not o.script then fail("gqe launch: no script given\n%s", usage) end
  o.rest = table.move(args, i, #args, 1, {})
  if not o.backend then o.backend = (gqe.cuda_available and gqe.cuda_available()) and "nccl" or "mpi" end
  return o
end

-- The processes whose parent is pid (the ranks mpirun started).
local function children_of(pid)
  local out = {}
  local p = io.popen("cat /proc/[0-9]*/stat 2>/dev/null")
  if not p then return out end
  for line in p:lines() do
    local child, parent = line:match("^(%d+) %(.*%) %a (%d+) ")
    if child and tonumber(parent) == pid then out[#out + 1] = tonumber(child) end
  end
  p:close()
  return out
end

-- Waits for the children, forwarding signals (to targets() when given:
-- the ranks themselves); returns the first failing rank's exit code (0 when
-- all finished). on_fault(pid, code) hears of the first child that failed
-- on its own (not after a forwarded signal).
local function supervise(pids, timeout, on_fault, targets)
  local alive, n = {}, 0
  for _, pid in pairs(pids) do alive[pid] = true; n = n + 1 end
  local rc, forwarded, deadline = 0, false, nil
  while n > 0 do
    local sig = not forwarded and gqe.interrupted()
    if sig then
      -- Forwarded as SIGUSR1 / SIGUSR2: a clean stop that never counts as
      -- a rank's second signal (a Ctrl-C in a terminal reaches the ranks
      -- directly too).
      local to = targets and targets() or {}
      if #to == 0 then for pid in pairs(alive) do to[#to + 1] = pid end end
      for _, pid in ipairs(to) do pcall(gqe.kill, pid, sig == "SIGINT" and "SIGUSR1" or "SIGUSR2") end
      forwarded = true
    end
    local ok, code, pid = pcall(gqe.wait, -1, true)
    if ok and pid and not alive[pid] then
      -- an adopted orphan (a rank mpirun left behind): reaped, nothing more
    elseif ok and pid then
      alive[pid] = nil
      n = n - 1
      if code ~= 0 and rc == 0 then
        rc = code
        -- After a forwarded signal every rank is already stopping (writing
        -- its checkpoint): another signal would cut that short.
        if not forwarded then
          if on_fault then on_fault(pid, code) end
          for other in pairs(alive) do pcall(gqe.kill, other, "SIGTERM") end
        end
        deadline = gqe.clock() + timeout
      end
    else
      gqe.sleep(0.05)
    end
    if deadline and gqe.clock() > deadline then
      for other in pairs(alive) do pcall(gqe.kill, other, "SIGKILL") end
      deadline = nil
    end
  end
  -- Ranks left behind by their launcher end soon (they were signalled):
  -- reap them, so that no run looks alive through a zombie.
  local stop = gqe.clock() + timeout
  while gqe.clock() < stop do
    local ok, _, pid = pcall(gqe.wait, -1, true)
    if not ok then break end          -- no children left
    if not pid then gqe.sleep(0.05) end
  end
  return rc
end

local function describe_exit(code)
  if code > 128 then
    local names = { [9] = "SIGKILL", [15] = "SIGTERM", [2] = "SIGINT", [11] = "SIGSEGV", [6] = "SIGABRT" }
    return "was killed by " .. (names[code - 128] or ("signal " .. (code - 128)))
  end
  return "exited with code " .. code
end

local function run_mpi(o, exe)
  local mpirun = on_path("mpirun")
  if not mpirun then
    fail("gqe launch: CPU ranks run over MPI and are started by mpirun, which is not installed "
      .. "(apt-get install openmpi-bin libopenmpi-dev)")
  end
  local argv = { mpirun, "-np", tostring(o.nproc), "--oversubscribe" }
  local id = io.popen("id -u 2>/dev/null")
  if id and id:read("l") == "0" then argv[#argv + 1] = "--allow-run-as-root" end   -- containers, CI
  if id then id:close() end
  argv[#argv + 1] = exe
  for _, a in ipairs(o.rest) do argv[#argv + 1] = a end
  gqe.signals_install()
  local pid = gqe.spawn(argv)
  -- Signals go to the ranks directly: through mpirun they arrive late, and
  -- mpirun then ends the job once they have stopped together.
  return supervise({ pid }, o.timeout, nil, function() return children_of(pid) end)
end

local function run_nccl(o, exe)
  local port = o.port or tonumber(gqe.getenv("MASTER_PORT") or "") or 29500
  local faults = os.tmpname()
  local pids, rank_of = {}, {}
  gqe.signals_install()
  for r = 0, o.nproc - 1 do
    local argv = { "env", "RANK=" .. r, "WORLD_SIZE=" .. o.nproc, "LOCAL_RANK=" .. r, "LOCAL_WORLD_SIZE=" .. o.nproc,
                   "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" .. port, "GQE_LAUNCH_FAULTS=" .. faults, exe }
    for _, a in ipairs(o.rest) do argv[#argv + 1] = a end
    local pid = gqe.spawn(argv)
    pids[#pids + 1] = pid
    rank_of[pid] = r
  end
  local rc = supervise(pids, o.timeout, function(pid, code)
    local msg = string.format("rank %d %s", rank_of[pid], describe_exit(code))
    local f = io.open(faults, "w")
    if f then f:write(msg); f:close() end
    io.stderr:write("gqe launch: " .. msg .. "; stopping the other ranks\n")
  end)
  os.remove(faults)
  return rc
end

function launch.main(args)
  local o = launch.parse(args)
  if not o then io.stdout:write(usage, "\n"); return 0 end
  gqe.dist.adopt_orphans()
  local exe = self_exe()
  if not exe or exe:match("/lua[%d.]*$") then fail("gqe launch must be run by the gqe program (build/gqe)") end
  if o.backend == "mpi" then return run_mpi(o, exe) end
  return run_nccl(o, exe)
end

-- For rank 0's failure message: what the launcher saw (a rank that died).
function launch.fault_note()
  local path = gqe.getenv("GQE_LAUNCH_FAULTS")
  local f = path and io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s ~= "" and s or nil
end

return launch
