-- The run configuration: five sections with defaults, validation that names
-- the offending key and the allowed values, `section.key=value` overrides,
-- flattening to dotted keys, and a stable hash used to recognise a run that
-- already finished with the same configuration.
local json = require "gqe.json"

local config = {}

-- Each entry: default value, type ("int" | "number" | "bool" | "string"),
-- and for strings optionally the allowed values. Defaults are small enough
-- to train on a laptop CPU in a couple of minutes.
local S = {}
config.schema = S

S.model = {
  vocab      = { 0, "int", doc = "0: take the vocabulary size from the data set" },
  dim        = { 128, "int" },
  layers     = { 4, "int" },
  max_seq    = { 0, "int", doc = "0: train.seq" },
  attention  = { "gqe", "string", { "gqe", "gqa", "mha", "mqa" } },
  experts    = { 8, "int" },
  groups     = { 4, "int" },
  k          = { 1, "int" },
  head_dim   = { 0, "int", doc = "0: dim / experts" },
  variant    = { "gqe", "string", { "gqe", "hard_concat", "weighted_concat" } },
  router     = { "softmax", "string", { "softmax", "sigmoid", "balanced", "random", "hash" } },
  rope       = { true, "bool" },
  rope_theta = { 10000.0, "number" },
  mlp        = { "gelu", "string", { "gelu", "swiglu" } },
  mlp_hidden = { 0, "int", doc = "0: 4 * dim" },
  tied       = { true, "bool" },
  norm_eps   = { 1e-5, "number" },
  init_std   = { 0.02, "number" },
}

S.optim = {
  name             = { "adamw", "string", { "adamw", "sgd" } },
  lr               = { 3e-3, "number" },
  beta1            = { 0.9, "number" },
  beta2            = { 0.95, "number" },
  eps              = { 1e-8, "number" },
  weight_decay     = { 0.1, "number" },
  decay_norms      = { false, "bool" },
  decay_embeddings = { false, "bool" },
  momentum         = { 0.9, "number", doc = "sgd only" },
  nesterov         = { false, "bool", doc = "sgd only" },
}

S.schedule = {
  kind       = { "cosine", "string", { "constant", "cosine", "wsd" } },
  warmup     = { 0, "int" },
  min_lr     = { 0.1, "number", doc = "fraction of optim.lr" },
  decay_frac = { 0.2, "number", doc = "wsd: fraction of the steps spent decaying" },
}

S.data = {
  kind     = { "text", "string", { "text", "shards", "recall" } },
  path     = { "data/brown.txt", "string" },
  val_path = { "", "string", doc = "empty: hold out data.val_frac of data.path" },
  val_frac = { 0.1, "number" },
  vocab    = { 0, "int", doc = "recall task vocabulary; 0: the data set's default" },
  seed     = { 0, "int", doc = "0: train.seed" },
}

S.train = {
  steps            = { 300, "int" },
  batch            = { 16, "int" },
  seq              = { 128, "int" },
  device           = { "cpu", "string", { "cpu", "cuda" } },
  precision        = { "fp32", "string", { "fp32", "bf16" },
                       doc = "bf16: mixed precision on cuda (f32 master weights and optimizer state, bf16 matmuls and activations)" },
  seed             = { 1, "int" },
  grad_clip        = { 1.0, "number", doc = "0: no clipping" },
  aux_coef         = { 0.01, "number" },
  log_every        = { 10, "int" },
  eval_every       = { 100, "int" },
  eval_batches     = { 8, "int" },
  checkpoint_every = { 0, "int", doc = "0: only at the end and on a signal" },
  checkpoint_dir   = { "checkpoints", "string", doc = "<dir>/<experiment>/run<id>-<uid>/step<N>.safetensors" },
  keep_checkpoints = { 2, "int", doc = "newest checkpoints a run keeps, plus its final one; 0 keeps all" },
  on_nan           = { "stop", "string", { "stop", "skip" } },
  progress         = { true, "bool" },
  db               = { "", "string", doc = "empty: --db, GQE_DB or runs.db" },
}

-- Multiple-choice evaluation (lua/gqe/evaluate.lua), at train.eval_every and at the end.
S.eval = {
  tasks     = { {}, "tasks", doc = "{ name = path }: JSONL or llm.c eval files; on the command line eval.tasks=name=path,name2=path2" },
  tokenizer = { "data/gpt2", "string", doc = "directory of GPT-2's encoder.json and vocab.bpe (BPE models)" },
}

config.sections = { "model", "optim", "schedule", "data", "train", "eval" }
-- Sections left out of the run's JSON, params and hash while at their
-- defaults, so configs that do not use them describe the same run as before.
config.optional = { eval = true }
-- Keys that do not change what a run computes: left out of the hash so a
-- rerun with another database path or without progress lines is skipped.
config.unhashed = { ["train.db"] = true, ["train.progress"] = true, ["train.checkpoint_dir"] = true,
                    ["train.keep_checkpoints"] = true, ["eval.tasks"] = true, ["eval.tokenizer"] = true }
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
    for k, spec in pairs(S[sec]) do c[sec][k] = spec[1] end
  end
  return c
end

local fail = require "gqe.fail"

