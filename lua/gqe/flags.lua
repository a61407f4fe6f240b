-- Strict command lines for every gqe command: a flag or an argument the
-- command does not know is an error naming the valid ones (with a
-- did-you-mean), never silently ignored.
--
--   local flags = require "gqe.flags"
--   local spec = {
--     usage = "gqe compare EXPERIMENT [--metric KEY] [--db PATH]",  -- first line of --help
--     about = "mean and std over seeds per group of varied keys",  -- optional, second line
--     flags = {
--       { "metric", value = "KEY", help = "metric to compare (default val/loss)" },
--       { "jobs", value = "N", int = 1, help = "runs at once" },    -- int = minimum
--       { "csv", help = "print CSV" },                               -- no value: true when given
--     },
--     args = { min = 1, max = 1, names = "EXPERIMENT" },  -- positional arguments (default none)
--     overrides = true,   -- accept section.key=value (checked against the config schema)
--   }
--   local opts, args, overrides = flags.parse(spec, argv)
--
-- opts.<name> holds each flag given ("dry-run" keeps its dash: opts["dry-run"]),
-- args the positional arguments, overrides a list of {"section.key", "text"}.
-- --help / -h anywhere sets opts.help and skips every other check, so the
-- caller prints flags.help(spec) and does nothing else. --db PATH is
-- accepted by every command (the run log). `--name=value` and `--name value`
-- are the same; `--` ends the flags. Errors are raised as plain messages.
local flags = {}

local fail = require "gqe.fail"

