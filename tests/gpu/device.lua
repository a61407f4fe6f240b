-- Probe run first by tests/run_cuda.sh: a CUDA device must be present and
-- must compute (a broken driver can list a device that fails on first use).
-- Exits 1 with the reason otherwise, so `make test-cuda` fails instead of
-- skipping its suites.
local gqe = require "gqe"
if not gqe.cuda_available() then
  io.stderr:write("no usable CUDA device: gqe was built without CUDA, or no device or driver was found\n")
  os.exit(1)
end
local ok, err = pcall(function()
  local x = gqe.arange(8):to("cuda")
  local s = x:sum()
  assert(s == 28, ("sum of 0..7 on the GPU is %s, expected 28"):format(tostring(s)))
end)
if not ok then
  io.stderr:write("the CUDA device does not compute: " .. tostring(err) .. "\n")
  os.exit(1)
end
print("CUDA device usable")
