#!/usr/bin/env bash
# GPU test suite (`make test-cuda`), run on a machine with a CUDA device.
# Ends with one summary line "N passed, N failed, N skipped". Everything
# here must run: without a usable device the suite fails at once, and a test
# that skips (status 77) counts as failed.
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
    tests/gpu/sweep_per_gpu.sh
    tests/gpu/checkpoint_cuda.sh
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
. tests/suite.sh
SKIP_FAILS=1
if [ ! -x build/gqe ] || ! build/gqe tests/gpu/device.lua; then
    echo "make test-cuda needs a usable CUDA device and build/gqe built with nvcc"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
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
    skipped=$((skipped+1)); skips+=("memcheck (no compute-sanitizer)")
else
    for entry in "${SANITIZE_TESTS[@]}"; do
        read -r -a cmd <<< "$entry"
        [ -x "${cmd[0]}" ] || continue
        run "memcheck $(basename "${cmd[0]}")" env GQE_TEST_SMALL=1 "$SAN" --tool memcheck --error-exitcode 1 \
            --leak-check no "${cmd[@]}"
    done
fi
summary
