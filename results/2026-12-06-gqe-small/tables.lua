-- The study's tables, from its run log: one markdown table per question and
-- task, each arm's mean +- std over seeds, the 95% confidence interval of
-- the mean (Student's t) and, where a question has a reference arm, the
-- difference to it with Welch's 95% CI. Only counted runs are used (view
-- counted_runs: the latest finished row of each distinct config).
--   build/gqe results/2026-12-06-gqe-small/tables.lua [runs.db] > tables.md
local gqe = require "gqe"
local results = require "gqe.results"
local dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local arms = dofile(dir .. "/arms.lua")
local db = gqe.db.open(arg[1] or (dir .. "/runs.db"))
local STUDY = { "study-brown", "study-bytes", "study-recall", "study-recall-8", "study-long" }

local BASE = { ["model.attention"] = "gqe", ["model.variant"] = "gqe", ["model.router"] = "softmax",
               ["model.groups"] = "8", ["model.k"] = "1" }

local function spec(arm)
  local s = {}
  for k, v in pairs(BASE) do s[k] = v end
  for k, v in pairs(arm) do s[k] = tostring(v) end
  return s
end

-- A short name for an arm: its overrides, or "gqe G=8 k=1" for the base.
local function label(arm)
  local s = spec(arm)
  if s["model.attention"] == "gqa" then return "dense GQA (16 q, 8 kv)" end
  local parts = { s["model.variant"] }
  parts[#parts + 1] = "G=" .. s["model.groups"]
  parts[#parts + 1] = "k=" .. s["model.k"]
  if s["model.router"] ~= "softmax" then parts[#parts + 1] = s["model.router"] end
  return table.concat(parts, " ")
end

local function runs_of(experiment, arm)
  local all = results.runs(db, experiment)
  local s, out = spec(arm), {}
  for _, r in ipairs(all) do
    local ok = true
    for k, v in pairs(s) do
      if r.params[k] ~= v and not (s["model.attention"] == "gqa" and k ~= "model.attention" and k ~= "model.groups") then
        ok = false
      end
    end
    if ok then out[#out + 1] = r end
  end
  return out
end

local function values(runs, metric)
  local v = {}
  for _, r in ipairs(runs) do
    if metric == "tokens_per_s" then v[#v + 1] = r.tokens_per_s
    elseif metric == "routing_cv" then
      -- the final coefficient of variation of expert load, mean over layers
      local sum, n = 0.0, 0
      for k, m in pairs(r.metrics) do
        if k:match("^routing/cv_l%d+$") then sum, n = sum + m.last, n + 1 end
      end
      v[#v + 1] = n > 0 and sum / n or nil
    else local m = r.metrics[metric]; v[#v + 1] = m and m.last end
  end
  return v
end

local function stat(runs, metric)
  local mean, std, n = results.stats(values(runs, metric))
  return { mean = mean, std = std, n = n, ci = results.ci95(std, n) }
end

local function cell(s, fmt, with_ci)
  if s.mean == nil then return "-" end
  local t = string.format(fmt, s.mean)
  if s.std then t = t .. " ± " .. string.format(fmt, s.std) end
  if with_ci and s.ci then t = t .. " [" .. string.format(fmt, s.mean - s.ci) .. ", " .. string.format(fmt, s.mean + s.ci) .. "]" end
  return t
end

local function diff_cell(a, b, fmt)
  if a.mean == nil or b.mean == nil then return "-" end
  local d, ci = results.diff(a.mean, a.std, a.n, b.mean, b.std, b.n)
  if not d then return "-" end
  local t = string.format("%+" .. fmt:sub(2), d)
  if ci then t = t .. " [" .. string.format(fmt, d - ci) .. ", " .. string.format(fmt, d + ci) .. "]" end
  return t
end

-- columns: {title, metric, fmt, with_ci}; diff: {title, metric, fmt} against ref.
local function table_for(title, experiment, list, columns, ref, diff)
  print("#### " .. title .. "\n")
  local head = { "arm", "active heads", "seeds" }
  for _, c in ipairs(columns) do head[#head + 1] = c[1] end
  if ref then head[#head + 1] = "Δ " .. diff[1] .. " vs " .. label(ref) .. " [95% CI]" end
  print("| " .. table.concat(head, " | ") .. " |")
  print("|" .. string.rep("---|", #head))
  local ref_stat = ref and stat(runs_of(experiment, ref), diff[2])
  for _, arm in ipairs(list) do
    local runs = runs_of(experiment, arm)
    local row = { label(arm), tostring(runs[1] and runs[1].active_heads or "-"), tostring(#runs) }
    for _, c in ipairs(columns) do row[#row + 1] = cell(stat(runs, c[2]), c[3], c[4]) end
    if ref then row[#row + 1] = arm == ref and "(reference)" or diff_cell(stat(runs, diff[2]), ref_stat, diff[3]) end
    print("| " .. table.concat(row, " | ") .. " |")
  end
  print()
end

local brown_cols = {
  { "val loss [95% CI]", "val/loss", "%.4f", true }, { "bits/byte", "val/bpb", "%.4f" },
  { "cloze acc", "cloze/acc", "%.3f" }, { "cloze acc_norm", "cloze/acc_norm", "%.3f" },
  { "routing cv", "routing_cv", "%.3f" }, { "tokens/s", "tokens_per_s", "%.0f" },
}
local recall_cols = {
  { "recall acc [95% CI]", "val/acc", "%.4f", true }, { "val loss", "val/loss", "%.4f" },
  { "routing cv", "routing_cv", "%.3f" }, { "tokens/s", "tokens_per_s", "%.0f" },
}
local questions = {
  { "Variants (the paper's comparison)", arms.variants, arms.variants[1] },
  { "k: experts per group", arms.k, arms.k[1] },
  { "G: groups at N=16, k=1", arms.groups, arms.groups[3] },
  { "Router", arms.router, arms.router[1] },
}
local function known(experiment)
  for _, name in ipairs(results.experiments(db)) do if name == experiment then return true end end
  return false
end
-- --experiments: the study's experiments present in the run log, one a line.
if arg[2] == "--experiments" then
  for _, e in ipairs(STUDY) do if known(e) then print(e) end end
  return
end
if known("study-brown") then
  print("### Brown corpus, GPT-2 tokens\n")
  for _, q in ipairs(questions) do
    table_for(q[1], "study-brown", q[2], brown_cols, q[3], { "val loss", "val/loss", "%.4f" })
  end
end
if known("study-bytes") then
  print("### Brown corpus, bytes, on the CPU (bytes.lua)\n")
  table_for(questions[1][1], "study-bytes", arms.variants, brown_cols, arms.variants[1], { "val loss", "val/loss", "%.4f" })
end
for _, r in ipairs { { "study-recall-8", "Associative recall, 8 pairs in 64 tokens (recall8.lua)" },
                    { "study-recall", "Associative recall, 32 pairs in 256 tokens (recall.lua)" } } do
  if known(r[1]) then
    print("### " .. r[2] .. "\n")
    for _, q in ipairs(questions) do
      table_for(q[1], r[1], q[2], recall_cols, q[3], { "val loss", "val/loss", "%.4f" })
    end
  end
end
if known("study-long") then
  print("### Long context (8192 tokens per sequence)\n")
  local dense = { ["model.attention"] = "gqa" }  -- the reference row is this same arm
  table_for("Dense GQA against GQE", "study-long", { dense, {} },
            { { "val loss [95% CI]", "val/loss", "%.4f", true }, { "bits/byte", "val/bpb", "%.4f" },
              { "tokens/s", "tokens_per_s", "%.0f", true } },
            dense, { "val loss", "val/loss", "%.4f" })
end
