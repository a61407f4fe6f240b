-- Runs the planned runs of an experiment: one at a time in this process,
-- or at once as worker processes (`gqe __run`) in the slots a placer hands
-- out. Interrupts reach every running run once (each finishes its step,
-- writes a checkpoint and is marked killed) and no worker outlives the
-- sweep; the sweep prints each worker's progress at its logging interval.
local gqe = require "gqe"
local json = require "gqe.json"
local train = require "gqe.train"

local sweep = {}

local function fmt_loss(v) return v and string.format("%.4f", v) or "-" end
sweep.fmt_loss = fmt_loss

local function line(fmt, ...)
  -- Best-effort: a closed stdout never stops the experiment.
  local text = string.format(fmt, ...)
  pcall(function() io.stdout:write(text, "\n"); io.stdout:flush() end)
end

sweep.line = line

local function note(text)
  pcall(function() io.stderr:write(text, "\n"); io.stderr:flush() end)
end

local self_exe = require("gqe.paths").self_exe

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

-- The ranks a run asks for (train.nproc).
local function nproc(cfg)
  return cfg and cfg.train and math.tointeger(cfg.train.nproc) or 1
end

-- Argv that runs `gqe __run --db DB FILE` with the same program (the host,
-- or a stock Lua interpreter that loads gqe.so again), with env (a list of
-- "NAME=value") set for it. A run of train.nproc > 1 ranks (cfg given)
-- runs as `gqe launch --nproc N __run ...`: one rank per GPU of
-- CUDA_VISIBLE_DEVICES over NCCL (rendezvous on port, when given), or CPU
-- ranks under mpirun.
function sweep.worker_argv(db_path, job_file, env, cfg, port)
  local exe = self_exe() or "gqe"
  -- GQE_WORKER: the sweep speaks for its workers (a second Ctrl-C is said once).
  local argv = { "env", "GQE_WORKER=1" }
  for _, e in ipairs(env or {}) do argv[#argv + 1] = e end
  local n = nproc(cfg)
  if n > 1 then
    if exe:match("/lua[%d.]*$") then
      error(string.format("train.nproc=%d: runs of several ranks are started by the gqe program (build/gqe), " ..
                          "not by a Lua interpreter", n), 0)
    end
    local gpu = cfg.train.device == "cuda"
    for _, a in ipairs { exe, "launch", "--nproc", tostring(n), "--backend", gpu and "nccl" or "mpi" } do
      argv[#argv + 1] = a
    end
    if gpu and port then argv[#argv + 1] = "--port"; argv[#argv + 1] = tostring(port) end
    for _, a in ipairs { "__run", "--db", db_path, job_file } do argv[#argv + 1] = a end
  elseif exe:match("/lua[%d.]*$") then
    for _, a in ipairs { exe, "-e", string.format("os.exit(require('gqe').cli.main('__run', {'--db', %q, %q}))",
                                                   db_path, job_file) } do argv[#argv + 1] = a end
  else
    for _, a in ipairs { exe, "__run", "--db", db_path, job_file } do argv[#argv + 1] = a end
  end
  return argv
end

-- Where workers run. A placer hands out slots: placer:acquire(run) -> slot
-- or nil (nil: wait until a slot is released; run is {name, config, ...}),
-- placer:release(slot), and size (how many runs at once); gqe/placement.lua
-- wraps this one to put GPU runs on GPUs. A slot may carry env
-- (a list of "NAME=value" for the worker: threads, visible devices) and a
-- label. The default: jobs slots on this machine, each with cores/jobs
-- OpenMP threads unless OMP_NUM_THREADS is set (N processes spinning
-- N*cores threads run several times slower).
-- A CPU run of train.nproc ranks takes that many slots (at most jobs),
-- its ranks sharing their threads.
function sweep.default_placer(jobs)
  local threads = not os.getenv("OMP_NUM_THREADS") and math.max(1, cpu_count() // jobs)
  local free = {}
  for k = jobs, 1, -1 do free[#free + 1] = k end
  return {
    size = jobs,
    acquire = function(_, run)
      local cfg = run and run.config
      local ranks = (cfg and cfg.train.device ~= "cuda") and nproc(cfg) or 1
      local take = math.min(ranks, jobs)
      if #free < take then return nil end
      local got = {}
      for _ = 1, take do got[#got + 1] = table.remove(free) end
      local env = {}
      if threads then
        local per = math.max(1, threads * take // ranks)
        env = { "OMP_NUM_THREADS=" .. per, "OPENBLAS_NUM_THREADS=" .. per }
      end
      return { index = got[1], indices = got, env = env }
    end,
    release = function(_, slot) for _, k in ipairs(slot.indices) do free[#free + 1] = k end end,
  }
end

-- Worker side of --jobs: reads the job file, trains, writes the summary
-- next to it (FILE.out.json) and its progress at each logging interval
-- (FILE.progress.json, replaced atomically). Returns the exit code.
function sweep.run_job(db_path, job_file)
  -- First: an interrupt that came while this process started is pending
  -- (spawned with the stop signals blocked) and is caught from here on.
  if gqe.signals_install then gqe.signals_install() end
  local f = assert(io.open(job_file, "r"))
  local job = json.decode(f:read("a"))
  f:close()
  local progress_file = job_file .. ".progress.json"
  -- Of a run's ranks, rank 0 speaks for the run (progress and result).
  local ok_env, env = pcall(gqe.dist.env)
  local root = not ok_env or env.rank == 0
  local function on_progress(info)
    if not root then return end
    local tmp = progress_file .. ".tmp"
    local pf = io.open(tmp, "w")
    if not pf then return end
    pf:write(json.encode(info))
    pf:close()
    os.rename(tmp, progress_file)
  end
  -- Several workers share the terminal: the parent prints their progress.
  local ok, res = pcall(train.run, job.config, { db_path = db_path, experiment = job.experiment, name = job.name,
                                                 label = job.label, evals_only = true, resume = job.resume,
                                                 on_progress = on_progress, no_raise = true })
  if not ok then res = { status = "failed", error = tostring(res), name = job.name } end
  if root then
    local out = assert(io.open(job_file .. ".out.json", "w"))
    out:write(json.encode(res))
    out:close()
  end
  -- The parent prints how the run ended (once, with the others).
  return res.status == "finished" and 0 or 1
end

-- Clears a row that starts again from step 0: its logged values and its
-- checkpoints (files included) belong to the attempt being replaced.
local function clear_row(db, run_id)
  for _, ck in ipairs(db:query("SELECT path FROM checkpoints WHERE run_id = ?", run_id)) do os.remove(ck.path) end
  db:exec(string.format([[BEGIN;
    DELETE FROM metrics WHERE run_id = %d; DELETE FROM metric_summary WHERE run_id = %d;
    DELETE FROM evals WHERE run_id = %d; DELETE FROM head_usage WHERE run_id = %d;
    DELETE FROM checkpoints WHERE run_id = %d;
    UPDATE runs SET step = 0, started = CAST(strftime('%%s','now') AS REAL) WHERE id = %d;
    COMMIT;]], run_id, run_id, run_id, run_id, run_id, run_id))
end

-- ---- running -------------------------------------------------------------

-- The experiment's progress line: runs done, running, queued, and the time
-- left: what the running runs have left plus the queued runs' steps at the
-- running runs' mean time per step, shared over the slots.
local function experiment_line(exp_name, running, queued, done, total, jobs)
  local remaining, rate_sum, rate_n = 0, 0, 0
  for _, slot in ipairs(running) do
    local p = slot.progress
    if p then
      remaining = remaining + (p.eta_s or 0)
      if p.s_per_step then rate_sum, rate_n = rate_sum + p.s_per_step, rate_n + 1 end
    end
  end
  local eta = "?"
  if rate_n > 0 then
    local per_step = rate_sum / rate_n
    for _, r in ipairs(queued) do
      remaining = remaining + per_step * (r.config.train.steps - (r.resume and r.resume.step or 0))
    end
    eta = train.fmt_time(remaining / math.max(1, math.min(jobs, #running + #queued)))
  end
  return string.format("  experiment %s: %d of %d runs done, %d running, %d queued, eta %s",
    exp_name, done, total, #running, #queued, eta)
end

local PROGRESS_EVERY = 2   -- seconds

-- Progress of the running workers: one line each, then the experiment's.
local function progress_block(exp_name, running, queued, done, total, jobs)
  local lines = {}
  for _, slot in ipairs(running) do
    local p = slot.progress
    if p then
      lines[#lines + 1] = string.format("  %s step %d/%d  loss %.4f  tok/s %.0f  eta %s", slot.label, p.step, p.steps,
        p.loss or 0 / 0, p.tokens_per_s or 0, train.fmt_time(p.eta_s or -1))
    else
      lines[#lines + 1] = string.format("  %s starting", slot.label)
    end
  end
  lines[#lines + 1] = experiment_line(exp_name, running, queued, done, total, jobs)
  return table.concat(lines, "\n")
end

-- Runs the planned runs that need running (todo: their indices). opts: db,
-- db_path, exp_name, jobs, placer (nil: one at a time in this process).
-- Returns summaries[i] for each run it ran.
function sweep.execute(runs, todo, opts)
  local n, exp_name = #runs, opts.exp_name
  local width = #tostring(n)
  local function tag(i) return string.format("[%" .. width .. "d/%d] %s:", i, n, runs[i].name) end
  local function label(i) return string.format("[%d/%d %s]", i, n, runs[i].name) end
  local summaries = {}
  local function finished(i, s)
    summaries[i] = s
    local r = runs[i]
    if s.status == "finished" then
      line("%s finished, val/loss %s, %.0f tok/s, %s", tag(i), fmt_loss(s.final_val_loss), s.tokens_per_s or 0,
           train.fmt_time(s.wall_s or 0))
    else
      line("%s %s", tag(i), s.error or s.status)
    end
    if s.status ~= "finished" then r.error = s.error or s.status end
  end
  local function prepare(i)
    local r = runs[i]
    if r.state == "restart" then clear_row(opts.db, r.row) end
    local how = r.state == "resume" and string.format(" (resuming run %d from step %d)", r.row, r.resume.step)
             or r.state == "restart" and string.format(" (run %d, from step 0)", r.row) or ""
    return how
  end
  local interrupted = function() return gqe.interrupted and gqe.interrupted() end

  if not opts.placer then
    -- The run prints its own progress lines; the experiment's follows each.
    local done = 0
    for i = 1, n do if runs[i].state == "finished" then done = done + 1 end end
    for k, i in ipairs(todo) do
      if interrupted() then break end
      local r = runs[i]
      if nproc(r.config) > 1 then
        -- Its ranks are processes of their own: started as a --jobs 1 sweep
        -- of this one run would start them (progress, signals, result).
        local one = sweep.execute(runs, { i }, { db = opts.db, db_path = opts.db_path, exp_name = exp_name,
                                                 jobs = 1, placer = sweep.default_placer(1) })
        summaries[i] = one[i]
        if one[i] and one[i].status == "finished" then done = done + 1 end
        goto next_run
      end
      line("%s started%s", tag(i), prepare(i))
      local queued, slot = {}, { label = label(i) }
      for q = k + 1, #todo do queued[#queued + 1] = runs[todo[q]] end
      local function on_progress(p)
        slot.progress = p
        if r.config.train.progress then note(experiment_line(exp_name, { slot }, queued, done, n, 1)) end
      end
      local ok, s = pcall(train.run, r.config, { db = opts.db, experiment = exp_name, name = r.name, label = label(i),
                                                 resume = r.resume, no_raise = true, on_progress = on_progress })
      if ok then finished(i, s)
      else finished(i, { status = "failed", error = tostring(s), name = r.name }) end
      if ok and s.status == "finished" then done = done + 1 end
      ::next_run::
    end
    return summaries
  end

  -- Separate processes writing to the same database (WAL). Workers print
  -- evaluations; this process prints one line per run as it starts and
  -- ends, and every running run's progress at its logging interval.
  local placer = opts.placer
  local jobs = placer.size or opts.jobs
  local running, queue, dir = {}, {}, tmpdir()
  for _, i in ipairs(todo) do queue[#queue + 1] = i end
  local done = 0
  for i = 1, n do if runs[i].state == "finished" then done = done + 1 end end
  local function start(i, slot)
    local r = runs[i]
    local how = prepare(i)
    local file = string.format("%s/job%d.json", dir, i)
    local f = assert(io.open(file, "w"))
    -- The slot's label (its GPU) goes into the run's progress lines.
    local where = slot.label and string.format("[%d/%d %s %s]", i, n, r.name, slot.label) or label(i)
    f:write(json.encode { config = r.config, experiment = exp_name, name = r.name, label = where, resume = r.resume })
    f:close()
    -- Runs of several GPUs at once each need their own rendezvous port
    -- (another sweep on the node most likely has another pid).
    local port = 20000 + (gqe.pid() * 97 + i) % 40000
    local pid = gqe.spawn(sweep.worker_argv(opts.db_path, file, slot.env, r.config, port), { worker = true })
    running[#running + 1] = { pid = pid, i = i, file = file, slot = slot, label = where,
                              show = r.config.train.progress }
    line("%s started %s(pid %d)%s", tag(i), slot.label and ("on " .. slot.label .. " ") or "", pid, how)
  end
  local function poll_progress()
    local changed = false
    for _, slot in ipairs(running) do
      local f = io.open(slot.file .. ".progress.json", "r")
      if f then
        local ok, p = pcall(json.decode, f:read("a"))
        f:close()
        if ok and type(p) == "table" and (not slot.progress or p.step ~= slot.progress.step) then
          slot.progress, changed = p, changed or slot.show
        end
      end
    end
    return changed
  end
  local last_block = -math.huge
  local function show_progress()
    last_block = gqe.clock()
    local queued = {}
    for _, i in ipairs(queue) do queued[#queued + 1] = runs[i] end
    note(progress_block(exp_name, running, queued, done, n, jobs))
  end
  local function reap(k, code)
    -- The run's last progress first (it may have ended between two polls).
    if poll_progress() and not interrupted() then show_progress() end
    local slot = table.remove(running, k)
    placer:release(slot.slot)
    local s
    local f = io.open(slot.file .. ".out.json", "r")
    if f then s = json.decode(f:read("a")); f:close() end
    if not s then
      s = { status = "crashed", error = string.format("worker pid %d exited with code %s and left no result",
                                                      slot.pid, tostring(code)) }
      -- Its row, if it got one, is not running any more.
      pcall(opts.db.mark_crashed, opts.db, gqe.hostname(), 600)
    end
    for _, suffix in ipairs { "", ".out.json", ".progress.json" } do os.remove(slot.file .. suffix) end
    if s.status == "finished" then done = done + 1 end
    finished(slot.i, s)
  end
  local forwarded = false
  local function loop()
    while #queue > 0 or #running > 0 do
      local sig = interrupted()
      while not sig and #queue > 0 do
        local slot = placer:acquire(runs[queue[1]])
        if not slot then break end
        start(table.remove(queue, 1), slot)
      end
      if #running == 0 then break end
      if sig and not forwarded then
        -- Each worker finishes its step, writes a checkpoint, marks its run
        -- killed and exits. The forwarded signal never counts as a second
        -- Ctrl-C for a worker that got the first one from the terminal too.
        for _, slot in ipairs(running) do pcall(gqe.kill, slot.pid, sig == "SIGINT" and "SIGUSR1" or "SIGUSR2") end
        forwarded = true
        note(string.format("%s: waiting for %d running run(s) to stop and write a checkpoint " ..
                           "(send it again to stop at once)", sig, #running))
      end
      local ok, code, pid = pcall(gqe.wait, -1, true)
      if not ok and not interrupted() then error(code, 0) end
      if ok and pid then
        for k, slot in ipairs(running) do
          if slot.pid == pid then reap(k, code); break end
        end
      else
        -- At most one block every PROGRESS_EVERY seconds: N runs logging
        -- every second would otherwise scroll N blocks a second.
        if gqe.clock() - last_block >= PROGRESS_EVERY and poll_progress() and not sig then show_progress() end
        gqe.sleep(0.2)
      end
    end
  end
  local ok, err = pcall(loop)
  if not ok then
    -- No worker outlives the sweep: they stop as on SIGTERM (checkpoint, killed).
    for _, slot in ipairs(running) do pcall(gqe.kill, slot.pid, "SIGUSR2") end
    for _, slot in ipairs(running) do pcall(gqe.wait, slot.pid) end
    error(err, 0)
  end
  os.remove(dir)
  return summaries
end

return sweep
