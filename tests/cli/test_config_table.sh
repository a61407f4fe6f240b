#!/usr/bin/env bash
# The README's config table is the one generated from the config description
# (lua/gqe/config.lua), and it lists every key config.lua knows.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
"$GQE" scripts/config_table.lua README.md --check || fail "README's config table is stale"
cat > "$tmp/keys.lua" <<'LUA'
local config = require("gqe").config
for _, sec in ipairs(config.sections) do
  for k in pairs(config.schema[sec]) do print(sec .. "." .. k) end
end
LUA
n=0
while read -r k; do
  grep -qF "| \`$k\` |" README.md || fail "$k missing from README's config table"
  n=$((n + 1))
done < <("$GQE" "$tmp/keys.lua")
[ "$n" -ge 50 ] || fail "only $n keys"
# A stale table is caught.
sed 's/| `model.k` | int | `1` |/| `model.k` | int | `2` |/' README.md > "$tmp/README.md"
if "$GQE" scripts/config_table.lua "$tmp/README.md" --check 2>/dev/null; then fail "a stale table passed"; fi
echo "test_config_table: ok ($n keys)"
