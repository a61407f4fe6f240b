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

-- Where this file's directory is, so the scripts run from any directory.
arms.dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
return arms
