-- GPT-2 tokenizer throughput on one core: encoding data/brown.txt (6 MB)
-- with a fresh tokenizer (its piece cache starts empty), then again warm.
-- MB/s per second of this process's CPU time (os.clock), which a busy
-- machine does not dilute as it does wall time; wall time is shown too.
--   build/gqe bench/tokenizer.lua [FILE]      (make bench runs it)
local gqe = require "gqe"
local path = arg[1] or "data/brown.txt"
local f = io.open(path, "rb")
if not f then io.stderr:write("bench/tokenizer.lua: ", path, " missing (make data)\n"); os.exit(1) end
local text = f:read("a")
f:close()
local tok = gqe.tokenizer.load("data/gpt2/encoder.json", "data/gpt2/vocab.bpe")
local function run()
  local c0, t0 = os.clock(), gqe.clock()
  local n = tok:encode_count(text)
  return n, os.clock() - c0, gqe.clock() - t0
end
local n, cold, cold_wall = run()
local _, warm, warm_wall = run()
local mb = #text / 1e6
print(string.format("tokenizer gpt2 encode %s (%.1f MB, %d tokens), one core: %.1f MB/s cold cache, %.1f MB/s warm"
  .. " (CPU time; wall clock %.1f and %.1f MB/s)", path, mb, n, mb / cold, mb / warm, mb / cold_wall, mb / warm_wall))
