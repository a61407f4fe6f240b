#!/usr/bin/env bash
# make bench-multi: data-parallel throughput of the 236M benchmark model on
# 1, 2, 4, ... GPUs of this node (as many as it has), ours and PyTorch DDP's
# (torchrun) in the same run: global tokens/s, peak memory per GPU, and the
# scaling efficiency tokens/s(W) / (W x tokens/s(1)). JSON lines go to
# ${BENCH_OUT:-build/bench_multi.jsonl}. BENCH_STEPS sets the timed steps
# (10); BENCH_TORCH=0 skips PyTorch.
set -u
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-build/bench_multi.jsonl}
steps=${BENCH_STEPS:-10}
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
[ "$ngpu" -ge 1 ] || { echo "bench-multi: no GPU visible"; exit 77; }
: > "$out"
worlds=()
for w in 1 2 4 8 16; do [ "$w" -le "$ngpu" ] && worlds+=("$w"); done
for w in "${worlds[@]}"; do
    echo "== gqe on $w GPU(s)" >&2
    build/gqe launch --nproc "$w" bench/train_multi.lua "$steps" gqe | grep '^{' | tee -a "$out"
    if [ "$w" -gt 1 ]; then
        echo "== gqe ZeRO-1 on $w GPUs" >&2
        build/gqe launch --nproc "$w" bench/train_multi.lua "$steps" gqe zero | grep '^{' | tee -a "$out"
    fi
done
if [ "${BENCH_TORCH:-1}" = 1 ] && command -v torchrun >/dev/null; then
    for w in "${worlds[@]}"; do
        echo "== PyTorch DDP on $w GPU(s)" >&2
        (cd bench && torchrun --standalone --nproc_per_node "$w" torch_ddp.py --steps "$steps") | grep '^{' | tee -a "$out"
    done
fi
build/gqe bench/report_multi.lua "$out"
