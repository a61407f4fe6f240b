/* Softmax cross-entropy and top-1 accuracy, one block per row. Backward
 * overwrites and may run in place (dlogits == logits): after the row
 * reduction each element is read and then written by the same thread, and
 * no thread reads another's. */
#include "common.cuh"

#define CE_THREADS 256

/* Row max and sum of exp(x - max), combined over the block. */
__device__ void row_lse(fptr logits, int64_t base, int64_t V, float *scratch, float *mx, float *sum) {
    float m = -INFINITY, s = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
        float v = ldf(logits, base + j);
        if (v > m) { s = s * expf(m - v) + 1.0f; m = v; }
        else if (v != -INFINITY) s += expf(v - m);
    }
    float M = block_max(m, scratch);
    s = m == -INFINITY ? 0.0f : s * expf(m - M);
    s = block_sum(s, scratch);
    *mx = M;
    *sum = s;
}

/* The same for bf16 rows of V % 8 == 0 on 16-byte boundaries: 8 values per load. */
__device__ void row_lse8(const uint4 *row, int64_t V8, float *scratch, float *mx, float *sum) {
    float m = -INFINITY, s = 0;
    for (int64_t j = threadIdx.x; j < V8; j += blockDim.x) {
        float f[8];
        unpack8(row[j], f);
        float vm = f[0];
#pragma unroll
        for (int k = 1; k < 8; k++) vm = fmaxf(vm, f[k]);
        if (vm > m) { s = m == -INFINITY ? 0.0f : s * expf(m - vm); m = vm; }
        if (m == -INFINITY) continue;
#pragma unroll
        for (int k = 0; k < 8; k++) s += expf(f[k] - m);
    }
    float M = block_max(m, scratch);
    s = m == -INFINITY ? 0.0f : s * expf(m - M);
    s = block_sum(s, scratch);
    *mx = M;
    *sum = s;
}

template <bool VEC8>
__global__ void k_ce_fwd(float *losses, fptr logits, const int32_t *targets, int64_t V, int *flag) {
    __shared__ float scratch[32];
    int64_t r = blockIdx.x, base = r * V;
    int32_t t = targets[r];
    if (t < 0) { if (threadIdx.x == 0) losses[r] = 0.0f; return; }
    if (t >= V) {
        if (threadIdx.x == 0) { atomicOr(flag, GQE_FLAG_TARGET); losses[r] = NAN; }
        return;
    }
    float m, s;
    if (VEC8) row_lse8((const uint4 *)logits.p + base / 8, V / 8, scratch, &m, &s);
    else row_lse(logits, base, V, scratch, &m, &s);
    if (threadIdx.x == 0) losses[r] = m + logf(s) - ldf(logits, base + t);
}

template <bool VEC8>
__global__ void k_ce_bwd(fptr dlogits, fptr logits, const int32_t *targets, int64_t V, float scale, int *flag) {
    __shared__ float scratch[32];
    int64_t r = blockIdx.x, base = r * V;
    int32_t t = targets[r];
    if (t < 0 || t >= V) {
        if (t >= V && threadIdx.x == 0) atomicOr(flag, GQE_FLAG_TARGET);
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) stf(dlogits, base + j, 0.0f);
        return;
    }
    float m, s;
    if (VEC8) row_lse8((const uint4 *)logits.p + base / 8, V / 8, scratch, &m, &s);
    else row_lse(logits, base, V, scratch, &m, &s);
    float inv = 1.0f / s;
    if (VEC8) {
        const uint4 *in = (const uint4 *)logits.p + base / 8;
        uint4 *out = (uint4 *)dlogits.p + base / 8;
        for (int64_t j = threadIdx.x; j < V / 8; j += blockDim.x) {
            float f[8];
            unpack8(in[j], f);
#pragma unroll
            for (int k = 0; k < 8; k++) f[k] = scale * (expf(f[k] - m) * inv - (j * 8 + k == t ? 1.0f : 0.0f));
            out[j] = pack8(f);
        }
    } else {
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            float p = expf(ldf(logits, base + j) - m) * inv;
            stf(dlogits, base + j, scale * (p - (j == t ? 1.0f : 0.0f)));
        }
    }
}

/* ---- top-1 accuracy --------------------------------------------------------
 * Each thread scans its strided share of the row in ascending order keeping
 * the first maximum (strict >), then the block combines (value, index) pairs
 * by "larger value, else lower index": a total order, so the result is the
 * row's first maximum whatever the reduction order. Index -1 means "none
 * yet" (NaNs are never taken: both comparisons are false for them). */
