-- gqe.experiment{name, base, grid, arms, seeds}: the cartesian product of
-- the grid's values (and of arms, a list of override tables, when given)
-- and the seeds, each run named from the keys that distinguish it, skipped
-- when the database already holds it finished with the same config, run one
-- at a time in this process or --jobs N at once as separate processes.
local gqe = require "gqe"
local config = require "gqe.config"
local json = require "gqe.json"
local results = require "gqe.results"
local train = require "gqe.train"
local shard = require "gqe.shard"
local placement = require "gqe.placement"

local experiment = {}

local fail = require "gqe.fail"

-- grid may be {["model.k"] = {1, 2}} (axes in sorted key order) or a list
-- {{"model.k", {1, 2}}, ...} (axes in the given order).
local function grid_axes(grid)
  local axes = {}
  if grid == nil then return axes end
  if type(grid) ~= "table" then fail("experiment grid must be a table, got %s", type(grid)) end
  if #grid > 0 then
    for i, ax in ipairs(grid) do
      if type(ax) ~= "table" or type(ax[1]) ~= "string" or type(ax[2]) ~= "table" then
        fail("experiment grid[%d] must be {\"section.key\", {values...}}", i)
      end
      axes[#axes + 1] = { key = ax[1], values = ax[2] }
    end
  else
    for _, k in ipairs(config.sorted_keys(grid)) do
      if type(k) ~= "string" then fail("experiment grid keys must be strings like \"model.k\"") end
      if type(grid[k]) ~= "table" then fail("experiment grid[\"%s\"] must be a list of values", k) end
      axes[#axes + 1] = { key = k, values = grid[k] }
    end
  end
  for _, ax in ipairs(axes) do
    if #ax.values == 0 then fail("experiment grid[\"%s\"] has no values", ax.key) end
    -- Reject unknown keys at once, naming the valid ones.
    config.set({}, ax.key, ax.values[1])
  end
  return axes
end

local function value_text(v)
  if type(v) == "number" then return json.number(v) end
  return tostring(v)
end

-- The list of runs {name, config, varied = {key = value}} an experiment
-- definition expands to, with the overrides applied to every run. An
-- override of a grid key replaces that axis; train.seed replaces the seeds.
function experiment.expand(def, overrides)
  if type(def) ~= "table" then fail("gqe.experiment takes a table {name=, base=, grid=, seeds=}") end
  local allowed = { name = true, base = true, grid = true, arms = true, seeds = true, db = true, jobs = true }
  for k in pairs(def) do
    if not allowed[k] then
      fail("unknown key '%s' in gqe.experiment; valid keys: arms, base, db, grid, jobs, name, seeds", tostring(k))
    end
  end
  if type(def.name) ~= "string" or def.name == "" then fail("gqe.experiment needs name = \"...\" (a string)") end
  local base = config.deepcopy(def.base or {})
  local axes = grid_axes(def.grid)
  local seeds = def.seeds or { base.train and base.train.seed or 1 }
  if type(seeds) ~= "table" or #seeds == 0 then fail("experiment seeds must be a non-empty list of integers") end
  local arms = def.arms or { {} }
  if type(arms) ~= "table" or #arms == 0 then fail("experiment arms must be a non-empty list of {[\"section.key\"] = value} tables") end

  -- Overrides: typed by the schema, then applied to base, or to the axis.
  local ov = {}
  for _, kv in ipairs(overrides or {}) do
    local tmp = config.set({}, kv[1], kv[2])
    local sec, key = kv[1]:match("^([%w_]+)%.([%w_]+)$")
    ov[#ov + 1] = { kv[1], tmp[sec][key] }
  end
  for _, kv in ipairs(ov) do
    local on_axis = false
    for _, ax in ipairs(axes) do
      if ax.key == kv[1] then ax.values = { kv[2] }; on_axis = true end
    end
    if kv[1] == "train.seed" then seeds = { kv[2] }; on_axis = true end
    if not on_axis then config.set(base, kv[1], kv[2]) end
  end
  for _, arm in ipairs(arms) do
    for k, v in pairs(arm) do config.set({}, k, v) end
  end

  -- Which keys name a run: grid axes with more than one value, arm keys, seed.
  local name_keys, seen = {}, {}
  for _, arm in ipairs(arms) do
    for _, k in ipairs(config.sorted_keys(arm)) do
      if not seen[k] then seen[k] = true; name_keys[#name_keys + 1] = k end
    end
  end
  for _, ax in ipairs(axes) do
    if not seen[ax.key] then seen[ax.key] = true; name_keys[#name_keys + 1] = ax.key end
  end
  name_keys[#name_keys + 1] = "train.seed"
  local short = results.short_names(name_keys)

  local runs = {}
  local function emit(arm, point)
    for _, seed in ipairs(seeds) do
      local c = config.deepcopy(base)
      local varied = {}
      for k, v in pairs(arm) do config.set(c, k, v); varied[k] = v end
      for _, ax in ipairs(axes) do config.set(c, ax.key, point[ax.key]); varied[ax.key] = point[ax.key] end
      config.set(c, "train.seed", seed)
      varied["train.seed"] = seed
      local parts = {}
      for _, k in ipairs(name_keys) do
        if varied[k] ~= nil then parts[#parts + 1] = short[k] .. "=" .. value_text(varied[k]) end
      end
      local resolved = config.resolve(c)
      runs[#runs + 1] = { name = table.concat(parts, ","), config = resolved, varied = varied,
                          hash = config.hash(resolved) }
    end
  end
  for _, arm in ipairs(arms) do
    local point = {}
    local function rec(i)
      if i > #axes then return emit(arm, point) end
      for _, v in ipairs(axes[i].values) do
        point[axes[i].key] = v
        rec(i + 1)
      end
    end
    rec(1)
  end
  local names = {}
  for _, r in ipairs(runs) do
    if names[r.name] then fail("experiment %s: two runs are both named '%s' (duplicate grid values?)", def.name, r.name) end
    names[r.name] = true
  end
  return runs
end

local function fmt_loss(v) return v and string.format("%.4f", v) or "-" end

-- The path of the running executable (the host, or lua5.4 with gqe.so).
local function self_exe()
  local p = io.popen("readlink /proc/" .. gqe.pid() .. "/exe 2>/dev/null")
  local exe = p and p:read("l")
  if p then p:close() end
  return exe
end

-- A fresh private directory (mktemp -d: created exclusively, mode 0700), so
-- nobody can plant a link where the job files go.
local function tmpdir()
  local p = io.popen("mktemp -d 2>/dev/null")
  local d = p and p:read("l")
  if p then p:close() end
  if not d or d == "" then error("cannot create a temporary directory for the workers (mktemp -d failed)", 0) end
  return d
end

local function cpu_count()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("l") or "")
  if p then p:close() end
  return n or 1
end

-- Argv that runs `gqe __run --db DB FILE` with the same program (the host,
-- or a stock Lua interpreter that loads gqe.so again). Each of the N
-- workers gets cores/N OpenMP threads unless OMP_NUM_THREADS is set:
-- N processes spinning N*cores threads run several times slower.
-- env: more VAR=value settings for the worker (its GPUs).
function experiment.worker_argv(db_path, job_file, jobs, env)
  local exe = self_exe() or "gqe"
  local argv = { "env", table.unpack(env or {}) }
  if not os.getenv("OMP_NUM_THREADS") then
    local threads = math.max(1, cpu_count() // (jobs or 1))
    argv[#argv + 1] = "OMP_NUM_THREADS=" .. threads
    argv[#argv + 1] = "OPENBLAS_NUM_THREADS=" .. threads
  end
  if #argv == 1 then argv = {} end
  if exe:match("/lua[%d.]*$") then
    for _, a in ipairs { exe, "-e", string.format("os.exit(require('gqe').cli.main('__run', {'--db', %q, %q}))",
                                                   db_path, job_file) } do argv[#argv + 1] = a end
  else
    for _, a in ipairs { exe, "__run", "--db", db_path, job_file } do argv[#argv + 1] = a end
  end
  return argv
end

-- Worker side of --jobs: reads the job file, trains, writes the summary
-- next to it (FILE.out.json). Returns the exit code.
function experiment.run_job(db_path, job_file)
  local f = assert(io.open(job_file, "r"))
  local job = json.decode(f:read("a"))
  f:close()
  -- Several workers share the terminal: progress at evaluations only.
  local ok, res = pcall(train.run, job.config, { db_path = db_path, experiment = job.experiment, name = job.name,
                                                 label = job.label, evals_only = true })
  local out = assert(io.open(job_file .. ".out.json", "w"))
  if ok then
    out:write(json.encode(res))
  else
    out:write(json.encode { status = "failed", error = tostring(res), name = job.name })
  end
  out:close()
  if not ok then
    io.stderr:write(tostring(res), "\n")
    return 1
  end
  return 0
end

local function line(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
  io.stdout:flush()
end

-- Runs the experiment. args: the script's argv (overrides, --jobs N,
-- --dry-run, --db PATH); defaults to the global `arg`.
function experiment.run(def, args)
  args = args or _G.arg or {}
  local overrides, flags = config.parse_args(args, { db = true, jobs = true, shard = true, ["skip-from"] = true,
                                                     gpus = true, ["per-gpu"] = true })
  local runs = shard.apply(experiment.expand(def, overrides), flags, def.name, function(s) line("%s", s) end)
  if #runs == 0 then
    line("experiment %s: nothing to run here", def.name)
    return { experiment = def.name }
  end
  -- GPUs for runs with train.device=cuda: every slot busy unless --jobs says less.
  local gpus = placement.for_sweep(runs, flags, function() return gqe.cuda_device_count() end)
  local jobs = tonumber(flags.jobs or def.jobs or (gpus and gpus:slots()) or 1)
  if not jobs or jobs < 1 or math.tointeger(jobs) == nil then fail("--jobs must be a positive integer, got %s", tostring(flags.jobs)) end
  local n = #runs
  local width = #tostring(n)

  if flags["dry-run"] then
    line("experiment %s: %d runs (dry run, nothing trained)", def.name, n)
    for i, r in ipairs(runs) do
      line("%" .. width .. "d/%d  %-40s  hash %s", i, n, r.name, r.hash)
    end
    runs.dry_run, runs.experiment = true, def.name
    return runs
  end

  local db_path = train.db_path(flags.db or def.db, runs[1].config)
  local db = gqe.db.open(db_path)
  local exp_id = db:experiment(def.name)
  if gqe.signals_install then gqe.signals_install() end

  local summaries, todo = {}, {}
  for i, r in ipairs(runs) do
    local done = db:find_finished(exp_id, r.name, r.hash)
    if done then
      local s = train.summary_from_db(db, done, r.config)
      s.skipped = true
      summaries[i] = s
      line("[%" .. width .. "d/%d] %s: already finished (run %d), val/loss %s - skipped",
           i, n, r.name, done, fmt_loss(s.final_val_loss))
    else
      todo[#todo + 1] = i
    end
  end

  local failures = {}
  local function finished(i, s)
    summaries[i] = s
    local r = runs[i]
    if s.status == "finished" then
      line("[%" .. width .. "d/%d] %s: finished, val/loss %s, %.0f tok/s, %s", i, n, r.name,
           fmt_loss(s.final_val_loss), s.tokens_per_s or 0, train.fmt_time(s.wall_s or 0))
    else
      failures[#failures + 1] = string.format("%s: %s", r.name, s.error or s.status)
      line("[%" .. width .. "d/%d] %s: %s", i, n, r.name, s.error or s.status)
    end
  end

  if jobs == 1 and not flags.gpus then
    for _, i in ipairs(todo) do
      if gqe.interrupted and gqe.interrupted() then break end
      local r = runs[i]
      line("[%" .. width .. "d/%d] %s: started", i, n, r.name)
      local ok, s = pcall(train.run, r.config, { db = db, experiment = def.name, name = r.name,
                                                 label = string.format("[%d/%d %s]", i, n, r.name) })
      if ok then finished(i, s)
      else finished(i, { status = "failed", error = tostring(s), name = r.name }) end
    end
  else
    -- Separate processes writing to the same database (WAL). Workers
    -- print progress at evaluations only; this process one line per run
    -- as it starts and as it ends.
    local running, next_i, dir = {}, 1, tmpdir()
    -- Starts run i, or returns false while the GPUs it needs are taken.
    local function start(i)
      local r = runs[i]
      local need = gpus and placement.need(r.config) or 0
      local got = need > 0 and gpus:acquire(need) or nil
      if need > 0 and not got then return false end
      local c = config.deepcopy(r.config)
      local file = string.format("%s/job%d.json", dir, i)
      local f = assert(io.open(file, "w"))
      f:write(json.encode { config = c, experiment = def.name, name = r.name,
                            label = string.format("[%d/%d %s%s]", i, n, r.name, got and " " .. placement.describe(got) or "") })
      f:close()
      local pid = gqe.spawn(experiment.worker_argv(db_path, file, jobs, got and { placement.env(got) }))
      running[#running + 1] = { pid = pid, i = i, file = file, gpus = got }
      line("[%" .. width .. "d/%d] %s: started %s(pid %d)", i, n, r.name,
           got and ("on " .. placement.describe(got) .. " ") or "", pid)
      return true
    end
    local function reap(slot, code)
      local s
      local f = io.open(slot.file .. ".out.json", "r")
      if f then s = json.decode(f:read("a")); f:close() end
      if not s then
        s = { status = "failed", error = string.format("worker pid %d exited with code %s and left no result",
                                                       slot.pid, tostring(code)) }
      end
      os.remove(slot.file); os.remove(slot.file .. ".out.json")
      if slot.gpus then gpus:release(slot.gpus) end   -- reused whatever the run's end
      finished(slot.i, s)
    end
    local forwarded = false
    while next_i <= #todo or #running > 0 do
      local sig = gqe.interrupted and gqe.interrupted()
      while not sig and #running < jobs and next_i <= #todo and start(todo[next_i]) do
        next_i = next_i + 1
      end
      if #running == 0 then break end
      if sig and not forwarded then
        -- Each worker finishes its step, marks its run killed and exits.
        for _, slot in ipairs(running) do pcall(gqe.kill, slot.pid, sig) end
        forwarded = true
      end
      -- Whichever worker ends first frees its slot. A signal interrupts
      -- the wait (an error): go round again to forward it.
      local ok, code, pid = pcall(gqe.wait, -1)
      if not ok and not (gqe.interrupted and gqe.interrupted()) then error(code, 0) end
      if ok then
        for k, slot in ipairs(running) do
          if slot.pid == pid then
            table.remove(running, k)
            reap(slot, code)
            break
          end
        end
      end
    end
    os.remove(dir)
  end
  db:close()

  local list = { experiment = def.name, db_path = db_path }
  for i = 1, n do if summaries[i] then list[#list + 1] = summaries[i] end end
  if gqe.interrupted and gqe.interrupted() then
    fail("experiment %s interrupted (%s): %d of %d runs done", def.name, gqe.interrupted(), #list, n)
  end
  if #failures > 0 then
    fail("experiment %s: %d of %d runs did not finish:\n  %s", def.name, #failures, n, table.concat(failures, "\n  "))
  end
  return list
end

-- A text table of summaries (used by quickstart and `gqe compare`).
function experiment.print_table(rows, cols)
  local widths, cells = {}, {}
  for j, col in ipairs(cols) do widths[j] = #col[1] end
  for i, row in ipairs(rows) do
    cells[i] = {}
    for j, col in ipairs(cols) do
      local v = row[col[2]]
      local s
      if v == nil then s = "-"
      elseif col[3] then s = string.format(col[3], v)
      else s = tostring(v) end
      cells[i][j] = s
      widths[j] = math.max(widths[j], #s)
    end
  end
  local out = {}
  local function emit(vals)
    local parts = {}
    for j, s in ipairs(vals) do
      parts[j] = j == 1 and s .. string.rep(" ", widths[j] - #s) or string.rep(" ", widths[j] - #s) .. s
    end
    out[#out + 1] = table.concat(parts, "  ")
  end
  local header = {}
  for j, col in ipairs(cols) do header[j] = col[1] end
  emit(header)
  local rule = {}
  for j = 1, #cols do rule[j] = string.rep("-", widths[j]) end
  emit(rule)
  for i = 1, #rows do emit(cells[i]) end
  return table.concat(out, "\n")
end

return experiment
