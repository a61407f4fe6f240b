-- GPU/CPU parity of a whole training run (make test-cuda): the same model,
-- seed and batches trained for 200 steps in f32 on both devices; the loss
-- curves must agree within 1e-3 at every step.
local gqe = require "gqe"
--   build/gqe tests/gpu/train_parity.lua [steps] [attention] [router] [data] [lr]
-- data is "recall" or a text file's path.
local steps = tonumber(arg and arg[1]) or 200
local attention, router, kind = arg[2] or "gqe", arg[3] or "softmax", arg[4] or "recall"
local lr = tonumber(arg[5]) or 1e-3

local run = dofile((arg[0]:match("^(.*/)") or "./") .. "curve.lua")

local function curve(device)
  local ds = kind == "recall" and gqe.data.open{kind = "recall", seed = 3, vocab = 64}
             or gqe.data.open{kind = "text", path = kind, seed = 3}
  local losses, lm = run{data = ds, steps = steps, lr = lr, batch = 8, seq = 64,
                         model = {vocab = ds:vocab(), dim = 64, layers = 2, max_seq = 64, attention = attention,
                                  experts = 8, groups = 4, k = 1, head_dim = 16, seed = 7, device = device,
                                  router = router}}
  lm:close()
  return losses
end

if not gqe.cuda_available() then print("skipped: no CUDA device"); os.exit(77) end
local cpu, gpu = curve("cpu"), curve("cuda")
local worst, at = 0, 0
for i = 1, steps do
  local d = math.abs(cpu[i] - gpu[i])
  if d > worst then worst, at = d, i end
  if i % 10 == 0 or i <= 3 then print(string.format("step %3d  cpu %.6f  gpu %.6f  diff %.2e", i, cpu[i], gpu[i], d)) end
end
print(string.format("train parity (%s, %s router): %d steps, first loss %.5f / %.5f, last %.5f / %.5f, max |cpu - gpu| = %.2e at step %d",
  attention, router, steps, cpu[1], gpu[1], cpu[steps], gpu[steps], worst, at))
if worst > 1e-3 then print("FAIL: loss curves differ by more than 1e-3"); os.exit(1) end
