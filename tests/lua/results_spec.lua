-- Statistics behind `gqe compare` and the report, and the strict flag parser.
require "gqe"
local results = require "gqe.results"
local argv = require "gqe.flags"
local report = require "gqe.report"

describe("t quantile and confidence intervals", function()
  it("matches the tables of Student's t (two-sided 95%)", function()
    local table_t = { [1] = 12.706, [2] = 4.303, [3] = 3.182, [4] = 2.776, [5] = 2.571, [9] = 2.262,
                      [10] = 2.228, [20] = 2.086, [30] = 2.042, [120] = 1.980 }
    for df, t in pairs(table_t) do assert.near(t, results.t95(df), 1e-3) end
    assert.near(1.95996, results.t95(100000), 1e-3)
  end)
  it("gives the mean's half width t * s / sqrt(n), nothing below 2 values", function()
    assert.near(4.3027 * 0.01 / math.sqrt(3), results.ci95(0.01, 3), 1e-6)
    assert.is_nil(results.ci95(nil, 1))
    assert.is_nil(results.ci95(0.5, 1))
  end)
  it("gives Welch's interval for a difference of means", function()
    local d, half = results.diff(2.25, 0.0707107, 2, 2.02, 0.01, 3)
    assert.near(0.23, d, 1e-12)
    -- se = sqrt(0.005/2 + 0.0001/3), Welch df = 1.03 -> t(1)
    assert.near(results.t95(1) * math.sqrt(0.005 / 2 + 0.0001 / 3), half, 1e-6)
    local d1, h1 = results.diff(2.0, nil, 1, 1.0, 0.1, 3)
    assert.equal(1.0, d1)
    assert.is_nil(h1)
  end)
end)

describe("argv.parse", function()
  local spec = { usage = "gqe compare EXPERIMENT", args = { min = 1, max = 1, names = "EXPERIMENT" },
                 flags = { { "metric", value = "KEY" }, { "csv" }, { "tokens", value = "N", int = 0 } } }
  it("takes --flag value, --flag=value and booleans", function()
    local f, p = argv.parse(spec, { "exp", "--metric", "val/loss", "--db=x.db", "--csv", "--tokens", "3" })
    assert.same({ metric = "val/loss", db = "x.db", csv = true, tokens = 3 }, f)
    assert.same({ "exp" }, p)
  end)
  it("rejects unknown flags naming the valid ones and the nearest", function()
    local ok, err = pcall(argv.parse, spec, { "--metirc", "x" })
    assert.is_false(ok)
    assert.equal("unknown flag --metirc for `gqe compare` (did you mean --metric?); valid flags: "
                 .. "--metric, --csv, --tokens, --db, --help", err)
    ok, err = pcall(argv.parse, spec, { "x", "-n" })
    assert.is_false(ok)
    assert.matches("unknown flag -n;", err, 1, true)
  end)
  it("rejects a missing value, a value given to a boolean, a bad integer, missing or extra arguments", function()
    local function e(a) local ok, err = pcall(argv.parse, spec, a); assert.is_false(ok); return err end
    assert.equal("--metric needs a value (KEY)", e { "x", "--metric" })
    assert.equal("--csv takes no value (got --csv=yes)", e { "x", "--csv=yes" })
    assert.equal("--tokens must be an integer >= 0, got '-1'", e { "x", "--tokens", "-1" })
    assert.equal("missing EXPERIMENT (usage: gqe compare EXPERIMENT)", e {})
    assert.matches("unexpected argument 'y'", e { "x", "y" }, 1, true)
  end)
  it("answers --help without checking anything else", function()
    assert.same({ help = true }, (argv.parse(spec, { "--bogus", "--help" })))
    assert.matches("^usage: gqe compare EXPERIMENT\nflags:", argv.help(spec))
  end)
end)

describe("report.safe_label", function()
  it("leaves nothing gnuplot would interpret", function()
    assert.equal("'k=1,router=softmax'", report.safe_label("k=1,router=softmax"))
    assert.equal("'a???touch x??'", report.safe_label("a'\n!touch x\n'"))
    assert.equal("'b? . system(?ls?) . ?'", report.safe_label("b\" . system(\"ls\") . \""))
    assert.equal("'??x?'", report.safe_label("\\`x$"))
  end)
end)

describe("json.array", function()
  it("encodes an empty list as [] and leaves plain tables alone", function()
    local json = require "gqe.json"
    assert.equal("[]", json.encode(json.array()))
    assert.equal("{}", json.encode({}))
    assert.equal('{"a":[],"b":[1,2]}', json.encode { a = json.array(), b = json.array { 1, 2 } })
  end)
end)

describe("results.few_seeds_text", function()
  it("lists groups below 3 seeds, and counts them past four", function()
    assert.is_nil(results.few_seeds_text { { group = "a", n = 3 } })
    assert.equal("a (n=2), b (n=1)", results.few_seeds_text { { group = "a", n = 2 }, { group = "b", n = 1 },
                                                              { group = "c", n = 5 } })
    local rows = {}
    for i = 1, 6 do rows[i] = { group = "g" .. i, n = 2 } end
    rows[7] = { group = "g7", n = 3 }
    assert.equal("6 of 7 groups: g1 (n=2), g2 (n=2), g3 (n=2) and 3 more", results.few_seeds_text(rows))
  end)
end)
