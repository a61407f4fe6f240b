-- The text codec of a run trained on GPT-2 token data (data.kind=shards):
-- codec(config) -> {encode = fn(text) -> ids, decode = fn(ids) -> text,
-- decode_token = fn(id) -> bytes}, through gqe.text (the tokenizer files
-- of the run's eval.tokenizer, data/gpt2 by default). `gqe sample` looks
-- this module up for runs that are not byte-level.
local text = require "gqe.text"

local tokenizer = {}

function tokenizer.codec(c)
  local vocab = (c.model and c.model.vocab or 0) > 0 and c.model.vocab
    or ((c.data and c.data.vocab or 0) > 0 and c.data.vocab or 50257)
  local codec = text.codec(vocab, c.eval and c.eval.tokenizer or nil)
  local decode_token = codec.decode_token
  return {
    encode = codec.encode,
    decode_token = decode_token,
    decode = function(ids)
      local parts = {}
      for i, id in ipairs(ids) do parts[i] = decode_token(id) end
      return table.concat(parts)
    end,
  }
end

return tokenizer
