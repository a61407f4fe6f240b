#!/usr/bin/env bash
# make bench-cuda: our GPU numbers and PyTorch's on the same GPU in one run.
# Writes JSON lines to ${BENCH_OUT:-build/bench_cuda.jsonl} and prints a table.
#   BENCH_QUICK=1 fewer sizes; BENCH_ONLY=a,c selects parts (a attention core,
#   b layer forward, c training throughput); BENCH_TRAIN_SEQ="2048 8192 16384"
#   the training lengths (16K tokens per step); BENCH_TORCH_MODES PyTorch's
#   compile modes, eager,default,max-autotune unless set: max-autotune (its
#   autotuned matmuls and CUDA graphs) is PyTorch's fastest, and costs 1-5
#   minutes of compiling per model and length (about half an hour in all on an H100).
set -u
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-build/bench_cuda.jsonl}
only=${BENCH_ONLY:-a,b,c}
quick=${BENCH_QUICK:+--quick}
: > "$out"
export PYTHONUNBUFFERED=1
if [[ $only == *a* ]]; then
    echo "== (a) attention core: ours" >&2
    build/bench_attention $quick | tee -a "$out"
fi
if [[ $only == *b* ]]; then
    echo "== (b) attention layer forward: ours (bf16)" >&2
    build/gqe bench/layer_cuda.lua bf16 2048 8192 32768 | tee -a "$out"
fi
if [[ $only == *c* ]]; then
    echo "== (c) training throughput: ours (bf16 mixed precision)" >&2
    for S in ${BENCH_TRAIN_SEQ:-2048 8192 16384}; do
        build/gqe bench/train_cuda.lua 10 both bf16 "$S" | tee -a "$out"
    done
fi
echo "== PyTorch $(python3 -c 'import torch; print(torch.__version__)') on the same GPU" >&2
seqs=${BENCH_TRAIN_SEQ:-2048 8192 16384}
python3 bench/torch_baseline.py $quick --only "$only" --train-seq "${seqs// /,}" \
    --modes "${BENCH_TORCH_MODES:-eager,default,max-autotune}" --out build/bench_torch.jsonl
cat build/bench_torch.jsonl >> "$out"
build/gqe bench/report_cuda.lua "$out"
