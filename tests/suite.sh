# Sourced by tests/run_all.sh and tests/run_cuda.sh: runs suites and counts
# them. Exit status 0 passes, 77 skips (a suite that cannot run here says
# so and why), anything else fails. SKIP_FAILS=1 counts a skip as a failure
# (the GPU suite, where everything must run).
passed=0; failed=0; skipped=0; failures=(); skips=()
run() { # name, command...
    local name=$1; shift
    printf '== %s\n' "$name"
    "$@"
    local rc=$?
    if [ "$rc" -eq 0 ]; then passed=$((passed+1))
    elif [ "$rc" -eq 77 ] && [ "${SKIP_FAILS:-0}" != 1 ]; then skipped=$((skipped+1)); skips+=("$name")
    else
        [ "$rc" -eq 77 ] && echo "$name skipped, which this suite counts as a failure"
        failed=$((failed+1)); failures+=("$name")
    fi
}
# Prints the summary line last and returns non-zero when a suite failed.
summary() {
    [ ${#skips[@]} -gt 0 ] && printf 'skipped: %s\n' "${skips[*]}"
    [ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[*]}"
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}