__device__ __forceinline__ void am_scan(float &m, int &i, float v, int j) {
    if (v > m || (i < 0 && v == m)) { m = v; i = j; }
}
__device__ __forceinline__ void am_merge(float &m, int &i, float v, int j) {
    if (j >= 0 && (i < 0 || v > m || (v == m && j < i))) { m = v; i = j; }
}
__device__ __forceinline__ void warp_argmax(float &m, int &i) {
    for (int o = 16; o > 0; o >>= 1) {
        float vm = __shfl_xor_sync(0xffffffffu, m, o);
        int vi = __shfl_xor_sync(0xffffffffu, i, o);
        am_merge(m, i, vm, vi);
    }
}

/* The block's first maximum of the per-thread (m, i) pairs; valid in
 * thread 0. */
__device__ int block_argmax(float m, int i, float *sm, int *si) {
    warp_argmax(m, i);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) { sm[w] = m; si[w] = i; }
    __syncthreads();
    if (w == 0) {
        m = lane < nw ? sm[lane] : -INFINITY;
        i = lane < nw ? si[lane] : -1;
        warp_argmax(m, i);
    }
    return i;
}

/* Backward with the row in registers (bf16, V <= CE_ROW_THREADS * 8 * NV):
 * one read and one write of the logits instead of the two reads of
 * k_ce_bwd (the second misses L2 at the LM head's 50K-wide rows). Each
 * thread keeps NV 16-byte words; the max and the sum are exact two-pass
 * reductions over them. FUSED (cross_entropy_fused) also writes the row's
 * loss and top-1 hit from the same registers. */
#define CE_ROW_THREADS 1024
template <int NV, bool FUSED>
__global__ void __launch_bounds__(CE_ROW_THREADS) k_ce_bwd_reg(uint4 *dlogits, const uint4 *logits,
                                                                const int32_t *targets, int V8,
                                                                float scale, int *flag, float *losses,
                                                                float *correct) {
    __shared__ float scratch[32];
    __shared__ int iscratch[32];
    const int t = targets[blockIdx.x], tid = threadIdx.x;
    const uint4 *in = logits + (int64_t)blockIdx.x * V8;
    uint4 *out = dlogits + (int64_t)blockIdx.x * V8;
    if (t < 0 || t >= 8 * V8) {   /* uniform over the block: no thread reaches a barrier */
        if (t >= 0 && tid == 0) atomicOr(flag, GQE_FLAG_TARGET);
        if (FUSED && tid == 0) losses[blockIdx.x] = correct[blockIdx.x] = t < 0 ? 0.0f : NAN;
        for (int j = tid; j < V8; j += CE_ROW_THREADS) out[j] = make_uint4(0, 0, 0, 0);
        return;
    }
    uint4 w[NV];
#pragma unroll
    for (int c = 0; c < NV; c++)
        if (tid + c * CE_ROW_THREADS < V8) w[c] = in[tid + c * CE_ROW_THREADS];
    float m = -INFINITY, am = -INFINITY;
    int ai = -1;   /* this thread's first maximum, for the hit (FUSED) */
#pragma unroll
    for (int c = 0; c < NV; c++) {
        if (tid + c * CE_ROW_THREADS >= V8) break;
        float f[8];
        unpack8(w[c], f);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            m = fmaxf(m, f[k]);
            if (FUSED) am_scan(am, ai, f[k], (tid + c * CE_ROW_THREADS) * 8 + k);
        }
    }
    if (FUSED) {
        const int best = block_argmax(am, ai, scratch, iscratch);
        if (tid == 0) correct[blockIdx.x] = best == t ? 1.0f : 0.0f;
        __syncthreads();   /* scratch is reused below */
    }
    const float M = block_max(m, scratch);
    float s = 0;
#pragma unroll
    for (int c = 0; c < NV; c++) {
        if (M == -INFINITY || tid + c * CE_ROW_THREADS >= V8) break;
        float f[8];
        unpack8(w[c], f);
#pragma unroll
        for (int k = 0; k < 8; k++) s += expf(f[k] - M);
    }
    const float S = block_sum(s, scratch), p = scale / S;   /* scale * softmax = p * exp(x - M) */
#pragma unroll
    for (int c = 0; c < NV; c++) {
        const int j = tid + c * CE_ROW_THREADS;
        if (j >= V8) break;
        float f[8];
        unpack8(w[c], f);
        if (FUSED && j == t >> 3) {
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (k == (t & 7)) losses[blockIdx.x] = M + logf(S) - f[k];
        }
#pragma unroll
        for (int k = 0; k < 8; k++) f[k] = p * expf(f[k] - M);
        if (j == t >> 3) {
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (k == (t & 7)) f[k] -= scale;
        }
        out[j] = pack8(f);
    }
}

