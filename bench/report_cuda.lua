-- Prints the GPU benchmark table (ours against PyTorch on the same GPU, same
-- run) from bench/run_cuda.sh's JSON lines and stores every ratio in the
-- bench table of the run log (GQE_DB or runs.db).
--   build/gqe bench/report_cuda.lua build/bench_cuda.jsonl
local gqe = require "gqe"
local path = arg[1] or "build/bench_cuda.jsonl"
local rows = {}
for line in io.lines(path) do
  if line:match("^%s*{") then
    local ok, r = pcall(gqe.json.decode, line)
    if ok and type(r) == "table" then rows[#rows + 1] = r end
  end
end

local function find(pred)
  for _, r in ipairs(rows) do if pred(r) then return r end end
end

local db_ok, db = pcall(gqe.db.open, os.getenv("GQE_DB") or "runs.db")
local commit = gqe.git_commit and gqe.git_commit() or nil
local function store(name, key, value, unit, baseline, notes)
  if db_ok then
    pcall(db.bench, db, {name = name, key = key, value = value, unit = unit, baseline = baseline,
                         device = "cuda", git_commit = commit, notes = notes})
  end
end

print(string.format("%-34s %10s %10s %10s %9s", "attention core (bf16, causal, D=64)", "S", "ours ms", "torch ms", "speedup"))
for _, pass in ipairs({"fwd", "fwd+bwd"}) do
  local tb = pass == "fwd" and "attn_core_fwd" or "attn_core_fwdbwd"
  for _, kind in ipairs({"gqe", "gqa"}) do
    for _, r in ipairs(rows) do
      if r.bench == "attn_core" and r.kind == kind and r.pass == pass then
        local t = find(function(x) return x.bench == tb and x.S == r.S end)
        local speed = t and t.ms / r.ms or nil
        print(string.format("%-34s %10d %10.3f %10s %9s", "ours " .. kind .. " vs SDPA gqa16 " .. pass, r.S, r.ms,
          t and string.format("%.3f", t.ms) or "-", speed and string.format("%.2fx", speed) or "-"))
        store("attn_core_" .. kind .. "_" .. pass, "S=" .. r.S, r.ms, "ms", t and t.ms or nil,
              "baseline: PyTorch SDPA dense GQA, 16 query heads")
      end
    end
  end
end
print()
-- Training: ours against the fastest PyTorch row of each kind at the same S
-- (every formulation and compile mode that bench/torch_baseline.py measured),
-- among the rows that pass keep(row) when given.
local function fastest(kind, S, keep)
  local best
  for _, x in ipairs(rows) do
    if x.bench == "train_torch" and x.kind == kind and x.S == S and x.tokens_per_s and (not keep or keep(x))
       and (not best or x.tokens_per_s > best.tokens_per_s) then best = x end
  end
  return best
end
-- Under CUDA graphs the allocated bytes miss the graph pool: such a row says
-- its memory only with its reserved bytes, so memory is compared with the
-- fastest row whose count holds everything.
local function memory_known(x) return not x.cuda_graphs or x.peak_reserved_gib ~= nil end
local function torch_text(t)
  return t and string.format("%.0f tok/s (%s, %s)", t.tokens_per_s, t.model, t.mode) or "-"
end
local gpu = (find(function(x) return x.gpu end) or {}).gpu or "GPU"
for _, r in ipairs(rows) do
  if r.bench == "train" and r.kind == "gqe" then
    local S = r.S or 2048
    local tg, td = fastest("gqe", S), fastest("gqa", S)
    local dense = find(function(x) return x.bench == "train" and x.kind == "gqa" and (x.S or 2048) == S end)
    print(string.format("train S=%d B=%d (%s, %s): ours GQE %.0f tok/s, %.2f GiB, MFU %.1f%% (dense FLOPs) / %.1f%% (computed)%s",
      S, r.B or 8, r.precision, gpu, r.tokens_per_s, r.peak_gib or 0, 100 * (r.mfu_dense_989 or 0),
      100 * r.mfu_989, dense and string.format("; ours dense GQA %.0f tok/s", dense.tokens_per_s) or ""))
    local tm = fastest("gqe", S, memory_known)
    print(string.format("    fastest PyTorch GQE: %s -> %s", torch_text(tg),
      tg and string.format("ours %.2fx (1.3x, the lead aimed at, would be %.0f tok/s)", r.tokens_per_s / tg.tokens_per_s,
        1.3 * tg.tokens_per_s) or "-"))
    if tm then
      print(string.format("    memory: ours %.2f GiB, PyTorch %.2f GiB (%s, %s%s) -> %.2fx", r.peak_gib or 0, tm.peak_mem_gib,
        tm.model, tm.mode, tm.cuda_graphs and ", reserved bytes" or "", (r.peak_gib or 0) / tm.peak_mem_gib))
    end
    print(string.format("    fastest PyTorch dense GQA: %s -> %s", torch_text(td),
      td and string.format("ours GQE %.2fx", r.tokens_per_s / td.tokens_per_s) or "-"))
    store("train_gqe", "S=" .. S .. " tokens_per_s", r.tokens_per_s, "tokens/s", tg and tg.tokens_per_s or nil,
          "baseline: fastest PyTorch GQE " .. (tg and (tg.model .. " " .. tg.mode) or "-"))
    store("train_gqe_vs_dense", "S=" .. S .. " tokens_per_s", r.tokens_per_s, "tokens/s", td and td.tokens_per_s or nil,
          "baseline: fastest PyTorch dense GQA " .. (td and td.mode or "-"))
    if r.peak_gib then
      store("train_gqe", "S=" .. S .. " peak_gib", r.peak_gib, "GiB", tm and tm.peak_mem_gib or nil,
            r.precision .. "; baseline: " .. (tm and (tm.model .. " " .. tm.mode) or "-"))
    end
  end
end
for _, r in ipairs(rows) do
  if r.bench == "layer_fwd" then
    local t = find(function(x) return x.bench == "layer_fwd_" .. r.kind and x.S == r.S end)
    local dense = find(function(x) return x.bench == "layer_fwd_gqa" and x.S == r.S end)
    local ours_dense = find(function(x) return x.bench == "layer_fwd" and x.kind == "gqa" and x.S == r.S end)
    print(string.format("layer forward %s S=%d (%s): ours %.3f ms (ours dense GQA %s), PyTorch %s ms, PyTorch dense GQA %s ms%s",
      r.kind, r.S, r.precision, r.ms, ours_dense and string.format("%.3f ms", ours_dense.ms) or "-",
      t and string.format("%.3f", t.ms) or "-", dense and string.format("%.3f", dense.ms) or "-",
      dense and string.format(" -> %.2fx over PyTorch dense", dense.ms / r.ms) or ""))
    store("layer_fwd_" .. r.kind, "S=" .. r.S, r.ms, "ms", dense and dense.ms or nil,
          "baseline: PyTorch dense GQA layer, bf16, torch.compile")
  end
end
