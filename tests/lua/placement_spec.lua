-- GPU placement with fake device lists: visible GPUs, --gpus, --per-gpu,
-- slots taken and freed, multi-GPU runs, runs that could never start.
package.path = "./lua/?.lua;" .. package.path
local placement = require "gqe.placement"

local function env(t) return function(k) return t[k] end end

describe("placement.visible", function()
  it("numbers the devices 0..count-1 without CUDA_VISIBLE_DEVICES", function()
    assert.same({ "0", "1", "2", "3" }, placement.visible(4, env {}))
    assert.same({}, placement.visible(0, env {}))
  end)
  it("names them by CUDA_VISIBLE_DEVICES' entries when it is set", function()
    assert.same({ "2", "3" }, placement.visible(2, env { CUDA_VISIBLE_DEVICES = "2, 3" }))
    assert.same({ "GPU-aa", "GPU-bb" }, placement.visible(2, env { CUDA_VISIBLE_DEVICES = "GPU-aa,GPU-bb" }))
    -- CUDA stops at an entry it cannot use; its count is what is visible.
    assert.same({ "5" }, placement.visible(1, env { CUDA_VISIBLE_DEVICES = "5,99" }))
    assert.same({}, placement.visible(0, env { CUDA_VISIBLE_DEVICES = "" }))
  end)
end)

