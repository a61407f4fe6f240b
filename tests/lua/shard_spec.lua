-- Shard slicing: every run in exactly one shard, slices stable and
-- balanced, shard specs from the flag and from Slurm's environment.
package.path = "./lua/?.lua;" .. package.path
local shard = require "gqe.shard"

local function env(t) return function(k) return t[k] end end

describe("shard.positions", function()
  it("puts every run in exactly one shard for N = 1..5", function()
    for total = 0, 23 do
      for n = 1, 5 do
        local seen = {}
        for i = 0, n - 1 do
          local ps = shard.positions(total, { index = i, count = n })
          -- balanced: sizes differ by at most one
          assert.is_true(#ps == total // n or #ps == total // n + 1)
          for _, p in ipairs(ps) do
            assert.is_nil(seen[p], "run " .. p .. " in two shards")
            seen[p] = i
          end
        end
        for p = 1, total do assert.is_not_nil(seen[p], "run " .. p .. " in no shard") end
      end
    end
  end)

  it("is stable: the same slice on every call, in the expansion's order", function()
    local s = { index = 1, count = 3 }
    assert.same({ 2, 5, 8 }, shard.positions(9, s))
    assert.same(shard.positions(9, s), shard.positions(9, s))
    assert.same({ 1, 2, 3 }, shard.positions(3, nil))
  end)

  it("selects the runs themselves", function()
    assert.same({ "b", "d" }, shard.select({ "a", "b", "c", "d", "e" }, { index = 1, count = 2 }))
  end)
end)

describe("shard.from", function()
  it("reads --shard I/N", function()
    local s = shard.from("2/4", env {})
    assert.same({ 2, 4, "--shard" }, { s.index, s.count, s.source })
    assert.is_nil(shard.from(nil, env {}))
  end)

  it("prefers the flag over Slurm's variables", function()
    local s = shard.from("0/1", env { SLURM_ARRAY_TASK_ID = "3", SLURM_ARRAY_TASK_COUNT = "8" })
    assert.same({ 0, 1 }, { s.index, s.count })
  end)

  it("defaults from a Slurm array, counting from its first id and step", function()
    local s = shard.from(nil, env { SLURM_ARRAY_TASK_ID = "3", SLURM_ARRAY_TASK_COUNT = "8" })
    assert.same({ 3, 8 }, { s.index, s.count })
    s = shard.from(nil, env { SLURM_ARRAY_TASK_ID = "5", SLURM_ARRAY_TASK_COUNT = "5", SLURM_ARRAY_TASK_MIN = "1" })
    assert.same({ 4, 5 }, { s.index, s.count })
    s = shard.from(nil, env { SLURM_ARRAY_TASK_ID = "12", SLURM_ARRAY_TASK_COUNT = "4", SLURM_ARRAY_TASK_MIN = "0",
                              SLURM_ARRAY_TASK_STEP = "4" })
    assert.same({ 3, 4 }, { s.index, s.count })
  end)

  it("defaults from Slurm tasks when there are several", function()
    local s = shard.from(nil, env { SLURM_PROCID = "1", SLURM_NTASKS = "2" })
    assert.same({ 1, 2, "SLURM_PROCID/SLURM_NTASKS" }, { s.index, s.count, s.source })
    assert.is_nil(shard.from(nil, env { SLURM_PROCID = "0", SLURM_NTASKS = "1" }))
  end)

  it("rejects malformed specs with a message naming them", function()
    for _, bad in ipairs { "2", "a/b", "4/4", "1/0", "-1/2", "1/2/3", "" } do
      local ok, err = pcall(shard.from, bad, env {})
      assert.is_false(ok, bad)
      assert.matches("--shard", err)
    end
    local ok, err = pcall(shard.from, nil, env { SLURM_ARRAY_TASK_ID = "9", SLURM_ARRAY_TASK_COUNT = "4" })
    assert.is_false(ok)
    assert.matches("SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT: shard index 9 is out of range", err, 1, true)
  end)
end)

describe("shard.apply", function()
  it("slices and says so", function()
    local said = {}
    local runs = { { name = "a" }, { name = "b" }, { name = "c" } }
    local out = shard.apply(runs, { shard = "0/2" }, "exp", function(s) said[#said + 1] = s end)
    assert.same({ "a", "c" }, { out[1].name, out[2].name })
    assert.matches("shard 1 of 2", said[1])
    assert.same(runs, shard.apply(runs, {}, "exp", function() end))
  end)
end)
