-- `gqe data tokenize IN.txt... --out DIR [--name NAME] [--val-frac F]
-- [--shard-tokens N] [--docs file|blank-line] [--tokenizer DIR]`:
-- GPT-2 token shards in llm.c's format from text files.
--
-- Documents: each input file is one (--docs file), or the files are cut at
-- blank lines (--docs blank-line, as data/brown.txt is laid out). Each
-- document is preceded by <|endoftext|> (50256), as llm.c's scripts do.
-- Validation: the documents that start in the last F of the input bytes
-- (default 0.1; of one file, the part data.kind=text holds out) go to
-- DIR/NAME_val_000000.bin..., the rest to DIR/NAME_train_000000.bin...
-- Files are read in chunks, so a corpus larger than memory streams through
-- (one document must fit).
local gqe = require "gqe"
local text = require "gqe.text"

local tokenize = {}

local fail = require "gqe.fail"

tokenize.usage = "usage: gqe data tokenize IN.txt... --out DIR [--name NAME] [--val-frac F] [--shard-tokens N]"
  .. " [--docs file|blank-line] [--tokenizer DIR]"

-- The documents of one text cut at blank lines: a list of {text, offset}
-- (offset: 0-based byte position in s). A document keeps the newline that
-- ends its last line. (each_document cuts the same way, chunk by chunk.)
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

-- The first byte offset of the validation part of total bytes: the last
-- val_frac of them, as core/data/text.c splits a file (math.huge for 0).
function tokenize.val_from(total, val_frac)
  if val_frac <= 0 then return math.huge end
  return total - math.floor(total * val_frac)
end

tokenize.chunk_bytes = 8 << 20   -- how much of a file is read at once

local function open_input(path)
  local f, err = io.open(path, "rb")
  if not f then fail("cannot read %s: %s", path, err) end
  local size = f:seek("end")
  f:seek("set", 0)
  if not size or (size > 0 and not f:read(0)) then f:close(); fail("cannot read %s (a directory?)", path) end
  return f, size
end

-- Total bytes of the inputs, each checked readable before anything is written.
local function input_bytes(paths)
  local total = 0
  for _, p in ipairs(paths) do
    local f, size = open_input(p)
    f:close()
    total = total + size
  end
  return total
end

-- Calls emit(doc, offset) for every document of the inputs in order;
-- offset counts bytes from the start of the first input.
local function each_document(paths, mode, emit)
  local base = 0
  for _, p in ipairs(paths) do
    local f, size = open_input(p)
    if mode == "file" then
      local s = f:read("a") or ""
      if #s > 0 then emit(s, base) end
    else
      local buf, off, eof = "", base, false
      while not eof do
        local chunk = f:read(tokenize.chunk_bytes)
        if chunk then buf = buf .. chunk else eof = true end
        local pos = 1
        while true do
          local a, b = buf:find("\n[ \t\r]*\n", pos)
          if not a then break end
          local e = b + 1
          while buf:sub(e, e) == "\n" do e = e + 1 end
          if e > #buf and not eof then break end   -- the blank lines may go on in the next chunk
          local doc = buf:sub(pos, a)
          if doc:match("%S") then emit(doc, off + pos - 1) end
          pos = e
        end
        if eof then
          local doc = buf:sub(pos)
          if doc:match("%S") then emit(doc, off + pos - 1) end
        else
          off, buf = off + pos - 1, buf:sub(pos)
        end
      end
    end
    f:close()
    base = base + size
  end
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
  local total = input_bytes(paths)
  if total == 0 then fail("no text in %s", table.concat(paths, ", ")) end
  if not os.execute(string.format("mkdir -p '%s'", out:gsub("'", "'\\''"))) then fail("cannot create directory %s", out) end
  local val_from = tokenize.val_from(total, val_frac)
  local writers = { train = gqe.tokenizer.shard_writer(out .. "/" .. name .. "_train", shard_tokens) }
  if val_frac > 0 then writers.val = gqe.tokenizer.shard_writer(out .. "/" .. name .. "_val", shard_tokens) end
  local ndocs = { train = 0, val = 0 }
  local t0, tokens, last = gqe.clock(), 0, -1
  local show = opts.progress ~= false
  each_document(paths, mode, function(doc, offset)
    local split = offset >= val_from and "val" or "train"
    tokens = tokens + writers[split]:add(tok, doc, true)
    ndocs[split] = ndocs[split] + 1
    if show and gqe.clock() - last > 0.2 then progress_bar(offset + #doc, total, t0, tokens); last = gqe.clock() end
  end)
  if show then progress_bar(total, total, t0, tokens); io.stderr:write("\n") end
  if ndocs.train + ndocs.val == 0 then fail("no text in %s", table.concat(paths, ", ")) end
  if val_frac > 0 and ndocs.val == 0 then
    fail("no document starts in the last %g of the bytes: the validation split would be empty "
      .. "(more documents, --docs blank-line, a larger --val-frac, or --val-frac 0)", val_frac)
  end
  local summary = { documents = ndocs.train + ndocs.val, bytes = total }
  for _, split in ipairs { "train", "val" } do
    if writers[split] then
      local n, files = writers[split]:finish()
      summary[split] = { tokens = n, files = files, docs = ndocs[split],
                         glob = string.format("%s/%s_%s_*.bin", out, name, split) }
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