describe("placement.select", function()
  local vis = { "4", "5", "6", "7" }
  it("takes every visible GPU by default and positions among them with --gpus", function()
    assert.same(vis, placement.select(nil, vis))
    assert.same({ "4", "6" }, placement.select("0,2", vis))
  end)
  it("rejects GPUs that are not there, naming what is", function()
    local cases = {
      { "4", "GPU 4 does not exist %(4 GPUs are visible: 0..3%)" },
      { "0,0", "GPU 0 is listed twice" },
      { "a", "'a' is not a GPU number" },
      { "1,", "'' is not a GPU number" },
      { true, "needs a list like 0,1,2,3" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(placement.select, c[1], vis)
      assert.is_false(ok)
      assert.matches(c[2], err)
    end
    local ok, err = pcall(placement.select, "0", {})
    assert.is_false(ok)
    assert.matches("no GPU is visible %(CUDA device count 0%)", err)
  end)
  it("checks --per-gpu", function()
    assert.equal(1, placement.per_gpu(nil))
    assert.equal(3, placement.per_gpu("3"))
    for _, bad in ipairs { "0", "-1", "1.5", "x" } do
      assert.has_error(function() placement.per_gpu(bad) end)
    end
  end)
end)

describe("placement pool", function()
  it("spreads single-GPU runs before they share, up to per_gpu each", function()
    local p = placement.pool({ "0", "1" }, 2)
    assert.equal(4, p:slots())
    local got = {}
    for i = 1, 4 do got[i] = p:acquire(1)[1] end
    assert.same({ "0", "1", "0", "1" }, got)
    assert.is_nil(p:acquire(1))
    p:release({ "1" })
    assert.same({ "1" }, p:acquire(1))
  end)

  it("reuses the GPU of a run that ended, whatever its end", function()
    local p = placement.pool({ "0" }, 1)
    local a = p:acquire(1)
    assert.is_nil(p:acquire(1))
    p:release(a)
    assert.same({ "0" }, p:acquire(1))
  end)

  it("gives a multi-GPU run that many idle GPUs, whole", function()
    local p = placement.pool({ "0", "1", "2", "3" }, 2)
    local one = p:acquire(1)
    assert.same({ "0" }, one)
    local two = p:acquire(2)
    assert.same({ "1", "2" }, two)
    assert.is_nil(p:acquire(2))          -- only GPU 3 idle
    assert.same({ "3" }, p:acquire(1))   -- the idle one first
    assert.same({ "0" }, p:acquire(1))   -- then the shared ones; 1 and 2 are taken whole
    assert.same({ "3" }, p:acquire(1))
    assert.is_nil(p:acquire(1))
    p:release(two)
    assert.same({ "1", "2" }, p:acquire(2))
  end)

  it("refuses at once a run asking for more GPUs than the sweep has", function()
    local p = placement.pool({ "0", "1" }, 1)
    p:check(2, "run a")
    local ok, err = pcall(p.check, p, 4, "run a")
    assert.is_false(ok)
    assert.matches("run a asks for 4 GPUs %(train.nproc%) but the sweep has 2 %(%-%-gpus 0,1%)", err)
  end)

  it("knows what a run needs and how to pin it", function()
    assert.equal(0, placement.need { train = { device = "cpu" } })
    assert.equal(1, placement.need { train = { device = "cuda" } })
    assert.equal(4, placement.need { train = { device = "cuda", nproc = 4 } })
    assert.equal("CUDA_VISIBLE_DEVICES=2,3", placement.env { "2", "3" })
    assert.equal("GPU 1", placement.describe { "1" })
    assert.equal("GPUs 2,3", placement.describe { "2", "3" })
  end)
end)

describe("placement.for_sweep", function()
  local gpu_run = { name = "a", config = { train = { device = "cuda" } } }
  local cpu_run = { name = "b", config = { train = { device = "cpu" } } }
  local wide = { name = "w", config = { train = { device = "cuda", nproc = 3 } } }
  local none = function() return nil end
  it("leaves CPU sweeps alone and refuses GPU flags for them", function()
    assert.is_nil(placement.for_sweep({ cpu_run }, {}, 4, none))
    assert.has_error(function() placement.for_sweep({ cpu_run }, { gpus = "0" }, 4, none) end,
                     "--gpus: no run of this experiment uses a GPU (set train.device=cuda)")
  end)
  it("uses every visible GPU unless --gpus narrows it", function()
    local p = placement.for_sweep({ gpu_run, cpu_run }, { ["per-gpu"] = "2" }, 3, none)
    assert.same({ "0", "1", "2" }, p.gpus)
    assert.equal(6, p:slots())
    p = placement.for_sweep({ gpu_run }, { gpus = "1" }, 2, function() return "6,7" end)
    assert.same({ "7" }, p.gpus)
  end)
  it("without a visible GPU: nil, or an error when --gpus asked for one", function()
    assert.is_nil(placement.for_sweep({ gpu_run }, {}, 0, none))
    assert.has_error(function() placement.for_sweep({ gpu_run }, { gpus = "0" }, 0, none) end)
  end)
  it("refuses a run wider than the sweep before anything starts", function()
    assert.has_error(function() placement.for_sweep({ gpu_run, wide }, { gpus = "0,1" }, 4, none) end,
                     "run w asks for 3 GPUs (train.nproc) but the sweep has 2 (--gpus 0,1)")
  end)
end)

describe("a placed worker", function()
  it("starts with CUDA_VISIBLE_DEVICES naming its GPUs", function()
    local ok, gqe = pcall(require, "gqe")
    if not ok or not gqe.pid then return pending("needs build/gqe.so on LUA_CPATH") end
    local argv = require("gqe.sweep").worker_argv("runs.db", "job.json", { placement.env { "3" } })
    assert.equal("env", argv[1])
    assert.is_truthy(table.concat(argv, " "):match("^env [^/]*CUDA_VISIBLE_DEVICES=3 "))
    assert.matches("job.json", argv[#argv], 1, true)
  end)
end)

describe("the runner's own placer", function()
  it("gives a CPU run of train.nproc ranks that many slots, at most all", function()
    local ok, gqe = pcall(require, "gqe")
    if not ok or not gqe.pid then return pending("needs build/gqe.so on LUA_CPATH") end
    local sweep = require "gqe.sweep"
    local p = sweep.default_placer(3)
    local wide = { config = { train = { device = "cpu", nproc = 2 } } }
    local one = { config = { train = { device = "cpu", nproc = 1 } } }
    local a = p:acquire(wide)
    assert.equal(2, #a.indices)
    local b = p:acquire(one)
    assert.equal(1, #b.indices)
    assert.is_nil(p:acquire(one))
    p:release(a)
    assert.is_nil(p:acquire({ config = { train = { device = "cpu", nproc = 3 } } }))
    -- more ranks than slots: all the slots, not a wait for ever
    p:release(b)
    assert.equal(3, #p:acquire({ config = { train = { device = "cpu", nproc = 5 } } }).indices)
    -- a GPU run's ranks are on its GPUs: one slot of the runner
    assert.equal(1, #sweep.default_placer(2):acquire({ config = { train = { device = "cuda", nproc = 2 } } }).indices)
  end)
end)

describe("placement.placer", function()
  -- The runner's own placer: `size` runs at once, each with its threads.
  local function counting(size)
    local used = 0
    return { size = size,
             acquire = function() if used < size then used = used + 1; return { env = { "OMP_NUM_THREADS=2" } } end end,
             release = function() used = used - 1 end,
             used = function() return used end }
  end
  local gpu = { name = "g", config = { train = { device = "cuda" } } }
  local cpu = { name = "c", config = { train = { device = "cpu" } } }

  it("pins GPU runs, keeps the runner's env, frees both on release", function()
    local inner = counting(4)
    local p = placement.placer(placement.pool({ "5" }, 2), inner)
    assert.equal(4, p.size)
    local a, b = p:acquire(gpu), p:acquire(gpu)
    assert.same({ "CUDA_VISIBLE_DEVICES=5", "OMP_NUM_THREADS=2" }, a.env)
    assert.equal("GPU 5", b.label)
    assert.is_nil(p:acquire(gpu))       -- the GPU's two slots are taken
    assert.equal(2, inner.used())       -- and the refused run holds no runner slot
    local c = p:acquire(cpu)            -- a CPU run needs no GPU
    assert.same({ "OMP_NUM_THREADS=2" }, c.env)
    p:release(a)
    assert.is_not_nil(p:acquire(gpu))
    p:release(c); p:release(b)
    assert.equal(1, inner.used())
  end)

  it("never runs more at once than the runner allows", function()
    local p = placement.placer(placement.pool({ "0", "1" }, 2), counting(1))
    assert.is_not_nil(p:acquire(gpu))
    assert.is_nil(p:acquire(gpu))
  end)
end)
