-- The table of make bench-multi from its JSON lines: per implementation and
-- world size, global tokens/s, peak memory per GPU and the scaling
-- efficiency against the same implementation on one GPU.
--   build/gqe bench/report_multi.lua build/bench_multi.jsonl
local gqe = require "gqe"
local rows, base = {}, {}
for line in io.lines(arg[1]) do
  local ok, r = pcall(gqe.json.decode, line)
  if ok and type(r) == "table" and r.bench == "train_multi" then
    rows[#rows + 1] = r
    if r.world == 1 then base[r.impl] = r.tokens_per_s; base[r.impl .. "_zero1"] = r.tokens_per_s end
  end
end
print(string.format("%-12s %5s %12s %10s %10s %12s %10s", "impl", "GPUs", "tokens/s", "step ms", "peak GiB",
  "opt GiB/GPU", "efficiency"))
for _, r in ipairs(rows) do
  local eff = base[r.impl] and string.format("%.3f", r.tokens_per_s / (r.world * base[r.impl])) or "-"
  print(string.format("%-12s %5d %12.0f %10.1f %10.2f %12s %10s", r.impl, r.world, r.tokens_per_s, r.step_ms,
    r.peak_gib_per_gpu, r.opt_state_gib_per_gpu and string.format("%.3f", r.opt_state_gib_per_gpu) or "-", eff))
end
