-- Training throughput on the GPU (make bench-cuda, part c): the 236M model of
-- the benchmark card (16 layers, dim 1024, N=16, G=8, k=1, head dim 64, MLP
-- 4096 gelu, vocab 50304, tied embeddings), or its dense GQA twin, on random
-- tokens, at one sequence length with 16K tokens per step. Prints one JSON
-- line per model.
--   build/gqe bench/train_cuda.lua [steps] [gqe|gqa|both] [bf16|fp32] [S]
-- bf16 is mixed precision (f32 master weights); fp32 honours GQE_CUDA_TF32.
-- MFU is given two ways: against the FLOPs of the dense GQA model of the same
-- size (what the model is "worth"), and against the FLOPs GQE computes.
local gqe = require "gqe"
local steps, which, precision, T = require("gqe.flags").positional(
  "build/gqe bench/train_cuda.lua [steps] [gqe|gqa|both] [bf16|fp32] [S]", arg, {
    { "steps", 10, int = 1 }, { "model", "both", choices = { "gqe", "gqa", "both" } },
    { "precision", "bf16", choices = { "bf16", "fp32" } }, { "S", 2048, int = 1 } })
local B, V = math.max(1, 16384 // T), 50304
local PEAK = 989e12 -- H100/H200 SXM dense bf16

local function model(kind)
  return gqe.nn.LM{vocab = V, dim = 1024, layers = 16, max_seq = T, attention = kind,
                   experts = 16, groups = 8, k = 1, head_dim = 64, mlp = "gelu",
                   mlp_hidden = 4096, tied = true, seed = 1, device = "cuda",
                   precision = precision}
end

local dense_flops -- FLOPs per token of the dense twin, computed once
local function run(kind)
  local lm = model(kind)
  if not dense_flops then
    if kind == "gqa" then dense_flops = lm:flops_per_token(T)
    else
      local d = gqe.nn.LM{vocab = V, dim = 1024, layers = 16, max_seq = T, attention = "gqa",
                          experts = 16, groups = 8, head_dim = 64, mlp = "gelu", mlp_hidden = 4096,
                          tied = true, seed = 1}
      dense_flops = d:flops_per_token(T)
      d:close()
    end
  end
  local opt = gqe.optim.AdamW(lm, {lr = 1e-4, beta1 = 0.9, beta2 = 0.95, weight_decay = 0.1})
  local tok, tgt = {}, {}
  for b = 1, B do
    tok[b], tgt[b] = {}, {}
    for t = 1, T do tok[b][t] = (b * 7919 + t * 104729) % V; tgt[b][t] = (b * 31 + t * 17) % V end
  end
  tok = gqe.tensor(tok, {dtype = "i32", device = "cuda"})
  tgt = gqe.tensor(tgt, {dtype = "i32", device = "cuda"})
  local function step()
    local loss = lm:loss(tok, tgt, 0.01)
    lm:backward()
    opt:clip(1.0)
    opt:step()
    opt:zero_grad()
    return loss
  end
  if gqe.cuda_memory then gqe.cuda_memory(true) end  -- peak from here: the whole training step
  step(); step()                      -- warm-up: allocations, cuBLAS plans
  gqe.profile_reset()                 -- GQE_PROFILE=1: time the measured steps only
  local t0 = gqe.clock()
  local loss
  for _ = 1, steps do loss = step() end -- loss is read back each step: a sync
  local dt = (gqe.clock() - t0) / steps
  local tps = B * T / dt
  local flops = lm:flops_per_token(T) * tps
  local mem = gqe.cuda_memory and gqe.cuda_memory() or {}
  print(string.format('{"bench": "train", "impl": "gqe_c", "kind": "%s", "precision": "%s", "S": %d, "B": %d, '
    .. '"tokens_per_s": %.0f, "step_ms": %.1f, "tflops": %.1f, "mfu_989": %.4f, "mfu_dense_989": %.4f, '
    .. '"params": %d, "loss": %.4f, "peak_gib": %.2f}',
    kind, precision == "bf16" and "bf16" or ("f32" .. (os.getenv("GQE_CUDA_TF32") == "1" and "+tf32" or "")),
    T, B, tps, dt * 1e3, flops / 1e12, flops / PEAK, dense_flops * tps / PEAK, lm:num_params(), loss,
    (mem.peak or 0) / 2^30))
  io.stdout:flush()
  -- Free both now: a model measured after this one must not count this
  -- one's AdamW moments (1.7 GiB) in its peak while they wait for the GC.
  opt:close()
  lm:close()
end

if which == "both" or which == "gqe" then run("gqe") end
if which == "both" or which == "gqa" then run("gqa") end
