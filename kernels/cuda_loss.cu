/* Softmax cross-entropy, one block per row. Backward overwrites and may run
 * in place (dlogits == logits): after the row reduction each element is read
 * and then written by the same thread, and no thread reads another's. */
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
    if (all_bf16(logits, dlogits) && vec8_ok(V, gqe_tensor_data(logits), gqe_tensor_data(dlogits)))
        k_ce_bwd<true><<<(unsigned)R, CE_THREADS>>>(fp(dlogits), fp(logits), gqe_i32(targets), V, scale, flag);
    else
        k_ce_bwd<false><<<(unsigned)R, CE_THREADS>>>(fp(dlogits), fp(logits), gqe_i32(targets), V, scale, flag);
    LAUNCH_CHECK("cross_entropy backward kernel");
    return GQE_OK;
}
