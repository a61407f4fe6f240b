-- Hostile arguments from Lua: sizes that overflow, another model's
-- optimizer, generation past max_seq, NaN options. Each used to crash or
-- corrupt memory; each must now be a clean error naming what was wrong.
local gqe = require "gqe"

local function refuses(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok)
  assert.is_truthy(tostring(err):find(pattern), tostring(err))
end

local BIG = math.tointeger(2 ^ 31)

describe("sizes from user input", function()
  it("are checked before allocation", function()
    for _, make in ipairs { gqe.zeros, gqe.ones, gqe.randn } do
      refuses("shape %(2147483648, 2147483648%) has too many elements", make, { BIG, BIG })
    end
    refuses("too many elements", gqe.full, { BIG, BIG }, 1)
    refuses("shape %(4611686018427387904%) has too many elements", gqe.arange, 1 << 62)
    refuses("is too large", gqe.arange, math.mininteger, math.maxinteger)
  end)
  it("in views may not wrap around to the element count", function()
    local x = gqe.zeros({ 4 })
    refuses("too many elements", x.view, x, { 1 << 32, 1 << 32, 4 })   -- wraps to 0 in 64 bits
    refuses("too many elements", x.view, x, { -1, 1 << 62 })
    assert.are.same({ 2, 2 }, x:view({ -1, 2 }):shape())
  end)
  it("in model configs name the key and the size", function()
    refuses("mlp_hidden x dim %(an MLP weight%): size 1 x 4000000000 x 1000000000 is too large", gqe.nn.LM,
            { vocab = 16, dim = 1000000000, layers = 1, experts = 4, groups = 2 })
    refuses("dim 4611686018427387904 is too large", gqe.nn.LM,
            { vocab = 16, dim = 1 << 62, layers = 1, experts = 4, groups = 2 })
  end)
end)

describe("generate", function()
  local lm = gqe.nn.LM { vocab = 16, dim = 16, layers = 1, experts = 4, groups = 2, max_seq = 8 }
  it("refuses lengths past max_seq without overflowing", function()
    refuses("exceed model.max_seq 8", lm.generate, lm, { 1 }, math.maxinteger)
    refuses("exceed model.max_seq 8", lm.generate, lm, { 1, 2 }, 7)
    assert.are.equal(8, #lm:generate({ 1, 2 }, 6))
  end)
  it("refuses hostile sampling options", function()
    refuses("top_k must be >= 0", lm.generate, lm, { 1 }, 2, { top_k = -3 })
    refuses("temperature must be finite and >= 0", lm.generate, lm, { 1 }, 2, { temperature = 0 / 0 })
    refuses("temperature must be finite and >= 0", lm.generate, lm, { 1 }, 2, { temperature = -1 })
    refuses("temperature must be finite and >= 0", lm.generate, lm, { 1 }, 2, { temperature = math.huge })
  end)
end)

describe("checkpoints", function()
  it("refuse an optimizer of another model", function()
    local a = gqe.nn.LM { vocab = 16, dim = 16, layers = 2, experts = 4, groups = 2 }
    local b = gqe.nn.LM { vocab = 16, dim = 16, layers = 1, experts = 4, groups = 2 }
    local opt_b = gqe.optim.AdamW(b, {})
    local path = os.tmpname()
    refuses("belongs to another model", gqe.checkpoint.save, path, a, opt_b, { step = 1 })
    gqe.checkpoint.save(path, a, nil, { step = 1, run_uid = "00ff", config_hash = "ab" })
    refuses("belongs to another model", gqe.checkpoint.load, path, a, opt_b)
    local info = gqe.checkpoint.load(path, a, nil)
    assert.are.equal("00ff", info.run_uid)
    assert.is_true(info.verified)
    os.remove(path)
  end)
end)
