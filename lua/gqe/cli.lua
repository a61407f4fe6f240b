-- The host's commands: `gqe runs | compare | report | data | bench | resume
-- | help` (and the hidden `__run` of --jobs workers). main() returns the
-- process exit code; errors are raised as Lua errors with a clear message.
-- Each command's command line is described by cli.specs[NAME] (see
-- gqe/flags.lua) and parsed strictly: an unknown flag is an error, and
-- --help prints the usage and does nothing else.
local gqe = require "gqe"
local results = require "gqe.results"
local strict = require "gqe.flags"

local cli = {}

local fail = require "gqe.fail"
local function say(...) io.stdout:write(string.format(...), "\n") end

local function db_path(flags)
  local train = require "gqe.train"
  return train.db_path(flags.db)
end

local function open_db(flags, must_exist)
  local path = db_path(flags)
  if must_exist then
    local f = io.open(path, "rb")
    if not f then fail("no run log at %s (train something first, or pass --db PATH / set GQE_DB)", path) end
    f:close()
  end
  return gqe.db.open(path), path
end

local function fmt_time(t) return t and os.date("%Y-%m-%d %H:%M", math.floor(t)) or "-" end

local function text_table(header, rows)
  local w = {}
  for j, h in ipairs(header) do w[j] = #h end
  for _, r in ipairs(rows) do for j, s in ipairs(r) do w[j] = math.max(w[j], #s) end end
  local out = {}
  local function emit(r)
    local parts = {}
    for j, s in ipairs(r) do
      local pad = string.rep(" ", w[j] - #s)
      parts[j] = (header.right and header.right[j]) and pad .. s or s .. pad
    end
    out[#out + 1] = (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  emit(header)
  local rule = {}
  for j = 1, #header do rule[j] = string.rep("-", w[j]) end
  emit(rule)
  for _, r in ipairs(rows) do emit(r) end
  return table.concat(out, "\n")
end
cli.text_table = text_table

local commands = {}
cli.specs = {}

-- The flags and arguments of a command, or nil after printing its --help.
local function parse(command, args)
  local spec = cli.specs[command]
  local flags, pos = strict.parse(spec, args)
  if flags.help then
    say("%s", strict.help(spec))
    return nil
  end
  return flags, pos
end

-- Fails unless the run log knows the experiment, listing those it knows.
local function check_experiment(db, path, name)
  if #db:query("SELECT 1 FROM experiments WHERE name = ?", name) > 0 then return end
  results.unknown_experiment(db, name, path)
end
cli.check_experiment = check_experiment

local STATUSES = { "queued", "running", "finished", "failed", "killed", "diverged", "crashed" }
cli.specs.runs = { usage = "gqe runs [EXPERIMENT] [--status STATUS] [--db PATH]",
  about = "lists runs with their status (runs whose process is gone are marked crashed)",
  flags = { { "status", value = "STATUS", help = "only runs with this status: " .. table.concat(STATUSES, ", ") } },
  args = { max = 1, names = "EXPERIMENT" } }
function commands.runs(args)
  local flags, pos = parse("runs", args)
  if not flags then return 0 end
  if flags.status then
    local ok = false
    for _, st in ipairs(STATUSES) do ok = ok or st == flags.status end
    if not ok then
      local near = strict.closest(flags.status, STATUSES)
      fail("unknown status '%s'%s; statuses: %s", flags.status, near and (" (did you mean '" .. near .. "'?)") or "",
           table.concat(STATUSES, ", "))
    end
  end
  local db, path = open_db(flags, true)
  if pos[1] then
    local ok, err = pcall(check_experiment, db, path, pos[1])
    if not ok then db:close(); error(err, 0) end
  end
  -- Runs whose process is gone are crashed, not running (same host: dead
  -- pid; other hosts: heartbeat older than 10 minutes).
  db:mark_crashed(gqe.hostname(), 600)
  local sql = [[SELECT r.id, e.name AS experiment, r.name, r.status, r.step, r.started, s.last AS val_loss, r.error
    FROM runs r JOIN experiments e ON e.id = r.experiment_id
    LEFT JOIN metric_summary s ON s.run_id = r.id AND s.key = 'val/loss']]
  local where, binds = {}, {}
  if pos[1] then where[#where + 1] = "e.name = ?"; binds[#binds + 1] = pos[1] end
  if flags.status then where[#where + 1] = "r.status = ?"; binds[#binds + 1] = flags.status end
  if #where > 0 then sql = sql .. " WHERE " .. table.concat(where, " AND ") end
  local rows = db:query(sql .. " ORDER BY r.id", table.unpack(binds))
  db:close()
  if #rows == 0 then
    say("no %sruns%s", flags.status and (flags.status .. " ") or "", pos[1] and (" in experiment " .. pos[1]) or " yet")
    return 0
  end
  local out = {}
  for _, r in ipairs(rows) do
    local err = (r.error or ""):match("^[^\n]*")
    if #err > 60 then err = err:sub(1, 57) .. "..." end
    out[#out + 1] = { tostring(r.id), r.experiment, r.name, r.status, tostring(r.step),
                      r.val_loss and string.format("%.4f", r.val_loss) or "-", fmt_time(r.started), err }
  end
  local header = { "id", "experiment", "name", "status", "step", "val loss", "started", "error",
                   right = { true, false, false, false, true, true, false, false } }
  say("%s", text_table(header, out))
  return 0
end

-- compare, report and sample live in their modules (gqe.compare,
-- gqe.report, gqe.models), each with its spec and its main.
for name, mod in pairs { compare = "gqe.compare", report = "gqe.report" } do
  cli.specs[name] = require(mod).spec
  commands[name] = function(args) return require(mod).main(args) end
end
cli.specs.sample = require("gqe.models").spec
function commands.sample(args) return require("gqe.models").sample_main(args) end

cli.specs.data = { usage = "gqe data", about = "prepares data/: the Brown corpus (tags stripped), GPT-2's tokenizer files, Brown GPT-2 shards and the Brown cloze task (gqe data tokenize --help: shards from your own text)",
  db = false }
function commands.data(args)
  if args[1] == "tokenize" then return require("gqe.tokenize").main({ table.unpack(args, 2) }) end
  if not parse("data", args) then return 0 end
  local f = io.open("scripts/prepare_data.sh", "r")
  if f then
    f:close()
    say("preparing data with scripts/prepare_data.sh ...")
    local ok = os.execute("./scripts/prepare_data.sh")
    return ok and 0 or 1
  end
  say("Run `make data` in the gqe source tree: it prepares data/brown.txt (the Brown corpus, tags stripped).")
  say("Any UTF-8 text file works too: data.kind=text data.path=FILE.")
  return 0
end

-- CPU benchmark: OpenBLAS sgemm GFLOP/s against the training GFLOP/s of a
-- d=256, 4-layer, sequence-256 GQE model measured in the same process.
cli.specs.bench = { usage = "gqe bench [--n N] [--iters N] [--batch N] [--steps N] [--device cpu|cuda] [--db PATH]",
  about = "OpenBLAS sgemm GFLOP/s against the training GFLOP/s of a small GQE model; stored in the bench table",
  flags = { { "n", value = "N", int = 1, help = "sgemm size (default 1024)" },
            { "iters", value = "N", int = 1, help = "sgemm repetitions (default 10)" },
            { "batch", value = "N", int = 1, help = "model batch (default 8)" },
            { "steps", value = "N", int = 1, help = "timed training steps (default 5)" },
            { "device", value = "DEVICE", help = "cpu (default) or cuda" } } }
function commands.bench(args)
  local flags = parse("bench", args)
  if not flags then return 0 end
  local device = flags.device or "cpu"
  local n = tonumber(flags.n or 1024)
  local sg = gqe.sgemm_bench(n, tonumber(flags.iters or 10))
  say("sgemm %dx%dx%d: %.1f GFLOP/s", n, n, n, sg)
  local B, T = tonumber(flags.batch or 8), 256
  local lm = gqe.nn.LM { vocab = 256, dim = 256, layers = 4, max_seq = T, attention = "gqe", experts = 8,
                         groups = 4, k = 1, head_dim = 32, variant = "gqe", seed = 1, device = device }
  local opt = gqe.optim.AdamW(lm, { lr = 1e-3, weight_decay = 0.1 })
  local toks, tgts = {}, {}
  local seed = 12345
  for b = 1, B do
    toks[b], tgts[b] = {}, {}
    for t = 1, T do
      seed = (seed * 1103515245 + 12345) % 2147483648
      toks[b][t] = seed % 256
    end
    for t = 1, T do tgts[b][t] = toks[b][t % T + 1] end
  end
  local tokens = gqe.tensor(toks, { dtype = "i32" })
  local targets = gqe.tensor(tgts, { dtype = "i32" })
  local function step()
    lm:loss(tokens, targets, 0.01)
    lm:backward()
    opt:clip(1.0)
    opt:step()
    opt:zero_grad()
    lm:after_step()
  end
  for _ = 1, 2 do step() end   -- warm-up: arenas, thread pool
  local steps = tonumber(flags.steps or 5)
  local t0 = gqe.clock()
  for _ = 1, steps do step() end
  local dt = gqe.clock() - t0
  local tps = B * T * steps / dt
  local gf = lm:flops_per_token(T) * tps / 1e9
  local ratio = gf / sg
  say("model d=256 L=4 S=256 gqe N=8 G=4 k=1, batch %d: %.0f tokens/s, %.1f GFLOP/s", B, tps, gf)
  local ok, err = pcall(function()
    local db = gqe.db.open(db_path(flags))
    local commit = gqe.git_commit and gqe.git_commit() or nil
    db:bench { name = "cpu_train", key = "sgemm_gflops", value = sg, unit = "GFLOP/s", device = device,
               git_commit = commit, notes = string.format("n=%d", n) }
    db:bench { name = "cpu_train", key = "model_gflops", value = gf, unit = "GFLOP/s", baseline = sg,
               device = device, git_commit = commit,
               notes = string.format("d=256 L=4 S=256 B=%d gqe N=8 G=4 k=1, %.0f tokens/s", B, tps) }
    db:close()
  end)
  if not ok then io.stderr:write("warning: bench results not stored: ", tostring(err), "\n") end
  say("model/sgemm GFLOP/s ratio: %.2f", ratio)
  return 0
end

cli.specs.resume = { usage = "gqe resume RUN_ID|EXPERIMENT [--jobs N] [--dry-run] [--restart] [--db PATH]",
  about = "continues a run (or every unfinished run of an experiment) from its last checkpoint, in its own row",
  flags = require("gqe.experiment").RESUME_FLAGS, args = { min = 1, max = 1, names = "RUN_ID or EXPERIMENT" } }
function commands.resume(args)
  local flags, pos = parse("resume", args)
  if not flags then return 0 end
  local id = math.tointeger(tonumber(pos[1]))
  if not id then
    local db, path = open_db(flags, true)
    local known, err = pcall(check_experiment, db, path, pos[1])
    db:close()
    if not known then error(err, 0) end
    require("gqe.experiment").resume(path, pos[1], flags)
    return 0
  end
  for _, f in ipairs { "jobs", "dry-run", "restart", "gpus", "per-gpu" } do
    if flags[f] then fail("--%s applies to `gqe resume EXPERIMENT`, not to one run (%d)", f, id) end
  end
  local ckpt = require "gqe.checkpoint"
  local db = open_db(flags, true)
  local ok, res = pcall(ckpt.resume, db, id)
  db:close()
  if not ok then error(res, 0) end
  say("run %d resumed and %s at step %d, val/loss %s", id, res.status, res.steps or 0,
      res.final_val_loss and string.format("%.4f", res.final_val_loss) or "-")
  return 0
end

-- gqe launch --nproc N FILE.lua [overrides]: one run on N ranks of this node
function commands.launch(args) return require("gqe.launch").main(args) end

-- gqe merge OUT.db IN.db...: see gqe/merge.lua.
cli.specs.merge = { usage = "gqe merge OUT.db IN.db...",
  about = "merges run logs (one per node or array task) into OUT.db: experiments by name, runs once each",
  args = { min = 2, max = math.huge, names = "OUT.db and at least one IN.db" }, db = false }
function commands.merge(args)
  local _, pos = parse("merge", args)
  if not pos then return 0 end
  return require("gqe.merge").main(pos)
end

-- gqe eval RUN_ID --task NAME=PATH: see gqe/evaluate.lua.
commands.eval = function(args) return require("gqe.evaluate").main(args) end

-- Worker of `--jobs N`: gqe __run --db DB JOBFILE
cli.specs.__run = { usage = "gqe __run --db DB JOBFILE (internal: a worker of --jobs N)",
  args = { min = 1, max = 1, names = "JOBFILE" } }
commands.__run = function(args)
  local flags, pos = parse("__run", args)
  if not flags then return 0 end
  if not flags.db then fail("usage: %s", cli.specs.__run.usage) end
  return require("gqe.sweep").run_job(flags.db, pos[1])
end

cli.usage = [[
usage: gqe FILE.lua [section.key=value ...] [--jobs N] [--dry-run] [--restart] [--db PATH]
       gqe runs [EXPERIMENT] [--status S]     list runs (crashed ones marked)
       gqe compare EXPERIMENT [--metric KEY] [--baseline NAME] [--csv|--json]
                                              mean, std, 95% CI over seeds per group of varied keys
       gqe report EXPERIMENT [--out DIR] [--baseline NAME] [--curves mean|seeds] [--loss-axis clip|log|full]
                                              HTML report with plots (reports/EXPERIMENT)
       gqe resume RUN_ID|EXPERIMENT           continue runs from their last checkpoint
       gqe sample RUN_ID --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S]
                                              text from a run's model
       gqe launch --nproc N FILE.lua [...]    one run on N ranks (GPUs over NCCL, CPUs over MPI)
       gqe merge OUT.db IN.db...              merge run logs (one per node or array task)
       gqe bench                              CPU benchmark (model vs OpenBLAS sgemm)
       gqe data                               prepare data/ (Brown text, GPT-2 tokenizer and shards, cloze task)
       gqe data tokenize IN.txt... --out DIR  GPT-2 token shards (llm.c format) from text
       gqe eval RUN_ID --task NAME=PATH       multiple-choice accuracy of a run's last checkpoint
       gqe help [COMMAND]                     this text, or a command's flags (also COMMAND --help)
The run log is runs.db unless --db PATH or GQE_DB says otherwise.]]

cli.specs.help = { usage = "gqe help [COMMAND]", args = { max = 1, names = "COMMAND" }, db = false }
function commands.help(args)
  local flags, pos = parse("help", args or {})
  if not flags then return 0 end
  local spec = pos[1] and cli.specs[pos[1]]
  -- A command that parses its own line answers --help itself.
  if pos[1] and not spec and commands[pos[1]] then return commands[pos[1]]({ "--help" }) end
  if pos[1] and not spec then fail("unknown command '%s'; %s", pos[1], cli.command_list()) end
  say("%s", spec and strict.help(spec) or cli.usage)
  return 0
end

function cli.command_list()
  local names = {}
  for name in pairs(commands) do if not name:match("^__") then names[#names + 1] = name end end
  table.sort(names)
  return "commands: " .. table.concat(names, ", ") .. " (or a .lua file to run)"
end

function cli.main(command, args)
  args = args or {}
  if command == nil or command == "help" or command == "--help" or command == "-h" then
    return commands.help(command == "help" and args or {})
  end
  local f = commands[command]
  if not f then
    local names = {}
    for name in pairs(commands) do if not name:match("^__") then names[#names + 1] = name end end
    local near = strict.closest(tostring(command), names)
    fail("unknown command '%s'%s; %s", tostring(command), near and (" (did you mean '" .. near .. "'?)") or "",
         cli.command_list())
  end
  local rc = f(args)
  return rc or 0
end

return cli
