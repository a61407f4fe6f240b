-- Experiment expansion: grid x seeds, run names, overrides, arms, dry run.
-- Nothing here trains; with build/gqe.so on LUA_CPATH the embedded library
-- is tested, otherwise the sources under lua/ with a stand-in module table.
package.path = "./lua/?.lua;" .. package.path
if not pcall(require, "gqe") then package.loaded["gqe"] = {} end
local experiment = require "gqe.experiment"

local router = {
  name = "router-ablation",
  base = {
    data  = { kind = "text", path = "data/brown.txt" },
    model = { dim = 128, layers = 4, attention = "gqe", experts = 8, groups = 4, k = 1, head_dim = 16 },
    train = { steps = 300, batch = 16, seq = 128, eval_every = 50 },
  },
  grid  = { ["model.router"] = { "softmax", "sigmoid", "random" }, ["model.k"] = { 1, 2 } },
  seeds = { 1, 2 },
}

local function names(runs)
  local t = {}
  for i, r in ipairs(runs) do t[i] = r.name end
  return t
end

describe("experiment.expand", function()
  it("gives the cartesian product of grid and seeds in a stable order", function()
    local runs = experiment.expand(router)
    assert.equal(12, #runs)
    assert.same({
      "k=1,router=softmax,seed=1", "k=1,router=softmax,seed=2",
      "k=1,router=sigmoid,seed=1", "k=1,router=sigmoid,seed=2",
      "k=1,router=random,seed=1", "k=1,router=random,seed=2",
      "k=2,router=softmax,seed=1", "k=2,router=softmax,seed=2",
      "k=2,router=sigmoid,seed=1", "k=2,router=sigmoid,seed=2",
      "k=2,router=random,seed=1", "k=2,router=random,seed=2",
    }, names(runs))
    assert.same(names(runs), names(experiment.expand(router)))
  end)

  it("sets the varied values and the seed in each run's full config", function()
    local r = experiment.expand(router)[8]
    assert.equal(2, r.config.model.k)
    assert.equal("softmax", r.config.model.router)
    assert.equal(2, r.config.train.seed)
    assert.equal(300, r.config.train.steps)
    assert.equal(4, r.config.model.groups)
    assert.is_string(r.hash)
  end)

  it("gives every run a different hash", function()
    local seen = {}
    for _, r in ipairs(experiment.expand(router)) do
      assert.is_nil(seen[r.hash])
      seen[r.hash] = true
    end
  end)

  it("keeps the order of a list-form grid", function()
    local def = { name = "x", grid = { { "model.router", { "softmax", "sigmoid" } }, { "model.k", { 1, 2 } } },
                  seeds = { 1 } }
    assert.same({ "router=softmax,k=1,seed=1", "router=softmax,k=2,seed=1",
                  "router=sigmoid,k=1,seed=1", "router=sigmoid,k=2,seed=1" }, names(experiment.expand(def)))
  end)

  it("applies overrides to every run; an override of a grid key replaces the axis", function()
    local runs = experiment.expand(router, { { "train.steps", "50" }, { "model.k", "2" } })
    assert.equal(6, #runs)
    for _, r in ipairs(runs) do
      assert.equal(50, r.config.train.steps)
      assert.equal(2, r.config.model.k)
    end
    local one_seed = experiment.expand(router, { { "train.seed", "7" } })
    assert.equal(6, #one_seed)
    assert.equal("k=1,router=softmax,seed=7", one_seed[1].name)
  end)

  it("crosses arms with the grid and names runs by their arm's keys", function()
    local def = { name = "t2", base = { model = { experts = 8, groups = 4 } }, seeds = { 1 },
      arms = { { ["model.attention"] = "gqa" },
               { ["model.attention"] = "gqe", ["model.variant"] = "hard_concat" } } }
    local runs = experiment.expand(def)
    assert.same({ "attention=gqa,seed=1", "attention=gqe,variant=hard_concat,seed=1" }, names(runs))
    assert.equal("hard_concat", runs[2].config.model.variant)
  end)

  it("rejects unknown keys in grid and base, listing the valid ones", function()
    local ok, err = pcall(experiment.expand, { name = "x", grid = { ["model.routr"] = { "a" } } })
    assert.is_false(ok)
    assert.matches("unknown key model.routr; valid keys of model:", err, 1, true)
    ok, err = pcall(experiment.expand, { name = "x", base = { train = { stpes = 3 } } })
    assert.is_false(ok)
    assert.matches("unknown key train.stpes; valid keys of train:", err, 1, true)
    ok, err = pcall(experiment.expand, { name = "x", grdi = {} })
    assert.matches("unknown key 'grdi' in gqe.experiment", err, 1, true)
    ok, err = pcall(experiment.expand, { base = {} })
    assert.matches("needs name", err, 1, true)
  end)

  it("rejects invalid grid values before anything runs", function()
    local ok, err = pcall(experiment.expand, { name = "x", grid = { ["model.router"] = { "softmax", "sigmod" } } })
    assert.is_false(ok)
    assert.matches("model.router must be one of", err, 1, true)
  end)
end)

describe("run names", function()
  it("name a changed base key, never an unchanged one", function()
    local a = experiment.expand(router, { { "model.dim", "60" } })
    local b = experiment.expand(router, { { "model.dim", "65" } })
    local same = experiment.expand(router, { { "model.dim", "128" } })
    assert.equal("k=1,router=softmax,dim=60,seed=1", a[1].name)
    assert.equal("k=1,router=softmax,dim=65,seed=1", b[1].name)
    assert.equal(experiment.expand(router)[1].name, same[1].name)
    assert.equal(experiment.expand(router)[1].hash, same[1].hash)
  end)

  it("keep an overridden grid axis in the name", function()
    local runs = experiment.expand(router, { { "model.k", "2" } })
    assert.equal("k=2,router=softmax,seed=1", runs[1].name)
  end)
end)

describe("experiment.run --dry-run", function()
  it("lists the runs and trains nothing", function()
    local real = io.stdout
    local buf = {}
    io.stdout = { write = function(_, ...) for _, s in ipairs { ... } do buf[#buf + 1] = s end end, flush = function() end }
    local ok, runs = pcall(experiment.run, router, { "--dry-run", "train.steps=10" })
    io.stdout = real
    assert.is_true(ok, runs)
    assert.is_true(runs.dry_run)
    assert.equal(12, #runs)
    local text = table.concat(buf)
    assert.matches("experiment router-ablation: 12 runs (dry run", text, 1, true)
    -- The override changed the config, so it is in every name.
    assert.matches("k=2,router=random,steps=10,seed=2", text, 1, true)
    assert.matches("new", text, 1, true)
    assert.equal(10, runs[1].config.train.steps)
  end)
end)

describe("progress", function()
  local gqe = require "gqe"
  local ok_train, train = pcall(require, "gqe.train")
  it("counts a resumed run's ETA from the steps it ran", function()
    if not (ok_train and gqe.clock) then return pending("needs build/gqe.so") end
    -- 10 s for the 5 steps run since the checkpoint at step 90: 5 left take 10 s,
    -- not the 0.56 s that counting from step 0 would claim.
    local ctx = { c = { train = { steps = 100 } }, start_step = 90, loop_t0 = gqe.clock() - 10 }
    local eta = train.eta_seconds(ctx, 95)
    assert.is_true(eta >= 10 and eta < 11, tostring(eta))
    assert.is_nil(train.eta_seconds(ctx, 90))
  end)
end)
