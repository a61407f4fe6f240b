-- Experiment and run names as single path components (reports/<name>,
-- <checkpoint_dir>/<name>). A name made only of letters, digits and
-- - _ . = , + (not starting with '.', at most 80 bytes) is used as it is;
-- any other name has each other byte replaced by '_', is cut to 64 bytes and
-- gets "~" and 12 hex digits of its FNV-1a hash. Since '~' never survives
-- unchanged, a kept name never equals a rewritten one, and two rewritten
-- names differ unless their 48-bit hashes collide: the mapping is injective
-- in practice, and its results never hold a separator or equal "." or "..".
local config = require "gqe.config"

local paths = {}

function paths.component(name)
  local s = tostring(name)
  local safe = s:gsub("[^%w%-_.=,+]", "_")
  if safe == s and s ~= "" and s:sub(1, 1) ~= "." and #s <= 80 then return s end
  return safe:gsub("^%.", "_"):sub(1, 64) .. "~" .. config.fnv1a64(s):sub(1, 12)
end

-- mkdir -p for a path built from components above (and a user's directory
-- setting); quoted for the shell, "--" so a leading '-' is no option.
function paths.mkdir(dir)
  return os.execute("mkdir -p -- '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null") == true
end

-- The running executable (build/gqe, or lua5.4 with gqe.so), for starting
-- workers and ranks of the same build. When the file has been replaced since
-- this process started (a rebuild during a sweep), its path now holds other
-- code, or nothing: the kernel still runs the original through
-- /proc/PID/exe, so workers keep running the build the sweep started with.
function paths.self_exe()
  local pid = require("gqe").pid()
  local p = io.popen("readlink /proc/" .. pid .. "/exe 2>/dev/null")
  local exe = p and p:read("l")
  if p then p:close() end
  if exe and exe:match(" %(deleted%)$") then return "/proc/" .. pid .. "/exe" end
  return exe
end

return paths
