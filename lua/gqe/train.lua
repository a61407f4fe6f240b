-- gqe.train(config): one run from a config table, logged to the run log.
-- The loop is deliberately plain (batch, loss, backward, clip, step) so a
-- researcher can read it top to bottom; everything it measures goes through
-- db:log / db:eval / db:head_usage and is flushed at each logging interval.
local gqe = require "gqe"
local config = require "gqe.config"

local train = {}

local LN2 = math.log(2)

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

local function totable(v)
  if type(v) == "userdata" then return v:totable() end
  return v
end

local function fmt_time(s)
  if not finite(s) or s < 0 then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%ds", s)
end
train.fmt_time = fmt_time

-- The database path: explicit, train.db, GQE_DB, then runs.db.
function train.db_path(explicit, c)
  if explicit and explicit ~= "" then return explicit end
  if c and c.train and c.train.db and c.train.db ~= "" then return c.train.db end
  local env = gqe.getenv and gqe.getenv("GQE_DB") or os.getenv("GQE_DB")
  if env and env ~= "" then return env end
  return "runs.db"
end

-- The model's options come from the config description (config.lua).
local model_options = config.model_options
train.model_options = model_options

local function data_options(c)
  local d = c.data
  local o = { kind = d.kind, seed = d.seed ~= 0 and d.seed or c.train.seed, val_frac = d.val_frac }
  if d.path ~= "" then o.path = d.path end
  if d.val_path ~= "" then o.val_path = d.val_path end
  if d.vocab > 0 then o.vocab = d.vocab end
  if d.kind == "recall" then o.num_pairs, o.num_queries = d.num_pairs, d.num_queries end
  -- The data set checks at open that each split holds one batch, so a file
  -- too short fails before the model is built.
  o.batch, o.seq = c.train.batch, c.train.seq
  return o
end
train.data_options = data_options

-- The optimizer of a config's optim section for lm. The balanced router's
-- weights learn at optim.lr * model.balance_lr_scale (README, balance_gamma).
local function make_optimizer(c, lm)
  local o = c.optim
  local m = c.model or {}
  local router_lr_scale = m.attention == "gqe" and m.router == "balanced" and m.balance_lr_scale or 1
  if o.name == "adamw" then
    return gqe.optim.AdamW(lm, { lr = o.lr, beta1 = o.beta1, beta2 = o.beta2, eps = o.eps,
      weight_decay = o.weight_decay, decay_norms = o.decay_norms, decay_embeddings = o.decay_embeddings,
      router_lr_scale = router_lr_scale })
  end
  return gqe.optim.SGD(lm, { lr = o.lr, momentum = o.momentum, weight_decay = o.weight_decay,
    nesterov = o.nesterov, decay_norms = o.decay_norms, decay_embeddings = o.decay_embeddings,
    router_lr_scale = router_lr_scale })
end
train.make_optimizer = make_optimizer

