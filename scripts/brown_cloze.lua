-- Builds data/brown_cloze.jsonl, a four-way sentence-completion task, from
-- the held-out Brown documents only: those that start in the last 10% of
-- data/brown.txt, which is the validation part both of data.kind=text
-- (val_frac 0.1) and of the shards `gqe data tokenize --val-frac 0.1`
-- writes; no training split ever sees them.
--
-- For each sentence of at least 6 words that has a preceding sentence in
-- its document and whose second half is at most 100 bytes: context = the
-- preceding sentences of its document (back to 100 bytes, at most three)
-- + the first half of its words (split at a word boundary); the true
-- choice is the second half; the three others are second halves of other
-- held-out sentences of similar length: within 10% (or 3 bytes) in bytes
-- and 10% (or 1 token) in GPT-2 tokens of each other. They are drawn so
-- that nothing in a choice's own text (its length above all) tells the
-- answer from the others: see "Distractors" below. Nothing else picks
-- them: no model of the training split judges them, so the task is neither
-- adversarial nor filtered. The answer's position is random.
-- Deterministic from the seed.
--
--   build/gqe scripts/brown_cloze.lua [IN [OUT [SEED [GPT2_DIR]]]]
--   (defaults: data/brown.txt data/brown_cloze.jsonl 1234 data/gpt2)
local json = require "gqe.json"

local inp, out, seed = arg[1] or "data/brown.txt", arg[2] or "data/brown_cloze.jsonl", tonumber(arg[3] or 1234)
local VAL_FRAC, MIN_WORDS, MAX_ANSWER = 0.1, 6, 100
local CONTEXT_BYTES, MAX_PREV = 100, 3
local WINDOW, TOL_BYTES, TOL_TOKENS, TOL_FRAC = 12, 3, 1, 0.1
local gpt2 = require("gqe.text").tokenizer(arg[4])

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
    local lines = {}
    for line in doc:gmatch("[^\n]+") do
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      local half = #words // 2
      local answer = table.concat(words, " ", half + 1)
      if #lines > 0 and #words >= MIN_WORDS and #answer <= MAX_ANSWER then
        -- The preceding sentences of the document, back to CONTEXT_BYTES
        -- (at least one, at most MAX_PREV), then the first half.
        local j, prev = #lines, lines[#lines]
        while j > 1 and #lines - j + 1 < MAX_PREV and #prev < CONTEXT_BYTES do j = j - 1; prev = lines[j] .. " " .. prev end
        items[#items + 1] = { context = prev .. " " .. table.concat(words, " ", 1, half), answer = answer,
                              tokens = #gpt2:encode(" " .. answer) }
      end
      lines[#lines + 1] = line
    end
  end
end

-- Distractors. The choices must be exchangeable apart from the context:
-- nothing about a choice's own text (its length, which moves a sum of
-- log-probabilities most) may tell the answer from the others. Drawing the
-- others from a window centred on the answer's length would not do that:
-- the answer would then be the middle one, rarely the shortest, and the
-- shortest choice is the likeliest. So: items sorted by the length of
-- their answer in GPT-2 tokens, then bytes, then at random (not in document
-- order: the window of an early item of a length would then reach into
-- the shorter ones, that of a late one into the longer ones, and the first
-- examples of the file would have their answer longer than the others);
-- a window of WINDOW consecutive ones placed at random
-- around the item (each of its positions equally likely, windows that
-- overhang the list dropped), three others drawn from it at random, and
-- the example kept only if the four are within TOL_FRAC (or TOL_BYTES)
-- of each other in bytes and within TOL_FRAC (or TOL_TOKENS) in GPT-2
-- tokens, a test of the four together. Given its window and its four,
-- every one of them is equally likely to be the answer.
local order, tie = {}, {}
for i = 1, #items do order[i] = i; tie[i] = rand(1 << 30) end
table.sort(order, function(x, y)
  local a, b = items[x], items[y]
  if a.tokens ~= b.tokens then return a.tokens < b.tokens end
  if #a.answer ~= #b.answer then return #a.answer < #b.answer end
  if tie[x] ~= tie[y] then return tie[x] < tie[y] end
  return x < y
end)
local rank = {}
for r, i in ipairs(order) do rank[i] = r end

local function spread(set, f)
  local lo, hi = math.huge, -math.huge
  for _, it in ipairs(set) do local v = f(it); lo = math.min(lo, v); hi = math.max(hi, v) end
  return lo, hi
end

local o = assert(io.open(out .. ".tmp", "wb"))
local n, dropped = 0, 0
for i, it in ipairs(items) do
  local lo = rank[i] - (rand(WINDOW) - 1)
  local hi = lo + WINDOW - 1
  if lo >= 1 and hi <= #order then
    -- Three others with texts distinct from the answer's and each other's.
    local pool = {}
    for r = lo, hi do if r ~= rank[i] then pool[#pool + 1] = items[order[r]] end end
    local set, used = { it }, { [it.answer] = true }
    while #set < 4 and #pool > 0 do
      local k = rand(#pool)
      local other = table.remove(pool, k)
      if not used[other.answer] then used[other.answer] = true; set[#set + 1] = other end
    end
    local blo, bhi = spread(set, function(x) return #x.answer end)
    local tlo, thi = spread(set, function(x) return x.tokens end)
    if #set == 4 and bhi - blo <= math.max(TOL_BYTES, TOL_FRAC * blo)
        and thi - tlo <= math.max(TOL_TOKENS, TOL_FRAC * tlo) then
      local picks = { set[2].answer, set[3].answer, set[4].answer }
      local label = rand(4) - 1
      table.insert(picks, label + 1, it.answer)
      o:write(json.encode { context = it.context, choices = picks, label = label }, "\n")
      n = n + 1
    else
      dropped = dropped + 1
    end
  else
    dropped = dropped + 1
  end
end
o:close()
assert(os.rename(out .. ".tmp", out))
print(string.format("brown_cloze: wrote %s: %d examples from the held-out documents (last %d%% of %s; %d sentences without a matched set)",
  out, n, VAL_FRAC * 100, inp, dropped))