gqe_status gqe_cuda_cross_entropy_forward(gqe_tensor *losses, const gqe_tensor *logits, const gqe_tensor *targets) {
    GQE_TRY(gqe_cuda_need_f32(losses, "cross_entropy_forward", "losses"));
    GQE_TRY(gqe_cuda_need_float(logits, "cross_entropy_forward", "logits"));
    GQE_TRY(gqe_cuda_need_i32(targets, "cross_entropy_forward", "targets"));
    int64_t V = logits->shape[logits->ndim - 1], R = gqe_tensor_numel(targets);
    if (R == 0) return GQE_OK;
    if (R > INT32_MAX) return gqe_fail(GQE_ERR_SHAPE, "cross_entropy: more than 2^31 rows");
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "cross_entropy_forward: no device flag");
    if (all_bf16(logits) && vec8_ok(V, gqe_tensor_data(logits)))
        k_ce_fwd<true><<<(unsigned)R, CE_THREADS>>>(gqe_f32(losses), fp(logits), gqe_i32(targets), V, flag);
    else
        k_ce_fwd<false><<<(unsigned)R, CE_THREADS>>>(gqe_f32(losses), fp(logits), gqe_i32(targets), V, flag);
    LAUNCH_CHECK("cross_entropy forward kernel");
    return GQE_OK;
}

/* Launches k_ce_bwd_reg where it applies (bf16 rows on 16-byte boundaries,
 * at most CE_ROW_THREADS * 64 values); false where it does not. */
template <bool FUSED>
static bool ce_row_in_registers(gqe_tensor *dlogits, const gqe_tensor *logits, const gqe_tensor *targets,
                                float scale, int *flag, float *losses, float *correct) {
    const int64_t V = logits->shape[logits->ndim - 1], R = gqe_tensor_numel(targets);
    const bool vec8 = all_bf16(logits, dlogits) && vec8_ok(V, gqe_tensor_data(logits), gqe_tensor_data(dlogits));
    const int64_t words = (V / 8 + CE_ROW_THREADS - 1) / CE_ROW_THREADS;   /* 16-byte words per thread */
    if (!vec8 || words > 8) return false;
    uint4 *out = (uint4 *)gqe_tensor_data(dlogits);
    const uint4 *in = (const uint4 *)gqe_tensor_data(logits);
    const int32_t *tg = gqe_i32(targets);
    const unsigned grid = (unsigned)R;
    const int V8 = (int)(V / 8);
    if (words <= 2) k_ce_bwd_reg<2, FUSED><<<grid, CE_ROW_THREADS>>>(out, in, tg, V8, scale, flag, losses, correct);
    else if (words <= 4) k_ce_bwd_reg<4, FUSED><<<grid, CE_ROW_THREADS>>>(out, in, tg, V8, scale, flag, losses, correct);
    else if (words <= 7) k_ce_bwd_reg<7, FUSED><<<grid, CE_ROW_THREADS>>>(out, in, tg, V8, scale, flag, losses, correct);
    else k_ce_bwd_reg<8, FUSED><<<grid, CE_ROW_THREADS>>>(out, in, tg, V8, scale, flag, losses, correct);
    return true;
}

gqe_status gqe_cuda_cross_entropy_backward(gqe_tensor *dlogits, const gqe_tensor *logits,
                                           const gqe_tensor *targets, float scale) {
    GQE_TRY(gqe_cuda_need_float(dlogits, "cross_entropy_backward", "dlogits"));
    GQE_TRY(gqe_cuda_need_float(logits, "cross_entropy_backward", "logits"));
    GQE_TRY(gqe_cuda_need_i32(targets, "cross_entropy_backward", "targets"));
    int64_t V = logits->shape[logits->ndim - 1], R = gqe_tensor_numel(targets);
    if (R == 0) return GQE_OK;
    if (R > INT32_MAX) return gqe_fail(GQE_ERR_SHAPE, "cross_entropy: more than 2^31 rows");
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "cross_entropy_backward: no device flag");
    if (!ce_row_in_registers<false>(dlogits, logits, targets, scale, flag, NULL, NULL)) {
        if (all_bf16(logits, dlogits) && vec8_ok(V, gqe_tensor_data(logits), gqe_tensor_data(dlogits)))
            k_ce_bwd<true><<<(unsigned)R, CE_THREADS>>>(fp(dlogits), fp(logits), gqe_i32(targets), V, scale, flag);
        else
            k_ce_bwd<false><<<(unsigned)R, CE_THREADS>>>(fp(dlogits), fp(logits), gqe_i32(targets), V, scale, flag);
    }
    LAUNCH_CHECK("cross_entropy backward kernel");
    return GQE_OK;
}

