#!/usr/bin/env bash
# Errors in a user's Lua script: a syntax error, a runtime error (message
# with file:line and a traceback through the script's functions and a module
# it requires), wrong argument types to the gqe API, a missing script, and an
# error thrown from a training callback. Each exits 1 with "gqe: " and the
# place, never a crash, and leaves no run marked running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
head -c 20000 lua/gqe/train.lua > "$tmp/text.txt"

# run_expect SCRIPT PATTERN...: exit 1, and every pattern (grep -E) on stderr.
run_expect() {
  local script=$1; shift
  set +e; (cd "$tmp" && "$GQE" "$script") >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/err"; fail "$script: exit $rc, expected 1"; }
  local p
  for p in "$@"; do
    grep -q -E -- "$p" "$tmp/err" || { cat "$tmp/err"; fail "$script: stderr does not match '$p'"; }
  done
}

# 1. Syntax error: file and line.
printf 'local gqe = require "gqe"\nlocal x = = 1\n' > "$tmp/syntax.lua"
run_expect syntax.lua "^gqe: syntax.lua:2: unexpected symbol near '='"

# 2. Runtime error three calls deep, through a module of the user's.
cat > "$tmp/helper.lua" <<'LUA'
local M = {}
function M.check(n)
  if n > 2 then error("n is too big: " .. n) end
end
return M
LUA
cat > "$tmp/runtime.lua" <<'LUA'
package.path = "./?.lua;" .. package.path
local helper = require "helper"
local function outer(n)
  helper.check(n)
end
outer(3)
LUA
run_expect runtime.lua "^gqe: ./helper.lua:3: n is too big: 3" "stack traceback:" \
  "helper.lua:3: in function 'helper.check'" "runtime.lua:4: in (local|upvalue|function) '?outer" "runtime.lua:6: in main chunk"

# 3. Indexing nil (the commonest slip) names the variable.
printf 'local cfg = {}\nprint(cfg.model.dim)\n' > "$tmp/nil.lua"
run_expect nil.lua "^gqe: nil.lua:2: attempt to index a nil value \(field 'model'\)"

# 4. Wrong argument types to the API: Lua errors with the place, no crash.
printf 'local gqe = require "gqe"\nlocal lm = gqe.nn.LM("big")\n' > "$tmp/api1.lua"
run_expect api1.lua "^gqe: api1.lua:2: .*(table expected|bad argument)"
printf 'local gqe = require "gqe"\nlocal t = gqe.tensor({1, 2, 3})\nprint(t + "x")\n' > "$tmp/api2.lua"
run_expect api2.lua "^gqe: api2.lua:3: "
printf 'local gqe = require "gqe"\ngqe.train("config.lua")\n' > "$tmp/api3.lua"
run_expect api3.lua "^gqe: .*config must be a table, got string" "api3.lua:2"
printf 'local gqe = require "gqe"\ngqe.save_safetensors("%s/x.safetensors", {a = 42})\n' "$tmp" > "$tmp/api4.lua"
run_expect api4.lua "^gqe: api4.lua:2: " "'a'"
printf 'local gqe = require "gqe"\nlocal a = gqe.nn.GQEAttention{dim = 16, experts = 4, groups = 2, k = 1, head_dim = 4}\na:forward(gqe.tensor({{1, 2}}))\n' > "$tmp/api5.lua"
run_expect api5.lua "^gqe: api5.lua:3: GQEAttention:forward: x must be \(B, T, 16\)"

# 5. A missing script.
set +e; "$GQE" "$tmp/nope.lua" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "cannot open .*nope.lua" "$tmp/err" || { cat "$tmp/err"; fail "missing script"; }

# 6. An error raised inside training (a user's on_start hook): the run is
#    marked failed with the traceback in the log, the user sees file:line.
cat > "$tmp/hook.lua" <<LUA
local train = require "gqe.train"
train.run({ experiment = "script", name = "hook", data = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 3, batch = 2, seq = 16, db = "$db", checkpoint_dir = "$tmp/ckpt", progress = false } },
  { on_start = function(ctx)
      local broken = nil
      return broken.field
    end })
LUA
run_expect hook.lua "run 1 \(script hook\) failed: .*hook.lua:7: attempt to index a nil value \(local 'broken'\)"
[ "$(sqlite3 "$db" "SELECT status FROM runs WHERE id=1")" = failed ] || fail "hook error: run not failed"
sqlite3 "$db" "SELECT error FROM runs WHERE id=1" | grep -q "hook.lua:7" || fail "hook error: the log lacks file:line"
sqlite3 "$db" "SELECT error FROM runs WHERE id=1" | grep -q "stack traceback" || fail "hook error: the log lacks the traceback"
[ "$(sqlite3 "$db" "SELECT count(*) FROM runs WHERE status='running'")" = 0 ] || fail "a run was left running"
echo "test_robust_script: ok"