-- Mean validation loss over the fixed batches 1..eval_batches, the
-- routing statistics of those batches summed over them, and the top-1
-- accuracy over the same batches: correct predictions / targets counted
-- (targets >= 0: every position for text and shards, the query positions
-- for recall), pooled over all the batches and, on several ranks, over the
-- whole global batch. The hits are counted on the model's device
-- (lm:accuracy); the logits never come to the host.
local function evaluate(ctx)
  local c, lm, ds, par = ctx.c, ctx.lm, ctx.ds, ctx.par
  local t = c.train
  local total, n = 0.0, t.eval_batches
  local correct, counted = 0, 0
  local usage = {}
  local gqe_attn = c.model.attention == "gqe"
  -- A signal abandons the evaluation (the loop then checkpoints and stops),
  -- so a long one cannot outlast a scheduler's grace period. The random
  -- routers' counters are left where the whole evaluation would leave them
  -- (one draw per batch and layer), so a resume routes as an uninterrupted
  -- run does.
  local marks = lm.router_calls and lm:router_calls()
  local function abandon()
    if marks and gqe_attn and c.model.router == "random" then
      for l = 1, #marks do marks[l] = marks[l] + n end
    end
    if marks then lm:set_router_calls(marks) end
    return nil
  end
  -- Several ranks stop only together, after a step (train loop): a rank
  -- alone must not leave the others in a collective.
  local function interrupted() return not par.comm and gqe.interrupted and gqe.interrupted() end
  for i = 1, n do
    if interrupted() then return abandon() end
    for micro = 0, par.accum - 1 do
      local tokens, targets = ds:batch("val", par:val_index(i, micro), t.batch, t.seq)
      local ok, _, ce = pcall(lm.loss, lm, tokens, targets, 0)
      if not ok then
        if interrupted() then return abandon() end
        error(_, 0)
      end
      total = total + ce / par.accum
      local hits, of = lm:accuracy()
      correct, counted = correct + hits, counted + of
      if gqe_attn then
        for l = 1, c.model.layers do
          local counts, mean_prob = lm:usage(l)
          counts, mean_prob = totable(counts), totable(mean_prob)
          local u = usage[l]
          if not u then u = { counts = {}, prob = {} }; usage[l] = u end
          for e = 1, #counts do
            -- counts are the mean over the ranks: times world, the whole global batch's
            u.counts[e] = (u.counts[e] or 0) + counts[e] * par.world
            u.prob[e] = (u.prob[e] or 0) + mean_prob[e] / (n * par.accum)
          end
        end
      end
    end
  end
  -- one collective: the ranks' means, so correct / counted is the ratio of the sums
  local g = par:agree({ total / n, correct, counted })
  return g[1], usage, g[3] > 0 and g[2] / g[3] or nil
end

-- Tokens per byte of the whole validation split of GPT-2 token shards, for
-- val/bpb = val/loss / ln 2 * tokens / bytes. Measured once when the run
-- starts: each token id's decoded byte length weighted by how often it
-- occurs in the validation shards, which is decoding every validation token
-- once. It is the ratio of the whole split, not of the batches an
-- evaluation draws. The end-of-text token (50256) separates documents and
-- stands for no text: it counts as a token and as 0 bytes. Returns nil and
-- the reason when it cannot be measured (no tokenizer in eval.tokenizer, a
-- model vocabulary smaller than GPT-2's, ids outside it).
local function shard_tokens_per_byte(c, ds, vocab)
  local ok, tok = pcall(require("gqe.text").tokenizer, c.eval.tokenizer)
  if not ok then return nil, (tostring(tok):gsub("\n", " ")) end
  local V = tok:vocab()
  if vocab < V then
    return nil, string.format("model.vocab %d is smaller than the GPT-2 tokenizer's %d", vocab, V)
  end
  local tokens, bytes, eot = 0, 0, tok:eot()
  for i, count in ipairs(ds:token_counts("val")) do
    if count > 0 then
      local id = i - 1
      if id >= V then
        return nil, string.format("validation token %d is outside the GPT-2 tokenizer's vocabulary (%d)", id, V)
      end
      tokens = tokens + count
      if id ~= eot then bytes = bytes + count * #tok:token(id) end
    end
  end
  if bytes == 0 then return nil, "the validation shards hold no text" end
  return tokens / bytes
end
train.shard_tokens_per_byte = shard_tokens_per_byte

-- Head usage rows and per-layer balance metrics: routing/entropy_l<i> is the
-- entropy of the token load over a group's experts divided by log M (1 is
-- perfectly balanced), routing/cv_l<i> the coefficient of variation of that
-- load; both averaged over groups.
local function log_usage(ctx, step, usage)
  local db, run_id, m = ctx.db, ctx.run_id, ctx.c.model
  local G = m.groups
  local M = m.experts // G
  for l, u in ipairs(usage) do
    local ent_sum, cv_sum = 0.0, 0.0
    for g = 1, G do
      local tot = 0.0
      for e = 1, M do tot = tot + u.counts[(g - 1) * M + e] end
      local ent, mean, var = 0.0, tot / M, 0.0
      for e = 1, M do
        local idx = (g - 1) * M + e
        local cnt = u.counts[idx]
        local frac = tot > 0 and cnt / tot or 0.0
        if frac > 0 then ent = ent - frac * math.log(frac) end
        var = var + (cnt - mean) ^ 2 / M
        -- layer, group and expert are 0-based in the table, like the
        -- PyTorch module's indices.
        db:head_usage(run_id, step, l - 1, g - 1, e - 1, math.floor(cnt + 0.5), frac, u.prob[idx])
      end
      ent_sum = ent_sum + (M > 1 and ent / math.log(M) or 1.0)
      cv_sum = cv_sum + (mean > 0 and math.sqrt(var) / mean or 0.0)
    end
    db:log(run_id, step, "routing/entropy_l" .. (l - 1), ent_sum / G)
    db:log(run_id, step, "routing/cv_l" .. (l - 1), cv_sum / G)
  end
