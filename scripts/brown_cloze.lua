-- Builds data/brown_cloze.jsonl, a four-way sentence-completion task, from
-- the held-out Brown documents only: those that start in the last 10% of
-- data/brown.txt, which is the validation part both of data.kind=text
-- (val_frac 0.1) and of the shards `gqe data tokenize --val-frac 0.1`
-- writes; no training split ever sees them.
--
-- For each sentence of at least 6 words that has a preceding sentence in
-- its document: context = the preceding sentence + the first half of its
-- words; the true choice is the second half; the three others are second
-- halves of three other held-out sentences, drawn at random among those
-- of similar length in bytes (within 10% or 5 bytes). Nothing else picks
-- them: no model of the training split judges them, so the task is neither
-- adversarial nor filtered. The answer's position is random.
-- Deterministic from the seed.
--
--   build/gqe scripts/brown_cloze.lua [IN [OUT [SEED]]]   (defaults: data/brown.txt data/brown_cloze.jsonl 1234)
local json = require "gqe.json"

local inp, out, seed = arg[1] or "data/brown.txt", arg[2] or "data/brown_cloze.jsonl", tonumber(arg[3] or 1234)
local VAL_FRAC, MIN_WORDS, TOL_BYTES, TOL_FRAC = 0.1, 6, 5, 0.1

local f = assert(io.open(inp, "rb"), "cannot read " .. inp .. " (run make data)")
local text = f:read("a")
f:close()

-- xorshift64*: the same items on every machine.
local state = seed ~ 0x2545F4914F6CDD1D
local function rand(n)   -- 1..n
  state = state ~ (state >> 12); state = state ~ (state << 25); state = state ~ (state >> 27)
  return ((state * 0x2545F4914F6CDD1D) >> 33) % n + 1
end

-- Held-out documents: those that start in the last 10% of the file's
-- bytes, the validation split both of data.kind=text and of the shards
-- `gqe data tokenize --docs blank-line --val-frac 0.1` writes.
local tokenize = require "gqe.tokenize"
local docs = tokenize.split_blank_lines(text)
local split_at = tokenize.val_from(#text, VAL_FRAC)
local items = {}
for i = 1, #docs do
  local doc, offset = docs[i][1], docs[i][2]
  if offset >= split_at then
    local prev
    for line in doc:gmatch("[^\n]+") do
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      if prev and #words >= MIN_WORDS then
        local half = #words // 2
        items[#items + 1] = { context = prev .. " " .. table.concat(words, " ", 1, half),
                              answer = table.concat(words, " ", half + 1) }
      end
      prev = line
    end
  end
end

-- Distractor candidates: the other held-out second halves of similar
-- length, |length - the answer's| <= max(TOL_BYTES, TOL_FRAC * length), so
-- that length alone (which moves a sum of log-probabilities) does not give
-- the answer away. Sorted by length, so each item's candidates are a range.
local order = {}
for i = 1, #items do order[i] = i end
table.sort(order, function(x, y)
  local a, b = #items[x].answer, #items[y].answer
  if a ~= b then return a < b end
  return x < y
end)
local rank = {}
for r, i in ipairs(order) do rank[i] = r end

local o = assert(io.open(out .. ".tmp", "wb"))
local n = 0
for i, it in ipairs(items) do
  local len, r = #it.answer, rank[i]
  local tol = math.max(TOL_BYTES, TOL_FRAC * len)
  local lo, hi = r, r
  while lo > 1 and #items[order[lo - 1]].answer >= len - tol do lo = lo - 1 end
  while hi < #order and #items[order[hi + 1]].answer <= len + tol do hi = hi + 1 end
  -- Three distinct ones drawn at random from that range (a few tries each:
  -- the range may hold the item itself or repeats of its answer).
  local picks, used = {}, { [it.answer] = true }
  for _ = 1, 64 do
    if #picks == 3 then break end
    local other = items[order[lo + rand(hi - lo + 1) - 1]].answer
    if not used[other] then used[other] = true; picks[#picks + 1] = other end
  end
  if #picks == 3 then
    local label = rand(4) - 1
    table.insert(picks, label + 1, it.answer)
    o:write(json.encode { context = it.context, choices = picks, label = label }, "\n")
    n = n + 1
  end
end
o:close()
assert(os.rename(out .. ".tmp", out))
print(string.format("brown_cloze: wrote %s: %d examples from the held-out documents (last %d%% of %s)", out, n, VAL_FRAC * 100, inp))
