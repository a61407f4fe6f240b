-- One name per concept in the Lua API (attention, beta1/beta2; the former
-- names warn and still work), lm:load's strictness, gqe.nn.check_lm and
-- gqe.nn.names.
local gqe = require "gqe"

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

local function small_lm(layers)
  return gqe.nn.LM { vocab = 32, dim = 16, layers = layers or 1, max_seq = 8, experts = 4, groups = 2, k = 1,
                     router = "balanced", seed = 1 }
end

describe("names", function()
  it("GQEAttention takes attention = and reports it; kind = still works", function()
    local a = gqe.nn.GQEAttention { dim = 16, experts = 4, groups = 2, attention = "gqa" }
    assert.equal("gqa", a:config().attention)
    assert.is_nil(a:config().kind)
    local b = gqe.nn.GQEAttention { dim = 16, experts = 4, groups = 2, kind = "gqa" }
    assert.equal("gqa", b:config().attention)
    assert.matches("give attention only",
      err_of(gqe.nn.GQEAttention, { dim = 16, experts = 4, groups = 2, kind = "gqa", attention = "gqe" }), 1, true)
  end)
  it("AdamW takes beta1 and beta2; betas = {b1, b2} gives the same optimizer", function()
    local a, b = small_lm(), small_lm()
    local tokens = gqe.tensor({ { 1, 2, 3, 4 } }, { dtype = "i32" })
    local targets = gqe.tensor({ { 2, 3, 4, 5 } }, { dtype = "i32" })
    local oa = gqe.optim.AdamW(a, { lr = 1e-2, beta1 = 0.8, beta2 = 0.9 })
    local ob = gqe.optim.AdamW(b, { lr = 1e-2, betas = { 0.8, 0.9 } })
    for _, p in ipairs { { a, oa }, { b, ob } } do
      p[1]:loss(tokens, targets, 0); p[1]:backward(); p[2]:step(); p[2]:zero_grad()
    end
    local sa, sb = a:state(), b:state()
    for k, t in pairs(sa) do assert.same(t:totable(), sb[k]:totable()) end
    assert.matches("give beta1 and beta2 only",
      err_of(gqe.optim.AdamW, a, { betas = { 0.8, 0.9 }, beta1 = 0.8 }), 1, true)
  end)
  it("lists the core's choices", function()
    assert.same({ "gqe", "gqa", "mha", "mqa" }, gqe.nn.names.attention)
    assert.same({ "softmax", "sigmoid", "balanced", "random", "hash" }, gqe.nn.names.router)
    assert.same({ "gqe", "hard_concat", "weighted_concat" }, gqe.nn.names.variant)
    assert.same({ "gelu", "swiglu" }, gqe.nn.names.mlp)
  end)
end)

describe("gqe.nn.check_lm", function()
  it("returns the derived config without building a model", function()
    local c = gqe.nn.check_lm { vocab = 32, dim = 64, layers = 2, experts = 8, groups = 4 }
    assert.equal(8, c.head_dim)
    assert.equal(256, c.mlp_hidden)
    assert.equal("gqe", c.attention)
  end)
  it("raises what LM would raise", function()
    assert.matches("k must be in 1..2", err_of(gqe.nn.check_lm, { vocab = 32, dim = 64, layers = 2, experts = 8,
                                                                  groups = 4, k = 3 }), 1, true)
  end)
end)

describe("LM:load", function()
  it("round-trips a model's own state", function()
    local a, b = small_lm(), small_lm()
    local lm, missing, unexpected = b:load(a:state())
    assert.equal(b, lm)
    assert.same({}, missing)
    assert.same({}, unexpected)
  end)
  it("refuses a 2-layer state for a 1-layer model, naming the keys", function()
    local e = err_of(function() small_lm(1):load(small_lm(2):state()) end)
    assert.matches("LM:load: unexpected 'blocks.1.", e, 1, true)
    assert.matches("{strict = false}", e, 1, true)
  end)
  it("refuses a 1-layer state for a 2-layer model, naming the missing keys", function()
    local e = err_of(function() small_lm(2):load(small_lm(1):state()) end)
    assert.matches("LM:load: missing 'blocks.1.", e, 1, true)
  end)
  it("with strict = false loads what matches and returns both lists", function()
    local one, two = small_lm(1), small_lm(2)
    local before = two:state()["blocks.1.attn.q_proj.weight"]:totable()
    local s = one:state()
    s["extra.weight"] = gqe.zeros({ 2 })
    local _, missing, unexpected = two:load(s, { strict = false })
    assert.same({ "extra.weight" }, unexpected)
    assert.truthy(#missing > 0)
    for _, m in ipairs(missing) do assert.matches("^blocks%.1%.", m) end
    assert.same(one:state()["tok_emb.weight"]:totable(), two:state()["tok_emb.weight"]:totable())
    assert.same(before, two:state()["blocks.1.attn.q_proj.weight"]:totable())
  end)
  it("takes a prefix and checks only keys under it", function()
    local a, b = small_lm(), small_lm()
    local prefixed = { ["other.thing"] = gqe.zeros({ 1 }) }
    for k, t in pairs(a:state()) do prefixed["model." .. k] = t end
    local _, missing, unexpected = b:load(prefixed, "model.")
    assert.same({}, missing)
    assert.same({}, unexpected)
    assert.matches("unknown key", err_of(function() b:load(a:state(), { strict = true, bogus = 1 }) end), 1, true)
  end)
end)

describe("gqe.nn.active_heads", function()
  it("counts as GQE.md says: G*k (+1 shared head in variant gqe), N for dense kinds", function()
    assert.equal(5, gqe.nn.active_heads { attention = "gqe", experts = 8, groups = 4, k = 1, variant = "gqe" })
    assert.equal(8, gqe.nn.active_heads { attention = "gqe", experts = 8, groups = 4, k = 2, variant = "hard_concat" })
    assert.equal(8, gqe.nn.active_heads { attention = "gqa", experts = 8, groups = 4 })
    assert.equal(8, gqe.config.active_heads(gqe.config.resolve { model = { attention = "mha", groups = 8 } }))
    assert.is_nil(require("gqe.results").active_heads { ["model.attention"] = "bogus", ["model.experts"] = "8",
                                                        ["model.groups"] = "4", ["model.k"] = "1" })
  end)
end)