end

local function eval_and_log(ctx, step)
  local loss, usage, acc = evaluate(ctx)
  if not loss then return nil end
  local db, run_id = ctx.db, ctx.run_id
  db:eval(run_id, step, "val", "loss", loss)
  ctx.final_val = loss
  if not ctx.best_val or loss < ctx.best_val then ctx.best_val = loss end
  if acc then
    ctx.final_acc = acc
    db:eval(run_id, step, "val", "acc", acc)
  end
  if ctx.c.data.kind == "text" then
    -- Byte-level text: one token per byte, so bits per byte = nats / ln 2.
    ctx.final_bpb = loss / LN2
    db:eval(run_id, step, "val", "bpb", ctx.final_bpb)
  elseif ctx.tokens_per_byte then
    -- GPT-2 token shards: nats per token / ln 2 * tokens per byte of the
    -- whole validation split (shard_tokens_per_byte).
    ctx.final_bpb = loss / LN2 * ctx.tokens_per_byte
    db:eval(run_id, step, "val", "bpb", ctx.final_bpb)
  end
  log_usage(ctx, step, usage)
  if ctx.eval_tasks then require("gqe.evaluate").at_step(ctx, step) end
  db:flush()
  return loss
end

-- The time left, from the steps this process has run (a resumed run does
-- not count the steps before its checkpoint as free).
local function eta_seconds(ctx, step)
  local done = step - (ctx.start_step or 0)
  if done <= 0 then return nil end
  return (gqe.clock() - (ctx.loop_t0 or ctx.t0)) / done * (ctx.c.train.steps - step)
end
train.eta_seconds = eta_seconds

-- Best-effort output: a closed or full stderr never stops a run.
local function emit(text)
  pcall(function() io.stderr:write(text); io.stderr:flush() end)
end

local function progress(ctx, step, loss, lr, tps)
  local t = ctx.c.train
  if t.progress and not ctx.evals_only and ctx.par:is_root() then
    emit(string.format("%s step %d/%d  loss %.4f  lr %.2e  tok/s %.0f  eta %s\n",
      ctx.label, step, t.steps, loss, lr, tps, fmt_time(eta_seconds(ctx, step) or -1)))
  end
  if ctx.on_progress then
    local done = step - (ctx.start_step or 0)
    pcall(ctx.on_progress, { step = step, steps = t.steps, loss = loss, lr = lr, tokens_per_s = tps,
                             eta_s = eta_seconds(ctx, step), start_step = ctx.start_step or 0,
                             s_per_step = done > 0 and (gqe.clock() - ctx.loop_t0) / done or nil })
  end
end

-- Errors raised inside the loop that set the run's final status.
local Stop = {}
Stop.__index = Stop
local function stop(status, msg) return setmetatable({ status = status, msg = msg }, Stop) end

