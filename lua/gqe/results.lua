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

-- Runs of an experiment, the latest of each name; opts.status = "finished"
-- keeps finished runs only (others are returned as the second value).
function results.runs(db, experiment, opts)
  opts = opts or {}
  local rows = db:query([[SELECT r.id, r.name, r.status, r.step, r.seed, r.started, r.ended, r.error, r.host,
      r.device FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE e.name = ? ORDER BY r.id]], experiment)
  local latest, order, others = {}, {}, {}
  for _, r in ipairs(rows) do
    if not opts.status or r.status == opts.status then
      if not latest[r.name] then order[#order + 1] = r.name end
      latest[r.name] = r
    else
      others[#others + 1] = r
    end
  end
  local runs = {}
  for _, name in ipairs(order) do runs[#runs + 1] = latest[name] end
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

function results.active_heads(p)
  if not p["model.attention"] then return nil end
  local c = { model = { attention = p["model.attention"], experts = tonumber(p["model.experts"]),
                        groups = tonumber(p["model.groups"]), k = tonumber(p["model.k"]),
                        variant = p["model.variant"] } }
  if not (c.model.experts and c.model.groups and c.model.k) then return nil end
  return config.active_heads(c)
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
    row.final_mean, row.final_std = results.stats(final)
    row.best_mean, row.best_std = results.stats(best)
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

-- The aligned text table of `gqe compare`.
function results.format_table(rows, metric)
  metric = metric or "val/loss"
  local higher = results.higher_is_better(metric)
  local header = { "group", "seeds", "final " .. metric, (higher and "max " or "best ") .. metric, "tokens/s",
                   "active heads" }
  local cells = {}
  for _, r in ipairs(rows) do
    cells[#cells + 1] = { r.group, tostring(r.n), pm(r.final_mean, r.final_std, "%.4f"),
      pm(r.best_mean, r.best_std, "%.4f"), pm(r.tps_mean, r.tps_std, "%.0f"),
      r.heads and string.format("%g", r.heads) or "-" }
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

return results
