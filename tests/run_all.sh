#!/usr/bin/env bash
# Runs every test suite of `make test` and ends with one summary line:
# "N passed, N failed" counting suites (C binaries, busted specs, CLI scripts).
set -u
cd "$(dirname "$0")/.."
passed=0; failed=0; failures=()
run() { # name, command...
    local name=$1; shift
    printf '== %s\n' "$name"
    if "$@"; then passed=$((passed+1)); else failed=$((failed+1)); failures+=("$name"); fi
}
for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    run "$(basename "$t")" "$t"
done
if ls tests/lua/*_spec.lua >/dev/null 2>&1; then
    for spec in tests/lua/*_spec.lua; do
        run "$(basename "$spec")" env LUA_CPATH="$PWD/build/?.so;;" lua5.4 /usr/bin/busted --lua=lua5.4 -o utfTerminal "$spec"
    done
fi
for t in tests/cli/test_*.sh; do
    [ -f "$t" ] || continue
    run "$(basename "$t")" bash "$t"
done
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
