-- Reading an experiment back from the run log: its runs, the config keys
-- that vary between them, groups of runs that differ only in the seed, and
-- per-group statistics. Shared by `gqe compare` and the report.
local config = require "gqe.config"

local results = {}

-- Keys that never distinguish groups of runs.
results.ignored_keys = { ["train.seed"] = true, ["train.db"] = true, ["train.progress"] = true,
                         ["data.seed"] = true, ["train.checkpoint_dir"] = true }

-- Higher is better for throughput-like metrics; lower for losses.
function results.higher_is_better(key)
  return (key:match("acc") or key:match("per_s") or key:match("tokens") or key:match("gflops")) ~= nil
end

local function in_list(ids)
  local t = {}
  for i, id in ipairs(ids) do t[i] = string.format("%d", id) end
  return "(" .. table.concat(t, ",") .. ")"
end
results.in_list = in_list

-- The runs of an experiment that count (view counted_runs: the latest
-- finished row of each distinct config) with their params and metric
-- summaries, and as a second value the rows that do not count, each with
-- `reason` = its status, or "superseded" for a finished row replaced by a
-- later finished row of the same config.
function results.runs(db, experiment)
  local rows = db:query([[SELECT r.id, r.name, r.status, r.step, r.seed, r.started, r.ended, r.error, r.host,
      r.device, c.run_id IS NOT NULL AS counted
      FROM runs r JOIN experiments e ON e.id = r.experiment_id
      LEFT JOIN counted_runs c ON c.run_id = r.id
      WHERE e.name = ? ORDER BY r.id]], experiment)
  local runs, others = {}, {}
  for _, r in ipairs(rows) do
    if r.counted == 1 then
      runs[#runs + 1] = r
    else
      r.reason = r.status == "finished" and "superseded" or r.status
      others[#others + 1] = r
    end
  end
  if #runs == 0 then return runs, others end
  local by_id = {}
  for _, r in ipairs(runs) do r.params = {}; r.metrics = {}; by_id[r.id] = r end
  local ids = {}
  for _, r in ipairs(runs) do ids[#ids + 1] = r.id end
  for _, p in ipairs(db:query("SELECT run_id, key, value FROM params WHERE run_id IN " .. in_list(ids))) do
    by_id[p.run_id].params[p.key] = p.value
  end
  for _, m in ipairs(db:query("SELECT run_id, key, last, min, max FROM metric_summary WHERE run_id IN " .. in_list(ids))) do
    by_id[m.run_id].metrics[m.key] = { last = m.last, min = m.min, max = m.max }
  end
  for _, m in ipairs(db:query([[SELECT run_id, avg(value) AS v FROM metrics WHERE key = 'perf/tokens_per_s'
      AND run_id IN ]] .. in_list(ids) .. " GROUP BY run_id")) do
    by_id[m.run_id].tokens_per_s = m.v
  end
  for _, r in ipairs(runs) do
    r.wall_s = (r.ended and r.started) and r.ended - r.started or nil
    r.active_heads = results.active_heads(r.params)
  end
  return runs, others
end

-- "2 killed, 1 superseded": the rows not counted, by reason.
function results.not_counted_text(others)
  local count, order = {}, {}
  for _, r in ipairs(others) do
    if not count[r.reason] then order[#order + 1] = r.reason end
    count[r.reason] = (count[r.reason] or 0) + 1
  end
  local parts = {}
  for _, k in ipairs(order) do parts[#parts + 1] = string.format("%d %s", count[k], k) end
  return table.concat(parts, ", ")
end

-- Experiment names in the database, sorted.
function results.experiments(db)
  local names = {}
  for _, r in ipairs(db:query("SELECT name FROM experiments ORDER BY name")) do names[#names + 1] = r.name end
  return names
end

-- Raises the one message for an experiment the run log does not know: the
-- closest known name and every known one. where names the log ("this
-- database" when nil).
function results.unknown_experiment(db, name, where)
  local known = results.experiments(db)
  local near = require("gqe.flags").closest(tostring(name), known)
  error(string.format("unknown experiment '%s'%s; experiments in %s: %s", tostring(name),
    near and (" (did you mean '" .. near .. "'?)") or "", where or "this database",
    #known > 0 and table.concat(known, ", ") or "(none yet)"), 0)
end

-- Metric keys logged by any of the runs, sorted.
function results.metric_keys(runs)
  local seen, keys = {}, {}
  for _, r in ipairs(runs) do
    for k in pairs(r.metrics) do
      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  table.sort(keys)
  return keys
end

-- Active heads from a run's params; nil when they do not say (or, in a
-- database written by something else, say nonsense).
function results.active_heads(p)
  if not p["model.attention"] then return nil end
  local c = { model = { attention = p["model.attention"], experts = math.tointeger(tonumber(p["model.experts"])),
                        groups = math.tointeger(tonumber(p["model.groups"])), k = math.tointeger(tonumber(p["model.k"])),
                        variant = p["model.variant"] or "gqe" } }
  if not (c.model.experts and c.model.groups and c.model.k) then return nil end
  local ok, n = pcall(config.active_heads, c)
  return ok and n or nil
end

-- Config keys whose value differs between the runs (sorted).
function results.varied_keys(runs)
  local values, count = {}, {}
  for _, r in ipairs(runs) do
    for k, v in pairs(r.params) do
      values[k] = values[k] or {}
      if not values[k][v] then values[k][v] = true end
      count[k] = (count[k] or 0) + 1
    end
  end
  local keys = {}
  for k, vs in pairs(values) do
    local n = 0
    for _ in pairs(vs) do n = n + 1 end
    if not results.ignored_keys[k] and (n > 1 or count[k] < #runs) then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- {key = name}: the last component of each dotted key, unless two keys
-- share it (then the whole key). Names runs and labels groups.
function results.short_names(keys)
  local count, names = {}, {}
  for _, k in ipairs(keys) do
    local s = k:match("([^.]+)$")
    count[s] = (count[s] or 0) + 1
  end
  for _, k in ipairs(keys) do
    local s = k:match("([^.]+)$")
    names[k] = count[s] > 1 and k or s
  end
  return names
end

-- Groups of runs equal in every varied key: {label, values = {key = v}, runs}.
-- Groups keep the order in which their first run appears.
function results.groups(runs, keys)
  keys = keys or results.varied_keys(runs)
  local short = results.short_names(keys)
  local groups, by_label = {}, {}
  for _, r in ipairs(runs) do
    local parts, values = {}, {}
    for _, k in ipairs(keys) do
      local v = r.params[k]
      values[k] = v
      parts[#parts + 1] = short[k] .. "=" .. tostring(v or "-")
    end
    local label = #parts > 0 and table.concat(parts, ",") or "all"
    local g = by_label[label]
    if not g then
      g = { label = label, values = values, runs = {} }
      by_label[label] = g
      groups[#groups + 1] = g
    end
    g.runs[#g.runs + 1] = r
  end
  return groups, keys
end

-- Mean and sample standard deviation of the non-nil values (std nil for n < 2).
function results.stats(values)
  local n, sum = 0, 0.0
  for _, v in ipairs(values) do
    if v ~= nil then n = n + 1; sum = sum + v end
  end
  if n == 0 then return nil, nil, 0 end
  local mean = sum / n
  if n < 2 then return mean, nil, n end
  local ss = 0.0
  for _, v in ipairs(values) do if v ~= nil then ss = ss + (v - mean) ^ 2 end end
  return mean, math.sqrt(ss / (n - 1)), n
end

-- P(|T| < t) for Student's t with df degrees of freedom (integer), by the
-- closed forms of Abramowitz & Stegun 26.7.3 and 26.7.4.
local function t_central(t, df)
  local theta = math.atan(t / math.sqrt(df))
  local c2, s = math.cos(theta) ^ 2, math.sin(theta)
  if df % 2 == 1 then
    local sum, term = 0.0, math.cos(theta)
    for j = 3, df, 2 do
      sum = sum + term
      term = term * c2 * (j - 1) / j
    end
    return 2 / math.pi * (theta + s * sum)
  end
  local sum, term = 0.0, 1.0
  for j = 2, df, 2 do
    sum = sum + term
    term = term * c2 * (j - 1) / j
  end
  return s * sum
end

-- The two-sided 95% quantile of Student's t (12.706 for df = 1, 1.96 as df
-- grows), by bisection on the closed-form distribution function.
function results.t95(df)
  df = math.max(1, math.floor(df))
  local lo, hi = 0.0, 1000.0
  for _ = 1, 100 do
    local mid = (lo + hi) / 2
    if t_central(mid, df) < 0.95 then lo = mid else hi = mid end
  end
  return (lo + hi) / 2
end

-- Half width of the 95% confidence interval of a mean (nil for n < 2).
function results.ci95(std, n)
  if not std or n < 2 then return nil end
  return results.t95(n - 1) * std / math.sqrt(n)
end

-- Difference of two means with Welch's 95% confidence interval half width
-- (nil when either side has fewer than 2 values).
function results.diff(a_mean, a_std, a_n, b_mean, b_std, b_n)
  if a_mean == nil or b_mean == nil then return nil end
  local d = a_mean - b_mean
  if not a_std or not b_std or a_n < 2 or b_n < 2 then return d, nil end
  local va, vb = a_std ^ 2 / a_n, b_std ^ 2 / b_n
  local se = math.sqrt(va + vb)
  if se == 0 then return d, 0.0 end
  local df = (va + vb) ^ 2 / (va ^ 2 / (a_n - 1) + vb ^ 2 / (b_n - 1))
  return d, results.t95(df) * se
end

-- One summary row per group for metric key (default val/loss).
function results.summarize(groups, metric)
  metric = metric or "val/loss"
  local higher = results.higher_is_better(metric)
  local rows = {}
  for _, g in ipairs(groups) do
    local final, best, tps, heads = {}, {}, {}, {}
    for _, r in ipairs(g.runs) do
      local m = r.metrics[metric]
      final[#final + 1] = m and m.last
      best[#best + 1] = m and (higher and m.max or m.min)
      tps[#tps + 1] = r.tokens_per_s
      heads[#heads + 1] = r.active_heads
    end
    local row = { group = g.label, n = #g.runs, values = g.values }
    row.final_mean, row.final_std, row.final_n = results.stats(final)
    row.best_mean, row.best_std, row.best_n = results.stats(best)
    row.final_ci = results.ci95(row.final_std, row.final_n)
    row.best_ci = results.ci95(row.best_std, row.best_n)
    row.tps_mean, row.tps_std = results.stats(tps)
    row.heads = results.stats(heads)
    row.heads = row.heads and (math.tointeger(row.heads) or row.heads)
    rows[#rows + 1] = row
  end
  return rows
end

local function pm(mean, std, fmt)
  if mean == nil then return "-" end
  local s = string.format(fmt, mean)
  if std then s = s .. " +- " .. string.format(fmt, std) end
  return s
end
results.pm = pm

-- The groups of summary rows with fewer than 3 seeds, as text ("a (n=2),
-- b (n=1)"; past four, "and N more" with the count of all), or nil.
function results.few_seeds_text(rows)
  local few = {}
  for _, r in ipairs(rows) do if r.n < 3 then few[#few + 1] = string.format("%s (n=%d)", r.group, r.n) end end
  if #few == 0 then return nil end
  if #few <= 4 then return table.concat(few, ", ") end
  return string.format("%d of %d groups: %s and %d more", #few, #rows, table.concat(few, ", ", 1, 3), #few - 3)
end

-- "[lo, hi]" of a 95% confidence interval, "-" when undefined (n < 2).
local function ci_text(mean, half, fmt)
  if mean == nil or half == nil then return "-" end
  return "[" .. string.format(fmt, mean - half) .. ", " .. string.format(fmt, mean + half) .. "]"
end
results.ci_text = ci_text

-- The aligned text table of `gqe compare`. With a baseline, a last column
-- gives each group's final metric minus the baseline's, with Welch's 95% CI.
function results.format_table(rows, metric, baseline)
  metric = metric or "val/loss"
  local higher = results.higher_is_better(metric)
  local header = { "group", "seeds", "final " .. metric, "95% CI", (higher and "max " or "best ") .. metric,
                   "tokens/s", "active heads" }
  if baseline then header[#header + 1] = "final - " .. baseline.group end
  local cells = {}
  for _, r in ipairs(rows) do
    local c = { r.group .. (baseline and r == baseline and " (baseline)" or ""), tostring(r.n),
      pm(r.final_mean, r.final_std, "%.4f"), ci_text(r.final_mean, r.final_ci, "%.4f"),
      pm(r.best_mean, r.best_std, "%.4f"), pm(r.tps_mean, r.tps_std, "%.0f"),
      r.heads and string.format("%g", r.heads) or "-" }
    if baseline then
      local d = r.diff
      c[#c + 1] = (r == baseline or not d) and "-" or
        (string.format("%+.4f", d.mean) .. (d.ci95 and string.format(" +- %.4f", d.ci95) or ""))
    end
    cells[#cells + 1] = c
  end
  local w = {}
  for j, h in ipairs(header) do w[j] = #h end
  for _, c in ipairs(cells) do for j, s in ipairs(c) do w[j] = math.max(w[j], #s) end end
  local out = {}
  local function emit(c)
    local parts = {}
    for j, s in ipairs(c) do
      parts[j] = j == 1 and s .. string.rep(" ", w[j] - #s) or string.rep(" ", w[j] - #s) .. s
    end
    out[#out + 1] = table.concat(parts, "  ")
  end
  emit(header)
  local rule = {}
  for j = 1, #header do rule[j] = string.rep("-", w[j]) end
  emit(rule)
  for _, c in ipairs(cells) do emit(c) end
  return table.concat(out, "\n")
end

-- Sets row.diff = {mean, ci95} (final metric minus the baseline's) on every
-- row; returns the baseline row. name is a group label or a run name.
function results.apply_baseline(rows, groups, name)
  local base
  for i, r in ipairs(rows) do
    if r.group == name then base = r end
    for _, run in ipairs(groups[i].runs) do if run.name == name then base = base or r end end
  end
  if not base then
    local labels = {}
    for _, r in ipairs(rows) do labels[#labels + 1] = r.group end
    error(string.format("unknown baseline '%s'; groups: %s (a run name selects its group)", name,
                        table.concat(labels, "; ")), 0)
  end
  for _, r in ipairs(rows) do
    local d, ci = results.diff(r.final_mean, r.final_std, r.final_n or 0, base.final_mean, base.final_std,
                               base.final_n or 0)
    if d then r.diff = { mean = d, ci95 = ci } end
  end
  return base
end

return results
