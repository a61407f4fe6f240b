-- The report and the grouping behind `gqe compare`, on a small run log
-- fabricated through the gqe.db API (needs build/gqe.so on LUA_CPATH).
local gqe = require "gqe"
local results = require "gqe.results"
local report = require "gqe.report"

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. p))
  return p
end

local function fabricate(path)
  local db = gqe.db.open(path)
  local exp = db:experiment("fab")
  for _, k in ipairs { 1, 2 } do
    for seed = 1, 2 do
      local c = gqe.config.resolve { model = { k = k, experts = 4, groups = 2, layers = 2 }, train = { seed = seed } }
      local id = db:begin_run { experiment_id = exp, name = string.format("k=%d,seed=%d", k, seed),
        config_json = gqe.config.to_json(c), config_hash = gqe.config.hash(c), params = gqe.config.params(c),
        host = gqe.hostname(), pid = gqe.pid(), device = "cpu", seed = seed }
      for step = 10, 40, 10 do
        db:log(id, step, "train/loss", 4 - step / 20 + seed * 0.1)
        db:log(id, step, "perf/tokens_per_s", 100 * k)
      end
      -- final val/loss: k=1 -> 2.1, 2.3 ; k=2 -> 1.6, 1.8
      db:eval(id, 20, "val", "loss", 3.0)
      db:eval(id, 40, "val", "loss", (k == 1 and 2.0 or 1.5) + seed * 0.1)
      for layer = 0, 1 do
        for g = 0, 1 do
          db:head_usage(id, 40, layer, g, 0, 30, 0.75, 0.6)
          db:head_usage(id, 40, layer, g, 1, 10, 0.25, 0.4)
        end
      end
      db:end_run(id, "finished", nil)
    end
  end
  return db
end

describe("results", function()
  local dir, db
  setup(function()
    dir = tmpdir()
    db = fabricate(dir .. "/runs.db")
  end)
  teardown(function()
    db:close()
    os.execute("rm -rf " .. dir)
  end)

  it("finds the varied keys and groups over seeds", function()
    local runs = results.runs(db, "fab", { status = "finished" })
    assert.equal(4, #runs)
    local groups, keys = results.groups(runs)
    assert.same({ "model.k" }, keys)
    assert.equal(2, #groups)
    assert.equal("k=1", groups[1].label)
    assert.equal(2, #groups[1].runs)
  end)

  it("summarises mean and std over seeds", function()
    local runs = results.runs(db, "fab", { status = "finished" })
    local rows = results.summarize((results.groups(runs)))
    assert.near(2.15, rows[1].final_mean, 1e-9)
    assert.near(math.sqrt(0.005), rows[1].final_std, 1e-9)
    assert.near(1.65, rows[2].final_mean, 1e-9)
    assert.near(1.65, rows[2].best_mean, 1e-9)
    assert.near(200, rows[2].tps_mean, 1e-9)
    assert.equal(3, rows[1].heads)   -- G*k + 1 = 2*1 + 1
    assert.equal(5, rows[2].heads)
    local text = results.format_table(rows)
    assert.matches("k=1", text, 1, true)
    assert.matches("2.1500 +- 0.0707", text, 1, true)
  end)

  it("writes an HTML page whose images all exist as PNG files", function()
    if not report.have_gnuplot() then pending("gnuplot not installed") return end
    local out = dir .. "/report"
    local index = report.generate(db, "fab", { out = out })
    local f = assert(io.open(index))
    local html = f:read("a")
    f:close()
    local n = 0
    for src in html:gmatch('<img src="([^"]+)"') do
      n = n + 1
      local img = assert(io.open(out .. "/" .. src, "rb"), "missing " .. src)
      assert.equal("\137PNG\r\n\26\n", img:read(8))
      img:close()
    end
    -- train + val curves, one axis (k), two heatmaps
    assert.equal(5, n)
    assert.matches("Experiment fab", html, 1, true)
  end)

  it("fails clearly for an unknown experiment", function()
    local ok, err = pcall(report.generate, db, "nope", { out = dir .. "/x" })
    assert.is_false(ok)
    assert.matches("unknown experiment 'nope'", err, 1, true)
  end)
end)
