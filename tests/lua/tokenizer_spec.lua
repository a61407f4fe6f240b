-- GPT-2 tokenizer: ids against the golden files of
-- tests/reference/make_tokenizer_goldens.py (tiktoken and GPT-2's own
-- encoder.py, offline from the same files), round trips, the Brown
-- checksum, and errors for missing or corrupt tokenizer files.
-- Needs data/gpt2 (and data/brown.txt for the checksum): `make data`.
local gqe = require "gqe"
local json = require "gqe.json"

local DIR = "data/gpt2"
local function read(p) local f = assert(io.open(p, "rb")); local s = f:read("a"); f:close(); return s end
local function exists(p) local f = io.open(p, "rb"); if f then f:close() end; return f ~= nil end
local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
local have = exists(DIR .. "/encoder.json") and exists(DIR .. "/vocab.bpe")
assert(have, "data/gpt2/encoder.json and vocab.bpe are missing: run `make data`")

local tok = gqe.tokenizer.load(DIR .. "/encoder.json", DIR .. "/vocab.bpe")

describe("GPT-2 tokenizer", function()
  it("has GPT-2's vocabulary and <|endoftext|>", function()
    assert.equal(50257, tok:vocab())
    assert.equal(50256, tok:eot())
    assert.equal("<|endoftext|>", tok:token(50256))
    assert.equal(" the", tok:token(262))
    assert.same({ 15496, 995 }, tok:encode("Hello world"))
  end)

  it("matches the golden ids case by case, and decodes back to the bytes", function()
    local g = json.decode(read("tests/golden/tokenizer/cases.json"))
    assert.is_true(#g.cases >= 300)
    local invalid = 0
    for _, c in ipairs(g.cases) do
      local text = unhex(c.hex)
      local ids = tok:encode(text)
      if #ids ~= #c.ids then error(string.format("%s: %d ids, golden %d", c.name, #ids, #c.ids)) end
      for i = 1, #ids do
        if ids[i] ~= c.ids[i] then error(string.format("%s: id %d is %d, golden %d", c.name, i, ids[i], c.ids[i])) end
      end
      assert.equal(text, tok:decode(ids), c.name)
      if not c.valid_utf8 then invalid = invalid + 1 end
    end
    assert.is_true(invalid >= 10)
  end)

  it("encodes the whole Brown corpus to the golden checksum", function()
    if not exists("data/brown.txt") then error("data/brown.txt missing: run `make data`") end
    local g = json.decode(read("tests/golden/tokenizer/brown.json"))
    local text = read("data/brown.txt")
    assert.equal(g.bytes, #text)
    local ids = tok:encode(text)
    assert.equal(g.tokens, #ids)
    local h = -3750763034362895579
    for _, v in ipairs(ids) do
      for b = 0, 3 do h = (h ~ ((v >> (8 * b)) & 0xff)) * 1099511628211 end
    end
    assert.equal(g.fnv1a64, string.format("%016x", h))
    for i = 1, 32 do assert.equal(g.first[i], ids[i]); assert.equal(g.last[i], ids[#ids - 32 + i]) end
    assert.equal(text, tok:decode(ids))
  end)

  it("round-trips arbitrary bytes", function()
    local state = 7
    for _ = 1, 200 do
      local t = {}
      for i = 1, 1 + state % 60 do
        state = (state * 1103515245 + 12345) % 2147483648
        t[i] = string.char(state % 4 == 0 and (state >> 8) % 256 or 32 + (state >> 8) % 95)
      end
      local s = table.concat(t)
      assert.equal(s, tok:decode(tok:encode(s)))
    end
    local long = string.rep("ab", 50000) .. string.rep(" ", 3000) .. string.rep("!?", 2000)   -- pieces merged by heap
    assert.equal(long, tok:decode(tok:encode(long)))
    assert.same({}, tok:encode(""))
    assert.equal("", tok:decode({}))
  end)

  it("rejects ids outside the vocabulary when decoding", function()
    assert.has_error(function() tok:decode({ 1, 50257 }) end,
      "tokenizer:decode: tokenizer: id 50257 at position 1 is outside the vocabulary [0, 50257)")
    assert.has_error(function() tok:token(-1) end)
  end)
end)

describe("tokenizer files", function()
  local tmp = os.tmpname()
  after_each(function() os.remove(tmp) end)

  it("names a missing file and says how to get it", function()
    local ok, err = pcall(gqe.tokenizer.load, "/nonexistent/encoder.json", DIR .. "/vocab.bpe")
    assert.is_false(ok)
    assert.matches("/nonexistent/encoder.json: cannot open the GPT%-2 encoder", err)
    assert.matches("make data", err)
  end)

  it("rejects an encoder.json that is not GPT-2's", function()
    local f = io.open(tmp, "w"); f:write('{"a": 0, "b": 1}'); f:close()
    local ok, err = pcall(gqe.tokenizer.load, tmp, DIR .. "/vocab.bpe")
    assert.is_false(ok)
    assert.matches("2 entries, expected GPT%-2's 50257", err)
    f = io.open(tmp, "w"); f:write('{"a": 0, '); f:close()
    ok, err = pcall(gqe.tokenizer.load, tmp, DIR .. "/vocab.bpe")
    assert.is_false(ok)
    assert.matches("not valid JSON", err)
  end)

  it("rejects merges that name unknown tokens, with the line", function()
    local f = io.open(tmp, "w"); f:write("#version: 0.2\nĠ t\nzzzq xqj\n"); f:close()
    local ok, err = pcall(gqe.tokenizer.load, DIR .. "/encoder.json", tmp)
    assert.is_false(ok)
    assert.matches(":3: merge \"zzzq xqj\" names a token missing from encoder.json", err)
  end)
end)

describe("text generation with a GPT-2 model", function()
  it("decodes each sampled token to its text", function()
    local lm = gqe.nn.LM { vocab = 50304, dim = 16, layers = 1, attention = "gqa", experts = 2, groups = 1, max_seq = 32, seed = 2 }
    local parts, ids = {}, {}
    local out = gqe.text.generate(lm, "Hello world", 6, { seed = 1 }, function(s) parts[#parts + 1] = s end)
    assert.equal(6, #parts)
    assert.equal(out, table.concat(parts))
    local all = lm:generate(tok:encode("Hello world"), 6, { seed = 1 })
    for i = 3, #all do if all[i] < 50257 then ids[#ids + 1] = all[i] end end
    assert.equal(tok:decode(ids), out)
  end)
end)

describe("the codec of a run on GPT-2 shards (gqe sample's hook)", function()
  it("encodes and decodes with GPT-2 BPE", function()
    local c = gqe.config.resolve { data = { kind = "shards", path = "x", val_path = "y" } }
    local codec = require("gqe.tokenizer").codec(c)
    assert.same({ 15496, 995 }, codec.encode("Hello world"))
    assert.equal("Hello world<|endoftext|>", codec.decode({ 15496, 995, 50256 }))
  end)
end)

describe("gqe data tokenize", function()
  local tokenize = require "gqe.tokenize"
  local dir = os.tmpname()
  os.remove(dir)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)
  local function shards(sub, chunk)
    tokenize.chunk_bytes = chunk
    local s = tokenize.run({ "tests/golden/tokenizer/stress.txt", "README.md" },
      { out = dir .. "/" .. sub, name = "x", docs = "blank-line", val_frac = 0.2, progress = false })
    tokenize.chunk_bytes = 8 << 20
    local out = {}
    for _, split in ipairs { "train", "val" } do
      local f = assert(io.open(dir .. "/" .. sub .. "/x_" .. split .. "_000000.bin", "rb"))
      out[split] = f:read("a")
      f:close()
    end
    return s, out
  end
  it("cuts documents the same whatever the chunks files are read in", function()
    local s1, a = shards("big", 8 << 20)
    local s2, b = shards("small", 7)
    assert.equal(a.train, b.train)
    assert.equal(a.val, b.val)
    assert.equal(s1.documents, s2.documents)
    assert.is_true(s1.val.docs > 0 and s1.train.docs > 0)
    -- the same documents as split_blank_lines finds in each file
    local n = 0
    for _, p in ipairs { "tests/golden/tokenizer/stress.txt", "README.md" } do
      local f = io.open(p, "rb"); n = n + #tokenize.split_blank_lines(f:read("a")); f:close()
    end
    assert.equal(n, s1.documents)
  end)
end)
