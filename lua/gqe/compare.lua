-- `gqe compare EXPERIMENT`: the experiment's counted runs (view counted_runs)
-- grouped by the keys that vary between them, mean +- std over seeds with a
-- 95% confidence interval (t-distribution), optionally against a baseline
-- group; as a text table, CSV or JSON.
local argv = require "gqe.flags"
local json = require "gqe.json"
local results = require "gqe.results"

local compare = {}

compare.spec = {
  usage = "gqe compare EXPERIMENT [--metric KEY] [--baseline NAME] [--csv | --json] [--db PATH]",
  about = "groups the counted runs (the latest finished row of each distinct config) by the keys that vary; "
    .. "per group: seeds, mean +- std, the 95% CI of the mean (Student's t); warns below 3 seeds",
  flags = {
    { "metric", value = "KEY", help = "the metric to compare (default val/loss)" },
    { "baseline", value = "NAME", help = "a group label or run name: each group's difference to it (Welch 95% CI)" },
    { "csv", help = "print CSV" },
    { "json", help = "print JSON" },
  },
  args = { min = 1, max = 1, names = "EXPERIMENT" },
}

compare.RULE = "the latest finished row of each distinct config"

local fail = require "gqe.fail"

-- The summary of an experiment: {experiment, metric, runs, others, keys,
-- groups, rows, baseline, warnings}. Errors name what is known when the
-- experiment or the metric is not.
function compare.collect(db, experiment, metric, baseline)
  metric = metric or "val/loss"
  local runs, others = results.runs(db, experiment)
  if #runs == 0 and #others == 0 then
    results.unknown_experiment(db, experiment)
  end
  if #runs == 0 then
    fail("no counted runs in experiment '%s' (counted: %s; not counted: %s; see `gqe runs %s`)",
         experiment, compare.RULE, results.not_counted_text(others), experiment)
  end
  local known = results.metric_keys(runs)
  local found = false
  for _, k in ipairs(known) do if k == metric then found = true end end
  if not found then
    local near = argv.closest(metric, known)
    fail("unknown metric '%s'%s; metrics of experiment '%s': %s", metric,
         near and (" (did you mean " .. near .. "?)") or "", experiment, table.concat(known, ", "))
  end
  local groups, keys = results.groups(runs)
  local rows = results.summarize(groups, metric)
  local base = baseline and results.apply_baseline(rows, groups, baseline) or nil
  local few = results.few_seeds_text(rows)
  local warnings = {}
  if few then
    warnings[1] = "fewer than 3 seeds in " .. few ..
      ": the 95% CI is wide (n=2) or undefined (n=1); add seeds before drawing conclusions"
  end
  return { experiment = experiment, metric = metric, runs = runs, others = others, keys = keys,
           groups = groups, rows = rows, baseline = base, warnings = warnings }
end

local function csv_field(v)
  if v == nil then return "" end
  if type(v) == "number" then return math.type(v) == "integer" and tostring(v) or string.format("%.17g", v) end
  v = tostring(v)
  if v:find('[",\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

function compare.csv(s)
  local header = { "group" }
  for _, k in ipairs(s.keys) do header[#header + 1] = k end
  for _, h in ipairs { "seeds", "final_mean", "final_std", "final_ci95_low", "final_ci95_high", "best_mean",
                       "best_std", "best_ci95_low", "best_ci95_high", "tokens_per_s_mean", "tokens_per_s_std",
                       "active_heads", "diff_final_mean", "diff_final_ci95" } do
    header[#header + 1] = h
  end
  local lines = {}
  local function emit(cells)
    local t = {}
    for i = 1, #header do t[i] = csv_field(cells[i]) end
    lines[#lines + 1] = table.concat(t, ",")
  end
  lines[1] = table.concat(header, ",")
  for _, r in ipairs(s.rows) do
    local c = { r.group }
    for _, k in ipairs(s.keys) do c[#c + 1] = r.values[k] or "" end
    local function lohi(mean, half)
      if mean == nil or half == nil then return nil, nil end
      return mean - half, mean + half
    end
    local fl, fh = lohi(r.final_mean, r.final_ci)
    local bl, bh = lohi(r.best_mean, r.best_ci)
    local n = #c
    local rest = { r.n, r.final_mean, r.final_std, fl, fh, r.best_mean, r.best_std, bl, bh, r.tps_mean, r.tps_std,
                   r.heads, r.diff and r.diff.mean, r.diff and r.diff.ci95 }
    for i = 1, 14 do c[n + i] = rest[i] end
    emit(c)
  end
  return table.concat(lines, "\n")
end

function compare.json(s)
  local not_counted = json.array()
  for _, r in ipairs(s.others) do
    not_counted[#not_counted + 1] = { run_id = r.id, name = r.name, status = r.status, reason = r.reason }
  end
  local groups = {}
  for i, r in ipairs(s.rows) do
    local ids = {}
    for _, run in ipairs(s.groups[i].runs) do ids[#ids + 1] = run.id end
    local function stat(mean, std, half)
      return { mean = mean, std = std, ci95 = half, ci95_low = half and mean - half,
               ci95_high = half and mean + half }
    end
    groups[i] = { group = r.group, values = r.values, seeds = r.n, run_ids = ids,
                  final = stat(r.final_mean, r.final_std, r.final_ci),
                  best = stat(r.best_mean, r.best_std, r.best_ci),
                  tokens_per_s = { mean = r.tps_mean, std = r.tps_std }, active_heads = r.heads,
                  baseline = s.baseline == r or nil,
                  diff_vs_baseline = s.baseline and r.diff and { final_mean = r.diff.mean, ci95 = r.diff.ci95 } or nil }
  end
  return json.encode { experiment = s.experiment, metric = s.metric, counted = compare.RULE,
                       varied_keys = json.array(s.keys), groups = json.array(groups), not_counted = not_counted,
                       baseline = s.baseline and s.baseline.group or nil, warnings = json.array(s.warnings) }
end

function compare.text(s)
  local out = {}
  out[#out + 1] = string.format("experiment %s: %d runs counted, %d groups%s", s.experiment, #s.runs, #s.rows,
    #s.keys > 0 and (" by " .. table.concat(s.keys, ", ")) or "")
  out[#out + 1] = string.format("counted: %s%s", compare.RULE, #s.others > 0 and
    string.format("; not counted: %s (see `gqe runs %s`)", results.not_counted_text(s.others), s.experiment) or "")
  out[#out + 1] = results.format_table(s.rows, s.metric, s.baseline)
  return table.concat(out, "\n")
end

-- The command; returns the exit code.
function compare.main(args)
  local flags, pos = argv.parse(compare.spec, args)
  if flags.help then io.stdout:write(argv.help(compare.spec), "\n"); return 0 end
  if flags.csv and flags.json then fail("compare: --csv and --json exclude each other") end
  local gqe = require "gqe"
  local path = require("gqe.train").db_path(flags.db)
  local f = io.open(path, "rb")
  if not f then fail("no run log at %s (train something first, or pass --db PATH / set GQE_DB)", path) end
  f:close()
  local db = gqe.db.open(path)
  local ok, s = pcall(compare.collect, db, pos[1], flags.metric, flags.baseline)
  db:close()
  if not ok then error(s, 0) end
  for _, w in ipairs(s.warnings) do io.stderr:write("warning: ", w, "\n") end
  local text = flags.csv and compare.csv(s) or flags.json and compare.json(s) or compare.text(s)
  io.stdout:write(text, "\n")
  return 0
end

return compare
