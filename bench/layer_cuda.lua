-- Whole attention layer forward on the GPU (make bench-cuda, part b): prefill
-- of dim 1024, N=16, G=8, k=1, head dim 64, projections included, about 64K
-- tokens per call, GQE against dense GQA. Prints one JSON line per case.
--   build/gqe bench/layer_cuda.lua [bf16|fp32] [S ...]
-- bf16: bf16 input, weights and activations; fp32 honours GQE_CUDA_TF32.
local gqe = require "gqe"
local fail = require "gqe.fail"
local precision = "bf16"
local sizes = {}
for i = 1, #arg do
  local S = math.tointeger(tonumber(arg[i]))
  if arg[i] == "bf16" or arg[i] == "fp32" then precision = arg[i]
  elseif S and S >= 1 then sizes[#sizes + 1] = S
  else fail("'%s' is neither bf16, fp32 nor a sequence length\nusage: build/gqe bench/layer_cuda.lua [bf16|fp32] [S ...]", arg[i]) end
end
if #sizes == 0 then sizes = {2048, 8192} end

local function median(t) table.sort(t); return t[(#t + 1) // 2] end

for _, S in ipairs(sizes) do
  local B = math.max(1, 65536 // S)
  for _, kind in ipairs({"gqe", "gqa"}) do
    local layer = gqe.nn.GQEAttention{dim = 1024, experts = 16, groups = 8, k = 1, head_dim = 64,
                                      attention = kind, device = "cuda", seed = 1, precision = precision}
    local x = gqe.randn({B, S, 1024}, {seed = 2, device = "cuda", dtype = precision == "bf16" and "bf16" or "f32"})
    layer:forward(x); layer:forward(x)
    gqe.profile_reset()               -- GQE_PROFILE=1: time the measured calls only
    -- Median of 5 runs of 10 back-to-back calls: the one read-back that
    -- waits for the GPU is spread over 10 calls, as PyTorch's CUDA-event
    -- timing leaves the host's wait out.
    local times = {}
    for _ = 1, 5 do
      local t0, y = gqe.clock()
      for _ = 1, 10 do y = layer:forward(x) end
      y:get(1, 1, 1)                  -- reads back one value: waits for the GPU
      times[#times + 1] = (gqe.clock() - t0) / 10
    end
    print(string.format('{"bench": "layer_fwd", "impl": "gqe_c", "kind": "%s", "precision": "%s", "S": %d, "B": %d, "ms": %.3f}',
      kind, precision == "bf16" and "bf16" or ("f32" .. (os.getenv("GQE_CUDA_TF32") == "1" and "+tf32" or "")),
      S, B, 1e3 * median(times)))
    io.stdout:flush()
    layer:close()
  end
end
