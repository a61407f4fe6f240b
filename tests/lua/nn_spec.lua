-- gqe.nn.GQEAttention and gqe.nn.LM through a stock lua5.4.
local gqe = require "gqe"

local function small(over)
  local cfg = {dim = 16, experts = 4, groups = 2, k = 1, seed = 1}
  for k, v in pairs(over or {}) do cfg[k] = v end
  return cfg
end

local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok)
  return tostring(err)
end

describe("GQEAttention", function()
  it("runs forward and backward with the right shapes", function()
    local layer = gqe.nn.GQEAttention(small())
    local x = gqe.randn({2, 5, 16}, {seed = 2})
    local y = layer:forward(x)
    assert.are.same({2, 5, 16}, y:shape())
    local dx = layer:backward(gqe.ones({2, 5, 16}))
    assert.are.same({2, 5, 16}, dx:shape())
    assert.is_number(layer:aux_loss())
  end)

  it("names its parameters like PyTorch, with GQE.md shapes", function()
    local layer = gqe.nn.GQEAttention(small())
    local s = layer:state()
    -- N=4, G=2, dh=4, k=1: S = G*k + 2 = 4 slots
    assert.are.same({16, 16}, s["q_proj.weight"]:shape())
    assert.are.same({8, 16}, s["k_proj.weight"]:shape())
    assert.are.same({8, 16}, s["v_proj.weight"]:shape())
    assert.are.same({4, 16}, s["router.weight"]:shape())
    assert.are.same({4, 16}, s["q_shared.weight"]:shape())
    assert.are.same({16, 16}, s["o_proj.weight"]:shape())
    assert.are.equal(0, s["router.weight"]:norm())
    local g = layer:grads()
    for name, t in pairs(s) do
      if name ~= "router_bias" then assert.are.same(t:shape(), g[name]:shape()) end
    end
  end)

  it("loads what state returns, with and without a prefix", function()
    local a = gqe.nn.GQEAttention(small({seed = 1}))
    local b = gqe.nn.GQEAttention(small({seed = 2}))
    local sa = a:state()
    assert.is_true(sa["q_proj.weight"]:max_abs_diff(b:state()["q_proj.weight"]) > 0)
    b:load(sa)
    local sb = b:state()
    for name, t in pairs(sa) do assert.are.equal(0, t:max_abs_diff(sb[name])) end
    local prefixed = {extra = gqe.ones({1})}
    for name, t in pairs(sa) do prefixed["blocks.0.attn." .. name] = t end
    local c = gqe.nn.GQEAttention(small({seed = 3}))
    c:load(prefixed, "blocks.0.attn.")
    assert.are.equal(0, c:state()["o_proj.weight"]:max_abs_diff(sa["o_proj.weight"]))
    local x = gqe.randn({1, 4, 16}, {seed = 5})
    assert.are.equal(0, a:forward(x):max_abs_diff(b:forward(x)))
  end)

  it("rejects loads with missing names or wrong shapes", function()
    local layer = gqe.nn.GQEAttention(small())
    local s = layer:state()
    s["k_proj.weight"] = nil
    assert.truthy(err_of(layer.load, layer, s):find("k_proj.weight", 1, true))
    s = layer:state()
    s["o_proj.weight"] = gqe.zeros({3, 3})
    local e = err_of(layer.load, layer, s)
    assert.truthy(e:find("o_proj.weight", 1, true))
    assert.truthy(e:find("(3, 3)", 1, true))
    assert.truthy(e:find("(16, 16)", 1, true))
  end)

  it("reports routing shapes", function()
    local layer = gqe.nn.GQEAttention(small({experts = 8, groups = 2, k = 2}))
    layer:forward(gqe.randn({2, 3, 16}, {seed = 1}))
    local probs, idx = layer:routing()
    assert.are.same({2, 3, 2, 4}, probs:shape())
    assert.are.same({2, 3, 2, 2}, idx:shape())
    assert.are.equal("i32", idx:dtype())
    local counts, mean = layer:usage()
    assert.are.equal(8, #counts)
    assert.are.equal(8, #mean)
  end)

  it("returns its config and flat parameters", function()
    local layer = gqe.nn.GQEAttention(small({variant = "hard_concat", router = "sigmoid"}))
    local c = layer:config()
    assert.are.equal(16, c.dim)
    assert.are.equal(4, c.head_dim)
    assert.are.equal("hard_concat", c.variant)
    assert.are.equal("sigmoid", c.router)
    local p, g = layer:parameters()
    assert.are.equal(p:numel(), g:numel())
    assert.are.equal(p:numel(), layer:num_params())
    layer:zero_grad()
    assert.are.equal(0, g:norm())
  end)

  it("raises errors naming the key for invalid configs", function()
    local GA = gqe.nn.GQEAttention
    assert.truthy(err_of(GA, small({bogus = 1})):find("bogus", 1, true))
    assert.truthy(err_of(GA, small({bogus = 1})):find("experts, groups", 1, true))
    assert.truthy(err_of(GA, small({variant = "nope"})):find("variant", 1, true))
    assert.truthy(err_of(GA, small({router = "nope"})):find("router", 1, true))
    assert.truthy(err_of(GA, small({kind = "nope"})):find("kind", 1, true))
    assert.truthy(err_of(GA, small({dim = "x"})):find("GQEAttention.dim", 1, true))
    assert.truthy(err_of(GA, small({rope = 1})):find("GQEAttention.rope", 1, true))
    assert.truthy(err_of(GA, small({k = 5})):find("k", 1, true))
    assert.truthy(err_of(GA, {experts = 4, groups = 2}):find("dim", 1, true))
    assert.has_error(function() GA("x") end)
    assert.has_error(function() GA(small({device = "tpu"})) end)
  end)

  it("rejects bad forward inputs", function()
    local layer = gqe.nn.GQEAttention(small())
    assert.has_error(function() layer:forward(gqe.zeros({2, 5, 8})) end)
    assert.has_error(function() layer:forward("x") end)
    assert.has_error(function() gqe.nn.GQEAttention(small()):backward(gqe.zeros({1, 1, 16})) end)
  end)

  it("exposes its paramset to optimizers", function()
    local layer = gqe.nn.GQEAttention(small())
    local f = getmetatable(layer).__gqe_paramset
    assert.are.equal("userdata", type(f(layer)))
    layer:close()
    assert.is_nil(f(layer))
    assert.has_error(function() layer:state() end)
  end)
end)

describe("LM", function()
  local cfg = {vocab = 32, dim = 16, layers = 2, max_seq = 16, experts = 4, groups = 2, k = 1, seed = 1}
  local tokens = {{1, 2, 3, 4, 5, 6, 7, 8}, {8, 7, 6, 5, 4, 3, 2, 1}}
  local targets = {{2, 3, 4, 5, 6, 7, 8, 9}, {7, 6, 5, 4, 3, 2, 1, 0}}

  it("computes a loss near log(vocab) at init and logits of shape (B, T, V)", function()
    local lm = gqe.nn.LM(cfg)
    local loss, ce, aux = lm:loss(tokens, targets)
    assert.is_true(math.abs(ce - math.log(32)) < 0.5)
    assert.is_true(loss >= ce)
    assert.is_number(aux)
    local logits = lm:forward(gqe.tensor(tokens, {dtype = "i32"}))
    assert.are.same({2, 8, 32}, logits:shape())
    assert.are.equal(2, #lm:aux_losses())
    local counts = lm:usage(1)
    assert.are.equal(4, #counts)
    assert.has_error(function() lm:usage(3) end)
    assert.is_true(lm:num_params() > 0)
    assert.is_true(lm:flops_per_token(8) > 0)
    assert.are.equal("cpu", lm:device())
    assert.are.equal(32, lm:config().vocab)
  end)

  it("round-trips state and generates", function()
    local a = gqe.nn.LM(cfg)
    local b = gqe.nn.LM(setmetatable({seed = 2}, {__index = cfg}))
    b:load(a:state())
    local la = a:loss(tokens, targets)
    local lb = b:loss(tokens, targets)
    assert.is_true(math.abs(la - lb) < 1e-6)
    local out = a:generate({1, 2, 3}, 5, {temperature = 1, top_k = 4, seed = 7})
    assert.are.equal(8, #out)
    assert.are.same({1, 2, 3}, {out[1], out[2], out[3]})
  end)

  it("keeps balanced-router biases in state, named as checkpoints name them", function()
    local c = {router = "balanced"}
    for k, v in pairs(cfg) do c[k] = c[k] or v end
    local lm = gqe.nn.LM(c)
    local s = lm:state()
    assert.are.same({2, 2}, s["blocks.1.attn.router_bias"]:shape())
    s["blocks.1.attn.router_bias"]:fill(0.5)
    lm:load(s)
    assert.are.equal(2, lm:state()["blocks.1.attn.router_bias"]:sum())
    local layer = gqe.nn.GQEAttention(small({router = "balanced"}))
    assert.is_truthy(layer:state().router_bias)
  end)

  it("counts top-1 hits of the last loss, skipping ignored targets", function()
    local lm = gqe.nn.LM(cfg)
    local tg = {{2, 3, 4, 5, 6, 7, 8, 9}, {7, 6, 5, 4, 3, 2, 1, -1}}
    assert.has_error(function() lm:accuracy() end)
    lm:loss(tokens, tg)
    local correct, counted = lm:accuracy()
    assert.are.equal(15, counted)
    -- the same count from the logits, first maximum on ties
    local logits = lm:forward(gqe.tensor(tokens, {dtype = "i32"})):totable()
    local want = 0
    for b = 1, 2 do
      for t = 1, 8 do
        local row, best = logits[b][t], 1
        for v = 2, #row do if row[v] > row[best] then best = v end end
        if tg[b][t] >= 0 and best - 1 == tg[b][t] then want = want + 1 end
      end
    end
    assert.are.equal(want, correct)
    -- targets that are the argmax: every counted position is a hit
    for b = 1, 2 do
      for t = 1, 8 do
        local row, best = logits[b][t], 1
        for v = 2, #row do if row[v] > row[best] then best = v end end
        tg[b][t] = (b == 2 and t == 8) and -1 or best - 1
      end
    end
    lm:loss(tokens, tg)
    correct, counted = lm:accuracy()
    assert.are.equal(15, correct)
    assert.are.equal(15, counted)
    -- backward reuses the logits: no accuracy after it
    lm:backward()
    assert.has_error(function() lm:accuracy() end)
  end)

  it("backward fills gradients", function()
    local lm = gqe.nn.LM(cfg)
    lm:zero_grad()
    assert.has_error(function() lm:backward() end)
    lm:loss(tokens, targets)
    lm:backward()
    local _, g = lm:parameters()
    assert.is_true(g:norm() > 0)
    local grads = lm:grads()
    assert.is_truthy(grads["tok_emb.weight"])
  end)

  it("raises errors naming the key for invalid configs", function()
    local bad = setmetatable({mlp = "relu"}, {__index = cfg})
    local t = {}
    for k, v in pairs(cfg) do t[k] = v end
    t.mlp = "relu"
    assert.truthy(err_of(gqe.nn.LM, t):find("mlp", 1, true))
    t.mlp = nil; t.attention = "nope"
    assert.truthy(err_of(gqe.nn.LM, t):find("attention", 1, true))
    t.attention = nil; t.colour = 1
    assert.truthy(err_of(gqe.nn.LM, t):find("colour", 1, true))
    t.colour = nil; t.vocab = nil
    assert.truthy(err_of(gqe.nn.LM, t):find("vocab", 1, true))
    assert.is_table(bad)
  end)

  it("runs in fp32 by default and names the precisions it knows", function()
    assert.are.equal("fp32", gqe.nn.LM(cfg):config().precision)
    local t = {}
    for k, v in pairs(cfg) do t[k] = v end
    t.precision = "fp16"
    assert.truthy(err_of(gqe.nn.LM, t):find("unknown precision 'fp16' (allowed: fp32, bf16)", 1, true))
    t.precision = "bf16"   -- mixed precision needs the GPU: the CPU computes in f32
    if not gqe.cuda_available() then
      assert.truthy(err_of(gqe.nn.LM, t):find("precision 'bf16' runs on cuda only", 1, true))
      assert.truthy(err_of(gqe.nn.GQEAttention, small({precision = "bf16"})):find("cuda only", 1, true))
    end
  end)

  it("learns: loss decreases after a few AdamW steps", function()
    if not (gqe.optim and gqe.optim.AdamW) then
      pending("gqe.optim not built in")
      return
    end
    local lm = gqe.nn.LM(cfg)
    local opt = gqe.optim.AdamW(lm, {lr = 1e-2})
    local first, last
    for step = 1, 20 do
      opt:zero_grad()
      local loss = lm:loss(tokens, targets)
      lm:backward()
      opt:step()
      lm:after_step()
      first = first or loss
      last = loss
    end
    assert.is_true(last < first - 0.5, ("loss %g -> %g"):format(first, last))
  end)
end)

describe("wrong argument types", function()
  -- Every binding called with every pair of wrong values either works or
  -- raises a clear error: a string in luaL_argerror's form ("bad argument
  -- #n to 'f' (reason)") or one that names the function or its object. A
  -- Lua runtime error ("attempt to index ...") means an argument went
  -- unchecked; a crash ends the run.
  local function clear(err, name, owner)
    if type(err) ~= "string" or err == "" then return false end
    if err:find("attempt to ", 1, true) or err:find("stack overflow", 1, true) then return false end
    if err:match("^bad argument #%d+ to '[^']*' %(.+%)$") then return true end
    -- sizes like 1e12 are legal numbers that exhaust memory: the allocator says so
    if err:match("^cpu: cannot allocate %d+ bytes$") or err == "not enough memory" then return true end
    local low = err:lower()
    return low:find(name:lower(), 1, true) ~= nil or low:find(owner:lower(), 1, true) ~= nil
  end

  it("raise clear Lua errors and never crash, for every binding", function()
    local t = gqe.randn({2, 3}, {seed = 1})
    local layer = gqe.nn.GQEAttention(small())
    local lm = gqe.nn.LM{vocab = 16, dim = 16, layers = 1, max_seq = 8, experts = 4, groups = 2}
    local vals = {nil, 1, -1, 0, 2.5, "x", "cpu", {}, {1, 2}, {{1}}, true, t, layer, lm, 1e12, -1e12, math.huge}
    -- side effects on the host (processes, sleeping, signals, git) are not fuzzed
    local skip = {sleep = true, kill = true, spawn = true, sgemm_bench = true, wait = true,
                  signals_install = true, git_commit = true, close = true}
    local calls, errors = 0, 0
    local function try(name, owner, f, self)
      for i = 1, #vals + 1 do
        for j = 1, #vals + 1 do
          local ok, err
          if self then ok, err = pcall(f, self, vals[i], vals[j]) else ok, err = pcall(f, vals[i], vals[j]) end
          calls = calls + 1
          if not ok then
            errors = errors + 1
            assert(clear(err, name, owner), ("%s(%s, %s): unclear error %s"):format(name, tostring(vals[i]),
                                                                                  tostring(vals[j]), tostring(err)))
          end
        end
      end
    end
    local function all(tbl, owner, self)
      for name, f in pairs(tbl) do
        if type(f) == "function" and not skip[name] then
          try(name, owner, f, self)
          if self then try(name, owner, f) end
        end
      end
    end
    all(gqe.nn, "gqe.nn")
    all({tensor = gqe.tensor, zeros = gqe.zeros, ones = gqe.ones, full = gqe.full, randn = gqe.randn,
         arange = gqe.arange, matmul = gqe.matmul, load_safetensors = gqe.load_safetensors, getenv = gqe.getenv,
         isatty = gqe.isatty}, "gqe")
    all(getmetatable(t).__index, "tensor", t)
    all(getmetatable(layer).__index, "GQEAttention", layer)
    all(getmetatable(lm).__index, "LM", lm)
    collectgarbage()
    assert.is_true(errors > calls / 2, ("only %d of %d wrong calls raised an error"):format(errors, calls))
    assert.are.same({2, 3}, t:shape())
    assert.is_number(lm:loss({{1, 2}}, {{2, 3}}))
  end)
end)

describe("cuda", function()
  it("runs GQEAttention and LM on the GPU like on the CPU", function()
    if not gqe.cuda_available() then
      assert.has_error(function() gqe.nn.GQEAttention(small({device = "cuda"})) end)
      return
    end
    local cpu = gqe.nn.GQEAttention(small())
    local gpu = gqe.nn.GQEAttention(small({device = "cuda"}))
    gpu:load(cpu:state())
    assert.are.equal("cuda", gpu:device())
    local x = gqe.randn({2, 5, 16}, {seed = 2})
    local y = cpu:forward(x)
    local yg = gpu:forward(x)            -- a host input is moved to the layer's device
    assert.are.equal("cuda", yg:device())
    assert.is_true(yg:to("cpu"):rel_err(y) < 1e-3)
    local dy = gqe.randn({2, 5, 16}, {seed = 3})
    local dx = cpu:backward(dy)
    assert.is_true(gpu:backward(dy:to("cuda")):to("cpu"):rel_err(dx) < 1e-3)
    local g, gg = cpu:grads(), gpu:grads()
    for name, t in pairs(g) do assert.is_true(gg[name]:rel_err(t) < 1e-3, name) end
    local probs = gpu:routing()
    assert.are.equal("cpu", probs:device())

    local cfg = {vocab = 32, dim = 16, layers = 2, max_seq = 16, experts = 4, groups = 2, seed = 1}
    local lm = gqe.nn.LM(cfg)
    cfg.device = "cuda"
    local lmg = gqe.nn.LM(cfg)
    lmg:load(lm:state())
    local tokens, targets = {{1, 2, 3, 4}}, {{2, 3, 4, 5}}
    local l1 = lm:loss(tokens, targets)
    local l2 = lmg:loss(gqe.tensor(tokens, {dtype = "i32", device = "cuda"}), targets)
    assert.is_true(math.abs(l1 - l2) < 1e-3 * l1)
    lmg:backward()
    local _, grad = lmg:parameters()
    assert.are.equal("cuda", grad:device())
    assert.is_true(grad:norm() > 0)

    -- bf16 mixed precision: same loss within bf16 rounding, f32 master weights
    cfg.precision = "bf16"
    local lmb = gqe.nn.LM(cfg)
    lmb:load(lm:state())
    assert.are.equal("bf16", lmb:config().precision)
    local l3 = lmb:loss(tokens, targets)
    assert.is_true(math.abs(l1 - l3) < 2e-2 * l1)
    local params = lmb:parameters()
    assert.are.equal("f32", params:dtype())
  end)
end)