local function loop(ctx)
  local c, lm, opt, sched, ds, db, run_id = ctx.c, ctx.lm, ctx.opt, ctx.sched, ctx.ds, ctx.db, ctx.run_id
  local t = c.train
  local par = ctx.par
  -- the global batch: every rank's micro-batches
  local tokens_per_step = t.batch * t.seq * par.accum * par.world
  local win_t, win_tokens = gqe.clock(), 0
  local train_time = 0.0
  local first = (ctx.start_step or 0) + 1
  ctx.tokens, ctx.skipped = (first - 1) * tokens_per_step, 0
  ctx.loop_t0 = gqe.clock()
  opt:zero_grad()
  for step = first, t.steps do
    local t_step = gqe.clock()
    local lr = sched:lr(step - 1, c.optim.lr)
    -- Gradients of the micro-batches accumulate; every rank runs every
    -- forward (their routing statistics are collective).
    local loss, aux = 0.0, 0.0
    local loads = par:balanced_loads(c)   -- the balanced router steps on the whole step's load
    for micro = 0, par.accum - 1 do
      local tokens, targets = ds:batch("train", par:train_index(step, micro), t.batch, t.seq)
      local l, _, a = lm:loss(tokens, targets, t.aux_coef)
      par:backward(lm, micro, finite(l))
      loss, aux = loss + l, aux + (a or 0)
      if loads then par.add_loads(loads, lm, c.model.layers) end
    end
    local sig
    if par.accum > 1 then loss, aux = loss / par.accum, aux / par.accum end
    if par.comm then
      local g
      g, sig = par:agree({ loss, aux }, gqe.interrupted and gqe.interrupted())
      loss, aux = g[1], g[2]
    end
    local gnorm = 0 / 0
    local bad
    par:reduce_grads(lm, finite(loss))
    if not finite(loss) then
      bad = string.format("train/loss is %s at step %d", tostring(loss), step)
    else
      gnorm = opt:clip(t.grad_clip)
      if not finite(gnorm) then bad = string.format("train/grad_norm is %s at step %d", tostring(gnorm), step) end
    end
    if bad then
      db:log(run_id, step, "train/loss", loss)
      if finite(loss) then db:log(run_id, step, "train/grad_norm", gnorm) end
      opt:zero_grad()
      if t.on_nan == "skip" then
        ctx.skipped = ctx.skipped + 1
        db:log(run_id, step, "train/skipped", ctx.skipped)
        if par:is_root() then
          emit(string.format("%s %s: step skipped (train.on_nan = skip)\n", ctx.label, bad))
        end
      else
        db:flush()
        error(stop("diverged", bad .. " (set train.on_nan=skip to skip such steps)"))
      end
    else
      opt:step(lr)
      opt:zero_grad()
      lm:after_step(loads)
      ctx.tokens = ctx.tokens + tokens_per_step
      win_tokens = win_tokens + tokens_per_step
    end
    train_time = train_time + (gqe.clock() - t_step)
    ctx.step, ctx.last_loss = step, loss
    ctx.train_time = train_time

    if step % t.log_every == 0 or step == t.steps then
      local now = gqe.clock()
      local tps = win_tokens / math.max(now - win_t, 1e-9)
      db:log(run_id, step, "train/loss", loss)
      db:log(run_id, step, "train/aux", aux or 0)
      db:log(run_id, step, "train/lr", lr)
      db:log(run_id, step, "train/grad_norm", gnorm)
      db:log(run_id, step, "perf/tokens_per_s", tps)
      db:log(run_id, step, "perf/tokens", ctx.tokens)
      db:flush()
      progress(ctx, step, loss, lr, tps)
      win_t, win_tokens = gqe.clock(), 0
    end
    if step % t.eval_every == 0 or step == t.steps then
      local vl = eval_and_log(ctx, step)
      if vl and t.progress and par:is_root() then
        emit(string.format("%s step %d/%d  val/loss %.4f%s%s\n", ctx.label, step, t.steps, vl,
          ctx.final_bpb and string.format("  val/bpb %.4f", ctx.final_bpb) or "",
          ctx.final_acc and string.format("  val/acc %.4f", ctx.final_acc) or ""))
      end
      win_t = gqe.clock()   -- evaluation time is not training throughput
    end
    if ctx.checkpoint and t.checkpoint_every > 0 and step % t.checkpoint_every == 0 then
      ctx.checkpoint(ctx, step, step == t.steps)
    end
    -- Several ranks stop together, at the step where any of them saw the signal.
    if not par.comm then sig = gqe.interrupted and gqe.interrupted() end
    if sig then
      if ctx.checkpoint and ctx.last_checkpoint ~= step then ctx.checkpoint(ctx, step, true) end
      -- runs.step (the highest step logged) then names the step of the error text.
      db:log(run_id, step, "train/loss", loss)
      db:flush()
      error(stop("killed", string.format("%s at step %d", sig, step)))
    end
  end
  if ctx.checkpoint and ctx.step > (ctx.last_checkpoint or -1) then ctx.checkpoint(ctx, ctx.step, true) end
end

