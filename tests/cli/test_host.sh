#!/usr/bin/env bash
# The host program: runs a script, reports script errors with file:line and
# exit status 1, passes os.exit codes and arguments through, fails on a
# missing file with a message.
set -u
cd "$(dirname "$0")/../.."
GQE=${GQE:-$PWD/build/gqe}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # description, condition result
    if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails+1)); fi
}

cat > "$tmp/ok.lua" <<'LUA'
local t = gqe.ones({2, 3})
print("sum", t:sum(), arg[0] ~= nil, select("#", ...), ...)
print("same", require("gqe") == gqe)
LUA
out=$("$GQE" "$tmp/ok.lua" a b 2>&1); rc=$?
check "script runs and exits 0" "$rc"
echo "$out" | grep -q "^sum	6.0	true	2	a	b$"; check "prints output and passes arguments" $?
echo "$out" | grep -q "^same	true$"; check "require 'gqe' gives the global" $?

printf 'local x = 1\nerror("boom")\n' > "$tmp/err.lua"
err=$("$GQE" "$tmp/err.lua" 2>&1 >/dev/null); rc=$?
[ "$rc" = 1 ]; check "error exits 1" $?
echo "$err" | grep -q "^gqe: .*err.lua:2: boom"; check "error message has file:line" $?
echo "$err" | grep -q "stack traceback"; check "error has a traceback" $?

printf 'gqe.zeros({2}, {dtype = "f64"})\n' > "$tmp/cerr.lua"
err=$("$GQE" "$tmp/cerr.lua" 2>&1 >/dev/null); rc=$?
[ "$rc" = 1 ]; check "binding error exits 1" $?
echo "$err" | grep -q "cerr.lua:1: .*f64"; check "binding error names file:line and the value" $?

printf 'local x = \n' > "$tmp/syntax.lua"
"$GQE" "$tmp/syntax.lua" >/dev/null 2>&1; rc=$?
[ "$rc" = 1 ]; check "syntax error exits 1" $?

printf 'os.exit(7)\n' > "$tmp/exit.lua"
"$GQE" "$tmp/exit.lua"; rc=$?
[ "$rc" = 7 ]; check "os.exit code passes through" $?

err=$("$GQE" "$tmp/missing.lua" 2>&1); rc=$?
[ "$rc" != 0 ]; check "missing file exits non-zero" $?
echo "$err" | grep -q "missing.lua"; check "missing file is named" $?

out=$("$GQE" 2>&1); rc=$?
[ "$rc" = 2 ]; check "no arguments prints usage and exits 2" $?
echo "$out" | grep -qi "usage"; check "usage text" $?

(cd "$tmp" && "$GQE" ok.lua >/dev/null 2>&1); check "runs from another directory" $?

# GQE_PROFILE=1: a per-op table on stderr at exit, matmuls per shape; profile_reset drops earlier calls
cat > "$tmp/prof.lua" <<'LUA'
local a, b = gqe.randn({4, 3}, {seed = 1}), gqe.randn({5, 3}, {seed = 2})
gqe.matmul(gqe.zeros({2, 2}), gqe.ones({2, 7}), gqe.ones({7, 2}))
gqe.profile_reset()
local c = gqe.zeros({4, 5})
for _ = 1, 3 do gqe.matmul(c, a, b, false, true) end
LUA
err=$(GQE_PROFILE=1 "$GQE" "$tmp/prof.lua" 2>&1 >/dev/null); rc=$?
[ "$rc" = 0 ]; check "profiled script exits 0" $?
echo "$err" | grep -q "^GQE_PROFILE: time per op"; check "profile table printed at exit" $?
echo "$err" | grep -Eq "^matmul 4x5x3 NT f32,f32>f32 +cpu +[0-9.]+ +3 "; check "matmul listed by shape with its call count" $?
! echo "$err" | grep -q "matmul 2x2x7"; check "profile_reset forgets earlier calls" $?
out=$("$GQE" "$tmp/prof.lua" 2>&1); ! echo "$out" | grep -q GQE_PROFILE; check "no table without GQE_PROFILE" $?

# gqe.cuda_memory(): the allocator's byte counts (zeros without a GPU)
printf 'local m = gqe.cuda_memory()\nprint(math.type(m.in_use), math.type(m.peak), math.type(m.reserved))\n' > "$tmp/mem.lua"
"$GQE" "$tmp/mem.lua" 2>&1 | grep -q "^integer	integer	integer$"; check "cuda_memory returns byte counts" $?

[ "$fails" = 0 ]
