-- Multiple-choice evaluation: task files to gqe.eval tasks, scoring during
-- and after training, and `gqe eval RUN_ID --task NAME=PATH`.
--
-- A task file is JSONL, one {"context": str, "choices": [str, ...],
-- "label": int (0-based)} per line, or llm.c's eval format (.bin, already
-- GPT-2 tokens). JSONL text is tokenized for the model: GPT-2 BPE for a
-- model of vocabulary >= 50257, bytes for a byte-level model (256). Each
-- choice is scored as " " + choice after the context, as llm.c and
-- lm-evaluation-harness do.
local gqe = require "gqe"
local json = require "gqe.json"

local evaluate = {}

local fail = require "gqe.fail"

local text = require "gqe.text"
evaluate.tokenizer = text.tokenizer

local function load_jsonl(path, enc)
  local f, err = io.open(path, "rb")
  if not f then fail("task file %s: %s", path, err) end
  local task = gqe.eval.task()
  local encode = enc.encode
  local lineno = 0
  for line in f:lines() do
    lineno = lineno + 1
    if line:match("%S") then
      local ok, ex = pcall(json.decode, line)
      local where = string.format("%s:%d", path, lineno)
      if not ok then f:close(); fail("%s: invalid JSON (%s)", where, tostring(ex)) end
      if type(ex) ~= "table" then f:close(); fail("%s: expected an object {\"context\", \"choices\", \"label\"}", where) end
      if type(ex.context) ~= "string" then f:close(); fail("%s: \"context\" must be a string", where) end
      if type(ex.choices) ~= "table" or #ex.choices == 0 then f:close(); fail("%s: \"choices\" must be a non-empty list of strings", where) end
      local label = type(ex.label) == "number" and math.tointeger(ex.label)
      if not label then f:close(); fail("%s: \"label\" must be an integer (0-based index into choices)", where) end
      if label < 0 or label >= #ex.choices then
        f:close(); fail("%s: label %d is out of range for %d choices (0..%d)", where, label, #ex.choices, #ex.choices - 1)
      end
      if ex.context == "" then f:close(); fail("%s: empty context", where) end
      local choices, bytes = {}, {}
      for i, c in ipairs(ex.choices) do
        if type(c) ~= "string" or c == "" then f:close(); fail("%s: choice %d must be a non-empty string", where, i - 1) end
        choices[i] = encode(" " .. c)
        bytes[i] = #c + 1
      end
      local ok2, e2 = pcall(task.add, task, encode(ex.context), choices, label, bytes)
      if not ok2 then f:close(); fail("%s: %s", where, tostring(e2):gsub("^task:add: ", "")) end
    end
  end
  f:close()
  if #task == 0 then fail("task file %s holds no examples", path) end
  return task
end

local function is_llmc(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local head = f:read(4)
  f:close()
  return head and #head == 4 and string.unpack("<i4", head) == 20240522
end

-- Loads one task for a model of vocabulary `vocab`; checks it fits the model.
function evaluate.load_task(name, path, vocab, tokenizer_dir)
  local f, err = io.open(path, "rb")
  if not f then fail("eval task %s: cannot open %s: %s", name, path, err) end
  f:close()
  local task
  if is_llmc(path) or path:match("%.bin$") then
    if vocab < 50257 then
      fail("eval task %s: %s holds GPT-2 tokens (llm.c eval format) but the model's vocabulary is %d", name, path, vocab)
    end
    task = gqe.eval.read_llmc(path)
    task:measure(evaluate.tokenizer(tokenizer_dir))
  else
    task = load_jsonl(path, text.codec(vocab, tokenizer_dir))
  end
  task:check_vocab(vocab, string.format("eval task %s (%s)", name, path))
  return task
end

-- Task names in a stable order.
local function sorted_names(tasks)
  local names = {}
  for k in pairs(tasks) do names[#names + 1] = k end
  table.sort(names)
  return names
end
evaluate.sorted_names = sorted_names

-- All tasks of a config's eval.tasks, loaded once (before training starts,
-- so a bad file fails the run early).
function evaluate.load_all(tasks, vocab, tokenizer_dir)
  local loaded = {}
  for _, name in ipairs(sorted_names(tasks or {})) do
    if not name:match("^[%w_%-%.]+$") then fail("eval task name '%s' must be letters, digits, _ - or .", name) end
    loaded[#loaded + 1] = { name = name, path = tasks[name], task = evaluate.load_task(name, tasks[name], vocab, tokenizer_dir) }
  end
  return loaded
end

-- The forward shape for a task: rows no longer than they need (the
-- longest row, rounded up to 32, at most T) and as many as B*T tokens
-- hold, so short multiple-choice rows are not padded to a training
-- sequence of thousands of tokens.
function evaluate.shape(task, B, T)
  local need = math.max(1, task:longest() - 1)
  local t = math.min(T, (need + 31) // 32 * 32)
  local b = math.max(B, (B * T) // t)
  return math.min(b, math.max(1, task:choices())), t
end

-- Scores each loaded task; returns {name = {n, acc, acc_norm}}. B, T: the
-- run's batch and sequence length, which bound the tokens per forward.
function evaluate.score(lm, loaded, B, T)
  local out = {}
  for _, t in ipairs(loaded) do
    out[t.name] = gqe.eval.score(lm, t.task, evaluate.shape(t.task, B, T))
  end
  return out
end

-- Logs scores to the evals table (split = task name) and as metrics <task>/acc, <task>/acc_norm.
function evaluate.log(db, run_id, step, scores)
  for _, name in ipairs(sorted_names(scores)) do
    local s = scores[name]
    db:eval(run_id, step, name, "acc", s.acc)
    db:eval(run_id, step, name, "acc_norm", s.acc_norm)
  end
end

-- The training loop's hook (train.lua, at each evaluation): scores the
-- run's tasks with its training batch shape, logs them, prints one line.
function evaluate.at_step(ctx, step)
  local t = ctx.c.train
  local scores = evaluate.score(ctx.lm, ctx.eval_tasks, t.batch, t.seq)
  evaluate.log(ctx.db, ctx.run_id, step, scores)
  ctx.eval_scores = scores
  if t.progress and not ctx.evals_only then
    local parts = {}
    for _, name in ipairs(sorted_names(scores)) do
      local sc = scores[name]
      parts[#parts + 1] = string.format("%s acc %.4f acc_norm %.4f (n=%d)", name, sc.acc, sc.acc_norm, sc.n)
    end
    io.stderr:write(string.format("%s step %d/%d  %s\n", ctx.label, step, t.steps, table.concat(parts, "  ")))
  end
  return scores
end

-- The vocabulary a run's model was built with.
local function run_vocab(c)
  if c.model.vocab > 0 then return c.model.vocab end
  if c.data.kind == "text" then return 256 end
  if c.data.kind == "shards" then return c.data.vocab > 0 and c.data.vocab or 50257 end
  return gqe.data.open(require("gqe.train").data_options(c)):vocab()
end

-- `gqe eval RUN_ID --task NAME=PATH ...`: scores a run's latest checkpoint
-- and logs the results to the run at that checkpoint's step. opts: tasks
-- ({name = path}; default the run's eval.tasks), device, batch, tokenizer.
function evaluate.run_checkpoint(db, run_id, opts)
  local config = require "gqe.config"
  local train = require "gqe.train"
  local r = db:query("SELECT config FROM runs WHERE id = ?", run_id)[1]
  if not r then fail("no run %d in this database (see `gqe runs`)", run_id) end
  local c = config.resolve(json.decode(r.config))
  local tasks = opts.tasks
  if not tasks or next(tasks) == nil then tasks = c.eval.tasks end
  if next(tasks) == nil then fail("no tasks: pass --task NAME=PATH (run %d has no eval.tasks)", run_id) end
  local ck = db:query("SELECT step, path FROM checkpoints WHERE run_id = ? ORDER BY step DESC, id DESC LIMIT 1", run_id)[1]
  if not ck then fail("run %d has no checkpoint to evaluate", run_id) end
  local f = io.open(ck.path, "rb")
  if not f then fail("run %d: checkpoint file %s is missing", run_id, ck.path) end
  f:close()
  local vocab = run_vocab(c)
  local loaded = evaluate.load_all(tasks, vocab, opts.tokenizer or c.eval.tokenizer)
  if opts.device then c.train.device = opts.device end
  local mo = train.model_options(c, vocab)
  local lm = gqe.nn.LM(mo)
  gqe.checkpoint.load(ck.path, lm, nil)
  local B = opts.batch or c.train.batch
  local scores = evaluate.score(lm, loaded, B, mo.max_seq)
  evaluate.log(db, run_id, ck.step, scores)
  db:flush()
  return scores, ck.step
end

-- The CLI entry: args after `eval`.
function evaluate.main(args)
  local config = require "gqe.config"
  local usage = "usage: gqe eval RUN_ID [--task NAME=PATH ...] [--batch N] [--device cpu|cuda] [--tokenizer DIR] [--db PATH]"
  -- --task may repeat: collect them before the generic parser sees them.
  local tasks, rest = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local v = a:match("^%-%-task=(.*)$")
    if a == "--task" then v = args[i + 1]; i = i + 1; if not v then fail("--task needs NAME=PATH\n%s", usage) end end
    if v then
      local name, path = v:match("^([^=]+)=(.+)$")
      if not name then fail("--task %s must look like NAME=PATH\n%s", v, usage) end
      tasks[name] = path
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  local with_value = { db = true, batch = true, device = true, tokenizer = true }
  local overrides, flags, pos = config.parse_args(rest, with_value)
  if flags.help then print(usage); return 0 end
  for k in pairs(flags) do if not with_value[k] then fail("unknown flag --%s\n%s", k, usage) end end
  if #overrides > 0 or #pos ~= 1 then fail("%s", usage) end
  local id = math.tointeger(tonumber(pos[1]))
  if not id then fail("RUN_ID must be a run number, got '%s'\n%s", pos[1], usage) end
  local batch = flags.batch and math.tointeger(tonumber(flags.batch))
  if flags.batch and (not batch or batch < 1) then fail("--batch must be a positive integer, got %s", flags.batch) end
  local path = require("gqe.train").db_path(flags.db)
  local fh = io.open(path, "rb")
  if not fh then fail("no run log at %s (train something first, or pass --db PATH / set GQE_DB)", path) end
  fh:close()
  local db = gqe.db.open(path)
  local ok, scores, step = pcall(evaluate.run_checkpoint, db, id,
    { tasks = tasks, batch = batch, device = flags.device, tokenizer = flags.tokenizer })
  db:close()
  if not ok then error(scores, 0) end
  print(string.format("run %d, checkpoint at step %d:", id, step))
  for _, name in ipairs(sorted_names(scores)) do
    local s = scores[name]
    print(string.format("  %-16s acc %.4f  acc_norm %.4f  n %d", name, s.acc, s.acc_norm, s.n))
  end
  return 0
end

return evaluate
