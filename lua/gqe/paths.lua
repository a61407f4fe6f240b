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

return paths