-- Why train.device cannot be used here, or nil. It names what was looked
-- for: CUDA in this build, the NVIDIA driver, the devices it lists.
function train.device_problem(c)
  if c.train.device ~= "cuda" or not gqe.cuda_available or gqe.cuda_available() then return nil end
  if gqe.cuda_built == false then
    return "train.device is 'cuda' but this gqe was built without CUDA (nvcc was not found when it was " ..
           "built; rebuild with `make CUDA=1` on a machine with the CUDA toolkit, or use train.device=cpu)"
  end
  local f = io.open("/proc/driver/nvidia/version", "r")
  local driver = f and (f:read("l") or ""):match("Kernel Module%s+([%d.]+)")
  if f then f:close() end
  local gpus = 0
  local p = io.popen("ls /proc/driver/nvidia/gpus 2>/dev/null")
  if p then for _ in p:lines() do gpus = gpus + 1 end p:close() end
  local visible = os.getenv("CUDA_VISIBLE_DEVICES")
  return string.format("train.device is 'cuda' but the CUDA runtime found no usable device: NVIDIA driver %s, " ..
    "%d GPU(s) listed by the driver, CUDA_VISIBLE_DEVICES %s (run on a machine with a GPU, or use train.device=cpu)",
    driver and ("loaded (" .. driver .. ")") or "not loaded (no /proc/driver/nvidia/version)", gpus,
    visible and ("= '" .. visible .. "'") or "unset")
end

-- Runs one training run. opts: db (an open database) or db_path, experiment
-- (name, default config.experiment or "default"), name (run name), label
-- (prefix of progress lines), checkpoint (function(ctx, step), optional),
-- resume ({run_id}: go on in that row from its newest usable checkpoint;
-- with from_start = true, from step 0), on_progress (function(info) at
-- each logging interval: step, steps, loss, tokens_per_s, eta_s),
-- no_raise (return the summary with status and error instead of raising).
-- Returns the summary table; raises an error when the run does not finish
-- (after recording its status: failed, diverged or killed).
-- train.nproc asks for that many ranks, which gqe.experiment (gqe FILE.lua)
-- or `gqe launch` start; a process alone cannot become several. Under any
-- launcher the world is the launcher's: train.nproc, when not 1, must match.
function train.check_nproc(c)
  local n = c.train.nproc
  if n == 1 then return end
  local ok, env = pcall(gqe.dist.env)
  local world = ok and env.world or 1
  if world == 1 and not os.getenv("GQE_DIST") then
    error(string.format("train.nproc=%d asks for %d ranks, which this process cannot start: run it in " ..
      "gqe.experiment (gqe FILE.lua starts the ranks) or with gqe launch --nproc %d FILE.lua", n, n, n), 0)
  end
  if world ~= n then
    error(string.format("train.nproc=%d but this run has %d ranks (its launcher's); set train.nproc=%d or 1",
      n, world, world), 0)
  end
end