/* One pass where the row fits in registers; elsewhere the three kernels in
 * stream order (loss and hit read the row before backward overwrites it). */
gqe_status gqe_cuda_cross_entropy_fused(gqe_tensor *dlogits, gqe_tensor *losses, gqe_tensor *correct,
                                        const gqe_tensor *logits, const gqe_tensor *targets, float scale) {
    const char *op = "cross_entropy_fused";
    GQE_TRY(gqe_cuda_need_float(dlogits, op, "dlogits"));
    GQE_TRY(gqe_cuda_need_f32(losses, op, "losses"));
    GQE_TRY(gqe_cuda_need_f32(correct, op, "correct"));
    GQE_TRY(gqe_cuda_need_float(logits, op, "logits"));
    GQE_TRY(gqe_cuda_need_i32(targets, op, "targets"));
    int64_t R = gqe_tensor_numel(targets);
    if (R == 0) return GQE_OK;
    if (R > INT32_MAX) return gqe_fail(GQE_ERR_SHAPE, "cross_entropy: more than 2^31 rows");
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "cross_entropy_fused: no device flag");
    if (ce_row_in_registers<true>(dlogits, logits, targets, scale, flag, gqe_f32(losses), gqe_f32(correct))) {
        LAUNCH_CHECK("cross_entropy fused kernel");
        return GQE_OK;
    }
    GQE_TRY(gqe_cuda_cross_entropy_forward(losses, logits, targets));
    GQE_TRY(gqe_cuda_argmax_correct(correct, logits, targets));
    return gqe_cuda_cross_entropy_backward(dlogits, logits, targets, scale);
}

/* ---- top-1 accuracy (the helpers above) ---------------------------------- */
template <bool VEC8>
__global__ void k_argmax_correct(float *correct, fptr logits, const int32_t *targets, int V, int *flag) {
    __shared__ float sm[32];
    __shared__ int si[32];
    int64_t r = blockIdx.x, base = r * (int64_t)V;
    int32_t t = targets[r];
    if (t < 0 || t >= V) {   /* uniform over the block: no thread reaches a barrier */
        if (threadIdx.x == 0) {
            if (t >= V) atomicOr(flag, GQE_FLAG_TARGET);
            correct[r] = t < 0 ? 0.0f : NAN;
        }
        return;
    }
    float m = -INFINITY;
    int i = -1;
    if (VEC8) {
        const uint4 *row = (const uint4 *)logits.p + base / 8;
        for (int j = threadIdx.x; j < V / 8; j += blockDim.x) {
            float f[8];
            unpack8(row[j], f);
#pragma unroll
            for (int k = 0; k < 8; k++) am_scan(m, i, f[k], j * 8 + k);
        }
    } else {
        for (int j = threadIdx.x; j < V; j += blockDim.x) am_scan(m, i, ldf(logits, base + j), j);
    }
    i = block_argmax(m, i, sm, si);
    if (threadIdx.x == 0) correct[r] = i == t ? 1.0f : 0.0f;
}

gqe_status gqe_cuda_argmax_correct(gqe_tensor *correct, const gqe_tensor *logits, const gqe_tensor *targets) {
    GQE_TRY(gqe_cuda_need_f32(correct, "argmax_correct", "correct"));
    GQE_TRY(gqe_cuda_need_float(logits, "argmax_correct", "logits"));
    GQE_TRY(gqe_cuda_need_i32(targets, "argmax_correct", "targets"));
    int64_t V = logits->shape[logits->ndim - 1], R = gqe_tensor_numel(targets);
    if (R == 0) return GQE_OK;
    if (R > INT32_MAX) return gqe_fail(GQE_ERR_SHAPE, "argmax_correct: more than 2^31 rows");
    if (V > INT32_MAX - CE_THREADS * 8) return gqe_fail(GQE_ERR_SHAPE, "argmax_correct: more than 2^31 classes");
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "argmax_correct: no device flag");
    if (all_bf16(logits) && vec8_ok(V, gqe_tensor_data(logits)))
        k_argmax_correct<true><<<(unsigned)R, CE_THREADS>>>(gqe_f32(correct), fp(logits), gqe_i32(targets), (int)V, flag);
    else
        k_argmax_correct<false><<<(unsigned)R, CE_THREADS>>>(gqe_f32(correct), fp(logits), gqe_i32(targets), (int)V, flag);
    LAUNCH_CHECK("argmax_correct kernel");
    return GQE_OK;
}
