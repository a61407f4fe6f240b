-- The config schema: defaults, validation messages, overrides, flattening,
-- the stable JSON encoding and the config hash. Pure Lua: runs with or
-- without build/gqe.so (the embedded copy is used when it is loaded).
package.path = "./lua/?.lua;" .. package.path
pcall(require, "gqe")
local config = require "gqe.config"
local json = require "gqe.json"

describe("config defaults", function()
  it("fills every section", function()
    local c = config.resolve {}
    for _, sec in ipairs { "model", "optim", "schedule", "data", "train" } do
      assert.is_table(c[sec])
    end
    assert.equal("gqe", c.model.attention)
    assert.equal(1, c.model.k)
    assert.equal("adamw", c.optim.name)
    assert.equal("text", c.data.kind)
  end)

  it("keeps user values and does not modify the input", function()
    local user = { model = { k = 2 }, train = { steps = 5 } }
    local c = config.resolve(user)
    assert.equal(2, c.model.k)
    assert.equal(5, c.train.steps)
    assert.is_nil(user.model.dim)
  end)
end)

describe("config validation", function()
  it("names the unknown key and lists the valid keys of its section", function()
    local ok, err = pcall(config.resolve, { model = { experts = 8, kk = 2 } })
    assert.is_false(ok)
    assert.matches("unknown key model.kk", err, 1, true)
    assert.matches("valid keys of model:", err, 1, true)
    for _, k in ipairs { "attention", "dim", "experts", "groups", "head_dim", "k", "router", "variant" } do
      assert.matches(k, err, 1, true)
    end
  end)

  it("rejects unknown keys in every section", function()
    for _, sec in ipairs { "model", "optim", "schedule", "data", "train" } do
      local ok, err = pcall(config.resolve, { [sec] = { bogus = 1 } })
      assert.is_false(ok)
      assert.matches("unknown key " .. sec .. ".bogus; valid keys of " .. sec, err, 1, true)
    end
  end)

  it("rejects an unknown section", function()
    local ok, err = pcall(config.resolve, { modle = {} })
    assert.is_false(ok)
    assert.matches("unknown config section 'modle'", err, 1, true)
  end)

  it("checks types with the key in the message", function()
    local ok, err = pcall(config.resolve, { model = { k = "two" } })
    assert.is_false(ok)
    assert.matches("model.k must be an integer", err, 1, true)
    ok, err = pcall(config.resolve, { model = { k = 1.5 } })
    assert.is_false(ok)
    assert.matches("model.k must be an integer", err, 1, true)
    ok, err = pcall(config.resolve, { model = { rope = "yes" } })
    assert.matches("model.rope must be true or false", err, 1, true)
    ok, err = pcall(config.resolve, { optim = { lr = "fast" } })
    assert.matches("optim.lr must be a number", err, 1, true)
  end)

  it("lists the allowed values of an enumerated key", function()
    local ok, err = pcall(config.resolve, { model = { router = "sigmod" } })
    assert.is_false(ok)
    assert.matches("model.router must be one of softmax, sigmoid, balanced, random, hash, got 'sigmod'", err, 1, true)
  end)

  it("checks ranges the core would reject", function()
    local ok, err = pcall(config.resolve, { model = { experts = 8, groups = 3 } })
    assert.is_false(ok)
    assert.matches("model.experts (8) must be divisible by model.groups (3)", err, 1, true)
    ok, err = pcall(config.resolve, { model = { experts = 8, groups = 4, k = 3 } })
    assert.matches("model.k must be in 1..2", err, 1, true)
    ok, err = pcall(config.resolve, { train = { steps = 0 } })
    assert.matches("train.steps must be >= 1", err, 1, true)
  end)

  it("normalises integer-valued floats and floats", function()
    local c = config.resolve { model = { k = 2.0 }, optim = { lr = 1 } }
    assert.equal("integer", math.type(c.model.k))
    assert.equal("float", math.type(c.optim.lr))
  end)
end)

describe("overrides", function()
  it("parses section.key=value with coercion by the key's type", function()
    local ov, flags, pos = config.parse_args { "model.k=2", "train.progress=false", "optim.lr=1e-3",
      "data.path=x.txt", "--jobs", "2", "--dry-run", "--db=a.db", "file" }
    local c = config.apply({}, ov)
    assert.equal(2, c.model.k)
    assert.equal("integer", math.type(c.model.k))
    assert.is_false(c.train.progress)
    assert.equal(1e-3, c.optim.lr)
    assert.equal("x.txt", c.data.path)
    assert.equal("2", flags.jobs)
    assert.is_true(flags["dry-run"])
    assert.equal("a.db", flags.db)
    assert.same({ "file" }, pos)
  end)

  it("keeps digits as text for string keys", function()
    local c = config.apply({}, { { "data.path", "123" } })
    assert.equal("123", c.data.path)
  end)

  it("reports bad overrides with the key", function()
    local ok, err = pcall(config.apply, {}, { { "model.k", "abc" } })
    assert.is_false(ok)
    assert.matches("model.k must be a number, got 'abc'", err, 1, true)
    ok, err = pcall(config.apply, {}, { { "model.kk", "2" } })
    assert.matches("unknown key model.kk; valid keys of model:", err, 1, true)
    ok, err = pcall(config.apply, {}, { { "train.progress", "maybe" } })
    assert.matches("train.progress must be true or false", err, 1, true)
  end)
end)

