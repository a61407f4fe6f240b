-- The run configuration: five sections with defaults, validation that names
-- the offending key and the allowed values, `section.key=value` overrides,
-- flattening to dotted keys, and a stable hash used to recognise a run that
-- already finished with the same configuration.
local json = require "gqe.json"

local config = {}

-- The description of every config key, in the order the README lists them:
-- name, type ("int" | "number" | "bool" | "string"), default, the allowed
-- values or range, and what it means. The validation below, the model
-- options handed to gqe.nn.LM (field `lm`), the config hash and the README's
-- config table (config.markdown, checked by tests/cli/test_config_table.sh)
-- are all derived from it. Ranges: min/max with min_open/max_open for
-- exclusive bounds; `when` limits a check to the configs it applies to.
-- Defaults train on a laptop CPU in a couple of minutes.
local core = package.loaded["gqe"]
local names = core and core.nn and core.nn.names or {}

local D = {}
config.description = D
local function key(name, ty, default, t)
  t = t or {}
  t.name, t.type, t.default = name, ty, default
  t.section, t.key = name:match("^([%w_]+)%.([%w_]+)$")
  D[#D + 1] = t
end
local adamw = { when = function(c) return c.optim.name == "adamw" end, only = "optim.name=adamw" }
local sgd = { when = function(c) return c.optim.name == "sgd" end, only = "optim.name=sgd" }
local function with(base, t) for k, v in pairs(base) do t[k] = v end return t end

key("model.vocab", "int", 0, { min = 0, lm = "vocab", doc = "vocabulary size; 0: the data set's" })
key("model.dim", "int", 128, { min = 1, lm = "dim", doc = "model width d" })
key("model.layers", "int", 4, { min = 1, lm = "layers", doc = "number of blocks" })
key("model.max_seq", "int", 0, { min = 0, doc = "longest sequence the model accepts; 0 or less than train.seq: train.seq" })
key("model.attention", "string", "gqe", { values = names.attention, lm = "attention",
    doc = "`gqe`, or a dense baseline: `mha` has groups = experts, `mqa` groups = 1" })
key("model.experts", "int", 8, { min = 1, lm = "experts", doc = "N: query-head experts per layer" })
key("model.groups", "int", 4, { min = 1, lm = "groups", doc = "G: KV heads; N must be divisible by G" })
key("model.k", "int", 1, { min = 1, lm = "k", doc = "experts chosen per group and token, at most N/G (gqe)" })
key("model.head_dim", "int", 0, { min = 0, lm = "head_dim", doc = "head width; 0: dim / experts" })
key("model.variant", "string", "gqe", { values = names.variant, lm = "variant",
    doc = "how chosen experts feed o_proj (docs/GQE.md); `gqe` adds weighted slots and a shared head" })
key("model.router", "string", "softmax", { values = names.router, lm = "router",
    doc = "expert scores; `balanced` is aux-loss-free (a load bias, see balance_gamma)" })
key("model.balance_gamma", "number", 0.01, { min = 0, lm = "balance_gamma",
    hashed = function(c) return c.model.router == "balanced" end,
    doc = "balanced router: bias step per optimizer step (b += gamma * sign(mean load - load)). Measured with the "
       .. "defaults (quickstart sizes, variant gqe, Brown bytes, 300 steps, CPU, seeds 1-3): every group's top "
       .. "share <= 0.8 from step 25, mean over groups <= 0.6 from step 25-30; 0.02-0.03 flip groups from one "
       .. "evaluation to the next (<= 0.8 only from step 85-210); a larger gamma over the first 30 steps does no "
       .. "better" })
-- Hashed only where it differs from 1, the rate runs had before the key
-- existed: their hashes, and so reruns that skip them, stay as they were.
key("model.balance_lr_scale", "number", 0.1, { min = 0,
    hashed = function(c) return c.model.router == "balanced" and c.model.balance_lr_scale ~= 1 end,
    doc = "balanced router: its router.weight learns at optim.lr times this (other routers: optim.lr). Measured "
       .. "as above: 0.1 (and 0.03) bring every group's top share <= 0.8 from step 20-25, against step 100-305 at "
       .. "1 (the router's own learning outran the bias), val/loss within the seed spread; 0.3 varies with the seed; 0 "
       .. "(a fixed random router) balances as 0.1. No scale balances steps 5-15 (see below the table)" })
key("model.rope", "bool", true, { lm = "rope", doc = "rotary position embeddings on queries and keys" })
key("model.rope_theta", "number", 10000.0, { min = 0, min_open = true, lm = "rope_theta",
    when = function(c) return c.model.rope end, only = "model.rope=true", doc = "RoPE base" })
key("model.mlp", "string", "gelu", { values = names.mlp, lm = "mlp", doc = "MLP: `gelu` or `swiglu`" })
key("model.mlp_hidden", "int", 0, { min = 0, lm = "mlp_hidden", doc = "MLP width; 0: 4 * dim" })
key("model.tied", "bool", true, { lm = "tied", doc = "output head shares the token embedding" })
key("model.norm_eps", "number", 1e-5, { min = 0, min_open = true, lm = "norm_eps", doc = "RMSNorm epsilon" })
key("model.init_std", "number", 0.02, { min = 0, min_open = true, lm = "init_std",
    doc = "std of the initial weights (residual projections / sqrt(2 layers))" })

key("optim.name", "string", "adamw", { values = { "adamw", "sgd" }, doc = "optimizer" })
key("optim.lr", "number", 3e-3, { min = 0, min_open = true, doc = "peak learning rate" })
key("optim.beta1", "number", 0.9, with(adamw, { min = 0, max = 1, max_open = true, doc = "AdamW first-moment decay" }))
key("optim.beta2", "number", 0.95, with(adamw, { min = 0, max = 1, max_open = true, doc = "AdamW second-moment decay" }))
key("optim.eps", "number", 1e-8, with(adamw, { min = 0, min_open = true, doc = "AdamW epsilon" }))
key("optim.weight_decay", "number", 0.1, { min = 0, doc = "decoupled weight decay" })
key("optim.decay_norms", "bool", false, { doc = "apply weight decay to norm gains too" })
key("optim.decay_embeddings", "bool", false, { doc = "apply weight decay to the embedding too" })
key("optim.momentum", "number", 0.9, with(sgd, { min = 0, doc = "SGD momentum" }))
key("optim.nesterov", "bool", false, with(sgd, { doc = "SGD Nesterov momentum" }))

key("schedule.kind", "string", "cosine", { values = { "constant", "cosine", "wsd" },
    doc = "learning-rate schedule (warm-up, then constant, cosine or warmup-stable-decay)" })
key("schedule.warmup", "int", 0, { min = 0, doc = "linear warm-up steps; less than train.steps" })
key("schedule.min_lr", "number", 0.1, { min = 0, max = 1, doc = "final learning rate as a fraction of optim.lr" })
key("schedule.decay_frac", "number", 0.2, { min = 0, min_open = true, max = 1,
    doc = "wsd: fraction of the steps spent decaying" })

key("data.kind", "string", "text", { values = { "text", "shards", "recall" },
    doc = "`text` (bytes of a file), `shards` (llm.c token shards), `recall` (synthetic associative recall)" })
key("data.path", "string", "data/brown.txt", { doc = "training file (text) or shard glob (shards)" })
key("data.val_path", "string", "", { doc = "shards: validation shards; text holds out data.val_frac of data.path" })
key("data.val_frac", "number", 0.1, { min = 0, max = 1, max_open = true, doc = "text: share held out for validation" })
key("data.vocab", "int", 0, { min = 0, doc = "recall task vocabulary; 0: the data set's default" })
key("data.num_pairs", "int", 8, { min = 1,
    hashed = function(c) return c.data.kind == "recall" and c.data.num_pairs ~= 8 end, doc = "recall: key-value pairs per row (the task's difficulty)" })
key("data.num_queries", "int", 0, { min = 0,
    hashed = function(c) return c.data.kind == "recall" and c.data.num_queries ~= 0 end, doc = "recall: queried keys per row; 0: num_pairs" })
key("data.seed", "int", 0, { doc = "seed of the batch order; 0: train.seed" })

key("train.steps", "int", 300, { min = 1, doc = "optimizer steps" })
key("train.batch", "int", 16, { min = 1, doc = "sequences per step" })
key("train.seq", "int", 128, { min = 1, doc = "tokens per sequence" })
key("train.device", "string", "cpu", { values = { "cpu", "cuda" }, doc = "where to train" })
key("train.precision", "string", "fp32", { values = { "fp32", "bf16" },
    doc = "bf16: mixed precision on cuda (f32 master weights and optimizer state, bf16 matmuls and activations)" })
key("train.seed", "int", 1, { doc = "seed of the weights and (unless data.seed) the data order" })
key("train.grad_clip", "number", 1.0, { min = 0, doc = "global gradient-norm clip; 0: none" })
key("train.aux_coef", "number", 0.01, { min = 0, doc = "weight of the routers' aux loss (softmax, sigmoid)" })
key("train.log_every", "int", 10, { min = 1, doc = "steps between logged training metrics" })
key("train.eval_every", "int", 100, { min = 1, doc = "steps between evaluations (and at the end)" })
key("train.eval_batches", "int", 8, { min = 1, doc = "validation batches per evaluation" })
key("train.checkpoint_every", "int", 0, { min = 0, doc = "steps between checkpoints; 0: only at the end and on a signal" })
key("train.checkpoint_dir", "string", "checkpoints", { hashed = false,
    doc = "checkpoints go to <dir>/<experiment>/run<id>-<uid>/step<N>.safetensors" })
key("train.keep_checkpoints", "int", 2, { min = 0, hashed = false,
    doc = "newest checkpoints a run keeps, plus its final one; 0 keeps all" })
key("train.on_nan", "string", "stop", { values = { "stop", "skip" }, doc = "a NaN/Inf loss or gradient: stop the run or skip the step" })
key("train.grad_accum", "int", 1, { min = 1, hashed = function(c) return c.train.grad_accum ~= 1 end,
    doc = "micro-batches per step: the global batch is batch x grad_accum x ranks" })
key("train.nproc", "int", 1, { min = 1, hashed = false,
    doc = "ranks of a data-parallel run (GPUs over NCCL, CPU processes over MPI), started by the experiment runner "
       .. "(`gqe FILE.lua`, with or without --jobs) as `gqe launch --nproc N` does; train.batch is per rank. "
       .. "The hash takes the world size as for `gqe launch` runs, not the key" })
key("train.dist_timeout", "number", 60, { min = 0, min_open = true, hashed = false,
    doc = "seconds a rank waits for the others in a collective before the run fails (several ranks)" })
key("train.zero", "bool", false, { hashed = false,
    doc = "several ranks: shard the optimizer state over them (ZeRO-1)" })
key("train.progress", "bool", true, { hashed = false, doc = "progress lines on stderr" })
key("train.db", "string", "", { hashed = false, doc = "run log; empty: --db, GQE_DB or runs.db" })

-- Multiple-choice evaluation (lua/gqe/evaluate.lua), at train.eval_every and at the end.
key("eval.tasks", "tasks", {}, { hashed = false,
    doc = "`{ name = path }`: JSONL or llm.c eval files; on the command line `eval.tasks=name=path,name2=path2`" })
key("eval.tokenizer", "string", "data/gpt2", { hashed = false,
    doc = "directory of GPT-2's encoder.json and vocab.bpe (for models of vocabulary >= 50257, and val/bpb on token shards)" })

-- S[section][key] = the key's description; sections in order.
local S = {}
config.schema = S
config.sections = {}
for _, d in ipairs(D) do
  if not S[d.section] then S[d.section] = {}; config.sections[#config.sections + 1] = d.section end
  S[d.section][d.key] = d
end
-- Keys that never change what a run computes, left out of the hash so a
-- rerun with another database path or without progress lines is skipped.
config.unhashed = {}
for _, d in ipairs(D) do if d.hashed == false then config.unhashed[d.name] = true end end
-- Sections left out of the run's JSON, params and hash while at their
-- defaults, so configs that do not use them describe the same run as before.
config.optional = { eval = true }
-- Top-level keys besides the sections.
local toplevel = { name = true, experiment = true }

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end
config.sorted_keys = sorted_keys

function config.valid_keys(section)
  return table.concat(sorted_keys(S[section]), ", ")
end

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local r = {}
  for k, x in pairs(v) do r[k] = deepcopy(x) end
  return r
end
config.deepcopy = deepcopy

function config.defaults()
  local c = {}
  for _, sec in ipairs(config.sections) do
    c[sec] = {}
    for k, d in pairs(S[sec]) do c[sec][k] = deepcopy(d.default) end
  end
  return c
end

local fail = require "gqe.fail"

-- The value converted to the key's type, or an error naming the key.
local function check_value(sec, key, v)
  local d = S[sec][key]
  local ty, allowed = d.type, d.values
  local where = d.name
  if ty == "tasks" then
    if type(v) == "string" then v = config.coerce(sec, key, v) end
    if type(v) ~= "table" then fail("%s must be a table { name = path }, got %s", where, type(v)) end
    local r = {}
    for name, path in pairs(v) do
      if type(name) ~= "string" or type(path) ~= "string" or path == "" then
        fail("%s must map task names to file paths, got %s = %s", where, tostring(name), tostring(path))
      end
      r[name] = path
    end
    return r
  elseif ty == "int" then
    local i = type(v) == "number" and math.tointeger(v)
    if not i then fail("%s must be an integer, got %s (%s)", where, tostring(v), type(v)) end
    return i
  elseif ty == "number" then
    if type(v) ~= "number" then fail("%s must be a number, got %s (%s)", where, tostring(v), type(v)) end
    if v ~= v or v == math.huge or v == -math.huge then fail("%s must be finite, got %s", where, tostring(v)) end
    return v + 0.0
  elseif ty == "bool" then
    if type(v) ~= "boolean" then fail("%s must be true or false, got %s (%s)", where, tostring(v), type(v)) end
    return v
  else
    if type(v) ~= "string" then fail("%s must be a string, got %s (%s)", where, tostring(v), type(v)) end
    if allowed then
      local ok = false
      for _, a in ipairs(allowed) do if a == v then ok = true end end
      if not ok then
        fail("%s must be one of %s, got '%s'", where, table.concat(allowed, ", "), v)
      end
    end
    return v
  end
end

local function num_text(v) return math.type(v) == "integer" and tostring(v) or string.format("%g", v) end

-- The range of a description as text: ">= 1", "> 0", "in [0, 1)".
function config.range_text(d)
  if d.min and d.max then
    return string.format("in %s%s, %s%s", d.min_open and "(" or "[", num_text(d.min), num_text(d.max),
                         d.max_open and ")" or "]")
  elseif d.min then
    return (d.min_open and "> " or ">= ") .. num_text(d.min)
  elseif d.max then
    return (d.max_open and "< " or "<= ") .. num_text(d.max)
  end
  return nil
end

local function in_range(d, v)
  if d.min and (v < d.min or (d.min_open and v == d.min)) then return false end
  if d.max and (v > d.max or (d.max_open and v == d.max)) then return false end
  return true
end

-- The model's options for gqe.nn.LM from the description's `lm` fields,
-- plus what comes from the train section. vocab: the data's when
-- model.vocab is 0.
function config.model_options(c, vocab)
  local o = {}
  for _, d in ipairs(D) do
    if d.lm then o[d.lm] = c[d.section][d.key] end
  end
  o.vocab = vocab or o.vocab
  o.max_seq = math.max(c.model.max_seq, c.train.seq)
  o.seed, o.device, o.precision = c.train.seed, c.train.device, c.train.precision
  return o
end

-- The core's model checks (gqe.nn.check_lm: divisibility, k <= N/G, head
-- sizes) with its messages in config names ("k must be" -> "model.k must
-- be"). Word-for-word: a model key followed by " per" or " '" is prose.
local function check_model(c)
  if not (core and core.nn and core.nn.check_lm) then return end
  local o = config.model_options(c, c.model.vocab > 0 and c.model.vocab or 256)
  o.device, o.precision = nil, nil   -- whether a GPU is there is train.run's question
  local ok, err = pcall(core.nn.check_lm, o)
  if ok then return end
  local msg = tostring(err):gsub("^gqe%.nn%.check_lm[%.%w_]*: ", "")
  msg = msg:gsub("()([%a_][%w_]*)()", function(i, word, j)
    if not S.model[word] or msg:sub(i - 1, i - 1) == "." then return nil end
    local after = msg:sub(j, j + 3)
    if after == " per" or after:sub(1, 2) == " '" then return nil end
    return "model." .. word
  end)
  error(msg, 0)
end

-- Every key against its description, then what involves several keys.
local function check_ranges(c)
  for _, d in ipairs(D) do
    local v = c[d.section][d.key]
    if type(v) == "number" and (not d.when or d.when(c)) and not in_range(d, v) then
      fail("%s must be %s, got %s", d.name, config.range_text(d), num_text(v))
    end
  end
  local t, d, s = c.train, c.data, c.schedule
  if d.kind ~= "recall" and d.path == "" then fail("data.path must name a file for data.kind '%s'", d.kind) end
  if s.kind ~= "constant" and s.warmup >= t.steps then
    fail("schedule.warmup (%d) must be less than train.steps (%d) for schedule.kind '%s'", s.warmup, t.steps, s.kind)
  end
  if t.precision == "bf16" and t.device ~= "cuda" then
    fail("train.precision 'bf16' needs train.device=cuda (the cpu backend computes in f32)")
  end
  -- Every run evaluates (at train.eval_every and at the end), so a run
  -- without validation data would fail only then.
  if d.kind == "shards" and d.val_path == "" then
    fail("data.val_path must name the validation shards (a file or glob) for data.kind 'shards'")
  end
  if d.kind == "text" then
    if d.val_path ~= "" then
      fail("data.val_path is for data.kind 'shards'; data.kind 'text' holds out the last data.val_frac of data.path")
    end
    if d.val_frac <= 0 then fail("data.val_frac must be > 0 for data.kind 'text' (the validation split), got %s", tostring(d.val_frac)) end
  end
  check_model(c)
end

-- Defaults filled in, every key checked. Returns a new table; the input is
-- not modified. Errors name the key, and for unknown keys list the valid ones.
function config.resolve(user)
  user = user or {}
  if type(user) ~= "table" then fail("config must be a table, got %s", type(user)) end
  local c = config.defaults()
  for _, k in ipairs(sorted_keys(user)) do
    local v = user[k]
    if S[k] then
      if type(v) ~= "table" then fail("config section %s must be a table, got %s", k, type(v)) end
      for _, key in ipairs(sorted_keys(v)) do
        if type(key) ~= "string" or not S[k][key] then
          fail("unknown key %s.%s; valid keys of %s: %s", k, tostring(key), k, config.valid_keys(k))
        end
        c[k][key] = check_value(k, key, v[key])
      end
    elseif toplevel[k] then
      if type(v) ~= "string" then fail("config.%s must be a string, got %s", k, type(v)) end
      c[k] = v
    else
      fail("unknown config section '%s'; valid: %s, name, experiment", tostring(k),
           table.concat(config.sections, ", "))
    end
  end
  check_ranges(c)
  return c
end

-- Sets one dotted key, converting a string value from the command line to
-- the key's type ("2" -> 2, "true" -> true, "1e-3" -> 0.001).
function config.set(c, dotted, value)
  local sec, key = dotted:match("^([%w_]+)%.([%w_]+)$")
  if not sec then fail("override '%s' must look like section.key=value (e.g. model.k=2)", dotted) end
  if not S[sec] then
    fail("unknown config section '%s' in override '%s'; valid: %s", sec, dotted, table.concat(config.sections, ", "))
  end
  if not S[sec][key] then
    fail("unknown key %s.%s; valid keys of %s: %s", sec, key, sec, config.valid_keys(sec))
  end
  if type(value) == "string" then value = config.coerce(sec, key, value) end
  c[sec] = c[sec] or {}
  c[sec][key] = value
  return c
end

function config.coerce(sec, key, s)
  local ty = S[sec][key].type
  local where = sec .. "." .. key
  if ty == "tasks" then   -- "name=path,name2=path2"
    local r = {}
    for item in s:gmatch("[^,]+") do
      local name, path = item:match("^([^=]+)=(.+)$")
      if not name then fail("%s: '%s' must look like name=path", where, item) end
      r[name] = path
    end
    return r
  end
  if ty == "int" or ty == "number" then
    local n = tonumber(s)
    if not n then fail("%s must be a number, got '%s'", where, s) end
    if ty == "int" then
      local i = math.tointeger(n)
      if not i then fail("%s must be an integer, got '%s'", where, s) end
      return i
    end
    return n + 0.0
  elseif ty == "bool" then
    if s == "true" or s == "1" or s == "yes" then return true end
    if s == "false" or s == "0" or s == "no" then return false end
    fail("%s must be true or false, got '%s'", where, s)
  end
  return s
end

-- Without a schema (grid keys of unknown sections are rejected earlier):
-- numbers and booleans from their text, anything else as a string.
function config.coerce_any(s)
  if s == "true" then return true elseif s == "false" then return false end
  local n = tonumber(s)
  if n then return math.tointeger(n) or n end
  return s
end

-- Splits argv into overrides {"model.k" = "2", ...} (in order, as a list of
-- {key, value}) and flags {jobs = "2", ["dry-run"] = true, db = "x.db"}, and
-- positional arguments. Flags that take a value are named in with_value.
function config.parse_args(args, with_value)
  with_value = with_value or { db = true, jobs = true, metric = true, out = true }
  local overrides, flags, positional = {}, {}, {}
  local i = 1
  args = args or {}
  while i <= #args do
    local a = args[i]
    local flag, eq = a:match("^%-%-([%w%-_]+)=(.*)$")
    if flag then
      flags[flag] = eq
    elseif a:match("^%-%-[%w%-_]+$") then
      flag = a:sub(3)
      if with_value[flag] then
        if args[i + 1] == nil then fail("--%s needs a value", flag) end
        flags[flag] = args[i + 1]; i = i + 1
      else
        flags[flag] = true
      end
    elseif a:match("^[%w_]+%.[%w_]+=") then
      local k, v = a:match("^([^=]+)=(.*)$")
      overrides[#overrides + 1] = { k, v }
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
  return overrides, flags, positional
end

-- Applies overrides (list of {key, value}) to a partial config table.
function config.apply(c, overrides)
  for _, kv in ipairs(overrides or {}) do config.set(c, kv[1], kv[2]) end
  return c
end

-- An optional section at its defaults (or absent) is left out.
local function unused(c, sec)
  if not config.optional[sec] then return false end
  local v = c[sec]
  if v == nil then return true end
  for k, spec in pairs(S[sec]) do
    local d = spec.default
    if type(d) == "table" then
      if type(v[k]) == "table" and next(v[k]) ~= nil then return false end
    elseif v[k] ~= nil and v[k] ~= d then
      return false
    end
  end
  return true
end

-- {"model.k" = 2, ...} over the sections (top-level name/experiment left out).
function config.flatten(c)
  local flat = {}
  for _, sec in ipairs(config.sections) do
    if not unused(c, sec) then
      for k, v in pairs(c[sec] or {}) do flat[sec .. "." .. k] = v end
    end
  end
  return flat
end

-- Flattened values as text for the params table (numbers in their JSON form).
function config.params(c)
  local p = {}
  for k, v in pairs(config.flatten(c)) do
    if type(v) == "number" then p[k] = json.number(v)
    elseif type(v) == "boolean" then p[k] = v and "true" or "false"
    elseif type(v) == "table" then p[k] = json.encode(v)
    else p[k] = tostring(v) end
  end
  return p
end

-- The five sections only, as stable JSON.
function config.to_json(c)
  local t = {}
  for _, sec in ipairs(config.sections) do
    if not unused(c, sec) then t[sec] = c[sec] end
  end
  return json.encode(t)
end

-- FNV-1a 64 over the bytes of s; Lua integers wrap modulo 2^64, which is
-- exactly the arithmetic FNV needs.
function config.fnv1a64(s)
  local h = -3750763034362895579  -- 0xcbf29ce484222325
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = h * 1099511628211         -- 0x100000001b3
  end
  return string.format("%016x", h)
end

-- Hash of what determines the run's results: every key but those marked
-- hashed = false, and keys with a `hashed` predicate only where it holds
-- (model.balance_gamma matters to the balanced router alone, so the hashes
-- of runs with other routers did not change when it became a key).
function config.hash(c)
  local t = {}
  for _, sec in ipairs(config.sections) do
    if not config.optional[sec] then t[sec] = {} end
  end
  for _, sec in ipairs(config.sections) do
    for k, v in pairs(c[sec] or {}) do
      local d = S[sec][k]
      local h = d and d.hashed
      if h == nil or (type(h) == "function" and h(c)) then t[sec] = t[sec] or {}; t[sec][k] = v end
    end
  end
  local h = config.fnv1a64(json.encode(t))
  -- Several ranks: the world size joins the hash as gqe/parallel.lua adds
  -- it for any launcher, so train.nproc=2 and `gqe launch --nproc 2` name
  -- the same run (train.batch is per rank: the world changes the results).
  local world = c.train and math.tointeger(c.train.nproc) or 1
  if world > 1 then h = config.fnv1a64(h .. "|world=" .. world) end
  return h
end

-- The README's table of config keys (generated from the description:
-- `build/gqe scripts/config_table.lua README.md` rewrites it in place).
function config.markdown()
  local out = { "| key | type | default | allowed | meaning |", "|---|---|---|---|---|" }
  for _, d in ipairs(D) do
    local default = d.default
    if d.type == "string" then default = default == "" and '`""`' or "`" .. default .. "`"
    elseif d.type == "number" then default = "`" .. json.number(default) .. "`"
    elseif d.type == "tasks" then default = "`{}`"
    else default = "`" .. tostring(default) .. "`" end
    local allowed = d.values and ("`" .. table.concat(d.values, "`, `") .. "`") or config.range_text(d) or ""
    if d.only and allowed ~= "" then allowed = allowed .. " (with " .. d.only .. ")" end
    out[#out + 1] = string.format("| `%s` | %s | %s | %s | %s |", d.name, d.type, default, allowed, d.doc or "")
  end
  return table.concat(out, "\n") .. "\n"
end

-- Active query-attention heads per token, as the core counts them
-- (gqe.nn.active_heads; GQE.md: G*k, +1 shared head in variant gqe; dense
-- kinds compute all N).
function config.active_heads(c)
  local m = c.model
  return core.nn.active_heads { attention = m.attention, experts = m.experts, groups = m.groups, k = m.k,
                                variant = m.variant }
end

return config
