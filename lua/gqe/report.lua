-- `gqe report EXPERIMENT`: a static HTML page with PNG plots made by gnuplot
-- (reports/<experiment>/index.html), built for comparing ablation arms. Data
-- files and the gnuplot script are written next to the images so a plot can
-- be restyled by hand.
--
-- Nothing read from the run log, a config or a file name is ever gnuplot or
-- shell code: numbers go to gnuplot in data files, the few labels the script
-- carries pass through safe_label (a whitelist without quotes, newlines,
-- backslashes or anything else gnuplot or a shell would interpret), the
-- script names its files relative to its own path (ARG0), and gnuplot and
-- mkdir run through gqe.spawn (an argv, no shell).
local argv = require "gqe.flags"
local results = require "gqe.results"

local report = {}

local fail = require "gqe.fail"

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                         ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function file_name(s) return (tostring(s):gsub("[^%w%-_.]", "_")) end
report.file_name = file_name

-- A gnuplot single-quoted string holding only letters, digits, space and
-- . _ = , : / + - ( ) [ ] # * ; every other byte becomes '?'. Inside single
-- quotes gnuplot interprets nothing but '' and the end of the line, and
-- neither can survive this.
local function safe_label(s)
  s = tostring(s):gsub("[^%w ._=,:/+%-()%[%]#*]", "?")
  if #s > 80 then s = s:sub(1, 77) .. "..." end
  return "'" .. s .. "'"
end
report.safe_label = safe_label

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

-- Runs argv (a program on PATH) without a shell; true when it exits 0.
local function run(args, log)
  local gqe = require "gqe"
  local pid = gqe.spawn(args, log and { stdout = log, stderr = log } or nil)
  return gqe.wait(pid) == 0
end

function report.have_gnuplot()
  return os.execute("command -v gnuplot >/dev/null 2>&1") == true
end

-- Twelve colours that stay apart, each arm also gets its own dash pattern
-- and point type, so arms stay distinguishable in grey and for colour-blind
-- readers.
local PALETTE = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                  "#e377c2", "#17becf", "#7f7f7f", "#bcbd22", "#000080", "#00a087" }
local POINTS = { 7, 5, 9, 11, 13, 15, 6, 4, 8, 10, 12, 14 }
local function arm_style(i)
  local k = (i - 1) % #PALETTE + 1
  return string.format("lc rgb '%s' dt %d pt %d", PALETTE[k], (i - 1) % 5 + 1, POINTS[k]), PALETTE[k]
