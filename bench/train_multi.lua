-- Data-parallel training throughput (make bench-multi): the 236M benchmark
-- model of bench/train_cuda.lua (bf16 mixed precision, batch 8 x 2048 per
-- GPU) on every rank `gqe launch` started; rank 0 prints one JSON line with
-- the global tokens/s, the largest peak memory of any GPU and the optimizer
-- state per GPU. Gradients are reduced in buckets overlapping backward, or
-- with "zero" reduce-scattered into ZeRO-1's sharded optimizer.
--   build/gqe launch --nproc N bench/train_multi.lua [steps] [gqe|gqa] [ddp|zero]
local gqe = require "gqe"
local steps, kind, mode = require("gqe.flags").positional(
  "build/gqe launch --nproc N bench/train_multi.lua [steps] [gqe|gqa] [ddp|zero]", arg, {
    { "steps", 10, int = 1 }, { "model", "gqe", choices = { "gqe", "gqa" } },
    { "mode", "ddp", choices = { "ddp", "zero" } } })
local B, T, V = 8, 2048, 50304

local env = gqe.dist.env()
local comm = env.world > 1 and gqe.dist.open { backend = "nccl" } or nil
local world, rank = comm and comm:world() or 1, comm and comm:rank() or 0
local lm = gqe.nn.LM{vocab = V, dim = 1024, layers = 16, max_seq = T, attention = kind,
                     experts = 16, groups = 8, k = 1, head_dim = 64, mlp = "gelu",
                     mlp_hidden = 4096, tied = true, seed = 1, device = "cuda", precision = "bf16"}
if comm then comm:share_routing(lm, true) end
local opt = gqe.optim.AdamW(lm, {lr = 1e-4, betas = {0.9, 0.95}, weight_decay = 0.1})
local state_bytes = 2 * 4 * lm:num_params()   -- exp_avg and exp_avg_sq, f32
local zero
if comm and mode == "zero" then
  zero = gqe.dist.zero(comm, opt)
  opt:close()
  state_bytes = zero:state_bytes()
end
local tok, tgt = {}, {}
for b = 1, B do
  tok[b], tgt[b] = {}, {}
  for t = 1, T do
    local r = b + rank * B   -- each rank its own rows
    tok[b][t] = (r * 7919 + t * 104729) % V; tgt[b][t] = (r * 31 + t * 17) % V
  end
end
tok = gqe.tensor(tok, {dtype = "i32", device = "cuda"})
tgt = gqe.tensor(tgt, {dtype = "i32", device = "cuda"})
local function step()
  local loss = lm:loss(tok, tgt, 0.01)
  if zero then
    lm:backward()
    zero:reduce(1 / world, 1.0)
    zero:step(1e-4)
    lm:zero_grad()
  else
    if comm then comm:overlap_grads(lm, true) end
    lm:backward()
    if comm then comm:overlap_grads(lm, false); comm:finish_grads(lm, 1 / world) end
    opt:clip(1.0)
    opt:step()
    opt:zero_grad()
  end
  lm:after_step()
  return loss
end
gqe.cuda_memory(true)
step(); step()
if comm then comm:barrier() end
local t0 = gqe.clock()
local loss
for _ = 1, steps do loss = step() end
if comm then comm:barrier() end
local dt = (gqe.clock() - t0) / steps
local peak = (gqe.cuda_memory() or {}).peak or 0
if comm then peak = comm:all_reduce_numbers({ peak }, "max")[1] end
if rank == 0 then
  print(string.format('{"bench": "train_multi", "impl": "gqe_c%s", "kind": "%s", "world": %d, "tokens_per_s": %.0f, '
    .. '"step_ms": %.1f, "peak_gib_per_gpu": %.2f, "opt_state_gib_per_gpu": %.3f, "params": %d, "loss": %.4f}',
    zero and "_zero1" or "", kind, world, world * B * T / dt, dt * 1e3, peak / 2^30, state_bytes / 2^30,
    lm:num_params(), loss))
  io.stdout:flush()
end
lm:close()
if comm then comm:close() end