describe("the optional eval section", function()
  it("stays out of the JSON, params and hash while unused", function()
    local c0 = config.resolve {}
    local c1 = config.resolve { eval = { tasks = { cloze = "data/brown_cloze.jsonl" } } }
    assert.is_nil(config.to_json(c0):find('"eval"', 1, true))
    assert.is_nil(config.flatten(c0)["eval.tasks"])
    assert.equal(config.hash(c0), config.hash(c1))
    assert.truthy(config.to_json(c1):find('"cloze":"data/brown_cloze.jsonl"', 1, true))
    assert.equal('{"cloze":"data/brown_cloze.jsonl"}', config.params(c1)["eval.tasks"])
  end)
  it("takes tasks from the command line and checks them", function()
    local c = config.apply({}, { { "eval.tasks", "a=x.jsonl,b=y.bin" } })
    assert.same({ a = "x.jsonl", b = "y.bin" }, config.resolve(c).eval.tasks)
    assert.has_error(function() config.apply({}, { { "eval.tasks", "nonsense" } }) end,
      "eval.tasks: 'nonsense' must look like name=path")
    assert.has_error(function() config.resolve { eval = { tasks = { a = 3 } } } end,
      "eval.tasks must map task names to file paths, got a = 3")
  end)
end)

describe("flatten and params", function()
  it("gives one dotted key per config value", function()
    local c = config.resolve { model = { k = 2 } }
    local flat = config.flatten(c)
    local n = 0
    for _, sec in ipairs(config.sections) do
      if not config.optional[sec] then   -- an optional section at its defaults is left out
        for k in pairs(config.schema[sec]) do
          n = n + 1
          assert.is_not_nil(flat[sec .. "." .. k] ~= nil)
        end
      end
    end
    local m = 0
    for _ in pairs(flat) do m = m + 1 end
    assert.equal(n, m)
    assert.equal(2, flat["model.k"])
    local p = config.params(c)
    assert.equal("2", p["model.k"])
    assert.equal("true", p["model.rope"])
    assert.equal("0.003", p["optim.lr"])
  end)
end)

describe("json", function()
  it("sorts object keys and is stable", function()
    assert.equal('{"a":1,"b":[1,2,"x"],"c":{"d":true}}',
                 json.encode { c = { e = nil, d = true }, a = 1, b = { 1, 2, "x" } })
    local t1, t2 = {}, {}
    for i = 1, 50 do t1["k" .. i] = i end
    for i = 50, 1, -1 do t2["k" .. i] = i end
    assert.equal(json.encode(t1), json.encode(t2))
  end)

  it("writes the shortest exact number and escapes strings", function()
    assert.equal("0.003", json.encode(3e-3))
    assert.equal("0.1", json.encode(0.1))
    assert.equal("10000", json.encode(10000.0))
    assert.equal('"a\\"b\\n\\u0001"', json.encode('a"b\n\1'))
    assert.has_error(function() json.encode(0 / 0) end)
  end)

  it("round-trips a config", function()
    local c = config.resolve { model = { k = 2 }, data = { path = 'we"ird\\path' } }
    local back = config.resolve(json.decode(config.to_json(c)))
    assert.same(c, back)
    assert.equal(config.to_json(c), config.to_json(back))
  end)
end)

describe("hash", function()
  it("is FNV-1a 64", function()
    assert.equal("cbf29ce484222325", config.fnv1a64(""))
    assert.equal("af63dc4c8601ec8c", config.fnv1a64("a"))
    assert.equal("85944171f73967e8", config.fnv1a64("foobar"))
  end)

  it("is equal for equal configs however they were written", function()
    local a = config.resolve { model = { k = 1 }, optim = { lr = 0.003 } }
    local b = config.resolve { optim = { lr = 3e-3 } }
    assert.equal(config.hash(a), config.hash(b))
  end)

  it("changes with any key that changes results, not with train.db or progress", function()
    local a = config.resolve {}
    assert.are_not.equal(config.hash(a), config.hash(config.resolve { model = { k = 2 } }))
    assert.are_not.equal(config.hash(a), config.hash(config.resolve { train = { seed = 2 } }))
    assert.equal(config.hash(a), config.hash(config.resolve { train = { db = "x.db", progress = false } }))
  end)
end)

describe("active heads", function()
  it("counts G*k (+1 shared) for gqe and N for dense kinds", function()
    assert.equal(5, config.active_heads(config.resolve { model = { experts = 8, groups = 4, k = 1 } }))
    assert.equal(8, config.active_heads(config.resolve { model = { experts = 8, groups = 4, k = 2, variant = "hard_concat" } }))
    assert.equal(8, config.active_heads(config.resolve { model = { attention = "gqa", experts = 8, groups = 4 } }))
  end)
end)

describe("recall task keys", function()
  it("reach the data set and leave earlier runs' hashes alone at their defaults", function()
    local train = require "gqe.train"
    local c = config.resolve { data = { kind = "recall", num_pairs = 16, num_queries = 4 } }
    local o = train.data_options(c)
    assert.equal(16, o.num_pairs)
    assert.equal(4, o.num_queries)
    local plain = config.resolve { data = { kind = "recall" } }
    assert.is_nil(train.data_options(config.resolve {}).num_pairs)
    assert.not_equal(config.hash(plain), config.hash(c))
    -- The defaults are not hashed: a recall run from before the keys existed
    -- keeps its hash (computed without them).
    local old = config.resolve { data = { kind = "recall" } }
    old.data.num_pairs, old.data.num_queries = nil, nil
    assert.equal(config.hash(old), config.hash(plain))
  end)
end)