end
report.colour = function(i) return PALETTE[(i - 1) % #PALETTE + 1] end
-- The arm's colour alone, for its min..max band.
local function band_style(i) return string.format("lc rgb '%s'", report.colour(i)) end

local HEAD = "set terminal pngcairo size %d,%d noenhanced font ',10'\nset output D.'%s'\n"

-- Where the legend goes: right of the plot for short labels; below it, in
-- as many columns as fit, when labels are long (a legend beside the plot
-- would squeeze the plot to a sliver). Returns the key command and the
-- image size.
local function key_layout(titles, width, height)
  local longest = 0
  for _, t in ipairs(titles) do longest = math.max(longest, #t) end
  if longest <= 40 then return "set key outside right top\n", width, height end
  local cols = math.max(1, math.floor(width / (longest * 6.5 + 60)))
  local rows = math.ceil(#titles / cols)
  return string.format("set key below left maxrows %d\n", rows), width, height + rows * 17 + 10
end
local FOOT = "unset output\nreset\n"

-- The runs' curves of one metric: {steps = sorted, by_run = {id = {step = v}},
-- stat = {step = {mean, min, max, n}}}.
local function curves(db, run_ids, key)
  local by_run, stat, steps = {}, {}, {}
  for _, id in ipairs(run_ids) do
    by_run[id] = {}
    for _, row in ipairs(db:query("SELECT step, value FROM metrics WHERE run_id = ? AND key = ? AND value IS NOT NULL ORDER BY step", id, key)) do
      local v = tonumber(row.value)
      if v and v == v and v ~= math.huge and v ~= -math.huge then
        by_run[id][row.step] = v
        local b = stat[row.step]
        if not b then b = { sum = 0, n = 0, min = math.huge, max = -math.huge }; stat[row.step] = b; steps[#steps + 1] = row.step end
        b.sum, b.n = b.sum + v, b.n + 1
        b.min, b.max = math.min(b.min, v), math.max(b.max, v)
      end
    end
  end
  table.sort(steps)
  for _, b in pairs(stat) do b.mean = b.sum / b.n end
  return { steps = steps, by_run = by_run, stat = stat }
end

local function run_ids(g)
  local ids = {}
  for _, r in ipairs(g.runs) do ids[#ids + 1] = r.id end
  return ids
end

-- "[best]" / "[baseline]" after an arm's label.
local function marks(ctx, gi)
  local m = {}
  if ctx.best == gi then m[#m + 1] = "best" end
  if ctx.baseline == gi then m[#m + 1] = "baseline" end
  return #m > 0 and (" [" .. table.concat(m, ", ") .. "]") or ""
end

-- A y range that leaves out spikes (typically early ones): when the largest
-- value lies more than twice the bulk's spread (90th percentile - minimum)
-- above the 90th percentile, the top is set half a spread above it. Returns
-- lo, hi, or nil when nothing sticks out.
local function clipped_range(values)
  table.sort(values)
  local n = #values
  if n < 3 then return nil end
  local lo, q90, top = values[1], values[math.ceil(0.9 * n)], values[n]
  local spread = q90 - lo
  if not (spread > 0) or top <= q90 + 2 * spread then return nil end
  return lo - 0.05 * spread, q90 + 0.5 * spread
end

-- A metric's curves, one colour/dash/point style per arm: mean over seeds
-- with a min..max band (ctx.opts.curves = "mean") or one line per seed
-- ("seeds"). Loss axes are clipped above the early spike (loss_axis "clip"),
-- log-scaled ("log") or left whole ("full").
local function curve_plot(ctx, key, png)
  local plots, all, titles = {}, {}, {}
  local function note(_, v) all[#all + 1] = v end
  local n = 0
  for gi, g in ipairs(ctx.groups) do
    local c = curves(ctx.db, run_ids(g), key)
    if #c.steps > 0 then
      n = n + 1
      local style = arm_style(gi)
      local lw = (ctx.best == gi or ctx.baseline == gi) and 3 or 1.5
      local pi = math.max(1, #c.steps // 6)
      local title = safe_label(g.label .. (#g.runs > 1 and string.format(" (%d seeds)", #g.runs) or "") .. marks(ctx, gi))
      titles[#titles + 1] = title
      if ctx.opts.curves == "seeds" then
        for ri, r in ipairs(g.runs) do
          local lines = { "# step value (run " .. r.id .. ")" }
          local rs = {}
          for s in pairs(c.by_run[r.id]) do rs[#rs + 1] = s end
          table.sort(rs)
          for _, s in ipairs(rs) do
            lines[#lines + 1] = string.format("%d %.9g", s, c.by_run[r.id][s])
            note(s, c.by_run[r.id][s])
          end
          if #rs > 0 then
            local dat = string.format("%s_g%d_r%d.dat", (png:gsub("%.png$", "")), gi, ri)
            write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
            plots[#plots + 1] = string.format("D.'%s' using 1:2 with linespoints pi %d ps 0.8 lw %g %s %s", dat,
              pi, lw, style, ri == 1 and ("title " .. title) or "notitle")
          end
        end
      else
        local lines = { "# step mean min max" }
        for _, s in ipairs(c.steps) do
          local b = c.stat[s]
          lines[#lines + 1] = string.format("%d %.9g %.9g %.9g", s, b.mean, b.min, b.max)
          note(s, b.mean); note(s, b.min); note(s, b.max)
        end
        local dat = string.format("%s_g%d.dat", (png:gsub("%.png$", "")), gi)
        write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
        if #g.runs > 1 then
          plots[#plots + 1] = string.format("D.'%s' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder %s notitle",
                                            dat, band_style(gi))
        end
        plots[#plots + 1] = string.format("D.'%s' using 1:2 with linespoints pi %d ps 0.8 lw %g %s title %s", dat,
                                          pi, lw, style, title)
      end
    end
  end
  if n == 0 then return nil end
  local axis, note_text = "", nil
  local is_loss = key:match("loss") ~= nil
  if is_loss and ctx.opts.loss_axis == "log" then
    axis = "set logscale y\n"
    note_text = "log-scale loss axis"
  elseif is_loss and ctx.opts.loss_axis ~= "full" then
    local lo, hi = clipped_range(all)
    if lo then
      axis = string.format("set yrange [%.9g:%.9g]\n", lo, hi)
      note_text = string.format("loss axis clipped at %.4g: a spike above it runs off the top (--loss-axis full shows it)", hi)
    end
  end
  local key, w, h = key_layout(titles, 1000, 560)
  ctx.script[#ctx.script + 1] = string.format(HEAD, w, h, png) .. axis .. key .. [[
set xlabel 'step'
set grid
plot ]] .. table.concat(plots, ", \\\n     ") .. "\n" .. FOOT
  return png, note_text
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

-- The final metric against one varied key: categories of that key on x, one
-- series per combination of the other varied keys, each point the mean over
-- seeds with its 95% CI (t) as an error bar. Points are not joined (the
-- categories are not a continuum) and series are offset sideways so bars
-- never hide each other. The best arm and the baseline are ringed.
local function axis_plot(ctx, ki, key, png)
  local short = results.short_names(ctx.keys)
  local cats, cat_index = {}, {}
  for _, g in ipairs(ctx.groups) do
    local v = g.values[key] or "-"
    if not cat_index[v] then cat_index[v] = true; cats[#cats + 1] = v end
  end
  sort_values(cats)
  for i, v in ipairs(cats) do cat_index[v] = i end
  local series, order = {}, {}
  for gi, g in ipairs(ctx.groups) do
    local parts = {}
    for _, k in ipairs(ctx.keys) do
      if k ~= key then parts[#parts + 1] = short[k] .. "=" .. tostring(g.values[k] or "-") end
    end
    local label = #parts > 0 and table.concat(parts, ",") or ctx.metric
    if not series[label] then series[label] = {}; order[#order + 1] = label end
    series[label][#series[label] + 1] = gi
  end
  local ns = #order
  local width = math.min(0.6, 0.12 * ns)
  local plots, marked, titles = {}, {}, {}
  for si, label in ipairs(order) do
    local lines = { "# x mean low high" }
    for _, gi in ipairs(series[label]) do
      local row = ctx.rows[gi]
      if row.final_mean then
        local x = cat_index[ctx.groups[gi].values[key] or "-"] + (ns > 1 and (si - 1) / (ns - 1) - 0.5 or 0) * width
        local half = row.final_ci or 0
        lines[#lines + 1] = string.format("%.6f %.9g %.9g %.9g", x, row.final_mean, row.final_mean - half, row.final_mean + half)
        if ctx.best == gi then marked.best = string.format("%.6f %.9g", x, row.final_mean) end
        if ctx.baseline == gi then marked.baseline = string.format("%.6f %.9g", x, row.final_mean) end
      end
    end
    if #lines > 1 then
      local dat = string.format("axis%d_s%d.dat", ki, si)
      write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
      local gi = series[label][1]
      local colour_index = ns > 1 and si or gi
      plots[#plots + 1] = string.format("D.'%s' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 %s title %s", dat,
                                        (arm_style(colour_index)), safe_label(label))
      titles[#titles + 1] = safe_label(label)
    end
  end
  if #plots == 0 then return nil end
  for what, pt in pairs { best = 6, baseline = 4 } do
    if marked[what] then
      local dat = string.format("axis%d_%s.dat", ki, what)
      write_file(ctx.dir .. "/" .. dat, "# x mean\n" .. marked[what] .. "\n")
      plots[#plots + 1] = string.format("D.'%s' using 1:2 with points pt %d ps 3.5 lw 2 lc rgb 'black' title '%s'",
                                        dat, pt, what)
    end
  end
  local tics = {}
  for i, v in ipairs(cats) do tics[#tics + 1] = string.format("%s %d", safe_label(v), i) end
  local legend, w, h = key_layout(titles, 900, 520)  -- `key` stays the ablation axis
  ctx.script[#ctx.script + 1] = string.format(HEAD, w, h, png) .. legend .. string.format([[
set xlabel %s
set xrange [0.4:%f]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics (%s)
set grid ytics
plot %s
]], safe_label(key), #cats + 0.6, table.concat(tics, ", "), table.concat(plots, ", \\\n     ")) .. FOOT
  return png
end

-- Head usage over time for one arm: a panel per layer, evaluation steps
-- across, one row per (seed, group, expert) down, colour = the expert's share
-- of its group's tokens. Seeds are never averaged, so one seed's collapse
-- stays visible.
local function usage_plot(ctx, gi, g, png)
  local ids = run_ids(g)
  local rows = ctx.db:query([[SELECT run_id, step, layer, grp, expert, frac FROM head_usage
      WHERE run_id IN ]] .. results.in_list(ids) .. " ORDER BY layer, run_id, grp, expert, step")
  if #rows == 0 then return nil end
  local seed_index = {}
  for i, id in ipairs(ids) do seed_index[id] = i end
  local layers, maxg, maxe, steps, step_seen = {}, 0, 0, {}, {}
  for _, r in ipairs(rows) do
    layers[r.layer] = layers[r.layer] or {}
    table.insert(layers[r.layer], r)
    maxg, maxe = math.max(maxg, r.grp), math.max(maxe, r.expert)
    if not step_seen[r.step] then step_seen[r.step] = true; steps[#steps + 1] = r.step end
  end
  table.sort(steps)
  local step_x = {}
  for i, s in ipairs(steps) do step_x[s] = i end
  local per_seed = (maxg + 1) * (maxe + 1) + 1     -- one empty row between seeds
  local list = {}
  for l in pairs(layers) do list[#list + 1] = l end
  table.sort(list)
  local cols = math.min(#list, 4)
  local nrows = (#list + cols - 1) // cols
  local ytics = {}
  for si, id in ipairs(ids) do
    for gg = 0, maxg do
      for e = 0, maxe do
        if #ids * per_seed <= 40 or e == 0 then
          ytics[#ytics + 1] = string.format("'s%d g%de%d' %d", si, gg, e, (si - 1) * per_seed + gg * (maxe + 1) + e)
        end
      end
    end
  end
  local xtics, every = {}, math.max(1, #steps // 6)
  for i, s in ipairs(steps) do
    if (i - 1) % every == 0 or i == #steps then xtics[#xtics + 1] = string.format("'%d' %d", s, i) end
  end
  local panels = {}
  for _, l in ipairs(list) do
    local dat = string.format("usage_g%d_l%d.dat", gi, l)
    local lines = { "# step_index row frac" }
    for _, r in ipairs(layers[l]) do
      local y = (seed_index[r.run_id] - 1) * per_seed + r.grp * (maxe + 1) + r.expert
      lines[#lines + 1] = string.format("%d %d %.6f", step_x[r.step], y, tonumber(r.frac) or 0)
    end
    write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
    panels[#panels + 1] = string.format([[
set title 'layer %d'
plot D.'%s' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
]], l, dat)
  end
  local height = math.max(220, math.min(900, 14 * #ids * per_seed + 120))
  ctx.script[#ctx.script + 1] = string.format(HEAD, 330 * cols + 160, height * nrows + 40, png) .. string.format([[
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:%f]
set yrange [%f:-0.5] reverse
set xtics (%s)
set ytics (%s) font ',7'
set multiplot layout %d,%d
%sunset multiplot
]], #steps + 0.5, #ids * per_seed - 0.5, table.concat(xtics, ", "), table.concat(ytics, ", "), nrows, cols,
    table.concat(panels)) .. FOOT
  return png
end

-- routing/entropy_l<i> or routing/cv_l<i> over steps: a panel per layer, per
-- arm the mean over seeds with a min..max band (or one line per seed with
-- --curves seeds), so one seed's collapse stays visible; the last panel holds
-- the legend, in the arms' styles of the loss curves.
local function routing_plot(ctx, prefix, png)
  local layers, seen = {}, {}
  for _, r in ipairs(ctx.runs) do
    for k in pairs(r.metrics) do
      local l = k:match("^" .. prefix:gsub("%p", "%%%0") .. "(%d+)$")
      if l and not seen[l] then seen[l] = true; layers[#layers + 1] = tonumber(l) end
    end
  end
  if #layers == 0 then return nil end
  table.sort(layers)
  local cols = math.min(#layers + 1, 4)
  local nrows = (#layers + 1 + cols - 1) // cols
  local panels, legend = {}, {}
  for _, l in ipairs(layers) do
    local plots = {}
    for gi, g in ipairs(ctx.groups) do
      local c = curves(ctx.db, run_ids(g), prefix .. l)
      local style, lw = arm_style(gi), (ctx.best == gi or ctx.baseline == gi) and 3 or 1.5
      if #c.steps > 0 then
        if ctx.opts.curves == "seeds" then
          for ri, r in ipairs(g.runs) do
            local lines = { "# step value" }
            for _, s in ipairs(c.steps) do
              if c.by_run[r.id][s] then lines[#lines + 1] = string.format("%d %.9g", s, c.by_run[r.id][s]) end
            end
            local dat = string.format("%s_l%d_g%d_r%d.dat", (png:gsub("%.png$", "")), l, gi, ri)
            write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
            plots[#plots + 1] = string.format("D.'%s' using 1:2 with linespoints lw %g %s notitle", dat, lw, style)
          end
        else
          local lines = { "# step mean min max" }
          for _, s in ipairs(c.steps) do
            local b = c.stat[s]
            lines[#lines + 1] = string.format("%d %.9g %.9g %.9g", s, b.mean, b.min, b.max)
          end
          local dat = string.format("%s_l%d_g%d.dat", (png:gsub("%.png$", "")), l, gi)
          write_file(ctx.dir .. "/" .. dat, table.concat(lines, "\n") .. "\n")
          if #g.runs > 1 then
            plots[#plots + 1] = string.format("D.'%s' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder %s notitle",
                                              dat, band_style(gi))
          end
          plots[#plots + 1] = string.format("D.'%s' using 1:2 with linespoints lw %g %s notitle", dat, lw, style)
        end
        if not legend[gi] then
          legend[gi] = string.format("NaN with linespoints lw %g %s title %s", lw, style, safe_label(g.label .. marks(ctx, gi)))
        end
      end
    end
    if #plots > 0 then
      panels[#panels + 1] = string.format("set title 'layer %d'\nplot %s\n", l, table.concat(plots, ", \\\n     "))
    end
  end
  local keys = {}
  for gi = 1, #ctx.groups do if legend[gi] then keys[#keys + 1] = legend[gi] end end
  panels[#panels + 1] = "unset title\nunset border\nunset tics\nunset xlabel\nunset grid\nset yrange [0:1]\n" ..
    "set key center center font ',9' samplen 4\nplot " .. table.concat(keys, ", \\\n     ") .. "\n"
  ctx.script[#ctx.script + 1] = string.format(HEAD, 400 * cols, 320 * nrows + 40, png) .. string.format([[
set xlabel 'step'
set grid
set multiplot layout %d,%d
%sunset multiplot
]], nrows, cols, table.concat(panels)) .. FOOT
  return png
end

local function fmt(v, f) return v and string.format(f, v) or "-" end

-- Index of the best group (lowest final metric, highest for throughput-like
-- metrics) among those with a value.
local function best_group(rows, metric)
  local higher = results.higher_is_better(metric)
  local best
  for i, r in ipairs(rows) do
    if r.final_mean and (not best or (higher and r.final_mean > rows[best].final_mean)
                                  or (not higher and r.final_mean < rows[best].final_mean)) then
      best = i
    end
  end
  return best
end

-- Writes the report; returns the path of index.html. opts: out (directory),
-- metric (default val/loss), baseline (a group label or run name), curves
-- ("mean" or "seeds"), loss_axis ("clip", "log" or "full").
function report.generate(db, experiment, opts)
  opts = opts or {}
  local metric = opts.metric or "val/loss"
  opts.curves = opts.curves or "mean"
  opts.loss_axis = opts.loss_axis or "clip"
  if opts.curves ~= "mean" and opts.curves ~= "seeds" then fail("--curves must be mean or seeds, got '%s'", opts.curves) end
  if opts.loss_axis ~= "clip" and opts.loss_axis ~= "log" and opts.loss_axis ~= "full" then
    fail("--loss-axis must be clip, log or full, got '%s'", opts.loss_axis)
  end
  local runs, others = results.runs(db, experiment)
  if #runs == 0 and #others == 0 then results.unknown_experiment(db, experiment) end
  if #runs > 0 then
    local known, found = results.metric_keys(runs), false
    for _, k in ipairs(known) do if k == metric then found = true end end
    if not found then
      fail("unknown metric '%s'; metrics of experiment '%s': %s", metric, experiment, table.concat(known, ", "))
    end
  end
  if not report.have_gnuplot() then
    fail("gnuplot not found: install it (apt-get install gnuplot-nox, or `make deps`)")
  end
  local dir = opts.out or ("reports/" .. require("gqe.paths").component(experiment))
  if not run({ "mkdir", "-p", "--", dir }) then fail("cannot create directory %s", dir) end
  local groups, keys = results.groups(runs)
  local rows = results.summarize(groups, metric)
  local ctx = { db = db, dir = dir, runs = runs, groups = groups, keys = keys, rows = rows, script = {},
                metric = metric, opts = opts }
  ctx.best = best_group(rows, metric)
  if opts.baseline then
    local base = results.apply_baseline(rows, groups, opts.baseline)
    for i, r in ipairs(rows) do if r == base then ctx.baseline = i end end
  end

  local curves_out = {}
  local function curve(key, caption)
    local png, note = curve_plot(ctx, key, string.format("curve%d.png", #curves_out + 1))
    if png then curves_out[#curves_out + 1] = { png = png, caption = caption, note = note } end
  end
  local band = opts.curves == "seeds" and "one line per seed" or "mean over seeds, band = min..max over seeds"
  curve("train/loss", "train/loss (" .. band .. ")")
  if metric ~= "train/loss" then curve(metric, metric .. " (" .. band .. ")") end
  local axes = {}
  for ki, k in ipairs(keys) do
    axes[#axes + 1] = { key = k, png = axis_plot(ctx, ki, k, string.format("axis%d.png", ki)) }
  end
  local usage = {}
  for gi, g in ipairs(groups) do
    usage[#usage + 1] = { gi = gi, label = g.label, png = usage_plot(ctx, gi, g, string.format("usage_g%d.png", gi)) }
  end
  local entropy = routing_plot(ctx, "routing/entropy_l", "routing_entropy.png")
  local cv = routing_plot(ctx, "routing/cv_l", "routing_cv.png")

  if #ctx.script > 0 then
    -- D: the directory of this script, so no path is written into it.
    write_file(dir .. "/plots.gp", "D = ARG0[1:strlen(ARG0) - strlen('plots.gp')]\n" .. table.concat(ctx.script, "\n"))
    os.remove(dir .. "/gnuplot.log")   -- this run's messages only (output is appended)
    if not run({ "gnuplot", "-c", dir .. "/plots.gp" }, dir .. "/gnuplot.log") then
      local f = io.open(dir .. "/gnuplot.log")
      local log = f and f:read("a") or ""
      if f then f:close() end
      fail("gnuplot failed on %s/plots.gp:\n%s", dir, log)
    end
  end
  local function shown(png) return png and exists(dir .. "/" .. png) end

  -- The report is a function of the database alone (rebuilding it from the
  -- same log gives the same files), so it dates its data, not itself.
  local function latest_activity(...)
    local t
    for _, list in ipairs { ... } do
      for _, r in ipairs(list) do
        local v = tonumber(r.ended) or tonumber(r.started)
        if v and (not t or v > t) then t = v end
      end
    end
    return t and os.date("!%Y-%m-%d %H:%M UTC", math.floor(t)) or "-"
  end
  local h = {}
  local function w(...) for _, s in ipairs { ... } do h[#h + 1] = s end end
  local function img(png, alt)
    if shown(png) then w('<img src="', png, '" alt="', html_escape(alt), '">\n') end
  end
  w("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>", html_escape(experiment), " - gqe report</title>\n<style>",
    "body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;margin:1em 0}",
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}",
    "img{max-width:100%;display:block;margin:1em 0}code{background:#f4f4f4;padding:1px 4px}",
    ".warn{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 12px}",
    ".sw{display:inline-block;width:14px;height:14px;margin-right:6px;vertical-align:middle}",
    ".best{font-weight:bold}.tag{font-size:80%;background:#eee;border-radius:3px;padding:0 4px;margin-left:4px}",
    "caption{caption-side:bottom;text-align:left;color:#555;font-size:90%}",
    "</style></head><body>\n")
  w("<h1>Experiment ", html_escape(experiment), "</h1>\n")
  w("<p>", tostring(#runs), " runs counted in ", tostring(#groups), " arms",
    #keys > 0 and (" varying <code>" .. html_escape(table.concat(keys, ", ")) .. "</code>") or "",
    ". Counted: the latest finished row of each distinct config",
    #others > 0 and ("; not counted: " .. html_escape(results.not_counted_text(others))) or "",
    ". Runs up to ", latest_activity(runs, others), ".</p>\n")
  local few = results.few_seeds_text(rows)
  if few then
    w('<p class="warn"><b>Fewer than 3 seeds</b> in ', html_escape(few),
      ": their 95% confidence intervals are wide (n=2) or undefined (n=1). Add seeds before drawing conclusions.</p>\n")
  end

  w("<h2>Summary</h2>\n<table><tr><th>arm</th><th>seeds</th><th>final ", html_escape(metric),
    " (mean +- std)</th><th>95% CI</th><th>best ", html_escape(metric), "</th>",
    ctx.baseline and "<th>final - baseline (95% CI)</th>" or "", "<th>tokens/s</th><th>active heads</th></tr>\n")
  for i, r in ipairs(rows) do
    local tags = ""
    if ctx.best == i then tags = tags .. '<span class="tag">best</span>' end
    if ctx.baseline == i then tags = tags .. '<span class="tag">baseline</span>' end
    w("<tr", ctx.best == i and ' class="best"' or "", '><td><span class="sw" style="background:', report.colour(i),
      '"></span>', html_escape(r.group), tags, "</td><td>", tostring(r.n), "</td><td>",
      results.pm(r.final_mean, r.final_std, "%.4f"), "</td><td>", results.ci_text(r.final_mean, r.final_ci, "%.4f"),
      "</td><td>", results.pm(r.best_mean, r.best_std, "%.4f"), "</td>")
    if ctx.baseline then
      local d = r.diff
      w("<td>", (ctx.baseline == i or not d) and "-" or
        (string.format("%+.4f", d.mean) .. (d.ci95 and string.format(" +- %.4f", d.ci95) or "")), "</td>")
    end
    w("<td>", results.pm(r.tps_mean, r.tps_std, "%.0f"), "</td><td>",
      r.heads and string.format("%g", r.heads) or "-", "</td></tr>\n")
  end
  w("<caption>95% CI: the mean's confidence interval from Student's t over the seeds. ",
    "Best: the lowest final ", html_escape(metric), " (highest for throughput-like metrics).</caption></table>\n")

  w("<h2>Curves</h2>\n")
  for _, c in ipairs(curves_out) do
    w("<h3>", html_escape(c.caption), "</h3>\n")
    if c.note then w("<p><i>", html_escape(c.note), "</i></p>\n") end
    img(c.png, c.caption)
  end
  if #keys > 0 then
    w("<h2>Final ", html_escape(metric), " by ablation axis</h2>\n<p>Mean over seeds with its 95% CI; ",
      "series are offset sideways so bars stay apart; points are not joined.</p>\n")
    for _, a in ipairs(axes) do
      if shown(a.png) then
        w("<h3>by <code>", html_escape(a.key), "</code></h3>\n")
        img(a.png, metric .. " by " .. a.key)
      end
    end
  end
  if shown(entropy) or shown(cv) then
    w("<h2>Routing balance per layer</h2>\n<p>Entropy of each group's expert load divided by log M ",
      "(1 = balanced) and its coefficient of variation (0 = balanced), mean over seeds.</p>\n")
    img(entropy, "routing entropy per layer")
    img(cv, "routing cv per layer")
  end
  local any_usage = false
  for _, u in ipairs(usage) do if shown(u.png) then any_usage = true end end
  if any_usage then
    w("<h2>Head usage over time</h2>\n<p>Per arm and layer: each row is one expert of one group of one seed ",
      "(s = seed, g = group, e = expert), each column an evaluation step, colour = the expert's share of ",
      "its group's tokens. Seeds are shown separately, never averaged.</p>\n")
    for _, u in ipairs(usage) do
      if shown(u.png) then
        w('<h3><span class="sw" style="background:', report.colour(u.gi), '"></span>', html_escape(u.label), "</h3>\n")
        img(u.png, "head usage " .. u.label)
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
    w("<tr><td>", html_escape(r.name), "</td><td>", tostring(r.id), "</td><td>", html_escape(r.status),
      r.reason == "superseded" and " (superseded)" or " (not counted)", "</td><td>",
      tostring(r.step), "</td><td colspan=\"4\">", html_escape((r.error or ""):match("^[^\n]*")), "</td></tr>\n")
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

report.spec = {
  usage = "gqe report EXPERIMENT [--out DIR] [--metric KEY] [--baseline NAME] [--curves mean|seeds] "
    .. "[--loss-axis clip|log|full] [--db PATH]",
  about = "writes reports/EXPERIMENT/index.html (or DIR/index.html): curves per arm, the final metric with "
    .. "95% CIs against each varied key, routing balance per layer, head usage over time",
  flags = {
    { "out", value = "DIR", help = "output directory (default reports/EXPERIMENT)" },
    { "metric", value = "KEY", help = "the metric to compare (default val/loss)" },
    { "baseline", value = "NAME", help = "a group label or run name, marked and compared against" },
    { "curves", value = "mean|seeds", help = "mean over seeds with a band (default), or one line per seed" },
    { "loss-axis", value = "clip|log|full", help = "clip spikes (default), log scale, or the whole range" },
  },
  args = { min = 1, max = 1, names = "EXPERIMENT" },
}

-- The command; returns the exit code.
function report.main(args)
  local flags, pos = argv.parse(report.spec, args)
  if flags.help then io.stdout:write(argv.help(report.spec), "\n"); return 0 end
  local path = require("gqe.train").db_path(flags.db)
  local f = io.open(path, "rb")
  if not f then fail("no run log at %s (train something first, or pass --db PATH / set GQE_DB)", path) end
  f:close()
  local index = report.write(pos[1], { db = path, out = flags.out, metric = flags.metric, baseline = flags.baseline,
                                       curves = flags.curves, loss_axis = flags["loss-axis"] })
  io.stdout:write("report written to ", index, "\n")
  return 0
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
