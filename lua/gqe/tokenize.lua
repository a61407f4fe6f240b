-- `gqe data tokenize IN.txt... --out DIR [--name NAME] [--val-frac F]
-- [--shard-tokens N] [--docs file|blank-line] [--tokenizer DIR]`:
-- GPT-2 token shards in llm.c's format from text files.
--
-- Documents: each input file is one (--docs file), or the files are cut at
-- blank lines (--docs blank-line, as data/brown.txt is laid out). Each
-- document is preceded by <|endoftext|> (50256), as llm.c's scripts do.
-- Validation: the trailing documents that hold the last F of the bytes
-- (default 0.1; the same part data.kind=text holds out of one file) go to
-- DIR/NAME_val_000000.bin..., the rest to DIR/NAME_train_000000.bin...
local gqe = require "gqe"
local text = require "gqe.text"

local tokenize = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

tokenize.usage = "usage: gqe data tokenize IN.txt... --out DIR [--name NAME] [--val-frac F] [--shard-tokens N]"
  .. " [--docs file|blank-line] [--tokenizer DIR]"

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then fail("cannot read %s: %s", path, err) end
  local s = f:read("a")
  f:close()
  if not s then fail("cannot read %s (a directory?)", path) end
  return s
end

-- The documents of one text cut at blank lines: a list of {text, offset}
-- (offset: 0-based byte position in s). A document keeps the newline that
-- ends its last line.
function tokenize.split_blank_lines(s)
  local docs, pos = {}, 1
  while pos <= #s do
    local a, b = s:find("\n[ \t\r]*\n", pos)
    local doc = s:sub(pos, a and a or #s)
    if doc:match("%S") then docs[#docs + 1] = { doc, pos - 1 } end
    if not a then break end
    pos = b + 1
    while s:sub(pos, pos) == "\n" do pos = pos + 1 end
  end
  return docs
end

-- Documents of all inputs in order (strings), and their total bytes.
local function documents(paths, mode)
  local docs, total = {}, 0
  for _, p in ipairs(paths) do
    local s = read(p)
    if mode == "file" then
      if #s > 0 then docs[#docs + 1] = s end
    else
      for _, d in ipairs(tokenize.split_blank_lines(s)) do docs[#docs + 1] = d[1] end
    end
  end
  for _, d in ipairs(docs) do total = total + #d end
  return docs, total
end

-- Index of the first validation document: the first whose start lies in
-- the last val_frac of the documents' bytes (at least one document on
-- each side when there are two or more). #docs + 1 when val_frac is 0.
function tokenize.first_val(sizes, val_frac)
  if val_frac <= 0 then return #sizes + 1 end
  local total, pos = 0, 0
  for _, n in ipairs(sizes) do total = total + n end
  local first = #sizes
  for i, n in ipairs(sizes) do
    if pos >= (1 - val_frac) * total then first = i; break end
    pos = pos + n
  end
  if first == 1 and #sizes > 1 then first = 2 end
  return first
end

local function progress_bar(done, total, t0, tokens)
  local frac = total > 0 and done / total or 1
  local width = 30
  local fill = math.floor(frac * width + 0.5)
  local dt = gqe.clock() - t0
  io.stderr:write(string.format("\rtokenize [%s%s] %5.1f%%  %.1f MB  %d tokens  %.1f MB/s",
    string.rep("#", fill), string.rep(".", width - fill), 100 * frac, done / 1e6, tokens,
    dt > 0 and done / dt / 1e6 or 0))
end

function tokenize.run(paths, opts)
  if #paths == 0 then fail("%s\n(no input files)", tokenize.usage) end
  local out = opts.out or fail("%s\n(--out DIR is required)", tokenize.usage)
  local val_frac = tonumber(opts.val_frac or 0.1)
  if not val_frac or val_frac < 0 or val_frac >= 1 then fail("--val-frac must be in [0, 1), got %s", tostring(opts.val_frac)) end
  local shard_tokens = math.tointeger(tonumber(opts.shard_tokens or 100000000))
  if not shard_tokens or shard_tokens < 1 then fail("--shard-tokens must be a positive integer, got %s", tostring(opts.shard_tokens)) end
  local mode = opts.docs or "file"
  if mode ~= "file" and mode ~= "blank-line" then fail("--docs must be file or blank-line, got '%s'", tostring(mode)) end
  local name = opts.name or paths[1]:match("([^/]+)$"):gsub("%.[^.]*$", "")
  if not name:match("^[%w_%-%.]+$") then fail("--name '%s' must be letters, digits, _ - or .", name) end
  local tok = text.tokenizer(opts.tokenizer)
  local docs, total = documents(paths, mode)
  if #docs == 0 then fail("no text in %s", table.concat(paths, ", ")) end
  if not os.execute(string.format("mkdir -p '%s'", out:gsub("'", "'\\''"))) then fail("cannot create directory %s", out) end
  local sizes = {}
  for i, d in ipairs(docs) do sizes[i] = #d end
  local first_val = tokenize.first_val(sizes, val_frac)
  local writers = { train = gqe.tokenizer.shard_writer(out .. "/" .. name .. "_train", shard_tokens) }
  if val_frac > 0 then writers.val = gqe.tokenizer.shard_writer(out .. "/" .. name .. "_val", shard_tokens) end
  local t0, done, tokens, last = gqe.clock(), 0, 0, -1
  local show = opts.progress ~= false
  for i, d in ipairs(docs) do
    local w = i >= first_val and writers.val or writers.train
    tokens = tokens + w:add(tok, d, true)
    done = done + #d
    if show and (gqe.clock() - last > 0.2 or i == #docs) then progress_bar(done, total, t0, tokens); last = gqe.clock() end
  end
  if show then io.stderr:write("\n") end
  local summary = { documents = #docs, bytes = total }
  for _, split in ipairs { "train", "val" } do
    if writers[split] then
      local n, files = writers[split]:finish()
      summary[split] = { tokens = n, files = files,
                         glob = string.format("%s/%s_%s_*.bin", out, name, split),
                         docs = split == "train" and first_val - 1 or #docs - first_val + 1 }
    end
  end
  summary.seconds = gqe.clock() - t0
  return summary
end

-- The CLI entry: args after `data tokenize`.
function tokenize.main(args)
  local config = require "gqe.config"
  local with_value = { out = true, name = true, ["val-frac"] = true, ["shard-tokens"] = true, docs = true, tokenizer = true }
  local overrides, flags, pos = config.parse_args(args, with_value)
  if flags.help then print(tokenize.usage); return 0 end
  for k in pairs(flags) do
    if not with_value[k] and k ~= "no-progress" then fail("unknown flag --%s\n%s", k, tokenize.usage) end
  end
  if #overrides > 0 then fail("unexpected argument '%s'\n%s", overrides[1][1] .. "=" .. overrides[1][2], tokenize.usage) end
  local s = tokenize.run(pos, { out = flags.out, name = flags.name, val_frac = flags["val-frac"],
    shard_tokens = flags["shard-tokens"], docs = flags.docs, tokenizer = flags.tokenizer,
    progress = not flags["no-progress"] })
  print(string.format("tokenized %d documents (%.1f MB) in %.1f s", s.documents, s.bytes / 1e6, s.seconds))
  for _, split in ipairs { "train", "val" } do
    local x = s[split]
    if x then print(string.format("  %-5s %d documents, %d tokens in %d shard(s): %s", split, x.docs, x.tokens, x.files, x.glob)) end
  end
  return 0
end

return tokenize
