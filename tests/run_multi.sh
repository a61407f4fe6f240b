#!/usr/bin/env bash
# make test-multi: what needs several GPUs of one node. N GPUs at batch 8/N
# against one GPU at batch 8 (fp32 within 1e-5, bf16 as the bf16 test), for
# N = 2 and every GPU of the node; then make bench-multi's measurements.
# Ends with "N passed, N failed"; skipped (77) with fewer than 2 GPUs.
set -u
cd "$(dirname "$0")/.."
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
[ "$ngpu" -ge 2 ] || { echo "test-multi needs 2 or more GPUs, this node shows $ngpu: skipped"; exit 77; }
passed=0; failed=0; failures=()
run() { local name=$1; shift; printf '== %s\n' "$name"
    if "$@"; then passed=$((passed+1)); else failed=$((failed+1)); failures+=("$name"); fi; }
worlds=(2); [ "$ngpu" -gt 2 ] && worlds+=("$ngpu")
for w in "${worlds[@]}"; do
    [ $((8 % w)) = 0 ] || continue
    run "train_dist $w GPUs fp32" build/gqe tests/gpu/train_dist.lua --nproc "$w" 40 fp32 1e-5
    run "train_dist $w GPUs bf16" build/gqe tests/gpu/train_dist.lua --nproc "$w" 100 bf16
done
run "bench-multi" ./bench/run_multi.sh
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
