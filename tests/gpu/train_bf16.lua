-- bf16 mixed precision on the GPU (make test-cuda): the same model, seed and
-- batches trained in fp32 and in bf16; master weights, gradients and
-- optimizer state must stay f32, and the bf16 loss curve must follow the
-- fp32 one. bf16 rounds activations to 8 bits of mantissa, so single steps
-- early in training (where the loss falls fastest) can differ by ~0.2, and
-- the dense model's loss spike near step 14 at lr 1e-3 is chaotic: over
-- five runs of one day its bf16-fp32 gap at that step ranged from 0.09 to
-- 1.39 (the atomics of the embedding and norm gradients add in a varying
-- order). So the curves are compared as 10-step means after the first 20
-- steps, and by their last 20 steps.
--   build/gqe tests/gpu/train_bf16.lua [steps] [attention] [data] [lr]
local gqe = require "gqe"
local steps = tonumber(arg and arg[1]) or 200
local attention, path = arg[2] or "gqe", arg[3] or "data/brown.txt"
local lr = tonumber(arg[4]) or 1e-3
local WINDOW, WINDOW_TOL, TAIL_TOL = 10, 0.1, 0.02   -- 10-step means (absolute); last 20 (relative)
local WARMUP = 20                                     -- steps before the 10-step means are compared

local run = dofile((arg[0]:match("^(.*/)") or "./") .. "curve.lua")

local function curve(precision)
  local ds = gqe.data.open{kind = "text", path = path, seed = 3}
  local losses, lm = run{data = ds, steps = steps, lr = lr, batch = 8, seq = 128,
                         model = {vocab = ds:vocab(), dim = 128, layers = 2, max_seq = 128, attention = attention,
                                  experts = 8, groups = 4, k = 1, head_dim = 32, seed = 7, device = "cuda",
                                  precision = precision}}
  assert(lm:config().precision == precision, "LM precision not applied")
  local params, grads = lm:parameters()   -- the flat buffers the optimizer updates
  if params:dtype() ~= "f32" or grads:dtype() ~= "f32" then
    error(string.format("master weights are %s and gradients %s, expected f32", params:dtype(), grads:dtype()))
  end
  lm:close()
  return losses
end

if not gqe.cuda_available() then print("skipped: no CUDA device"); os.exit(77) end
local f32 = curve("fp32")
local b16 = curve("bf16")
local worst, at = 0, 0
for i = 1, steps do
  local d = math.abs(f32[i] - b16[i])
  if d > worst then worst, at = d, i end
  if i % 20 == 0 or i <= 2 then print(string.format("step %3d  fp32 %.5f  bf16 %.5f  diff %.2e", i, f32[i], b16[i], d)) end
end
if steps < 50 then print("short run (memcheck): curves not compared"); os.exit(0) end
local wworst, wat = 0, 0
for w0 = WARMUP + 1, steps - WINDOW + 1, WINDOW do
  local a, b = 0, 0
  for i = w0, w0 + WINDOW - 1 do a, b = a + f32[i], b + b16[i] end
  local d = math.abs(a - b) / WINDOW
  if d > wworst then wworst, wat = d, w0 end
end
local function tail(c) local s = 0; for i = steps - 19, steps do s = s + c[i] end; return s / 20 end
local rel = math.abs(tail(b16) - tail(f32)) / tail(f32)
print(string.format("bf16 vs fp32 (%s): %d steps, first %.4f / %.4f, mean of last 20 %.4f / %.4f (rel %.2e), "
  .. "max |diff| of %d-step means %.2e (steps %d-%d), of single steps %.2e at step %d", attention, steps, f32[1], b16[1],
  tail(f32), tail(b16), rel, WINDOW, wworst, wat, wat + WINDOW - 1, worst, at))
local ok = true
if wworst > WINDOW_TOL then print(string.format("FAIL: %d-step means differ by more than %.2g", WINDOW, WINDOW_TOL)); ok = false end
if rel > TAIL_TOL then print(string.format("FAIL: final losses differ by more than %.0f%%", TAIL_TOL * 100)); ok = false end
if not (tail(b16) < b16[1] - 1.0) then print("FAIL: bf16 training did not lower the loss"); ok = false end
os.exit(ok and 0 or 1)
