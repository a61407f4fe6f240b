-- The study's arms, said once for every task: overrides of the base model
-- (variant gqe, N=16 query-head experts in G=8 groups, k=1, softmax router).
-- Each list is one question; the base arm appears in several questions but
-- is one config, so it runs once per seed and task.
local arms = {}

-- The paper's comparison (its Table 2): dense GQA against the three variants.
arms.variants = {
  { ["model.attention"] = "gqa" },
  {},
  { ["model.variant"] = "hard_concat" },
  { ["model.variant"] = "weighted_concat" },
}
-- k: 1 or 2 of M=2 (G=8), and 1..4 of M=4 (G=4).
arms.k = {
  {}, { ["model.k"] = 2 },
  { ["model.groups"] = 4, ["model.k"] = 1 }, { ["model.groups"] = 4, ["model.k"] = 2 },
  { ["model.groups"] = 4, ["model.k"] = 3 }, { ["model.groups"] = 4, ["model.k"] = 4 },
}
-- G at fixed N=16 and k=1: M = 8, 4, 2.
arms.groups = { { ["model.groups"] = 2 }, { ["model.groups"] = 4, ["model.k"] = 1 }, {} }
-- Routers.
arms.router = {
  {}, { ["model.router"] = "sigmoid" }, { ["model.router"] = "balanced" },
  { ["model.router"] = "random" }, { ["model.router"] = "hash" },
}

-- Every distinct arm once, in question order.
function arms.all()
  local seen, out = {}, {}
  for _, q in ipairs { arms.variants, arms.k, arms.groups, arms.router } do
    for _, a in ipairs(q) do
      local keys = {}
      for k, v in pairs(a) do keys[#keys + 1] = k .. "=" .. tostring(v) end
      table.sort(keys)
      local id = table.concat(keys, ",")
      if not seen[id] then seen[id] = true; out[#out + 1] = a end
    end
  end
  return out
end

arms.seeds = { 1, 2, 3 }

-- The settings every experiment of the study shares; each script adds its
-- data, size and schedule (so a setting is said once and differs only
-- where the script says so).
local function merge(a, b)
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end
local shared = {
  -- balance_lr_scale: the study's balanced arm ran before the balanced
  -- router's learning rate had a scale of its own (default 0.1 since), at
  -- optim.lr; it keeps that rate, and so its runs' names and hashes.
  model = { attention = "gqe", variant = "gqe", router = "softmax", experts = 16, groups = 8, k = 1,
            balance_lr_scale = 1 },
  optim = { name = "adamw", beta1 = 0.9, beta2 = 0.95, weight_decay = 0.1 },
  schedule = { kind = "wsd" },
}
function arms.base(t)
  local out = {}
  for _, sec in ipairs { "data", "model", "optim", "schedule", "train", "eval" } do
    if shared[sec] or t[sec] then out[sec] = merge(shared[sec] or {}, t[sec]) end
  end
  return out
end
-- The GPT-2 Brown model of brown.lua and long.lua.
arms.brown_base = {
  data  = { kind = "shards", path = "data/brown_gpt2_train.bin", val_path = "data/brown_gpt2_val.bin" },
  model = { vocab = 50304, dim = 512, layers = 4, head_dim = 64 },
  optim = { lr = 1e-3 },
}

-- One experiment of the study: its runs over arm_list and the seeds, then
-- the summary table.
function arms.experiment(name, base, arm_list)
  local gqe = require "gqe"
  local runs = gqe.experiment { name = name, base = arms.base(base), arms = arm_list, seeds = arms.seeds }
  if runs.dry_run then return end
  print()
  print(gqe.summary_table(runs))
end

-- Where this file's directory is, so the scripts run from any directory.
arms.dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
return arms
