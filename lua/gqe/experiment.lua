-- gqe.experiment{name, base, grid, arms, seeds}: the cartesian product of
-- the grid's values (and of arms, a list of override tables, when given)
-- and the seeds, each run named from the keys that distinguish it.
--
-- Running an experiment again continues it, like make: a run already
-- finished with the same config is skipped, a killed or crashed one resumes
-- from its last checkpoint in its own row (from step 0 in that row when it
-- has none), and only runs never started get new rows. --restart starts
-- unfinished runs afresh. Before the first run, a problem that would fail
-- them all (data, device) is reported once. gqe/sweep.lua runs them: one
-- at a time in this process or --jobs N at once as worker processes.
local gqe = require "gqe"
local config = require "gqe.config"
local flags = require "gqe.flags"
local json = require "gqe.json"
local results = require "gqe.results"
local sweep = require "gqe.sweep"
local train = require "gqe.train"
local shard = require "gqe.shard"
local placement = require "gqe.placement"

local experiment = {}

local fail = require "gqe.fail"
local line, fmt_loss = sweep.line, sweep.fmt_loss

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
  -- A base override that changes the resolved base names the runs too, so
  -- they never share a name with the runs of the unchanged definition.
  local base_before = config.flatten(config.resolve(config.deepcopy(base)))
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
  local base_after = config.flatten(config.resolve(config.deepcopy(base)))
  local overridden = {}
  for _, kv in ipairs(ov) do
    local k = kv[1]
    if k ~= "train.seed" and not config.unhashed[k] and base_after[k] ~= base_before[k] then
      overridden[#overridden + 1] = k
    end
  end
  for _, arm in ipairs(arms) do
    for k, v in pairs(arm) do config.set({}, k, v) end
  end

  -- Which keys name a run: arm keys, grid axes (also when an override left
  -- one value), overridden base keys, seed.
  local name_keys, seen = {}, {}
  for _, arm in ipairs(arms) do
    for _, k in ipairs(config.sorted_keys(arm)) do
      if not seen[k] then seen[k] = true; name_keys[#name_keys + 1] = k end
    end
  end
  for _, ax in ipairs(axes) do
    if not seen[ax.key] then seen[ax.key] = true; name_keys[#name_keys + 1] = ax.key end
  end
  table.sort(overridden)
  for _, k in ipairs(overridden) do overridden[k] = true end
  for _, k in ipairs(overridden) do
    if not seen[k] then seen[k] = true; name_keys[#name_keys + 1] = k end
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
      local resolved = config.resolve(c)
      local flat = config.flatten(resolved)
      local parts = {}
      for _, k in ipairs(name_keys) do
        local v = varied[k]
        if v == nil and overridden[k] then v = flat[k] end
        if v ~= nil then parts[#parts + 1] = short[k] .. "=" .. value_text(v) end
      end
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

-- ---- what a rerun does -------------------------------------------------

local function checkpoint_of(db, run_id)
  local ck = db:query("SELECT step, path FROM checkpoints WHERE run_id = ? ORDER BY step DESC, id DESC LIMIT 1", run_id)[1]
  if not ck then return nil end
  local f = io.open(ck.path, "rb")
  if not f then return nil end
  f:close()
  return ck
end

local function params_of(db, run_id)
  local p = {}
  for _, row in ipairs(db:query("SELECT key, value FROM params WHERE run_id = ?", run_id)) do p[row.key] = row.value end
  return p
end

-- A name no other config of the experiment has: a run whose name an
-- earlier run with another config holds (the definition's base was edited,
-- say) gets the keys in which the two configs differ appended.
local function unique_name(db, exp_id, r)
  local name = r.name
  for _ = 1, 4 do
    if #db:query("SELECT 1 FROM runs WHERE experiment_id = ? AND name = ? AND config_hash = ? LIMIT 1",
                 exp_id, name, r.hash) > 0 then
      return name   -- this very config ran under this name before
    end
    local others = db:query("SELECT id FROM runs WHERE experiment_id = ? AND name = ? AND config_hash IS NOT ?",
                            exp_id, name, r.hash)
    if #others == 0 then return name end
    local mine, keys, seen = config.params(r.config), {}, {}
    for _, o in ipairs(others) do
      local theirs = params_of(db, o.id)
      for k, v in pairs(mine) do
        if theirs[k] ~= v and not seen[k] and not config.unhashed[k] then seen[k] = true; keys[#keys + 1] = k end
      end
    end
    table.sort(keys)
    local short, parts = results.short_names(keys), {}
    for _, k in ipairs(keys) do
      if not name:find(short[k] .. "=", 1, true) then parts[#parts + 1] = short[k] .. "=" .. mine[k] end
    end
    if #parts == 0 then return name .. ",cfg=" .. r.hash:sub(1, 8) end
    name = name .. "," .. table.concat(parts, ",")
  end
  return name .. ",cfg=" .. r.hash:sub(1, 8)
end

-- Sets each run's state from the run log: "finished" (r.row), "diverged"
-- (r.row; a rerun would diverge again), "running" (alive elsewhere),
-- "resume" (r.row, r.resume = {run_id, path, step}: train.run resumes from
-- the newest checkpoint that passes its checks), "restart" (r.row: its row is
-- cleared and the run starts from step 0), or "new". db may be nil
-- (no run log yet: every run is new).
function experiment.plan(db, exp_name, runs, opts)
  opts = opts or {}
  for _, r in ipairs(runs) do r.state = "new" end
  if not db then return runs end
  local e = db:query("SELECT id FROM experiments WHERE name = ?", exp_name)[1]
  if not e then return runs end
  -- A row whose process is gone is crashed, not running (as `gqe runs` says).
  pcall(db.mark_crashed, db, gqe.hostname(), 600)
  for _, r in ipairs(runs) do
    r.name = unique_name(db, e.id, r)
    local rows = db:query([[SELECT id, status, step FROM runs WHERE experiment_id = ? AND name = ? AND config_hash = ?
      ORDER BY (status = 'finished') DESC, id DESC]], e.id, r.name, r.hash)
    local last = rows[1]
    if not last then
      r.state = "new"
    elseif last.status == "finished" then
      r.state, r.row = "finished", last.id
    elseif last.status == "running" or last.status == "queued" then
      r.state, r.row = "running", last.id
    elseif last.status == "diverged" and not opts.restart then
      r.state, r.row, r.step = "diverged", last.id, last.step
    else
      r.row = last.id
      local ck = not opts.restart and checkpoint_of(db, last.id)
      if ck then
        r.state, r.resume = "resume", { run_id = last.id, path = ck.path, step = ck.step }
      else
        r.state, r.resume = "restart", { run_id = last.id, from_start = true }
      end
    end
  end
  return runs
end

-- What --dry-run says a rerun does with each run.
local STATE_TEXT = {
  finished = "finished (run %d)", diverged = "diverged (run %d) - skipped, --restart runs it again",
  running = "running elsewhere (run %d)", restart = "will restart from step 0 (run %d)", new = "new",
}
local function state_text(r)
  if r.state == "resume" then return string.format("will resume from step %d (run %d)", r.resume.step, r.row) end
  return string.format(STATE_TEXT[r.state], r.row)
end

-- ---- errors once ---------------------------------------------------------

-- What decides whether a data set opens: its options but the seed.
local function data_key(c)
  local o = train.data_options(c)
  o.seed = nil
  return json.encode(o)
end

-- A problem that would fail every run sharing a device or data set (no
-- GPU, a missing or too short data file) is raised once, before any run
-- starts and before any row is written.
function experiment.preflight(exp_name, todo)
  local seen = {}
  for _, r in ipairs(todo) do
    local problem = train.device_problem(r.config)
    if problem then fail("experiment %s: %s; no run was started", exp_name, problem) end
    local opts = train.data_options(r.config)
    local key = data_key(r.config)
    if not seen[key] then
      seen[key] = true
      local ok, err = pcall(gqe.data.open, opts)
      if not ok then
        local users = 0
        for _, o in ipairs(todo) do if data_key(o.config) == key then users = users + 1 end end
        fail("experiment %s: %s (needed by %d of %d runs); no run was started", exp_name,
             (tostring(err):gsub("^[^:\n]*gqe[/.][%w_]+%.lua:%d+: ", "")), users, #todo)
      end
    end
  end
end

-- The flags of `gqe resume EXPERIMENT` (gqe/flags.lua); `gqe FILE.lua`
-- adds the shard flags (RUN_FLAGS).
experiment.RESUME_FLAGS = {
  { "jobs", value = "N", int = 1,
    help = "runs at once, each in its own process (default 1, the experiment's jobs, or the GPU slots)" },
  { "dry-run", help = "list the runs and what a run would do with each (finished / resume / new); train nothing" },
  { "restart", help = "start unfinished (killed, crashed, failed, diverged) runs again from step 0" },
  { "gpus", value = "LIST", help = "GPUs for runs with train.device=cuda, e.g. 0,2 (default: every visible one)" },
  { "per-gpu", value = "M", help = "runs sharing one GPU (default 1)" },
}
experiment.RUN_FLAGS = { table.unpack(experiment.RESUME_FLAGS) }
for _, f in ipairs {
  { "shard", value = "I/N", help = "run shard I of N (from 0) of the runs (default: the Slurm array task's, or all)" },
  { "skip-from", value = "DB", help = "skip the runs finished in this (merged) run log" },
} do experiment.RUN_FLAGS[#experiment.RUN_FLAGS + 1] = f end

-- Where runs go, and how many at once: runs with train.device=cuda on the
-- GPUs of --gpus / --per-gpu (gqe/placement.lua), in worker processes;
-- --jobs N > 1: N workers on this machine; else nil (one at a time, here).
local function placer_for(runs, opts, jobs)
  local pool = placement.for_sweep(runs, opts, function() return gqe.cuda_device_count() end)
  jobs = opts.jobs or jobs or (pool and pool:slots()) or 1
  if math.tointeger(jobs) == nil or jobs < 1 then fail("experiment jobs must be a positive integer, got %s", tostring(jobs)) end
  if pool then return placement.placer(pool, sweep.default_placer(jobs)), jobs end
  if jobs > 1 then return sweep.default_placer(jobs), jobs end
  return nil, jobs
end

local function run_spec(script)
  return {
    name = "gqe " .. script,
    usage = "gqe " .. script .. " [section.key=value ...] [--jobs N] [--dry-run] [--restart] [--db PATH] " ..
            "[--gpus LIST] [--per-gpu M] [--shard I/N] [--skip-from DB]",
    about = "runs the experiment: finished runs are skipped, killed or crashed ones resume from their last " ..
            "checkpoint, new ones start",
    flags = experiment.RUN_FLAGS, overrides = true,
  }
end

-- The closing line: what happened to every run of this invocation.
local function tally(runs, summaries)
  local c = { finished = 0, skipped = 0, elsewhere = 0, killed = 0, failed = 0, other = 0, not_started = 0 }
  for i, r in ipairs(runs) do
    local s = summaries[i]
    if r.state == "running" then c.elsewhere = c.elsewhere + 1
    elseif r.state == "finished" or r.state == "diverged" then c.skipped = c.skipped + 1
    elseif not s then c.not_started = c.not_started + 1
    elseif s.status == "finished" then c.finished = c.finished + 1
    elseif s.status == "killed" then c.killed = c.killed + 1
    elseif s.status == "failed" or s.status == "crashed" then c.failed = c.failed + 1
    else c.other = c.other + 1 end
  end
  local parts = { string.format("%d finished now", c.finished) }
  if c.skipped > 0 then parts[#parts + 1] = string.format("%d done before", c.skipped) end
  if c.elsewhere > 0 then parts[#parts + 1] = string.format("%d running elsewhere", c.elsewhere) end
  if c.killed > 0 then parts[#parts + 1] = string.format("%d killed (rerun to resume them)", c.killed) end
  if c.failed > 0 then parts[#parts + 1] = string.format("%d failed", c.failed) end
  if c.other > 0 then parts[#parts + 1] = string.format("%d diverged", c.other) end
  if c.not_started > 0 then parts[#parts + 1] = string.format("%d not started", c.not_started) end
  return table.concat(parts, ", "), c
end

-- Plans, checks and runs a list of runs {name, config, hash} of one
-- experiment; shared by gqe.experiment and `gqe resume EXPERIMENT`.
-- opts: db_path, jobs, dry_run, restart, placer.
function experiment.run_list(exp_name, runs, opts)
  local n = #runs
  local width = #tostring(n)
  local db_path = opts.db_path
  local exists = io.open(db_path, "rb")
  if exists then exists:close() end
  if opts.dry_run then
    local db = exists and gqe.db.open(db_path) or nil
    experiment.plan(db, exp_name, runs, { restart = opts.restart })
    if db then db:close() end
    line("experiment %s: %d runs (dry run, nothing trained)", exp_name, n)
    for i, r in ipairs(runs) do
      line("%" .. width .. "d/%d  %-40s  %s", i, n, r.name, state_text(r))
    end
    runs.dry_run, runs.experiment = true, exp_name
    return runs
  end

  local db = gqe.db.open(db_path)
  local ok, err = pcall(function()
    experiment.plan(db, exp_name, runs, { restart = opts.restart })
    local todo, todo_runs = {}, {}
    for i, r in ipairs(runs) do
      if r.state == "new" or r.state == "resume" or r.state == "restart" then
        todo[#todo + 1] = i; todo_runs[#todo_runs + 1] = r
      end
    end
    experiment.preflight(exp_name, todo_runs)
    db:experiment(exp_name)
    if gqe.signals_install then gqe.signals_install() end
    local summaries = {}
    for i, r in ipairs(runs) do
      if r.state == "finished" then
        local s = train.summary_from_db(db, r.row, r.config)
        s.skipped = true
        summaries[i] = s
        line("[%" .. width .. "d/%d] %s: already finished (run %d), val/loss %s - skipped", i, n, r.name, r.row,
             fmt_loss(s.final_val_loss))
      elseif r.state == "diverged" or r.state == "running" then
        line("[%" .. width .. "d/%d] %s: %s", i, n, r.name, state_text(r))
      end
    end
    local ran = sweep.execute(runs, todo, { db = db, db_path = db_path, exp_name = exp_name,
                                                 jobs = opts.jobs, placer = opts.placer })
    for i, s in pairs(ran) do summaries[i] = s end
    return summaries
  end)
  db:close()
  if not ok then error(err, 0) end
  local summaries = err

  local list = { experiment = exp_name, db_path = db_path }
  for i = 1, n do if summaries[i] then list[#list + 1] = summaries[i] end end
  local text, c = tally(runs, summaries)
  local sig = gqe.interrupted and gqe.interrupted()
  if sig then
    fail("experiment %s interrupted (%s), %d runs: %s", exp_name, sig, n, text)
  end
  if c.killed + c.failed + c.other > 0 then
    local failures = {}
    for _, r in ipairs(runs) do if r.error then failures[#failures + 1] = r.name .. ": " .. r.error end end
    fail("experiment %s, %d runs: %s\n  %s", exp_name, n, text, table.concat(failures, "\n  "))
  end
  line("experiment %s, %d runs: %s", exp_name, n, text)
  return list
end

-- Runs the experiment. args: the script's argv (overrides, --jobs N,
-- --dry-run, --restart, --db PATH); defaults to the global `arg`.
function experiment.run(def, args)
  args = args or _G.arg or {}
  local script = (_G.arg and _G.arg[0]) or "FILE.lua"
  local spec = run_spec(script)
  local opts, _, overrides = flags.parse(spec, args)
  if opts.help then
    line("%s", flags.help(spec))
    os.exit(0)
  end
  local all = experiment.expand(def, overrides)
  -- This process's shard of the runs, less those a merged log holds finished.
  local runs = shard.apply(all, opts, def.name, function(text) line("%s", text) end)
  if #runs == 0 then
    line("experiment %s: nothing to run here", def.name)
    return { experiment = def.name }
  end
  local placer, jobs = placer_for(runs, opts, def.jobs)
  return experiment.run_list(def.name, runs, {
    db_path = train.db_path(opts.db or def.db, runs[1].config), jobs = jobs,
    dry_run = opts["dry-run"], restart = opts.restart, placer = placer,
  })
end

-- `gqe resume EXPERIMENT`: every unfinished run of the experiment (the
-- latest row of each name and config) goes on from its last checkpoint.
-- opts: the parsed flags of the command (RESUME_FLAGS).
function experiment.resume(db_path, exp_name, opts)
  local db = gqe.db.open(db_path)
  local rows = db:query([[SELECT r.name, r.config, r.config_hash, r.status FROM runs r
    JOIN experiments e ON e.id = r.experiment_id WHERE e.name = ? ORDER BY r.id]], exp_name)
  db:close()
  local runs, seen = {}, {}
  for _, row in ipairs(rows) do
    local key = row.name .. "\0" .. tostring(row.config_hash)
    if not seen[key] and row.config then
      seen[key] = { name = row.name, config = config.resolve(json.decode(row.config)), hash = row.config_hash }
      runs[#runs + 1] = seen[key]
    end
  end
  local placer, jobs = placer_for(runs, opts, nil)
  return experiment.run_list(exp_name, runs, { db_path = db_path, jobs = jobs, dry_run = opts["dry-run"],
                                               restart = opts.restart, placer = placer })
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
