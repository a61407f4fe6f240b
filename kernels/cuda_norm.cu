/* Embedding lookup and RMSNorm, forward and backward. */
#include "common.cuh"

/* ---- embedding ---------------------------------------------------------------- */
__global__ void k_embedding_fwd(fptr out, fptr table, const int32_t *ids, int64_t R, int64_t D, int64_t V,
                                int *flag) {
    GRID_STRIDE(i, R * D) {
        int64_t r = i / D, d = i % D;
        int32_t id = ids[r];
        if (id < 0 || id >= V) {
            if (d == 0) atomicOr(flag, GQE_FLAG_EMBEDDING);
            stf(out, i, 0.0f);
        } else {
            stf(out, i, ldf(table, (int64_t)id * D + d));
        }
    }
}

/* Rows with equal ids collide, so the scatter adds atomically (f32 only). */
__global__ void k_embedding_bwd(float *dtable, fptr dout, const int32_t *ids, int64_t R, int64_t D, int64_t V,
                                int *flag) {
    GRID_STRIDE(i, R * D) {
        int64_t r = i / D, d = i % D;
        int32_t id = ids[r];
        if (id < 0 || id >= V) {
            if (d == 0) atomicOr(flag, GQE_FLAG_EMBEDDING);
            continue;
        }
        atomicAdd(dtable + (int64_t)id * D + d, ldf(dout, i));
    }
}

gqe_status gqe_cuda_embedding_forward(gqe_tensor *out, const gqe_tensor *table, const gqe_tensor *ids) {
    GQE_TRY(gqe_cuda_need_float(out, "embedding_forward", "out"));
    GQE_TRY(gqe_cuda_need_float(table, "embedding_forward", "table"));
    GQE_TRY(gqe_cuda_need_i32(ids, "embedding_forward", "ids"));
    int64_t V = table->shape[0], D = table->shape[table->ndim - 1], R = gqe_tensor_numel(ids);
    if (R * D == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "embedding_forward: no device flag");
    k_embedding_fwd<<<gqe_grid_for(R * D, 256), 256>>>(fp(out), fp(table), gqe_i32(ids), R, D, V, flag);
    LAUNCH_CHECK("embedding forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_embedding_backward(gqe_tensor *dtable, const gqe_tensor *dout, const gqe_tensor *ids) {
    GQE_TRY(gqe_cuda_need_f32(dtable, "embedding_backward", "dtable"));
    GQE_TRY(gqe_cuda_need_float(dout, "embedding_backward", "dout"));
    GQE_TRY(gqe_cuda_need_i32(ids, "embedding_backward", "ids"));
    int64_t V = dtable->shape[0], D = dtable->shape[dtable->ndim - 1], R = gqe_tensor_numel(ids);
    if (R * D == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "embedding_backward: no device flag");
    k_embedding_bwd<<<gqe_grid_for(R * D, 256), 256>>>(gqe_f32(dtable), fp(dout), gqe_i32(ids), R, D, V, flag);
    LAUNCH_CHECK("embedding backward kernel");
    return GQE_OK;
}

/* ---- RMSNorm: one block per row ------------------------------------------ */
#ifndef NORM_THREADS   /* -D for tuning runs */
#define NORM_THREADS 256
#endif

__global__ void k_rmsnorm_fwd(fptr out, float *rstd, fptr x, fptr w, int64_t D, float eps) {
    __shared__ float scratch[32];
    int64_t r = blockIdx.x;
    const int64_t base = r * D;
    float ss = 0;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float v = ldf(x, base + d);
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    float rs = rsqrtf(ss / (float)D + eps);
    if (threadIdx.x == 0) rstd[r] = rs;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) stf(out, base + d, ldf(x, base + d) * rs * ldf(w, d));
}

/* A thread's VEC consecutive values at row offset i (VEC 1 or 4). */
template <int VEC>
__device__ __forceinline__ void ldv(fptr a, int64_t i, float *f) {
    if (VEC == 4) ld4(a, i, f);
    else f[0] = ldf(a, i);
}
template <int VEC>
__device__ __forceinline__ void stv(fptr a, int64_t i, const float *f) {
    if (VEC == 4) st4(a, i, f);
    else stf(a, i, f[0]);
}

