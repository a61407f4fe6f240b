-- Data parallel on GPUs. With one rank (make test-cuda) it runs the NCCL
-- path end to end at world size 1 (GQE_DIST=nccl: communicator, TCP
-- rendezvous, all-reduce of gradients, routing statistics and losses)
-- against the plain run, grad_accum 2 against a batch twice as large and
-- ZeRO-1 (train.zero) against the plain run.
-- With --nproc N (make test-multi) the same model trains on N GPUs under
-- `gqe launch` at batch 8/N against one GPU at batch 8.
-- fp32 losses must agree within tol (relative, default 1e-5); with bf16
-- (third argument) the 10-step means within 0.1, as the bf16-vs-fp32 test.
--   build/gqe tests/gpu/train_dist.lua [--nproc N] [steps] [fp32|bf16] [tol]
local gqe = require "gqe"

local function self_exe()
  local p = io.popen("readlink /proc/" .. gqe.pid() .. "/exe")
  local exe = p:read("l")
  p:close()
  return exe
end

-- Child role: one run, its losses into DB.
if arg[1] == "--rank-run" then
  local db, text, batch, accum, steps, precision = arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6]), arg[7]
  local zero = arg[8] == "zero"
  gqe.train {
    experiment = "dist-gpu", name = string.format("b%d-a%d", batch, accum),
    data = { kind = "text", path = text, seed = 3 },
    model = { dim = 128, layers = 2, experts = 8, groups = 4, k = 1, head_dim = 32, router = "balanced" },
    optim = { lr = 1e-3 },
    train = { steps = steps, batch = batch, seq = 128, grad_accum = accum, device = "cuda", precision = precision,
              log_every = 1, eval_every = steps, eval_batches = 2, db = db, progress = false,
              checkpoint_dir = db .. ".ckpt", seed = 7, zero = zero },
  }
  os.exit(0)
end

if not gqe.cuda_available() then print("skipped: no CUDA device"); os.exit(0) end
local nproc = 1
local a = 1
if arg[1] == "--nproc" then nproc, a = tonumber(arg[2]), 3 end
local steps = tonumber(arg[a]) or 40
local precision = arg[a + 1] or "fp32"
local tol = tonumber(arg[a + 2]) or 1e-5

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local text = dir .. "/text.txt"
assert(os.execute("cat lua/gqe/*.lua core/*.h core/*/*.c > " .. text))
local exe = self_exe()
local script = arg[0]
local port = 29500 + gqe.pid() % 1000

local function child(env, launcher, name, batch, accum, zero)
  local db = dir .. "/" .. name .. ".db"
  local argv = { "env" }
  for _, e in ipairs(env) do argv[#argv + 1] = e end
  argv[#argv + 1] = exe
  for _, x in ipairs(launcher) do argv[#argv + 1] = x end
  for _, x in ipairs { script, "--rank-run", db, text, batch, accum, steps, precision, zero or "plain" } do
    argv[#argv + 1] = tostring(x)
  end
  local code = gqe.wait(gqe.spawn(argv))
  if code ~= 0 then print(string.format("FAIL: run %s exited %d", name, code)); os.exit(1) end
  local d = gqe.db.open(db)
  local rows = d:query("SELECT step, value FROM metrics WHERE key = 'train/loss' ORDER BY step")
  local dev = d:query("SELECT device FROM runs")[1].device
  d:close()
  local losses = {}
  for _, r in ipairs(rows) do losses[r.step] = r.value end
  return losses, dev
end

local function compare(what, x, y)
  if precision == "bf16" then
    local worst = 0
    for w0 = 1, steps - 9, 10 do
      local sa, sb = 0, 0
      for i = w0, w0 + 9 do sa, sb = sa + x[i], sb + y[i] end
      worst = math.max(worst, math.abs(sa - sb) / 10)
    end
    print(string.format("%s: max |diff| of 10-step means %.2e (bf16)", what, worst))
    return worst <= 0.1
  end
  local worst, at = 0, 0
  for i = 1, steps do
    local r = math.abs(x[i] - y[i]) / math.abs(y[i])
    if r > worst then worst, at = r, i end
  end
  print(string.format("%s: %d steps, first %.6f / %.6f, last %.6f / %.6f, max rel diff %.2e at step %d",
    what, steps, x[1], y[1], x[steps], y[steps], worst, at))
  return worst <= tol
end

local ok = true
local ref = child({}, {}, "ref", 8, 1)
if nproc == 1 then
  local nccl, dev = child({ "GQE_DIST=nccl", "MASTER_PORT=" .. port }, {}, "nccl1", 8, 1)
  print("NCCL at world size 1 on " .. dev)
  ok = compare("NCCL world 1 vs plain", nccl, ref) and ok
  local acc = child({ "GQE_DIST=nccl", "MASTER_PORT=" .. port }, {}, "accum", 4, 2)
  ok = compare("grad_accum 2 x batch 4 vs batch 8", acc, ref) and ok
  local z = child({ "GQE_DIST=nccl", "MASTER_PORT=" .. port }, {}, "zero", 8, 1, "zero")
  ok = compare("ZeRO-1 at world size 1 vs plain", z, ref) and ok
else
  local dp, dev = child({}, { "launch", "--nproc", nproc, "--port", port }, "dp", 8 // nproc, 1)
  print(string.format("%d ranks (%s), batch %d each", nproc, dev, 8 // nproc))
  ok = compare(string.format("%d GPUs x batch %d vs 1 GPU x batch 8", nproc, 8 // nproc), dp, ref) and ok
  local z = child({}, { "launch", "--nproc", nproc, "--port", port }, "dpzero", 8 // nproc, 1, "zero")
  ok = compare(string.format("%d GPUs ZeRO-1 vs 1 GPU", nproc), z, ref) and ok
end
os.execute("rm -rf " .. dir)
if not ok then print("FAIL"); os.exit(1) end
print("ok")
