#!/usr/bin/env bash
# make bench-cuda: our GPU numbers and PyTorch's on the same GPU in one run.
# Writes JSON lines to ${BENCH_OUT:-build/bench_cuda.jsonl} and prints a table.
#   BENCH_QUICK=1 fewer sizes; BENCH_ONLY=a,c selects parts (a attention core,
#   b layer forward, c training throughput); BENCH_TRAIN_SEQ="2048 8192 16384"
#   the training lengths (16K tokens per step); BENCH_TORCH_MODES PyTorch's
#   compile modes, eager,default,max-autotune unless set: max-autotune (its
#   autotuned matmuls and CUDA graphs) is PyTorch's fastest, and costs 1-5
#   minutes of compiling per model and length (about half an hour in all on
#   an H100); BENCH_TORCH=0 runs ours only (no ratios).
# PyTorch is checked before ours runs, so a missing torch stops the run at
# once rather than after ours; any part that fails stops it with its name.
set -uo pipefail
cd "$(dirname "$0")/.."
die() { echo "bench-cuda: $*" >&2; exit 1; }
out=${BENCH_OUT:-build/bench_cuda.jsonl}
only=${BENCH_ONLY:-a,b,c}
quick=${BENCH_QUICK:+--quick}
seqs=${BENCH_TRAIN_SEQ:-2048 8192 16384}
torch=${BENCH_TORCH:-1}
[[ $only =~ ^[abc](,[abc])*$ ]] || die "BENCH_ONLY takes a comma list of a, b, c; got '$only'"
[[ $seqs =~ ^[0-9]+( [0-9]+)*$ ]] || die "BENCH_TRAIN_SEQ takes lengths separated by spaces; got '$seqs'"
if [ "$torch" != 0 ]; then
    version=$(python3 -c 'import torch, sys; print(torch.__version__) if torch.cuda.is_available() else sys.exit(1)' 2>/dev/null) ||
        die "the baseline needs PyTorch with a CUDA device (python3 -c 'import torch' failed or saw no GPU); BENCH_TORCH=0 runs ours only"
fi
: > "$out" || die "cannot write $out"
export PYTHONUNBUFFERED=1
if [[ $only == *a* ]]; then
    echo "== (a) attention core: ours" >&2
    build/bench_attention $quick | tee -a "$out" || die "(a) build/bench_attention failed"
fi
if [[ $only == *b* ]]; then
    echo "== (b) attention layer forward: ours (bf16)" >&2
    build/gqe bench/layer_cuda.lua bf16 2048 8192 32768 | tee -a "$out" || die "(b) bench/layer_cuda.lua failed"
fi
if [[ $only == *c* ]]; then
    echo "== (c) training throughput: ours (bf16 mixed precision)" >&2
    for S in $seqs; do
        build/gqe bench/train_cuda.lua 10 both bf16 "$S" | tee -a "$out" || die "(c) bench/train_cuda.lua at S=$S failed"
    done
fi
if [ "$torch" != 0 ]; then
    echo "== PyTorch $version on the same GPU" >&2
    python3 bench/torch_baseline.py $quick --only "$only" --train-seq "${seqs// /,}" \
        --modes "${BENCH_TORCH_MODES:-eager,default,max-autotune}" --out build/bench_torch.jsonl ||
        die "bench/torch_baseline.py failed (its lines so far are in build/bench_torch.jsonl)"
    cat build/bench_torch.jsonl >> "$out"
fi
build/gqe bench/report_cuda.lua "$out"
