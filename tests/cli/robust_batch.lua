-- Runs the bad-input cases of a tests/cli/test_robust_*.sh script in one
-- process (with CUDA built in, every gqe process pays seconds to load the
-- CUDA libraries): `gqe robust_batch.lua RUN_SCRIPT CASES`. RUN_SCRIPT is
-- the test's training script (it applies its arguments as overrides and
-- calls gqe.train); CASES holds one case per line, its arguments separated
-- by \31. Prints one line per case: "ok", or "error<TAB>message" with the
-- message's lines joined by " | ".
local run_script, cases = ...
local chunk = assert(loadfile(run_script))
for line in io.lines(cases) do
  local args = {}
  if line ~= "" then
    for a in (line .. "\31"):gmatch("(.-)\31") do args[#args + 1] = a end
  end
  local ok, err = pcall(chunk, table.unpack(args))
  if ok then print("ok") else print("error\t" .. (tostring(err):gsub("\n", " | "))) end
  collectgarbage()
end