-- Levenshtein distance, for did-you-mean.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The candidate closest to word (ignoring case and _ versus -), or nil when
-- none is close enough to be a plausible typo.
function flags.closest(word, candidates)
  local norm = function(s) return (s:lower():gsub("_", "-")) end
  local w, best, best_d = norm(word), nil, math.huge
  for _, c in ipairs(candidates) do
    local d = distance(w, norm(c))
    if d < best_d then best, best_d = c, d end
  end
  if best and best_d <= math.max(2, math.min(3, #w // 3)) and best_d < #w then return best end
  for _, c in ipairs(candidates) do
    local n = norm(c)
    if (#w >= 2 and n:sub(1, #w) == w) or (#n >= 3 and w:sub(1, #n) == n) then return c end
  end
  return nil
end

local DB = { "db", value = "PATH", help = "run log (default: GQE_DB, else runs.db)" }

local function flag_list(spec)
  local list, seen = {}, {}
  for _, f in ipairs(spec.flags or {}) do list[#list + 1] = f; seen[f[1]] = true end
  if not seen.db and spec.db ~= false then list[#list + 1] = DB end
  return list
end

local function names_of(list)
  local t = {}
  for i, f in ipairs(list) do t[i] = "--" .. f[1] end
  t[#t + 1] = "--help"
  return t
end

-- The --help text: usage, what it does, one line per flag.
function flags.help(spec)
  local out = { "usage: " .. spec.usage }
  if spec.about then out[#out + 1] = spec.about end
  local list = flag_list(spec)
  if #list > 0 then out[#out + 1] = "flags:" end
  for _, f in ipairs(list) do
    local left = "--" .. f[1] .. (f.value and (" " .. f.value) or "")
    out[#out + 1] = string.format("  %-22s %s", left, f.help or "")
  end
  if spec.overrides then out[#out + 1] = "  section.key=value      override any config key (e.g. train.steps=50)" end
  out[#out + 1] = string.format("  %-22s %s", "--help, -h", "this text")
  return table.concat(out, "\n")
end

-- A malformed override or a stray word: say what an override looks like,
-- suggesting section.key when the key exists in exactly one section.
local function override_hint(word)
  local ok, config = pcall(require, "gqe.config")
  if not ok then return "" end
  local key = word:match("^([%w_]+)=") or word
  local hits, defaults = {}, config.defaults()
  for _, sec in ipairs(config.sections) do
    if defaults[sec] and defaults[sec][key] ~= nil then hits[#hits + 1] = sec .. "." .. key end
  end
  local value = word:match("=(.*)$") or "VALUE"
  if #hits > 0 then return string.format(" (did you mean %s=%s?)", hits[1], value) end
  return ""
end

local function check_override(a)
  local k, v = a:match("^([%w_]+%.[%w_]+)=(.*)$")
  if not k then
    fail("malformed override '%s': overrides are section.key=value (sections: %s)%s", a,
         table.concat(require("gqe.config").sections, ", "), override_hint(a))
  end
  -- Unknown section or key, or a value of the wrong type: config names the valid ones.
  require("gqe.config").set({}, k, v)
  return { k, v }
end

function flags.parse(spec, argv)
  argv = argv or {}
  local list = flag_list(spec)
  local by_name = {}
  for _, f in ipairs(list) do by_name[f[1]] = f end
  for _, a in ipairs(argv) do
    if a == "--" then break end
    if a == "--help" or a == "-h" then return { help = true }, {}, {} end
  end
  local opts, args, overrides = {}, {}, {}
  local amax = spec.args and spec.args.max or 0
  local i, only_args = 1, false
  while i <= #argv do
    local a = argv[i]
    local name, eq = a:match("^%-%-([^=]+)=(.*)$")
    if not name and not only_args then name = a:match("^%-%-(.+)$") end
    if a == "--" and not only_args then
      only_args = true
    elseif name and not only_args then
      local f = by_name[name]
      if not f then
        local cand = {}
        for _, g in ipairs(list) do cand[#cand + 1] = g[1] end
        local near = flags.closest(name, cand)
        fail("unknown flag --%s for `%s`%s; valid flags: %s", name, spec.name or spec.usage:match("^(%S+%s*%S*)"),
             near and (" (did you mean --" .. near .. "?)") or "", table.concat(names_of(list), ", "))
      end
      local v = true
      if f.value then
        if eq then v = eq
        else
          v = argv[i + 1]
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
    elseif spec.overrides and a:find("=", 1, true) and not only_args then
      overrides[#overrides + 1] = check_override(a)
    else
      if #args >= amax then
        local hint = ""
        if spec.overrides then
          if a:match("^[%w_]+%.[%w_]+$") then
            hint = string.format(" (an override is written %s=VALUE, without spaces)", a)
          else
            hint = override_hint(a)
          end
        end
        if amax == 0 then
          fail("unexpected argument '%s'%s (usage: %s)", a, hint, spec.usage)
        end
        fail("unexpected argument '%s': at most %d (%s)%s (usage: %s)", a, amax,
             spec.args.names or "arguments", hint, spec.usage)
      end
      args[#args + 1] = a
    end
    i = i + 1
  end
  local amin = spec.args and spec.args.min or 0
  if #args < amin then
    fail("missing %s (usage: %s)", spec.args.names or "argument", spec.usage)
  end
  return opts, args, overrides
end

-- The positional arguments of a script (bench/*.lua), checked in one place:
--   local steps, model = flags.positional("build/gqe bench/x.lua [steps] [gqe|gqa]", arg, {
--     { "steps", 10, int = 1 },                  -- an integer >= 1, default 10
--     { "model", "gqe", choices = { "gqe", "gqa" } },
--     { "db", nil },                             -- any text
--   })
-- A missing argument takes its default; a bad one, or one too many, is an
-- error naming it and the usage; --help or -h prints the usage and exits 0.
function flags.positional(usage, argv, specs)
  argv = argv or {}
  for _, a in ipairs(argv) do
    if a == "--help" or a == "-h" then io.stdout:write("usage: ", usage, "\n"); os.exit(0) end
  end
  if #argv > #specs then fail("unexpected argument '%s'\nusage: %s", argv[#specs + 1], usage) end
  local out = {}
  for i, s in ipairs(specs) do
    local v = argv[i]
    if v == nil then
      v = s[2]
    elseif s.int then
      local n = math.tointeger(tonumber(v))
      if not n or n < s.int then
        fail("%s must be %s, got '%s'\nusage: %s", s[1], s.int == 1 and "a positive integer" or ("an integer >= " .. s.int),
             v, usage)
      end
      v = n
    elseif s.choices then
      local known = false
      for _, c in ipairs(s.choices) do known = known or c == v end
      if not known then
        local near = flags.closest(v, s.choices)
        fail("%s must be %s or %s, got '%s'%s\nusage: %s", s[1], table.concat(s.choices, ", ", 1, #s.choices - 1),
             s.choices[#s.choices], v, near and (" (did you mean " .. near .. "?)") or "", usage)
      end
    end
    out[i] = v
  end
  return table.unpack(out, 1, #specs)
end

return flags
