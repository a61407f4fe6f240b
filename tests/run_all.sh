#!/usr/bin/env bash
# Runs every test suite of `make test` and ends with one summary line:
# "N passed, N failed, N skipped" counting suites (C binaries, busted specs,
# CLI scripts). A suite that cannot run here (no GPU, a missing tool) exits
# with status 77, as under automake, and is counted as skipped, never passed.
set -u
cd "$(dirname "$0")/.."
. tests/suite.sh
for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    run "$(basename "$t")" "$t"
done
# The same C tests built with AddressSanitizer and UBSan (build/asan/, made
# by `make test`): any report fails the suite. Leak checking stays on; the
# OpenMP runtime's thread pool is reachable at exit, so it reports nothing.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:halt_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in build/asan/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    run "asan:$(basename "$t")" "$t"
done
# Saved fuzz crash inputs and seeds, replayed through the sanitized targets.
for t in build/asan/fuzz/replay_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    n=${t##*/replay_}; inputs=()
    for d in tests/fuzz/regressions/$n tests/fuzz/seeds/$n; do [ -d "$d" ] && inputs+=("$d"); done
    [ ${#inputs[@]} -gt 0 ] && run "fuzz-replay:$n" "$t" "${inputs[@]}"
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
summary
