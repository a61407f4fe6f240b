-- Builds data/brown_cloze.jsonl, a four-way sentence-completion task, from
-- the held-out Brown documents only: those that start in the last 10% of
-- data/brown.txt, which is the validation part both of data.kind=text
-- (val_frac 0.1) and of the shards `gqe data tokenize --val-frac 0.1`
-- writes; no training split ever sees them.
--
-- For each sentence of at least 6 words that has a preceding sentence in
-- its document: context = the preceding sentence + the first half of its
-- words; the true choice is the second half; the three others are second
-- halves of other held-out sentences of about the same length in bytes:
-- of the 32 nearest in length, the 3 about as likely on their own (under a
-- byte trigram model of the training part), so that no choice wins by
-- being common text: what tells the answer is how it continues the
-- context. The answer's position is random.
-- Deterministic from the seed.
--
--   build/gqe scripts/brown_cloze.lua [IN [OUT [SEED]]]   (defaults: data/brown.txt data/brown_cloze.jsonl 1234)
local json = require "gqe.json"

local inp, out, seed = arg[1] or "data/brown.txt", arg[2] or "data/brown_cloze.jsonl", tonumber(arg[3] or 1234)
local VAL_FRAC, MIN_WORDS, WINDOW = 0.1, 6, 32

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

-- How likely a choice is on its own: the log-probability of " " + choice
-- under a byte trigram model of the training part (everything before the
-- split), add-one smoothed.
local tri, bi = {}, {}
do
  local train = text:sub(1, split_at)
  for i = 3, #train do
    local k = train:sub(i - 2, i)
    tri[k] = (tri[k] or 0) + 1
    local b = train:sub(i - 2, i - 1)
    bi[b] = (bi[b] or 0) + 1
  end
end
local function commonness(s)
  s = " " .. s
  local u = 0
  for i = 3, #s do
    u = u + math.log(((tri[s:sub(i - 2, i)] or 0) + 1) / ((bi[s:sub(i - 2, i - 1)] or 0) + 256))
  end
  return u
end
for _, it in ipairs(items) do it.u = commonness(it.answer) end

-- Distractors: neighbours in length order.
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
  local r = rank[i]
  local lo = math.max(1, math.min(r - WINDOW // 2, #order - WINDOW))
  local cands, used = {}, { [it.answer] = true }
  for r2 = lo, math.min(#order, lo + WINDOW) do
    local other = items[order[r2]]
    if not used[other.answer] then used[other.answer] = true; cands[#cands + 1] = other end
  end
  table.sort(cands, function(a, b)
    local da, db = math.abs(a.u - it.u), math.abs(b.u - it.u)
    if da ~= db then return da < db end
    return a.answer < b.answer
  end)
  local picks = {}
  for k = 1, math.min(3, #cands) do picks[k] = cands[k].answer end
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
