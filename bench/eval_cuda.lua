-- Multiple-choice evaluation speed of the 236M model (the README's GPU
-- model: 16 layers, dim 1024, N=16, G=8, k=1) on a synthetic task shaped
-- like HellaSwag's validation set: 10,042 examples, 4 choices, contexts of
-- 20-60 tokens, choices of 8-24 (random ids; only the time is measured).
-- Forwards hold as many tokens as a training batch of 8 x 2048.
--   build/gqe bench/eval_cuda.lua [examples] [device] [precision]   (GPU machine; cpu works, slowly)
local gqe = require "gqe"
local evaluate = require "gqe.evaluate"
local n, device, precision = require("gqe.flags").positional(
  "build/gqe bench/eval_cuda.lua [examples] [cuda|cpu] [bf16|fp32]", arg, {
    { "examples", 10042, int = 1 }, { "device", "cuda", choices = { "cuda", "cpu" } },
    { "precision", "bf16", choices = { "bf16", "fp32" } } })
local lm = gqe.nn.LM { vocab = 50304, dim = 1024, layers = 16, attention = "gqe", experts = 16, groups = 8, k = 1,
                       head_dim = 64, mlp = "gelu", mlp_hidden = 4096, tied = true, max_seq = 2048, seed = 1,
                       device = device, precision = device == "cuda" and precision or nil }
local task = gqe.eval.task()
local s = 12345
local function rnd(m) s = (s * 1103515245 + 12345) % 2147483648; return s % m end
for _ = 1, n do
  local ctx, choices = {}, {}
  for i = 1, 20 + rnd(41) do ctx[i] = rnd(50257) end
  for c = 1, 4 do
    local ch = {}
    for i = 1, 8 + rnd(17) do ch[i] = rnd(50257) end
    choices[c] = ch
  end
  task:add(ctx, choices, rnd(4))
end
local B, T = evaluate.shape(task, 8, 2048)
gqe.eval.score(lm, task, B, T)   -- warm-up: buffers, kernels
local t0 = gqe.clock()
local r = gqe.eval.score(lm, task, B, T)
local dt = gqe.clock() - t0
print(string.format("eval %d examples (%d rows) on the 236M model, %s %s, forwards of %d x %d: %.2f s (%.0f rows/s), acc %.3f",
  r.n, task:choices(), device, device == "cuda" and precision or "fp32", B, T, dt, task:choices() / dt, r.acc))
