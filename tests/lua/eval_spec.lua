-- Multiple-choice scoring against tests/reference/make_eval_goldens.py
-- (PyTorch, float64, one row at a time): per-choice log-likelihoods to a
-- relative 1e-5, and acc / acc_norm of a JSONL task and of an llm.c eval
-- file, for a tiny byte-level LM with dense gqa and with gqe attention.
-- Also the JSONL reader's errors, each with its line number.
package.path = "./lua/?.lua;" .. package.path
local gqe = require "gqe"
local evaluate = require "gqe.evaluate"

local DIR = "tests/golden/eval"
local SEQ, B = 32, 8

local function model(kind)
  local o = { vocab = 256, dim = 32, layers = 2, max_seq = SEQ, attention = kind, experts = 4, groups = 2,
              head_dim = 8, mlp = "gelu", mlp_hidden = 48, tied = true, seed = 1 }
  if kind == "gqe" then o.k, o.variant = 1, "gqe" end
  return gqe.nn.LM(o)
end

for _, kind in ipairs { "gqa", "gqe" } do
  describe("scores of the tiny " .. kind .. " model", function()
    local golden = gqe.load_safetensors(DIR .. "/eval_" .. kind .. ".safetensors")
    local lm = model(kind)
    lm:load(golden, { strict = false })   -- the file also holds the expected scores
    local function check(which, task)
      local s, lp = gqe.eval.score(lm, task, B, SEQ)
      local want = golden["logprob_" .. which]:totable()
      assert.equal(#want, #lp)
      for i = 1, #lp do
        local tol = 1e-5 * math.max(1, math.abs(want[i]))
        if math.abs(lp[i] - want[i]) > tol then
          error(string.format("%s choice %d: %.7f, reference %.7f", which, i, lp[i], want[i]))
        end
      end
      assert.near(golden["acc_" .. which]:totable()[1], s.acc, 1e-6)
      assert.near(golden["acc_norm_" .. which]:totable()[1], s.acc_norm, 1e-6)
    end
    it("JSONL task", function() check("jsonl", evaluate.load_task("tiny", DIR .. "/tiny.jsonl", 256)) end)
    it("refuses a choice longer than the window (only context is cut)", function()
      local tmp = os.tmpname()
      local f = io.open(tmp, "w")
      f:write('{"context": "a", "choices": ["b", "' .. string.rep("c", SEQ) .. '"], "label": 0}\n'); f:close()
      local task = evaluate.load_task("long", tmp, 256)
      os.remove(tmp)
      local ok, err = pcall(gqe.eval.score, lm, task, B, SEQ)
      assert.is_false(ok)
      assert.matches("example 0, choice 1: 33 tokens do not fit the model's window of 32", err)
    end)
    it("llm.c eval file", function()
      local task = gqe.eval.read_llmc(DIR .. "/tiny_llmc.bin")
      task:measure(nil)
      check("llmc", task)
    end)
  end)
end

describe("JSONL task errors", function()
  local tmp = os.tmpname()
  after_each(function() os.remove(tmp) end)
  local good = '{"context": "a b", "choices": ["c", "d"], "label": 1}\n'
  local function expect(body, pattern)
    local f = io.open(tmp, "w"); f:write(body); f:close()
    local ok, err = pcall(evaluate.load_task, "t", tmp, 256)
    assert.is_false(ok)
    assert.matches(pattern, err)
  end
  it("names the line of invalid JSON", function() expect(good .. good .. '{"context": "x",\n', ":3: invalid JSON") end)
  it("label out of range", function()
    expect(good .. '{"context": "a", "choices": ["b", "c"], "label": 2}\n', ":2: label 2 is out of range for 2 choices %(0%.%.1%)")
  end)
  it("empty choices", function() expect('{"context": "a", "choices": [], "label": 0}\n', ":1: \"choices\" must be a non%-empty list") end)
  it("an empty choice", function() expect('{"context": "a", "choices": ["", "x"], "label": 0}\n', ":1: choice 0 must be a non%-empty string") end)
  it("missing fields", function() expect('{"choices": ["x"], "label": 0}\n', ":1: \"context\" must be a string") end)
  it("a label that is not an integer", function() expect('{"context": "a", "choices": ["x"], "label": "0"}\n', ":1: \"label\" must be an integer") end)
  it("an empty file", function() expect("\n", "holds no examples") end)
  it("a missing file", function()
    local ok, err = pcall(evaluate.load_task, "t", "/nonexistent/t.jsonl", 256)
    assert.is_false(ok)
    assert.matches("eval task t: cannot open /nonexistent/t.jsonl", err)
  end)
  it("GPT-2 tokens for a byte-level model", function()
    local ok, err = pcall(evaluate.load_task, "hs", DIR .. "/tiny_llmc.bin", 256)
    assert.is_false(ok)
    assert.matches("holds GPT%-2 tokens %(llm.c eval format%) but the model's vocabulary is 256", err)
  end)
  it("a vocabulary between bytes and GPT-2", function()
    local f = io.open(tmp, "w"); f:write(good); f:close()
    local ok, err = pcall(evaluate.load_task, "t", tmp, 1000)
    assert.is_false(ok)
    assert.matches("vocabulary 1000", err)
  end)
  it("a missing tokenizer for a GPT-2 model", function()
    local f = io.open(tmp, "w"); f:write(good); f:close()
    local ok, err = pcall(evaluate.load_task, "t", tmp, 50304, "/nonexistent/gpt2")
    assert.is_false(ok)
    assert.matches("GPT%-2 tokenizer file /nonexistent/gpt2/encoder.json is missing", err)
  end)
end)

describe("text generation", function()
  it("streams each new byte of a byte-level model as it is sampled", function()
    local lm = model("gqa")
    local parts = {}
    local out = gqe.text.generate(lm, "The", 12, { seed = 3, temperature = 0.8 }, function(s) parts[#parts + 1] = s end)
    assert.equal(12, #parts)
    assert.equal(out, table.concat(parts))
    local ids = lm:generate({ 84, 104, 101 }, 12, { seed = 3, temperature = 0.8 })
    local bytes = {}
    for i = 4, #ids do bytes[#bytes + 1] = string.char(ids[i]) end
    assert.equal(table.concat(bytes), out)   -- streaming changes nothing sampled
  end)
  it("stops when the callback raises, with its error", function()
    local lm = model("gqa")
    local n = 0
    local ok, err = pcall(lm.generate, lm, { 1, 2 }, 10, { on_token = function() n = n + 1; if n == 3 then error("enough") end end })
    assert.is_false(ok)
    assert.matches("enough", err)
    assert.equal(3, n)
  end)
end)