/* add + RMSNorm with the row in registers (D <= NORM_THREADS * CPT * VEC):
 * thread t holds columns (c * NORM_THREADS + t) * VEC + e, read and written
 * VEC at a time (16-byte words when VEC = 4), and never reads back the sum
 * it just stored. (A warp per row, tried with VEC = 1, ran 1.5x slower at
 * D = 1024.) */
template <int CPT, int VEC>
__global__ void __launch_bounds__(NORM_THREADS) k_add_rmsnorm_fwd_reg(fptr sum, fptr out, float *rstd, fptr a,
                                                                       fptr b, fptr w, int D, float eps) {
    __shared__ float scratch[32];
    const int64_t base = (int64_t)blockIdx.x * D;
    float v[CPT][VEC], ss = 0;
#pragma unroll
    for (int c = 0; c < CPT; c++) {
        const int j = (threadIdx.x + c * NORM_THREADS) * VEC;
        float av[VEC], bv[VEC];
        if (j < D) {
            ldv<VEC>(a, base + j, av);
            ldv<VEC>(b, base + j, bv);
        }
#pragma unroll
        for (int e = 0; e < VEC; e++) {
            v[c][e] = j < D ? stored(sum, av[e] + bv[e]) : 0.0f;
            ss += v[c][e] * v[c][e];
        }
        if (j < D) stv<VEC>(sum, base + j, v[c]);
    }
    ss = block_sum(ss, scratch);
    float rs = rsqrtf(ss / (float)D + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
#pragma unroll
    for (int c = 0; c < CPT; c++) {
        const int j = (threadIdx.x + c * NORM_THREADS) * VEC;
        if (j >= D) continue;
        float wv[VEC], o[VEC];
        ldv<VEC>(w, j, wv);
#pragma unroll
        for (int e = 0; e < VEC; e++) o[e] = v[c][e] * rs * wv[e];
        stv<VEC>(out, base + j, o);
    }
}

/* sum = a + b, then out = rmsnorm(sum) exactly as k_rmsnorm_fwd computes it
 * from the stored sum (same per-thread order, same block reduction). */
__global__ void k_add_rmsnorm_fwd(fptr sum, fptr out, float *rstd, fptr a, fptr b, fptr w, int64_t D, float eps) {
    __shared__ float scratch[32];
    int64_t r = blockIdx.x;
    const int64_t base = r * D;
    float ss = 0;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        stf(sum, base + d, ldf(a, base + d) + ldf(b, base + d));
        float v = ldf(sum, base + d);
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    float rs = rsqrtf(ss / (float)D + eps);
    if (threadIdx.x == 0) rstd[r] = rs;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) stf(out, base + d, ldf(sum, base + d) * rs * ldf(w, d));
}

/* dx = rstd * w * g - x * rstd^3 / D * sum_j g_j w_j x_j  (accumulated);
 * dx_copy (p == NULL: none) receives the stored result in its dtype. */
__global__ void k_rmsnorm_bwd_dx(fptr dx, fptr dout, fptr x, fptr w, const float *rstd, int64_t D, fptr dxc) {
    __shared__ float scratch[32];
    int64_t r = blockIdx.x;
    const int64_t base = r * D;
    float dot = 0;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) dot += ldf(dout, base + d) * ldf(w, d) * ldf(x, base + d);
    dot = block_sum(dot, scratch);
    float rs = rstd[r];
    float c = rs * rs * rs * dot / (float)D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float g = rs * ldf(w, d) * ldf(dout, base + d) - c * ldf(x, base + d);
        stf(dx, base + d, ldf(dx, base + d) + g);
        if (dxc.p) stf(dxc, base + d, ldf(dx, base + d));
    }
}

