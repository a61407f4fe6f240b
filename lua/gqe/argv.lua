-- Strict command-line flags for one subcommand: every flag must be declared,
-- a flag that takes a value must get one, and an unknown flag is an error
-- that names the valid ones (with the closest as a suggestion).
local argv = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

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

function argv.closest(name, candidates)
  local best, bd
  for _, c in ipairs(candidates) do
    local d = distance(name, c)
    if not bd or d < bd then best, bd = c, d end
  end
  if best and bd <= math.max(2, #name // 3) then return best end
  return nil
end

-- spec: { flag = "value" | "bool", ... }; returns flags, positional.
-- `--name=value` and `--name value` are both accepted for value flags.
function argv.parse(command, args, spec)
  local names = {}
  for k in pairs(spec) do names[#names + 1] = k end
  table.sort(names)
  local flags, positional = {}, {}
  local i = 1
  while i <= #(args or {}) do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do positional[#positional + 1] = args[j] end
      break
    end
    local name, value = a:match("^%-%-([^=]+)=(.*)$")
    if not name then name = a:match("^%-%-(.+)$") or a:match("^%-(%a.*)$") end
    if name then
      local kind = spec[name]
      if not kind then
        local valid = {}
        for _, n in ipairs(names) do valid[#valid + 1] = "--" .. n end
        local near = argv.closest(name, names)
        fail("%s: unknown flag '%s'%s; valid flags: %s", command, a,
             near and (" (did you mean --" .. near .. "?)") or "", table.concat(valid, ", "))
      end
      if kind == "bool" then
        if value then fail("%s: --%s takes no value", command, name) end
        flags[name] = true
      else
        if not value then
          value = args[i + 1]
          if value == nil then fail("%s: --%s needs a value", command, name) end
          i = i + 1
        end
        flags[name] = value
      end
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
  return flags, positional
end

-- An integer flag value, or an error naming the flag.
function argv.integer(command, flags, name, default)
  local v = flags[name]
  if v == nil then return default end
  local n = math.tointeger(tonumber(v))
  if not n then fail("%s: --%s must be an integer, got '%s'", command, name, tostring(v)) end
  return n
end

-- A number flag value, or an error naming the flag.
function argv.number(command, flags, name, default)
  local v = flags[name]
  if v == nil then return default end
  local n = tonumber(v)
  if not n or n ~= n then fail("%s: --%s must be a number, got '%s'", command, name, tostring(v)) end
  return n
end

return argv
