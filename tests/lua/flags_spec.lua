-- The strict command-line parser shared by every command.
package.path = "./lua/?.lua;" .. package.path
if not pcall(require, "gqe") then package.loaded["gqe"] = {} end
local flags = require "gqe.flags"

local spec = {
  usage = "gqe x FILE [--jobs N] [--dry-run]",
  flags = { { "jobs", value = "N", int = 1, help = "runs at once" }, { "dry-run", help = "list only" } },
  args = { max = 1, names = "FILE" }, overrides = true,
}

local function err(argv)
  local ok, e = pcall(flags.parse, spec, argv)
  assert.is_false(ok)
  return e
end

describe("flags.parse", function()
  it("reads flags, values, positional arguments and overrides", function()
    local o, a, ov = flags.parse(spec, { "f.lua", "--jobs", "2", "--dry-run", "model.k=2", "--db=x.db" })
    assert.equal(2, o.jobs)
    assert.is_true(o["dry-run"])
    assert.equal("x.db", o.db)
    assert.same({ "f.lua" }, a)
    assert.same({ { "model.k", "2" } }, ov)
  end)

  it("rejects unknown flags with a did-you-mean and the valid ones", function()
    for _, bad in ipairs { "--dryrun", "--dry_run" } do
      assert.matches("unknown flag " .. bad:gsub("%-", "%%-") .. " .*did you mean %-%-dry%-run%?", err { bad })
    end
    assert.matches("did you mean %-%-jobs%?", err { "--job", "2" })
    assert.matches("unknown flag %-n; valid flags: %-%-jobs, %-%-dry%-run, %-%-db, %-%-help", err { "-n" })
  end)

  it("rejects malformed overrides and stray words, saying what an override looks like", function()
    assert.matches("malformed override 'k=2'.*did you mean model.k=2%?", err { "k=2" })
    assert.matches("unexpected argument '2'.*", err { "model.k", "2" })
    assert.matches("model.k=VALUE", err { "a.lua", "model.k", "2" })
  end)

  it("checks values", function()
    assert.matches("%-%-jobs must be an integer >= 1", err { "--jobs", "0" })
    assert.matches("%-%-jobs needs a value", err { "--jobs" })
    assert.matches("%-%-dry%-run takes no value", err { "--dry-run=yes" })
  end)

  it("returns help alone when --help is anywhere", function()
    local o = flags.parse(spec, { "--bogus", "-h" })
    assert.is_true(o.help)
    assert.matches("usage: gqe x FILE", flags.help(spec), 1, true)
    assert.matches("--jobs N", flags.help(spec), 1, true)
  end)

  describe("positional arguments of a script", function()
    local usage = "x.lua [steps] [gqe|gqa] [db]"
    local specs = { { "steps", 10, int = 1 }, { "model", "gqe", choices = { "gqe", "gqa" } }, { "db", nil } }
    local function perr(argv)
      local ok, e = pcall(flags.positional, usage, argv, specs)
      assert.is_false(ok)
      return e
    end

    it("takes defaults for missing ones and converts integers", function()
      assert.same({ 10, "gqe" }, { flags.positional(usage, {}, specs) })
      local steps, model, db = flags.positional(usage, { "3", "gqa", "r.db" }, specs)
      assert.same({ 3, "gqa", "r.db" }, { steps, model, db })
      assert.equals(math.type(steps), "integer")
    end)

    it("names a bad value, its choices and the usage", function()
      assert.matches("steps must be a positive integer, got '0'\nusage: x.lua", perr { "0" })
      assert.matches("steps must be a positive integer, got '1.5'", perr { "1.5" })
      assert.matches("model must be gqe or gqa, got 'gqx' %(did you mean gqe%?%)", perr { "1", "gqx" })
      assert.matches("unexpected argument 'more'", perr { "1", "gqe", "a.db", "more" })
    end)
  end)
end)