/* dw[j] += sum_r g[r,j] x[r,j] rstd[r]: each block sums a chunk of rows for
 * a run of columns (coalesced), then one atomic per column and chunk. */
__global__ void k_rmsnorm_bwd_dw(float *dw, fptr dout, fptr x, const float *rstd, int64_t R, int64_t D,
                                 int64_t chunk) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D) return;
    int64_t r0 = (int64_t)blockIdx.y * chunk, r1 = r0 + chunk < R ? r0 + chunk : R;
    float acc = 0;
    for (int64_t r = r0; r < r1; r++) acc += ldf(dout, r * D + j) * ldf(x, r * D + j) * rstd[r];
    atomicAdd(dw + j, acc);
}

/* Both gradients in one pass for D <= NORM_THREADS * CPT * VEC: a block
 * walks NORM_ROWS rows, each thread keeps its columns' dout and x in
 * registers between the row's dot product and the dx update, and its dw
 * partial sums until one atomic per column at the end. Columns are laid out
 * as in k_add_rmsnorm_fwd_reg. Tuning (H100, D = 1024, 16K rows; -D flags
 * of a tuning build): 32 rows per block beat 8, 16 and 64, and 128 threads
 * lost to 256; NORM_BWD_VEC=1 forces single values (kernels/NOTES.md). */
#ifndef NORM_BWD_VEC
#define NORM_BWD_VEC 4
#endif
#ifndef NORM_ROWS
#define NORM_ROWS 32
#endif
template <int CPT, int VEC>
__global__ void __launch_bounds__(NORM_THREADS) k_rmsnorm_bwd_fused(fptr dx, float *dw, fptr dout, fptr x, fptr w,
                                                                     const float *rstd, int64_t R, int D, fptr dxc) {
    __shared__ float scratch[32];
    float wv[CPT][VEC], acc[CPT][VEC];
#pragma unroll
    for (int c = 0; c < CPT; c++) {
        const int j = (threadIdx.x + c * NORM_THREADS) * VEC;
        if (j < D) ldv<VEC>(w, j, wv[c]);
#pragma unroll
        for (int e = 0; e < VEC; e++) {
            if (j >= D) wv[c][e] = 0.0f;
            acc[c][e] = 0.0f;
        }
    }
    /* Software-pipelined: row r + 1's dout, x and dx are loaded before row
     * r's reduction, so their memory latency overlaps its barrier and stores
     * (the block walks its rows one after another). */
    const int64_t r0 = (int64_t)blockIdx.x * NORM_ROWS, r1 = r0 + NORM_ROWS < R ? r0 + NORM_ROWS : R;
    float gv[CPT][VEC], xv[CPT][VEC], dv[CPT][VEC];
#pragma unroll
    for (int c = 0; c < CPT; c++) {
        const int j = (threadIdx.x + c * NORM_THREADS) * VEC;
        if (j < D) {
            ldv<VEC>(dout, r0 * D + j, gv[c]);
            ldv<VEC>(x, r0 * D + j, xv[c]);
            ldv<VEC>(dx, r0 * D + j, dv[c]);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; e++) gv[c][e] = xv[c][e] = dv[c][e] = 0.0f;
        }
    }
    for (int64_t r = r0; r < r1; r++) {
        const int64_t base = r * D, next = (r + 1 < r1 ? r + 1 : r) * D;
        float gn[CPT][VEC], xn[CPT][VEC], dn[CPT][VEC], dot = 0;
#pragma unroll
        for (int c = 0; c < CPT; c++) {
            const int j = (threadIdx.x + c * NORM_THREADS) * VEC;
#pragma unroll
            for (int e = 0; e < VEC; e++) dot += gv[c][e] * wv[c][e] * xv[c][e];
            if (j < D) {
                ldv<VEC>(dout, next + j, gn[c]);
                ldv<VEC>(x, next + j, xn[c]);
                ldv<VEC>(dx, next + j, dn[c]);
            }
        }
        dot = block_sum(dot, scratch);
        const float rs = rstd[r], k = rs * rs * rs * dot / (float)D;
#pragma unroll
        for (int c = 0; c < CPT; c++) {
            const int j = (threadIdx.x + c * NORM_THREADS) * VEC;
            if (j < D) {
                float o[VEC];
#pragma unroll
                for (int e = 0; e < VEC; e++) {
                    o[e] = stored(dx, dv[c][e] + (rs * wv[c][e] * gv[c][e] - k * xv[c][e]));
                    acc[c][e] += gv[c][e] * xv[c][e] * rs;
                }
                stv<VEC>(dx, base + j, o);
                if (dxc.p) stv<VEC>(dxc, base + j, o);
#pragma unroll
                for (int e = 0; e < VEC; e++) {
                    gv[c][e] = gn[c][e];
                    xv[c][e] = xn[c][e];
                    dv[c][e] = dn[c][e];
                }
            }
        }
    }
