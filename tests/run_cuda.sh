#!/usr/bin/env bash
# GPU test suite (`make test-cuda`), run on a machine with a CUDA device.
# Ends with one summary line "N passed, N failed".
#
# GPU test binaries, in order (add new ones here):
GPU_TESTS=(
    build/tests/test_cuda_ops
    "env GQE_TEST_DEVICE=cuda build/tests/test_golden"
    "build/gqe tests/gpu/train_parity.lua 200 gqe softmax data/brown.txt 3e-4"
    "build/gqe tests/gpu/train_parity.lua 200 gqa softmax data/brown.txt 1e-3"
    "build/gqe tests/gpu/train_bf16.lua 200 gqe data/brown.txt 1e-3"
    "build/gqe tests/gpu/train_bf16.lua 200 gqa data/brown.txt 1e-3"
    "build/gqe tests/gpu/train_dist.lua 40"
)
# Binaries that also run under compute-sanitizer memcheck, with their
# small-size flag (keeps the instrumented run short):
SANITIZE_TESTS=(
    "build/tests/test_cuda_ops --small"
    "build/gqe tests/gpu/train_bf16.lua 3 gqe"
)
set -u
cd "$(dirname "$0")/.."
# Where the system has cuDNN 9, the attention test also checks that cuDNN
# served every eligible call (a silent fall-back would hide a broken path).
if [ -z "${GQE_TEST_REQUIRE_CUDNN+x}" ] && ldconfig -p 2>/dev/null | grep -q 'libcudnn\.so\.9'; then
    export GQE_TEST_REQUIRE_CUDNN=1
fi
passed=0; failed=0; failures=()
run() { # name, command...
    local name=$1; shift
    printf '== %s\n' "$name"
    if "$@"; then passed=$((passed+1)); else failed=$((failed+1)); failures+=("$name"); fi
}
for entry in "${GPU_TESTS[@]}"; do
    read -r -a cmd <<< "$entry"
    bin=${cmd[-1]}
    for w in "${cmd[@]}"; do case "$w" in build/*) bin=$w;; esac; done
    if [ ! -x "$bin" ]; then echo "missing $bin (run make first)"; failed=$((failed+1)); failures+=("$bin"); continue; fi
    name=$(basename "$bin"); [ "${cmd[0]}" = env ] && name="$name (${cmd[1]})"
    run "$name" "${cmd[@]}"
done
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -z "$SAN" ]; then
    echo "compute-sanitizer not found: memcheck runs skipped"
else
    for entry in "${SANITIZE_TESTS[@]}"; do
        read -r -a cmd <<< "$entry"
        [ -x "${cmd[0]}" ] || continue
        run "memcheck $(basename "${cmd[0]}")" env GQE_TEST_SMALL=1 "$SAN" --tool memcheck --error-exitcode 1 \
            --leak-check no "${cmd[@]}"
    done
fi
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
