-- Models from runs: gqe.load_run(RUN_ID or checkpoint path) rebuilds a run's
-- model (and optimizer) from the config stored with it and loads its
-- checkpoint; `gqe sample RUN_ID --prompt TEXT --tokens N` prints what it
-- generates.
local gqe = require "gqe"
local argv = require "gqe.flags"
local config = require "gqe.config"
local json = require "gqe.json"

local models = {}

local fail = require "gqe.fail"

-- A config as stored with a run or in a checkpoint, resolved. Configs stored
-- before model.balance_gamma was a key ran with the core's 0.001, those
-- stored before model.balance_lr_scale was a key with the router at optim.lr.
function models.stored_config(text, where)
  local ok, c = pcall(json.decode, text)
  if not ok or type(c) ~= "table" then fail("%s: the stored config is not valid JSON", where) end
  if type(c.model) == "table" and c.model.balance_gamma == nil then c.model.balance_gamma = 0.001 end
  if type(c.model) == "table" and c.model.balance_lr_scale == nil then c.model.balance_lr_scale = 1 end
  local okr, res = pcall(config.resolve, c)
  if not okr then fail("%s: the stored config does not resolve: %s", where, tostring(res)) end
  return res
end

-- What to load: {candidates = {{path, step}, ...} newest first, run_id,
-- experiment, name, config_text, identity} for a run id (its checkpoints in
-- opts.db, else GQE_DB or runs.db), or {candidates = {{path}}} for a file.
local function locate(what, opts)
  local id = math.tointeger(tonumber(what))
  if not id then
    local f = io.open(tostring(what), "rb")
    if not f then fail("no run id or checkpoint file '%s'", tostring(what)) end
    f:close()
    return { candidates = { { path = tostring(what) } } }
  end
  local path = require("gqe.train").db_path(opts.db)
  local f = io.open(path, "rb")
  if not f then fail("no run log at %s (pass db = PATH / --db PATH, or set GQE_DB)", path) end
  f:close()
  local db = gqe.db.open(path)
  local ok, res = pcall(function()
    local r = db:query([[SELECT r.*, e.name AS experiment FROM runs r
      JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?]], id)[1]
    if not r then fail("no run %d in %s (see `gqe runs`)", id, path) end
    local cks = db:query("SELECT step, path FROM checkpoints WHERE run_id = ? ORDER BY step DESC, id DESC", id)
    if #cks == 0 then
      fail("run %d has no checkpoint (it writes one at the end, on a signal and every train.checkpoint_every steps)", id)
    end
    -- The identity a checkpoint of this run carries, where the run log and
    -- the checkpoint format record one (checked by gqe.checkpoint.load).
    return { candidates = cks, run_id = id, name = r.name, experiment = r.experiment, config_text = r.config,
             identity = { run_uid = r.uid, config_hash = r.config_hash } }
  end)
  db:close()
  if not ok then error(res, 0) end
  return res
end

