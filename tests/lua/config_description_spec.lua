-- The config description (lua/gqe/config.lua): every key described, its
-- default valid under its own rules, the hash of existing configs unchanged.
local gqe = require "gqe"
local config = gqe.config

describe("config description", function()
  it("describes every key with a type, a default and a meaning", function()
    local n = 0
    for _, d in ipairs(config.description) do
      n = n + 1
      assert.truthy(d.name:match("^%l+%.[%w_]+$"), d.name)
      assert.truthy(({ int = true, number = true, bool = true, string = true, tasks = true })[d.type], d.name)
      assert.is_not_nil(d.default, d.name)
      assert.truthy(d.doc and #d.doc > 0, d.name .. " has no doc")
      assert.equal(d, config.schema[d.section][d.key])
      if d.values then
        local ok = false
        for _, v in ipairs(d.values) do if v == d.default then ok = true end end
        assert.is_true(ok, d.name .. ": default not among its values")
      end
    end
    assert.equal(65, n)
  end)
  it("takes the core's names for the model's choices", function()
    assert.same(gqe.nn.names.router, config.schema.model.router.values)
    assert.same(gqe.nn.names.attention, config.schema.model.attention.values)
  end)
  it("derives range messages from the description", function()
    assert.equal(">= 1", config.range_text(config.schema.model.k))
    assert.equal("in [0, 1)", config.range_text(config.schema.optim.beta1))
    assert.equal("in (0, 1]", config.range_text(config.schema.schedule.decay_frac))
    local ok, err = pcall(config.resolve, { model = { balance_gamma = -1 } })
    assert.is_false(ok)
    assert.equal("model.balance_gamma must be >= 0, got -1", err)
    -- beta1 is checked for adamw only
    assert.is_true((pcall(config.resolve, { optim = { name = "sgd", beta1 = 5 } })))
  end)
  it("reports the core's structural checks in config names", function()
    local ok, err = pcall(config.resolve, { model = { experts = 8, groups = 4, k = 3 } })
    assert.is_false(ok)
    assert.matches("^model%.k must be in 1%.%.2 %(experts per group = model%.experts/model%.groups = 8/4%), got 3$", err)
  end)
  it("keeps the hashes of configs that existed before balance_gamma was a key", function()
    assert.equal("18b1797fd0394349", config.hash(config.resolve {}))
    assert.equal("44e23c16d9bad0ba",
      config.hash(config.resolve { model = { router = "sigmoid", k = 2 }, train = { seed = 3 } }))
    -- the balanced router's runs compute differently with the new default
    local a = config.resolve { model = { router = "balanced" } }
    local b = config.resolve { model = { router = "balanced", balance_gamma = 0.02 } }
    assert.are_not.equal(config.hash(a), config.hash(b))
    assert.equal(config.hash(config.resolve {}), config.hash(config.resolve { model = { balance_gamma = 0.02 } }))
  end)
  it("hashes model.balance_lr_scale for the balanced router only", function()
    -- other routers' hashes stay as they were before the key
    assert.equal(config.hash(config.resolve {}), config.hash(config.resolve { model = { balance_lr_scale = 1 } }))
    local a = config.resolve { model = { router = "balanced" } }
    local b = config.resolve { model = { router = "balanced", balance_lr_scale = 1 } }
    assert.are_not.equal(config.hash(a), config.hash(b))
    -- at 1, the rate of every run before the key, a balanced config keeps
    -- the hash it had then (so reruns of older experiments skip their runs)
    assert.equal("6104ca8becb8d280", config.hash(b))
    assert.equal(0.1, a.model.balance_lr_scale)
    local ok, err = pcall(config.resolve, { model = { balance_lr_scale = -1 } })
    assert.is_false(ok)
    assert.equal("model.balance_lr_scale must be >= 0, got -1", err)
  end)
  it("passes model.balance_lr_scale to the optimizer of a balanced router only", function()
    local train = require "gqe.train"
    -- router weights: the update of a balanced router with scale 0 leaves them as they are
    for _, case in ipairs { { "balanced", 0, true }, { "softmax", 0, false }, { "balanced", 1, false } } do
      local c = config.resolve { model = { dim = 32, layers = 1, experts = 4, groups = 2, head_dim = 8,
                                           router = case[1], balance_lr_scale = case[2] } }
      local lm = gqe.nn.LM(config.model_options(c, 64))
      local opt = train.make_optimizer(c, lm)
      local before = lm:state()["blocks.0.attn.router.weight"]:totable()
      local tokens = gqe.tensor({ { 1, 2, 3, 4, 5, 6, 7, 8 } }, { dtype = "i32" })
      lm:loss(tokens, tokens)
      lm:backward(); opt:step(); opt:zero_grad()
      local after = lm:state()["blocks.0.attn.router.weight"]:totable()
      local same = true
      for i = 1, #before do for j = 1, #before[i] do same = same and before[i][j] == after[i][j] end end
      assert.equal(case[3], same, case[1] .. " scale " .. case[2])
    end
  end)
  it("hashes train.nproc as the world size a launcher adds, not as a key", function()
    local one = config.hash(config.resolve {})
    assert.equal(one, config.hash(config.resolve { train = { nproc = 1 } }))
    -- what gqe/parallel.lua makes of the 1-rank hash on 2 ranks of gqe launch
    assert.equal(config.fnv1a64(one .. "|world=2"), config.hash(config.resolve { train = { nproc = 2 } }))
  end)
  it("agrees with the core's own checks of the model keys it passes on", function()
    -- a value just outside a key's range is refused by the core too, so
    -- the description and the core cannot drift apart unnoticed
    local base = config.model_options(config.resolve { model = { dim = 64, head_dim = 8 } }, 256)
    base.device, base.precision = nil, nil
    local checked = 0
    for _, d in ipairs(config.description) do
      if d.section == "model" and d.lm and d.min and d.key ~= "vocab" then   -- vocab 0: the data's
        local o = {}
        for k, v in pairs(base) do o[k] = v end
        o[d.lm] = d.min_open and d.min or d.min - (d.type == "int" and 1 or 1e-3)
        if d.key == "balance_gamma" then o.router = "balanced" end
        assert.is_false((pcall(gqe.nn.check_lm, o)), d.name .. " = " .. tostring(o[d.lm]) .. " passed the core")
        checked = checked + 1
      end
    end
    assert.truthy(checked >= 11)
  end)
  it("builds the model options from the description", function()
    local c = config.resolve { model = { dim = 64, head_dim = 8 }, train = { seq = 32, seed = 7 } }
    local o = config.model_options(c, 300)
    assert.equal(300, o.vocab)
    assert.equal(64, o.dim)
    assert.equal(32, o.max_seq)
    assert.equal(7, o.seed)
    assert.equal("cpu", o.device)
    assert.equal(0.01, o.balance_gamma)
  end)
end)
