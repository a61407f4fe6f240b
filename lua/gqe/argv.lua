-- Strict command-line flags for the results commands (compare, report,
-- sample), with the interface of gqe.flags (the host's strict parser): a
-- spec {usage=, about=, flags = {{name, value = "META", int = min, help =}},
-- args = {min=, max=, names=}}; parse(spec, argv) -> opts, args. An unknown
-- flag is an error naming the valid ones and the closest; --help sets
-- opts.help and checks nothing else. When gqe.flags is present it is used.
local has_flags, shared = pcall(require, "gqe.flags")
if has_flags and type(shared) == "table" and shared.parse then return shared end

local argv = {}

local fail = require "gqe.fail"

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

function argv.closest(word, candidates)
  local norm = function(s) return (s:lower():gsub("_", "-")) end
  local w, best, bd = norm(word), nil, math.huge
  for _, c in ipairs(candidates) do
    local d = distance(w, norm(c))
    if d < bd then best, bd = c, d end
  end
  if best and bd <= math.max(2, #w // 3) and bd < #w then return best end
  return nil
end

local DB = { "db", value = "PATH", help = "run log (default: GQE_DB, else runs.db)" }

local function flag_list(spec)
  local list, seen = {}, {}
  for _, f in ipairs(spec.flags or {}) do list[#list + 1] = f; seen[f[1]] = true end
  if not seen.db then list[#list + 1] = DB end
  return list
end

local function names_of(list)
  local t = {}
  for i, f in ipairs(list) do t[i] = "--" .. f[1] end
  t[#t + 1] = "--help"
  return t
end

function argv.help(spec)
  local out = { "usage: " .. spec.usage }
  if spec.about then out[#out + 1] = spec.about end
  out[#out + 1] = "flags:"
  for _, f in ipairs(flag_list(spec)) do
    out[#out + 1] = string.format("  %-22s %s", "--" .. f[1] .. (f.value and (" " .. f.value) or ""), f.help or "")
  end
  out[#out + 1] = string.format("  %-22s %s", "--help, -h", "this text")
  return table.concat(out, "\n")
end

function argv.parse(spec, args)
  args = args or {}
  local list = flag_list(spec)
  local by_name = {}
  for _, f in ipairs(list) do by_name[f[1]] = f end
  for _, a in ipairs(args) do
    if a == "--" then break end
    if a == "--help" or a == "-h" then return { help = true }, {} end
  end
  local opts, pos = {}, {}
  local i, only_args = 1, false
  while i <= #args do
    local a = args[i]
    local name, eq = a:match("^%-%-([^=]+)=(.*)$")
    if not name and not only_args then name = a:match("^%-%-(.+)$") end
    if a == "--" and not only_args then
      only_args = true
    elseif name and not only_args then
      local f = by_name[name]
      if not f then
        local cand = {}
        for _, g in ipairs(list) do cand[#cand + 1] = g[1] end
        local near = argv.closest(name, cand)
        fail("unknown flag --%s for `%s`%s; valid flags: %s", name, spec.usage:match("^(%S+%s*%S*)"),
             near and (" (did you mean --" .. near .. "?)") or "", table.concat(names_of(list), ", "))
      end
      local v = true
      if f.value then
        if eq then v = eq
        else
          v = args[i + 1]
          if v == nil then fail("--%s needs a value (%s)", name, f.value) end
          i = i + 1
        end
        if f.int then
          local n = math.tointeger(tonumber(v))
          if not n or n < f.int then fail("--%s must be an integer >= %d, got '%s'", name, f.int, v) end
          v = n
        end
      elseif eq then
        fail("--%s takes no value (got --%s=%s)", name, name, eq)
      end
      opts[name] = v
    elseif a:match("^%-.") and not only_args and not tonumber(a) then
      fail("unknown flag %s; valid flags: %s", a, table.concat(names_of(list), ", "))
    else
      local amax = spec.args and spec.args.max or 0
      if #pos >= amax then
        fail("unexpected argument '%s': at most %d (%s) (usage: %s)", a, amax,
             spec.args and spec.args.names or "arguments", spec.usage)
      end
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  local amin = spec.args and spec.args.min or 0
  if #pos < amin then fail("missing %s (usage: %s)", spec.args.names or "argument", spec.usage) end
  return opts, pos
end

return argv