-- Loads the newest candidate that exists and passes the checkpoint's own
-- checks into lm (and opt); older ones are tried in turn, each failure named.
local function load_newest(src, lm, opt)
  local failures = {}
  for _, ck in ipairs(src.candidates) do
    local f = io.open(ck.path, "rb")
    if not f then
      failures[#failures + 1] = ck.path .. ": missing"
    else
      f:close()
      local expect = src.identity and { run_uid = src.identity.run_uid, config_hash = src.identity.config_hash,
                                        step = ck.step } or nil
      local ok, info = pcall(gqe.checkpoint.load, ck.path, lm, opt, expect)
      if ok then
        if #failures > 0 then
          io.stderr:write("gqe: warning: skipped newer checkpoints: ", table.concat(failures, "; "), "\n")
        end
        return ck.path, info
      end
      failures[#failures + 1] = tostring(info)
    end
  end
  fail("%s: no usable checkpoint: %s", src.run_id and ("run " .. src.run_id) or src.candidates[1].path,
       table.concat(failures, "; "))
end

-- gqe.load_run(RUN_ID or path [, {db=, device=, optimizer=true}]) ->
-- lm, opt (nil unless asked for), info {config, step, path, run_id, name,
-- experiment}. The model is built on opts.device (default cpu) in fp32.
function models.load_run(what, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "db" and k ~= "device" and k ~= "optimizer" then
      fail("gqe.load_run: unknown option '%s'; valid: db, device, optimizer", tostring(k))
    end
  end
  local src = locate(what, opts)
  -- The config and vocabulary size come from the run log or the newest
  -- readable file; the weights from the newest checkpoint that passes its
  -- checks (load_newest).
  local first, tensors, meta, why
  for _, ck in ipairs(src.candidates) do
    local ok, t, m = pcall(gqe.load_safetensors, ck.path)
    if ok then first, tensors, meta = ck.path, t, m; break end
    why = why or tostring(t)
  end
  if not first then fail("%s: no usable checkpoint: %s", src.run_id and ("run " .. src.run_id) or what, why) end
  local text = src.config_text or meta.config
  if not text then fail("%s holds no config (not a gqe checkpoint?)", first) end
  local c = models.stored_config(text, src.run_id and ("run " .. src.run_id) or first)
  local emb = tensors["tok_emb.weight"]
  if not emb then fail("%s: no tok_emb.weight (not a gqe checkpoint?)", first) end
  local vocab = emb:shape()[1]
  tensors = nil
  c.train.device = opts.device or "cpu"
  c.train.precision = "fp32"
  local lm = gqe.nn.LM(config.model_options(c, vocab))
  local opt
  if opts.optimizer then opt = require("gqe.train").make_optimizer(c, lm) end
  local path, info = load_newest(src, lm, opt)
  return lm, opt, { config = c, step = info.step, path = path, run_id = src.run_id, name = src.name,
                    experiment = src.experiment, vocab = vocab }
end

-- How a run's data turns into token ids and back. Byte-level text: one token
-- per byte. Token shards (GPT-2 ids): the tokenizer module gqe.tokenizer,
-- codec(config) -> {encode = fn(text) -> ids, decode = fn(ids) -> text},
-- when this build has one. Synthetic data has no text.
function models.codec(c)
  if c.data.kind == "text" then
    return {
      encode = function(s) return { s:byte(1, -1) } end,
      decode = function(ids)
        local parts = {}
        for i, v in ipairs(ids) do parts[i] = string.char(v % 256) end
        return table.concat(parts)
      end,
    }
  end
  if c.data.kind == "shards" then
    local ok, tok = pcall(require, "gqe.tokenizer")
    if ok and type(tok) == "table" and type(tok.codec) == "function" then return tok.codec(c) end
    fail("this run was trained on token shards (data.kind 'shards'): turning text into its tokens needs a tokenizer, which this build lacks")
  end
  fail("this run was trained on data.kind '%s' (synthetic token ids): it has no text to sample", c.data.kind)
end

models.spec = {
  usage = "gqe sample RUN_ID|CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S] "
    .. "[--device cpu|cuda] [--db PATH]",
  about = "prints the prompt and N generated tokens of a run's model, rebuilt from its stored config and "
    .. "latest checkpoint (byte-level runs, data.kind=text, until a tokenizer is present)",
  flags = {
    { "prompt", value = "TEXT", help = "the text to continue (required)" },
    { "tokens", value = "N", int = 0, help = "tokens to generate (default 200)" },
    { "temperature", value = "T", help = "sampling temperature (default 1)" },
    { "top-k", value = "K", int = 0, help = "sample among the K likeliest tokens; 0: all (default)" },
    { "seed", value = "S", int = 0, help = "sampling seed (default 1)" },
    { "device", value = "cpu|cuda", help = "where to run the model (default cpu)" },
  },
  args = { min = 1, max = 1, names = "RUN_ID or CHECKPOINT" },
}

function models.sample_main(args)
  local flags, pos = argv.parse(models.spec, args)
  if flags.help then io.stdout:write(argv.help(models.spec), "\n"); return 0 end
  if not flags.prompt or flags.prompt == "" then fail("sample: --prompt TEXT is required (a non-empty text)") end
  local n = flags.tokens or 200
  local top_k = flags["top-k"] or 0
  local seed = flags.seed or 1
  local temperature = tonumber(flags.temperature or 1.0)
  if not temperature or not (temperature > 0) or temperature == math.huge then
    fail("sample: --temperature must be a positive number, got '%s'", tostring(flags.temperature))
  end
  local lm, _, info = models.load_run(pos[1], { db = flags.db, device = flags.device })
  local codec = models.codec(info.config)
  local prompt = codec.encode(flags.prompt)
  local max_seq = lm:config().max_seq
  if #prompt + n > max_seq then
    fail("sample: a %d-token prompt and --tokens %d exceed the model's max_seq %d (the run's train.seq or model.max_seq)",
         #prompt, n, max_seq)
  end
  -- Each token is written as it is sampled (decode of the whole is the
  -- concatenation of the tokens' texts, for bytes and for GPT-2 BPE alike).
  io.stdout:write(codec.decode(prompt))
  io.stdout:flush()
  lm:generate(prompt, n, { temperature = temperature, top_k = top_k, seed = seed, on_token = function(id)
    io.stdout:write(codec.decode({ id }))
    io.stdout:flush()
  end })
  io.stdout:write("\n")
  return 0
end

return models