-- The value converted to the key's type, or an error naming the key.
local function check_value(sec, key, v)
  local spec = S[sec][key]
  local ty, allowed = spec[2], spec[3]
  local where = sec .. "." .. key
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

-- Range checks the core would also make, given here with the config's key
-- names so a typo costs no run.
local function check_ranges(c)
  local m, t, o, d, s = c.model, c.train, c.optim, c.data, c.schedule
  local function pos(sec, key, v, min)
    if v < (min or 1) then fail("%s.%s must be >= %s, got %s", sec, key, tostring(min or 1), tostring(v)) end
  end
  pos("model", "dim", m.dim); pos("model", "layers", m.layers)
  pos("model", "experts", m.experts); pos("model", "groups", m.groups); pos("model", "k", m.k)
  pos("model", "vocab", m.vocab, 0); pos("model", "head_dim", m.head_dim, 0)
  pos("model", "max_seq", m.max_seq, 0); pos("model", "mlp_hidden", m.mlp_hidden, 0)
  pos("train", "steps", t.steps); pos("train", "batch", t.batch); pos("train", "seq", t.seq)
  pos("train", "log_every", t.log_every); pos("train", "eval_every", t.eval_every)
  pos("train", "eval_batches", t.eval_batches); pos("train", "checkpoint_every", t.checkpoint_every, 0)
  pos("train", "keep_checkpoints", t.keep_checkpoints, 0)
  pos("schedule", "warmup", s.warmup, 0)
  if m.attention == "gqe" then
    if m.experts % m.groups ~= 0 then
      fail("model.experts (%d) must be divisible by model.groups (%d)", m.experts, m.groups)
    end
    local M = m.experts // m.groups
    if m.k > M then
      fail("model.k must be in 1..%d (experts per group = model.experts / model.groups), got %d", M, m.k)
    end
  end
  if o.lr <= 0 then fail("optim.lr must be > 0, got %s", tostring(o.lr)) end
  if o.weight_decay < 0 then fail("optim.weight_decay must be >= 0, got %s", tostring(o.weight_decay)) end
  if t.grad_clip < 0 then fail("train.grad_clip must be >= 0, got %s", tostring(t.grad_clip)) end
  if d.val_frac < 0 or d.val_frac >= 1 then fail("data.val_frac must be in [0, 1), got %s", tostring(d.val_frac)) end
  if s.min_lr < 0 or s.min_lr > 1 then fail("schedule.min_lr must be in [0, 1], got %s", tostring(s.min_lr)) end
  if d.kind ~= "recall" and d.path == "" then fail("data.path must name a file for data.kind '%s'", d.kind) end
  -- What the core would reject only after the run has started (or never:
  -- a key it ignores), checked here with the config's names.
  local function gt0(sec, key, v)
    if not (v > 0) then fail("%s.%s must be > 0, got %s", sec, key, tostring(v)) end
  end
  gt0("model", "norm_eps", m.norm_eps); gt0("model", "init_std", m.init_std)
  if m.rope then
    gt0("model", "rope_theta", m.rope_theta)
    if m.head_dim % 2 ~= 0 then fail("model.head_dim must be even when model.rope is true, got %d", m.head_dim) end
  end
  if o.name == "adamw" then
    if o.beta1 < 0 or o.beta1 >= 1 then fail("optim.beta1 must be in [0, 1), got %s", tostring(o.beta1)) end
    if o.beta2 < 0 or o.beta2 >= 1 then fail("optim.beta2 must be in [0, 1), got %s", tostring(o.beta2)) end
    gt0("optim", "eps", o.eps)
  elseif o.momentum < 0 then
    fail("optim.momentum must be >= 0, got %s", tostring(o.momentum))
  end
  if s.decay_frac <= 0 or s.decay_frac > 1 then fail("schedule.decay_frac must be in (0, 1], got %s", tostring(s.decay_frac)) end
  if s.kind ~= "constant" and s.warmup >= t.steps then
    fail("schedule.warmup (%d) must be less than train.steps (%d) for schedule.kind '%s'", s.warmup, t.steps, s.kind)
  end
  if t.precision == "bf16" and t.device ~= "cuda" then
    fail("train.precision 'bf16' needs train.device=cuda (the cpu backend computes in f32)")
  end
  if t.aux_coef < 0 then fail("train.aux_coef must be >= 0, got %s", tostring(t.aux_coef)) end
  pos("data", "vocab", d.vocab, 0)
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
  local ty = S[sec][key][2]
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
    local d = spec[1]
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

-- Hash of what determines the run's results (see config.unhashed).
function config.hash(c)
  local t = {}
  for _, sec in ipairs(config.sections) do
    if not config.optional[sec] then t[sec] = {} end
    for k, v in pairs(c[sec] or {}) do
      if not config.unhashed[sec .. "." .. k] then t[sec] = t[sec] or {}; t[sec][k] = v end
    end
  end
  return config.fnv1a64(json.encode(t))
end

-- Active query-attention heads per token (GQE.md): G*k (+1 shared head in
-- variant gqe); dense kinds compute all N.
function config.active_heads(c)
  local m = c.model
  if m.attention == "gqe" then
    return m.groups * m.k + (m.variant == "gqe" and 1 or 0)
  elseif m.attention == "mqa" or m.attention == "mha" or m.attention == "gqa" then
    return m.experts
  end
  return m.experts
end

return config
