-- The host's commands: `gqe runs | compare | report | data | bench | resume
-- | help` (and the hidden `__run` of --jobs workers). main() returns the
-- process exit code; errors are raised as Lua errors with a clear message.
local gqe = require "gqe"
local config = require "gqe.config"
local results = require "gqe.results"

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

function commands.runs(args)
  local _, flags, pos = config.parse_args(args)
  local db = open_db(flags, true)
  -- Runs whose process is gone are crashed, not running (same host: dead
  -- pid; other hosts: heartbeat older than 10 minutes).
  db:mark_crashed(gqe.hostname(), 600)
  local sql = [[SELECT r.id, e.name AS experiment, r.name, r.status, r.step, r.started, s.last AS val_loss, r.error
    FROM runs r JOIN experiments e ON e.id = r.experiment_id
    LEFT JOIN metric_summary s ON s.run_id = r.id AND s.key = 'val/loss']]
  local rows
  if pos[1] then rows = db:query(sql .. " WHERE e.name = ? ORDER BY r.id", pos[1])
  else rows = db:query(sql .. " ORDER BY r.id") end
  db:close()
  if #rows == 0 then say(pos[1] and "no runs in experiment %s" or "no runs yet", pos[1]); return 0 end
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

function commands.compare(args)
  local _, flags, pos = config.parse_args(args)
  local exp = pos[1] or fail("usage: gqe compare EXPERIMENT [--metric KEY] [--db PATH]")
  local db = open_db(flags, true)
  local runs, others = results.runs(db, exp, { status = "finished" })
  db:close()
  if #runs == 0 then
    fail("no finished runs in experiment '%s'%s", exp,
         #others > 0 and string.format(" (%d runs with another status; see `gqe runs %s`)", #others, exp) or
         " (see `gqe runs` for the experiments in this database)")
  end
  local metric = flags.metric or "val/loss"
  local groups, keys = results.groups(runs)
  say("experiment %s: %d finished runs, %d groups%s", exp, #runs, #groups,
      #keys > 0 and (" by " .. table.concat(keys, ", ")) or "")
  say("%s", results.format_table(results.summarize(groups, metric), metric))
  if #others > 0 then say("(%d runs not finished are left out; see `gqe runs %s`)", #others, exp) end
  return 0
end

function commands.report(args)
  local _, flags, pos = config.parse_args(args)
  local exp = pos[1] or fail("usage: gqe report EXPERIMENT [--out DIR] [--metric KEY] [--db PATH]")
  local db = open_db(flags, true)
  local ok, res = pcall(require("gqe.report").generate, db, exp, { out = flags.out, metric = flags.metric })
  db:close()
  if not ok then error(res, 0) end
  say("report written to %s", res)
  return 0
end

function commands.data(args)
  if args[1] == "tokenize" then return require("gqe.tokenize").main({ table.unpack(args, 2) }) end
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
function commands.bench(args)
  local _, flags = config.parse_args(args)
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

function commands.resume(args)
  local _, flags, pos = config.parse_args(args)
  local id = math.tointeger(tonumber(pos[1] or ""))
  if not id then fail("usage: gqe resume RUN_ID [--db PATH]") end
  local ckpt = require "gqe.checkpoint"
  local db = open_db(flags, true)
  local ok, res = pcall(ckpt.resume, db, id)
  db:close()
  if not ok then error(res, 0) end
  say("run %d resumed and %s at step %d, val/loss %s", id, res.status, res.steps or 0,
      res.final_val_loss and string.format("%.4f", res.final_val_loss) or "-")
  return 0
end

-- gqe merge OUT.db IN.db...: see gqe/merge.lua.
function commands.merge(args) return require("gqe.merge").main(args) end

-- gqe eval RUN_ID --task NAME=PATH: see gqe/evaluate.lua.
commands.eval = function(args) return require("gqe.evaluate").main(args) end

-- Worker of `--jobs N`: gqe __run --db DB JOBFILE
commands.__run = function(args)
  local _, flags, pos = config.parse_args(args)
  if not flags.db or not pos[1] then fail("usage: gqe __run --db DB JOBFILE (internal)") end
  return require("gqe.experiment").run_job(flags.db, pos[1])
end

cli.usage = [[
usage: gqe FILE.lua [section.key=value ...] [--jobs N] [--dry-run] [--db PATH]
       gqe runs [EXPERIMENT]                  list runs (crashed ones marked)
       gqe compare EXPERIMENT [--metric KEY]  mean/std over seeds per group of varied keys
       gqe report EXPERIMENT [--out DIR]      HTML report with plots (reports/EXPERIMENT)
       gqe resume RUN_ID                      continue a run from its last checkpoint
       gqe merge OUT.db IN.db...              merge run logs (one per node or array task)
       gqe bench                              CPU benchmark (model vs OpenBLAS sgemm)
       gqe data                               prepare data/ (Brown text, GPT-2 tokenizer and shards, cloze task)
       gqe data tokenize IN.txt... --out DIR  GPT-2 token shards (llm.c format) from text
       gqe eval RUN_ID --task NAME=PATH       multiple-choice accuracy of a run's last checkpoint
       gqe help                               this text
The run log is runs.db unless --db PATH or GQE_DB says otherwise.]]

function commands.help()
  say("%s", cli.usage)
  return 0
end

function cli.main(command, args)
  args = args or {}
  if command == nil or command == "help" or command == "--help" or command == "-h" then
    return commands.help()
  end
  local f = commands[command]
  if not f then
    fail("unknown command '%s'; commands: runs, compare, report, resume, merge, eval, bench, data, help (or a .lua file to run)", tostring(command))
  end
  local rc = f(args)
  return rc or 0
end

return cli
