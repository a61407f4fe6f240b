-- `gqe report EXPERIMENT`: a static HTML page with PNG plots made by gnuplot
-- (reports/<experiment>/index.html). Data files and the gnuplot script are
-- written next to the images so a plot can be restyled by hand.
local results = require "gqe.results"

local report = {}

local fail = require "gqe.fail"

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                         ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- gnuplot single-quoted string
local function gq(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

local function file_name(s) return (tostring(s):gsub("[^%w%-_.]", "_")) end
report.file_name = file_name

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then fail("cannot write %s: %s", path, tostring(err)) end
  f:write(text)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close(); return true end
  return false
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function report.have_gnuplot()
  return os.execute("command -v gnuplot >/dev/null 2>&1") == true
end

-- Mean, min and max per step over the runs' curves of one metric.
local function band(db, run_ids, key)
  local by_step, steps = {}, {}
  for _, id in ipairs(run_ids) do
    for _, row in ipairs(db:query("SELECT step, value FROM metrics WHERE run_id = ? AND key = ? AND value IS NOT NULL ORDER BY step", id, key)) do
      local b = by_step[row.step]
      if not b then b = { sum = 0, n = 0, min = math.huge, max = -math.huge }; by_step[row.step] = b; steps[#steps + 1] = row.step end
      b.sum, b.n = b.sum + row.value, b.n + 1
      b.min, b.max = math.min(b.min, row.value), math.max(b.max, row.value)
    end
  end
  table.sort(steps)
  local out = {}
  for _, s in ipairs(steps) do
    local b = by_step[s]
    out[#out + 1] = { s, b.sum / b.n, b.min, b.max }
  end
  return out
end

local TERM = "set terminal pngcairo size 900,520 noenhanced font ',10'\n"

-- Loss curves: one line per group (mean over seeds) with a min/max band.
local function curve_plot(ctx, key, title, png)
  local plots, n = {}, 0
  for gi, g in ipairs(ctx.groups) do
    local ids = {}
    for _, r in ipairs(g.runs) do ids[#ids + 1] = r.id end
    local rows = band(ctx.db, ids, key)
    if #rows > 0 then
      n = n + 1
      local dat = string.format("%s_g%d.dat", file_name(key), gi)
      local lines = { "# step mean min max (" .. g.label .. ")" }
      for _, r in ipairs(rows) do lines[#lines + 1] = string.format("%d %.9g %.9g %.9g", r[1], r[2], r[3], r[4]) end
      write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
      local lc = string.format("lc %d", (n - 1) % 8 + 1)
      if #g.runs > 1 then
        plots[#plots + 1] = string.format("%s using 1:3:4 with filledcurves fs transparent solid 0.15 noborder %s notitle",
                                          gq(dat), lc)
      end
      plots[#plots + 1] = string.format("%s using 1:2 with lines lw 2 %s title %s", gq(dat), lc,
                                        gq(g.label .. (#g.runs > 1 and string.format(" (%d seeds)", #g.runs) or "")))
    end
  end
  if n == 0 then return nil end
  ctx.script[#ctx.script + 1] = TERM .. string.format([[
set output %s
set title %s
set xlabel 'step'
set ylabel %s
set grid
set key outside right top
plot %s
unset output
reset
]], gq(png), gq(title), gq(key), table.concat(plots, ", \\\n     "))
  return png
end

local function sort_values(vals)
  local numeric = true
  for _, v in ipairs(vals) do if tonumber(v) == nil then numeric = false end end
  table.sort(vals, function(a, b)
    if numeric then return tonumber(a) < tonumber(b) end
    return a < b
  end)
  return vals
end

-- The final metric against one varied key: x = that key's values, one
-- series per combination of the other varied keys, error bars = std over seeds.
local function axis_plot(ctx, key, metric, png)
  local short = results.short_names(ctx.keys)
  local cats, cat_index = {}, {}
  for _, r in ipairs(ctx.runs) do
    local v = r.params[key] or "-"
    if not cat_index[v] then cat_index[v] = true; cats[#cats + 1] = v end
  end
  sort_values(cats)
  for i, v in ipairs(cats) do cat_index[v] = i end
  local series, order = {}, {}
  for _, r in ipairs(ctx.runs) do
    local parts = {}
    for _, k in ipairs(ctx.keys) do
      if k ~= key then parts[#parts + 1] = short[k] .. "=" .. tostring(r.params[k] or "-") end
    end
    local label = #parts > 0 and table.concat(parts, ",") or metric
    if not series[label] then series[label] = {}; order[#order + 1] = label end
    local v = r.params[key] or "-"
    series[label][v] = series[label][v] or {}
    local m = r.metrics[metric]
    table.insert(series[label][v], m and m.last)
  end
  local plots = {}
  for si, label in ipairs(order) do
    local lines = { "# index value mean std (" .. label .. ")" }
    for i, v in ipairs(cats) do
      local vals = series[label][v]
      if vals then
        local mean, std = results.stats(vals)
        if mean then lines[#lines + 1] = string.format('%d "%s" %.9g %.9g', i, (v:gsub('"', "'")), mean, std or 0) end
      end
    end
    if #lines > 1 then
      local dat = string.format("axis_%s_s%d.dat", file_name(key), si)
      write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
      plots[#plots + 1] = string.format("%s using 1:3:4:xtic(2) with yerrorlines lw 2 pt 7 lc %d title %s",
                                        gq(dat), (si - 1) % 8 + 1, gq(label))
    end
  end
  if #plots == 0 then return nil end
  ctx.script[#ctx.script + 1] = TERM .. string.format([[
set output %s
set title %s
set xlabel %s
set ylabel %s
set xrange [0.5:%f]
set grid ytics
set key outside right top
plot %s
unset output
reset
]], gq(png), gq("final " .. metric .. " by " .. key), gq(key), gq("final " .. metric), #cats + 0.5,
    table.concat(plots, ", \\\n     "))
  return png
end

-- Head usage at each run's latest logged step, averaged over the group's
-- runs: one panel per layer, experts across, groups down, colour = share of
-- the group's tokens.
local function heatmap_plot(ctx, gi, g, png)
  local ids = {}
  for _, r in ipairs(g.runs) do ids[#ids + 1] = r.id end
  local rows = ctx.db:query([[SELECT h.layer, h.grp, h.expert, avg(h.frac) AS frac FROM head_usage h
      WHERE h.run_id IN ]] .. results.in_list(ids) .. [[
        AND h.step = (SELECT max(h2.step) FROM head_usage h2 WHERE h2.run_id = h.run_id)
      GROUP BY h.layer, h.grp, h.expert ORDER BY h.layer, h.grp, h.expert]])
  if #rows == 0 then return nil end
  local layers, maxg, maxe = {}, 0, 0
  for _, r in ipairs(rows) do
    layers[r.layer] = layers[r.layer] or {}
    table.insert(layers[r.layer], r)
    maxg, maxe = math.max(maxg, r.grp), math.max(maxe, r.expert)
  end
  local list = {}
  for l in pairs(layers) do list[#list + 1] = l end
  table.sort(list)
  local cols = math.min(#list, 4)
  local nrows = (#list + cols - 1) // cols
  local parts = {}
  for _, l in ipairs(list) do
    local dat = string.format("heat_g%d_l%d.dat", gi, l)
    local lines = { "# expert group frac" }
    for _, r in ipairs(layers[l]) do lines[#lines + 1] = string.format("%d %d %.6f", r.expert, r.grp, r.frac or 0) end
    write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
    parts[#parts + 1] = string.format([[
set title 'layer %d'
plot %s using 1:2:3 with image notitle, '' using 1:2:(sprintf('%%.2f', $3)) with labels font ',8' notitle
]], l, gq(dat))
  end
  ctx.script[#ctx.script + 1] = string.format([[
set terminal pngcairo size %d,%d noenhanced font ',10'
set output %s
set xlabel 'expert'
set ylabel 'group'
set cbrange [0:1]
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [-0.5:%f]
set yrange [-0.5:%f]
set xtics 1
set ytics 1
set multiplot layout %d,%d title %s
%sunset multiplot
unset output
reset
]], 280 * cols + 120, 260 * nrows + 60, gq(png), maxe + 0.5, maxg + 0.5, nrows, cols,
    gq("head usage (fraction of the group's tokens), " .. g.label), table.concat(parts))
  return png
end

local function fmt(v, f) return v and string.format(f, v) or "-" end

-- Writes the report; returns the path of index.html. opts: out (directory),
-- metric (default val/loss).
function report.generate(db, experiment, opts)
  opts = opts or {}
  local metric = opts.metric or "val/loss"
  local runs, others = results.runs(db, experiment, { status = "finished" })
  if #runs == 0 and #others == 0 then
    fail("no runs of experiment '%s' in the database (see `gqe runs`)", experiment)
  end
  if not report.have_gnuplot() then
    fail("gnuplot not found: install it (apt-get install gnuplot-nox, or `make deps`)")
  end
  local dir = opts.out or ("reports/" .. require("gqe.paths").component(experiment))
  if os.execute("mkdir -p " .. shell_quote(dir)) ~= true then fail("cannot create directory %s", dir) end
  local groups, keys = results.groups(runs)
  local ctx = { db = db, dir = dir, runs = runs, groups = groups, keys = keys, script = {} }

  local sections = {}
  local images = {}
  local function img(png, alt)
    if png then images[#images + 1] = { png = png, alt = alt } end
    return png
  end

  local curves = {}
  curves[#curves + 1] = img(curve_plot(ctx, "train/loss", "training loss (mean over seeds, band = min..max)", "train_loss.png"), "training loss")
  curves[#curves + 1] = img(curve_plot(ctx, metric, metric .. " (mean over seeds, band = min..max)", "val_loss.png"), metric)
  local axes = {}
  for _, k in ipairs(keys) do
    axes[#axes + 1] = { key = k, png = img(axis_plot(ctx, k, metric, "axis_" .. file_name(k) .. ".png"), metric .. " by " .. k) }
  end
  local heats = {}
  for gi, g in ipairs(groups) do
    heats[#heats + 1] = { label = g.label, png = img(heatmap_plot(ctx, gi, g, string.format("heads_g%d.png", gi)), "head usage " .. g.label) }
  end

  if #ctx.script > 0 then
    write_file(dir .. "/plots.gp", table.concat(ctx.script, "\n"))
    local cmd = string.format("cd %s && gnuplot plots.gp > gnuplot.log 2>&1", shell_quote(dir))
    if os.execute(cmd) ~= true then
      local f = io.open(dir .. "/gnuplot.log")
      local log = f and f:read("a") or ""
      if f then f:close() end
      fail("gnuplot failed on %s/plots.gp:\n%s", dir, log)
    end
  end
  local function shown(png) return png and exists(dir .. "/" .. png) end

  local h = {}
  local function w(...) for _, s in ipairs { ... } do h[#h + 1] = s end end
  w("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>", html_escape(experiment), " - gqe report</title>\n<style>",
    "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}",
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}",
    "img{max-width:100%;display:block;margin:1em 0}code{background:#f4f4f4;padding:1px 4px}",
    "</style></head><body>\n")
  w("<h1>Experiment ", html_escape(experiment), "</h1>\n")
  w("<p>", tostring(#runs), " finished runs in ", tostring(#groups), " groups",
    #keys > 0 and (" varying <code>" .. html_escape(table.concat(keys, ", ")) .. "</code>") or "",
    ". Generated ", os.date("!%Y-%m-%d %H:%M UTC"), ".</p>\n")

  w("<h2>Summary</h2>\n<table><tr><th>group</th><th>seeds</th><th>final ", html_escape(metric),
    "</th><th>best ", html_escape(metric), "</th><th>tokens/s</th><th>active heads</th></tr>\n")
  for _, r in ipairs(results.summarize(groups, metric)) do
    w("<tr><td>", html_escape(r.group), "</td><td>", tostring(r.n), "</td><td>",
      results.pm(r.final_mean, r.final_std, "%.4f"), "</td><td>", results.pm(r.best_mean, r.best_std, "%.4f"),
      "</td><td>", results.pm(r.tps_mean, r.tps_std, "%.0f"), "</td><td>",
      r.heads and string.format("%g", r.heads) or "-", "</td></tr>\n")
  end
  w("</table>\n")

  w("<h2>Loss curves</h2>\n")
  for _, png in ipairs(curves) do
    if shown(png) then w('<img src="', png, '" alt="', html_escape(png), '">\n') end
  end
  if #keys > 0 then
    w("<h2>Final ", html_escape(metric), " by ablation axis</h2>\n")
    for _, a in ipairs(axes) do
      if shown(a.png) then w('<img src="', a.png, '" alt="', html_escape(metric .. " by " .. a.key), '">\n') end
    end
  end
  local any_heat = false
  for _, hm in ipairs(heats) do if shown(hm.png) then any_heat = true end end
  if any_heat then
    w("<h2>Head usage at the latest evaluation</h2>\n<p>Share of each group's routed tokens per expert, per layer.</p>\n")
    for _, hm in ipairs(heats) do
      if shown(hm.png) then
        w("<h3>", html_escape(hm.label), "</h3>\n<img src=\"", hm.png, "\" alt=\"", html_escape("head usage " .. hm.label), "\">\n")
      end
    end
  end

  w("<h2>Runs</h2>\n<table><tr><th>run</th><th>id</th><th>status</th><th>step</th><th>final ", html_escape(metric),
    "</th><th>best ", html_escape(metric), "</th><th>tokens/s</th><th>wall</th></tr>\n")
  for _, r in ipairs(runs) do
    local m = r.metrics[metric] or {}
    w("<tr><td>", html_escape(r.name), "</td><td>", tostring(r.id), "</td><td>", html_escape(r.status), "</td><td>",
      tostring(r.step), "</td><td>", fmt(m.last, "%.4f"), "</td><td>", fmt(m.min, "%.4f"), "</td><td>",
      fmt(r.tokens_per_s, "%.0f"), "</td><td>", fmt(r.wall_s, "%.1f s"), "</td></tr>\n")
  end
  for _, r in ipairs(others) do
    w("<tr><td>", html_escape(r.name), "</td><td>", tostring(r.id), "</td><td>", html_escape(r.status), "</td><td>",
      tostring(r.step), "</td><td colspan=\"4\">", html_escape(r.error or ""), "</td></tr>\n")
  end
  w("</table>\n")
  if runs[1] then
    local keysall = {}
    for k in pairs(runs[1].params) do keysall[#keysall + 1] = k end
    table.sort(keysall)
    w("<h2>Configuration (first run)</h2>\n<table>")
    for _, k in ipairs(keysall) do
      w("<tr><td>", html_escape(k), "</td><td>", html_escape(runs[1].params[k]), "</td></tr>")
    end
    w("</table>\n")
  end
  w("</body></html>\n")
  local index = dir .. "/index.html"
  write_file(index, table.concat(h))
  return index
end

-- Opens the run log (opts.db path, else GQE_DB or runs.db) and writes the
-- report of one experiment; returns the index.html path.
function report.write(experiment, opts)
  opts = opts or {}
  local gqe = require "gqe"
  local db = gqe.db.open(require("gqe.train").db_path(opts.db))
  local ok, res = pcall(report.generate, db, experiment, opts)
  db:close()
  if not ok then error(res, 0) end
  return res
end

return report