function train.run(user_config, opts)
  opts = opts or {}
  local c = config.resolve(user_config)
  local t = c.train
  local device_problem = train.device_problem(c)
  if device_problem then error(device_problem, 0) end
  local parallel = require "gqe.parallel"
  train.check_nproc(c)
  local par = parallel.setup(c)
  local db = opts.db
  local own_db = false
  if not par:is_root() then
    db = parallel.follower_db(opts.db)
  elseif not db then
    local ok, res = pcall(gqe.db.open, train.db_path(opts.db_path, c))
    -- The message names the file and the reason; this file's line would
    -- only suggest a bug in gqe.
    if not ok then error((tostring(res):gsub("^[^:\n]*gqe[/.][%w_]+%.lua:%d+: ", "")), 0) end
    db = res
    own_db = true
  end
  local exp_name = opts.experiment or c.experiment or "default"
  local run_name = opts.name or c.name or ("seed=" .. t.seed)
  local exp_id = db:experiment(exp_name)
  local commit, dirty
  if gqe.git_commit then commit, dirty = gqe.git_commit() end
  local hash = par:hash(config.hash(c), c)
  local run_id
  local resume_prev
  if opts.resume then
    -- The same row goes on, claimed atomically (a run another process holds
    -- is refused, naming it); resume_prev puts it back if the resume fails
    -- before training.
    run_id = opts.resume.run_id
    local ok_claim, prev = pcall(db.claim_run, db, run_id)
    if not ok_claim then
      if own_db then db:close() end
      error((tostring(prev):gsub("^db:claim_run: ", "")), 0)
    end
    resume_prev = prev
  else
    local params = config.params(c)
    if par.world > 1 then params["dist.world"] = tostring(par.world) end
    run_id = db:begin_run {
      experiment_id = exp_id, name = run_name, config_json = config.to_json(c), config_hash = hash,
      params = params, git_commit = commit, git_dirty = dirty and true or false,
      host = par.hosts or gqe.hostname(), pid = gqe.pid(), device = par.devices or t.device, seed = t.seed,
    }
  end
  if gqe.signals_install then gqe.signals_install() end
  -- The run's identity, which its checkpoints carry and resume checks.
  local ident = db:query("SELECT uid, config_hash FROM runs WHERE id = ?", run_id)[1] or {}
  local ctx = { c = c, db = db, run_id = run_id, step = 0, t0 = gqe.clock(), run_uid = ident.uid,
                config_hash = ident.config_hash,
                label = opts.label or string.format("[%s %s]", exp_name, run_name),
                checkpoint = opts.checkpoint, tokens = 0, train_time = 0, exp_name = exp_name,
                evals_only = opts.evals_only, on_progress = opts.on_progress, par = par }
  if ctx.checkpoint == nil then ctx.checkpoint = require("gqe.checkpoint").saver(c) end
  -- rank 0 writes the one checkpoint (the others help gather a sharded optimizer state)
  if not par:is_root() then ctx.checkpoint = ctx.checkpoint and par:follower_checkpoint() end

  local ok, err = xpcall(function()
    ctx.ds = gqe.data.open(data_options(c))
    local vocab = c.model.vocab > 0 and c.model.vocab or ctx.ds:vocab()
    if vocab < ctx.ds:vocab() then
      error(string.format("model.vocab (%d) is smaller than the vocabulary of the data (%d, data.kind '%s'); "
        .. "set model.vocab=0 to take the data's", vocab, ctx.ds:vocab(), c.data.kind), 0)
    end
    if c.data.kind == "shards" then
      local why
      ctx.tokens_per_byte, why = shard_tokens_per_byte(c, ctx.ds, vocab)
      if not ctx.tokens_per_byte and par:is_root() then
        emit(string.format("%s warning: val/bpb is not logged for these token shards: %s\n", ctx.label, why))
      end
    end
    if next(c.eval.tasks) then   -- loaded before the model, so a bad task file costs no training
      ctx.eval_tasks = require("gqe.evaluate").load_all(c.eval.tasks, vocab, c.eval.tokenizer)
    end
    ctx.lm = gqe.nn.LM(model_options(c, vocab))
    par:share_routing(ctx.lm, true)
    ctx.opt = par:optimizer(make_optimizer(c, ctx.lm), ctx.lm, function() return make_optimizer(c, ctx.lm) end)
    ctx.sched = gqe.optim.schedule { kind = c.schedule.kind, warmup = c.schedule.warmup, total = t.steps,
                                     min_lr = c.schedule.min_lr, decay_frac = c.schedule.decay_frac }
    ctx.num_params = ctx.lm:num_params()
    if opts.checkpoint == nil and ctx.checkpoint and par:is_root() then require("gqe.checkpoint").ensure_dir(ctx) end
    -- A restart (resume.from_start) goes on in its row from step 0.
    if opts.resume and not opts.resume.from_start then require("gqe.checkpoint").restore(ctx, opts.resume) end
    ctx.restored = true
    if opts.on_start then opts.on_start(ctx) end
    loop(ctx)
  end, function(e)
    if getmetatable(e) == Stop then return e end
    -- A signal that stopped a long computation inside a step: that step is
    -- abandoned (the core undid what it had advanced); see below.
    local sig = gqe.interrupted and gqe.interrupted()
    if sig and tostring(e):find("interrupted by signal", 1, true) then
      return setmetatable({ status = "killed", interrupted = sig }, Stop)
    end
    -- The user sees the core's message; the run log keeps the traceback.
    local msg = tostring(e):gsub("^[^:\n]*gqe[/.][%w_]+%.lua:%d+: ", "")
    return setmetatable({ status = "failed", msg = msg, trace = debug.traceback(msg, 2) }, Stop)
  end)

  local wall = gqe.clock() - ctx.t0
  local summary = {
    run_id = run_id, experiment = exp_name, name = run_name, config_hash = hash,
    steps = ctx.step, final_val_loss = ctx.final_val, best_val_loss = ctx.best_val, val_bpb = ctx.final_bpb,
    val_acc = ctx.final_acc,
    tokens = ctx.tokens,
    tokens_per_s = ctx.train_time > 0 and ctx.tokens / ctx.train_time or nil,
    active_heads = config.active_heads(c), params = ctx.num_params, wall_s = wall,
  }
  local close = function(status)
    if ctx.lm then par:share_routing(ctx.lm, false) end
    ctx.lm, ctx.opt, ctx.ds = nil, nil, nil
    par:close(status)
    if own_db then db:close() end
  end
  if ok then
    db:end_run(run_id, "finished", nil)
    summary.status = "finished"
    close()
    return summary
  end
  if err.interrupted then
    -- The run checkpoints at its last complete step, and logs its loss so
    -- runs.step names the step the error names.
    err.msg = string.format("%s at step %d (step %d abandoned)", err.interrupted, ctx.step, ctx.step + 1)
    if ctx.restored and ctx.checkpoint and (ctx.last_checkpoint or -1) < ctx.step then
      local ok_ck, ck_err = pcall(ctx.checkpoint, ctx, ctx.step, true)
      if not ok_ck then err.msg = err.msg .. "; the checkpoint failed: " .. tostring(ck_err) end
    end
    if ctx.last_loss then pcall(db.log, db, run_id, ctx.step, "train/loss", ctx.last_loss) end
  end
  local status, msg = err.status, err.msg
  if par.world > 1 then
    local note = require("gqe.launch").fault_note()   -- a rank the launcher saw die
    if note then msg = string.format("%s (%s)", msg, note) end
  end
  -- The status must land even if the loop died inside a logging call.
  pcall(db.flush, db)
  if resume_prev and not ctx.restored then
    -- Nothing was trained: the run stays as it was (status and reason).
    local ok_un, un_err = pcall(db.unclaim_run, db, run_id, resume_prev)
    close("failed")
    local text = string.format("run %d (%s %s) not resumed: %s\n(it stays %s)", run_id, exp_name, run_name, msg,
                               resume_prev.status)
    if not ok_un then text = text .. "\n(and the run log could not restore its status: " .. tostring(un_err) .. ")" end
    error(text, 0)
  end
  local ok_end, end_err = pcall(db.end_run, db, run_id, status, err.trace or msg)
  close(status)
  local text = string.format("run %d (%s %s) %s: %s", run_id, exp_name, run_name, status, msg)
  if not ok_end then text = text .. "\n(and the run log could not record it: " .. tostring(end_err) .. ")" end
  if opts.no_raise then
    summary.status, summary.error = status, text
    return summary
  end
  error(text, 0)
end

-- The summary of a run already in the database (for runs an experiment
-- skips or runs in another process).
function train.summary_from_db(db, run_id, c)
  local r = db:query([[SELECT r.id, r.name, r.status, r.step, r.started, r.ended, r.error, e.name AS experiment
    FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?]], run_id)[1]
  if not r then return nil end
  local s = { run_id = r.id, name = r.name, status = r.status, steps = r.step, experiment = r.experiment,
              error = r.error, wall_s = (r.ended and r.started) and (r.ended - r.started) or nil }
  for _, m in ipairs(db:query("SELECT key, last, min FROM metric_summary WHERE run_id = ?", run_id)) do
    if m.key == "val/loss" then s.final_val_loss, s.best_val_loss = m.last, m.min
    elseif m.key == "val/bpb" then s.val_bpb = m.last
    elseif m.key == "val/acc" then s.val_acc = m.last
    elseif m.key == "perf/tokens" then s.tokens = m.last end
  end
  local tps = db:query("SELECT avg(value) AS v FROM metrics WHERE run_id = ? AND key = 'perf/tokens_per_s'", run_id)[1]
  s.tokens_per_s = tps and tps.v
  if c then s.active_heads = config.active_heads(c) end
  return s
end

return train