#pragma unroll
    for (int c = 0; c < CPT; c++) {
        const int j = (threadIdx.x + c * NORM_THREADS) * VEC;
        if (j < D)
#pragma unroll
            for (int e = 0; e < VEC; e++) atomicAdd(dw + j + e, acc[c][e]);
    }
}

gqe_status gqe_cuda_rmsnorm_forward(gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *x,
                                    const gqe_tensor *w, float eps) {
    GQE_TRY(gqe_cuda_need_float(out, "rmsnorm_forward", "out"));
    GQE_TRY(gqe_cuda_need_f32(rstd, "rmsnorm_forward", "rstd"));
    GQE_TRY(gqe_cuda_need_float(x, "rmsnorm_forward", "x"));
    GQE_TRY(gqe_cuda_need_float(w, "rmsnorm_forward", "w"));
    int64_t D = x->shape[x->ndim - 1], R = D ? gqe_tensor_numel(x) / D : 0;
    if (R == 0) return GQE_OK;
    if (R > INT32_MAX) return gqe_fail(GQE_ERR_SHAPE, "rmsnorm: more than 2^31 rows");
    k_rmsnorm_fwd<<<(unsigned)R, NORM_THREADS>>>(fp(out), gqe_f32(rstd), fp(x), fp(w), D, eps);
    LAUNCH_CHECK("rmsnorm forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_add_rmsnorm_forward(gqe_tensor *sum, gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *a,
                                        const gqe_tensor *b, const gqe_tensor *w, float eps) {
    const char *op = "add_rmsnorm_forward";
    GQE_TRY(gqe_cuda_need_float(sum, op, "sum"));
    GQE_TRY(gqe_cuda_need_float(out, op, "out"));
    GQE_TRY(gqe_cuda_need_f32(rstd, op, "rstd"));
    GQE_TRY(gqe_cuda_need_float(a, op, "a"));
    GQE_TRY(gqe_cuda_need_float(b, op, "b"));
    GQE_TRY(gqe_cuda_need_float(w, op, "w"));
    int64_t D = a->shape[a->ndim - 1], R = D ? gqe_tensor_numel(a) / D : 0;
    if (R == 0) return GQE_OK;
    if (R > INT32_MAX) return gqe_fail(GQE_ERR_SHAPE, "rmsnorm: more than 2^31 rows");
    const bool v4 = vec4_ok(D, gqe_tensor_data(sum), gqe_tensor_data(out), gqe_tensor_data(a), gqe_tensor_data(b),
                            gqe_tensor_data(w));
#define ADD_NORM(CPT, VEC) k_add_rmsnorm_fwd_reg<CPT, VEC><<<(unsigned)R, NORM_THREADS>>>( \
        fp(sum), fp(out), gqe_f32(rstd), fp(a), fp(b), fp(w), (int)D, eps)
    if (v4 && D <= NORM_THREADS * 4) ADD_NORM(1, 4);
    else if (v4 && D <= NORM_THREADS * 8) ADD_NORM(2, 4);
    else if (D <= NORM_THREADS * 4) ADD_NORM(4, 1);
    else if (D <= NORM_THREADS * 8) ADD_NORM(8, 1);
    else
        k_add_rmsnorm_fwd<<<(unsigned)R, NORM_THREADS>>>(fp(sum), fp(out), gqe_f32(rstd), fp(a), fp(b), fp(w), D, eps);
#undef ADD_NORM
    LAUNCH_CHECK("add + rmsnorm forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_rmsnorm_backward(gqe_tensor *dx, gqe_tensor *dw, const gqe_tensor *dout,
                                     const gqe_tensor *x, const gqe_tensor *w, const gqe_tensor *rstd,
                                     gqe_tensor *dx_copy) {
    GQE_TRY(gqe_cuda_need_float(dout, "rmsnorm_backward", "dout"));
    GQE_TRY(gqe_cuda_need_float(x, "rmsnorm_backward", "x"));
    GQE_TRY(gqe_cuda_need_float(w, "rmsnorm_backward", "w"));
    GQE_TRY(gqe_cuda_need_f32(rstd, "rmsnorm_backward", "rstd"));
    int64_t D = x->shape[x->ndim - 1], R = D ? gqe_tensor_numel(x) / D : 0;
    if (R == 0) return GQE_OK;
    if (R > INT32_MAX) return gqe_fail(GQE_ERR_SHAPE, "rmsnorm: more than 2^31 rows");
    const bool want_dx = dx && !gqe_tensor_is_empty(dx), want_dw = dw && !gqe_tensor_is_empty(dw);
    if (want_dx) GQE_TRY(gqe_cuda_need_float(dx, "rmsnorm_backward", "dx"));
    if (want_dw) GQE_TRY(gqe_cuda_need_f32(dw, "rmsnorm_backward", "dw"));
    fptr dxc = fp_null();
    if (dx_copy && !gqe_tensor_is_empty(dx_copy)) {
        if (!want_dx) return gqe_fail(GQE_ERR_ARG, "rmsnorm_backward: dx_copy needs dx");
        GQE_TRY(gqe_cuda_need_float(dx_copy, "rmsnorm_backward", "dx_copy"));
        dxc = fp(dx_copy);
    }
    if (want_dx && want_dw && D <= NORM_THREADS * 8) {
        const unsigned grid = (unsigned)((R + NORM_ROWS - 1) / NORM_ROWS);
        const bool v4 = NORM_BWD_VEC == 4 && vec4_ok(D, gqe_tensor_data(dx), gqe_tensor_data(dout), gqe_tensor_data(x),
                                                     gqe_tensor_data(w), dxc.p);
#define NORM_BWD(CPT, VEC) k_rmsnorm_bwd_fused<CPT, VEC><<<grid, NORM_THREADS>>>( \
        fp(dx), gqe_f32(dw), fp(dout), fp(x), fp(w), gqe_f32(rstd), R, (int)D, dxc)
        if (v4 && D <= NORM_THREADS * 4) NORM_BWD(1, 4);
        else if (v4) NORM_BWD(2, 4);
        else if (D <= NORM_THREADS * 4) NORM_BWD(4, 1);
        else NORM_BWD(8, 1);
#undef NORM_BWD
        LAUNCH_CHECK("rmsnorm backward kernel");
        return GQE_OK;
    }
    if (want_dx) {
        k_rmsnorm_bwd_dx<<<(unsigned)R, NORM_THREADS>>>(fp(dx), fp(dout), fp(x), fp(w), gqe_f32(rstd), D, dxc);
        LAUNCH_CHECK("rmsnorm backward (dx) kernel");
    }
    if (want_dw) {
        int64_t chunk = 64;
        while ((R + chunk - 1) / chunk > 65535) chunk *= 2;
        dim3 grid((unsigned)((D + 127) / 128), (unsigned)((R + chunk - 1) / chunk));
        k_rmsnorm_bwd_dw<<<grid, 128>>>(gqe_f32(dw), fp(dout), fp(x), gqe_f32(rstd), R, D, chunk);
        LAUNCH_CHECK("rmsnorm backward (dw) kernel");
    }
    return GQE_OK;
}
