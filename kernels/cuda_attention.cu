/* Flash attention, the generic path: f32 arithmetic in shared memory and
 * registers, any head width up to 256, f32 or bf16 tensors, any T and S.
 * The bf16 tensor-core kernels (cuda_attention_tc.cu) take the common
 * shapes; everything else, and every f32 call, comes here.
 *
 * Layout: q (B, T, Hq, D), k/v (B, S, Hkv, D), out like q, lse (B, Hq, T).
 * Query head h reads KV head h / (Hq / Hkv); causal row t sees keys
 * s <= t + (S - T).
 *
 * Work split: TPR threads share one row (a query row, or a key row in the
 * dK/dV kernel); thread `part` of a row owns the dims 4*part + 4*TPR*i + e
 * (i < NPT/4, e < 4), so a row's TPR threads read one contiguous run of
 * shared memory as float4 and rows of a warp read the same key (broadcast).
 * Dot products are partial sums over own dims, finished by log2(TPR)
 * shuffles. Shared rows are DMAX wide and zero-padded beyond D, so no inner
 * loop tests d < D. Scores live in the log2 domain (q or k prescaled by
 * scale * log2 e) so exp2f does the exponentials.
 *
 * Backward (FA2): D_i = rowsum(dO * O); one kernel gives dQ per query row
 * looping over key tiles, another gives dK, dV per key row looping over the
 * query heads of its KV head and their query tiles. Each output element has
 * one owner: no atomics, same result every run. */
#include "attention.cuh"

#define ATT_THREADS 256

template <int TPR>
__device__ __forceinline__ float row_sum(float v) {
#pragma unroll
    for (int o = TPR / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Loads rows [r0, r0 + n) of a (B, L, H, D) tensor at (b, h) into a
 * (n, DMAX) f32 shared tile, zero beyond L and D. */
template <int DMAX>
__device__ void load_tile(float *sm, fptr x, int64_t b, int64_t h, int64_t r0, int n, int64_t L, int64_t H,
                          int64_t D) {
    for (int e = threadIdx.x; e < n * DMAX; e += blockDim.x) {
        int c = e / DMAX, d = e % DMAX;
        int64_t r = r0 + c;
        float v = 0.0f;
        if (r < L && d < D) v = ldf(x, ((b * L + r) * H + h) * D + d);
        sm[e] = v;
    }
}

/* Registers of one row: NPT dims owned by `part`. */
template <int DMAX, int TPR>
__device__ __forceinline__ void load_row(float (&reg)[DMAX / TPR], fptr x, int64_t base, int64_t D, int part,
                                         bool valid, float mul) {
#pragma unroll
    for (int i = 0; i < DMAX / TPR / 4; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * part + 4 * TPR * i + e;
            reg[4 * i + e] = (valid && d < D) ? ldf(x, base + d) * mul : 0.0f;
        }
}

template <int DMAX, int TPR>
__device__ __forceinline__ float dot_sm(const float (&reg)[DMAX / TPR], const float *smrow, int part) {
    float acc = 0;
#pragma unroll
    for (int i = 0; i < DMAX / TPR / 4; i++) {
        float4 v = *reinterpret_cast<const float4 *>(smrow + 4 * part + 4 * TPR * i);
        acc += reg[4 * i] * v.x + reg[4 * i + 1] * v.y + reg[4 * i + 2] * v.z + reg[4 * i + 3] * v.w;
    }
    return acc;
}

template <int DMAX, int TPR>
__device__ __forceinline__ void axpy_sm(float (&acc)[DMAX / TPR], float a, const float *smrow, int part) {
#pragma unroll
    for (int i = 0; i < DMAX / TPR / 4; i++) {
        float4 v = *reinterpret_cast<const float4 *>(smrow + 4 * part + 4 * TPR * i);
        acc[4 * i] += a * v.x;
        acc[4 * i + 1] += a * v.y;
        acc[4 * i + 2] += a * v.z;
        acc[4 * i + 3] += a * v.w;
    }
}

/* Last key (exclusive) that any of the query rows [t0, t1) can see. */
__device__ __forceinline__ int64_t key_end(const attn_shape &a, int64_t t1) {
    if (!a.causal) return a.S;
    int64_t e = t1 + a.off;  /* row t1-1 sees keys < t1 + off */
    return e < 0 ? 0 : (e < a.S ? e : a.S);
}

/* ---- forward ------------------------------------------------------------- */
template <int DMAX, int TPR, int BC>
__global__ void __launch_bounds__(ATT_THREADS) k_attn_fwd(fptr out, float *lse, fptr q, fptr k, fptr v, attn_shape a,
                                                          float scale) {
    constexpr int NPT = DMAX / TPR, ROWS = ATT_THREADS / TPR;
    __shared__ __align__(16) float Ks[BC * DMAX];
    __shared__ __align__(16) float Vs[BC * DMAX];
    const int part = threadIdx.x % TPR;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / (a.Hq / a.Hkv);
    const int64_t t0 = (int64_t)blockIdx.x * ROWS, t = t0 + threadIdx.x / TPR;
    const bool valid = t < a.T;
    const int64_t qbase = ((b * a.T + t) * a.Hq + h) * a.D;

    float qr[NPT], o[NPT];
    load_row<DMAX, TPR>(qr, q, qbase, a.D, part, valid, scale * LOG2E);
#pragma unroll
    for (int i = 0; i < NPT; i++) o[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int64_t tlast = (t0 + ROWS < a.T ? t0 + ROWS : a.T);
    const int64_t kend = key_end(a, tlast);
    const int64_t lim = a.causal ? t + a.off : a.S - 1;  /* last visible key of this row */

    for (int64_t kt = 0; kt < kend; kt += BC) {
        __syncthreads();
        load_tile<DMAX>(Ks, k, b, hk, kt, BC, a.S, a.Hkv, a.D);
        load_tile<DMAX>(Vs, v, b, hk, kt, BC, a.S, a.Hkv, a.D);
        __syncthreads();
        float s[BC];
        float mt = -INFINITY;
#pragma unroll
        for (int c = 0; c < BC; c++) {
            float x = row_sum<TPR>(dot_sm<DMAX, TPR>(qr, Ks + c * DMAX, part));
            int64_t key = kt + c;
            s[c] = (key < a.S && key <= lim) ? x : -INFINITY;
            mt = fmaxf(mt, s[c]);
        }
        float mn = fmaxf(m, mt);
        if (mn == -INFINITY) continue;  /* nothing visible yet for this row */
        float alpha = exp2f(m - mn);
        l *= alpha;
#pragma unroll
        for (int i = 0; i < NPT; i++) o[i] *= alpha;
#pragma unroll
        for (int c = 0; c < BC; c++) {
            float p = exp2f(s[c] - mn);
            l += p;
            axpy_sm<DMAX, TPR>(o, p, Vs + c * DMAX, part);
        }
        m = mn;
    }
    if (!valid) return;
    float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
    for (int i = 0; i < NPT / 4; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * part + 4 * TPR * i + e;
            if (d < a.D) stf(out, qbase + d, o[4 * i + e] * inv);
        }
    if (part == 0) lse[(b * a.Hq + h) * a.T + t] = l > 0 ? (m + log2f(l)) * LN2 : -INFINITY;
}

/* ---- backward ------------------------------------------------------------ */
/* Dd[b, h, t] = sum_d dO * O, one warp per row. */
__global__ void k_attn_bwd_pre(float *Dd, fptr dout, fptr out, attn_shape a) {
    int lane = threadIdx.x & 31;
    int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;  /* (b, t, h) */
    if (row >= a.B * a.T * a.Hq) return;
    int64_t h = row % a.Hq, t = (row / a.Hq) % a.T, b = row / (a.Hq * a.T);
    float acc = 0;
    for (int64_t d = lane; d < a.D; d += 32) acc += ldf(dout, row * a.D + d) * ldf(out, row * a.D + d);
    acc = warp_sum(acc);
    if (lane == 0) Dd[(b * a.Hq + h) * a.T + t] = acc;
}

gqe_status gqe_cuda_attn_rowdot(float *Dd, const gqe_tensor *dout, const gqe_tensor *out, const attn_shape &a) {
    int64_t rows = a.B * a.T * a.Hq;
    if (rows == 0) return GQE_OK;
    k_attn_bwd_pre<<<gqe_grid_for(rows * 32, 256), 256>>>(Dd, fp(dout), fp(out), a);
    LAUNCH_CHECK("attention backward preprocessing kernel");
    return GQE_OK;
}

/* dQ: per query row, over key tiles. dq += scale * sum_s dS K. */
template <int DMAX, int TPR, int BC>
__global__ void __launch_bounds__(ATT_THREADS) k_attn_bwd_dq(fptr dq, fptr dout, fptr q, fptr k, fptr v,
                                                             const float *lse, const float *Dd, attn_shape a,
                                                             float scale) {
    constexpr int NPT = DMAX / TPR, ROWS = ATT_THREADS / TPR;
    __shared__ __align__(16) float Ks[BC * DMAX];
    __shared__ __align__(16) float Vs[BC * DMAX];
    const int part = threadIdx.x % TPR;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / (a.Hq / a.Hkv);
    const int64_t t0 = (int64_t)blockIdx.x * ROWS, t = t0 + threadIdx.x / TPR;
    const bool valid = t < a.T;
    const int64_t qbase = ((b * a.T + t) * a.Hq + h) * a.D;

    float qr[NPT], dor[NPT], acc[NPT];
    load_row<DMAX, TPR>(qr, q, qbase, a.D, part, valid, scale * LOG2E);
    load_row<DMAX, TPR>(dor, dout, qbase, a.D, part, valid, 1.0f);
#pragma unroll
    for (int i = 0; i < NPT; i++) acc[i] = 0.0f;
    const int64_t srow = (b * a.Hq + h) * a.T + t;
    const float l2 = valid ? lse[srow] * LOG2E : -INFINITY;
    const float di = valid ? Dd[srow] : 0.0f;
    const bool live = valid && l2 != -INFINITY;  /* a row that saw no key has no gradient */
    const int64_t tlast = (t0 + ROWS < a.T ? t0 + ROWS : a.T);
    const int64_t kend = key_end(a, tlast);
    const int64_t lim = a.causal ? t + a.off : a.S - 1;

    for (int64_t kt = 0; kt < kend; kt += BC) {
        __syncthreads();
        load_tile<DMAX>(Ks, k, b, hk, kt, BC, a.S, a.Hkv, a.D);
        load_tile<DMAX>(Vs, v, b, hk, kt, BC, a.S, a.Hkv, a.D);
        __syncthreads();
#pragma unroll 4
        for (int c = 0; c < BC; c++) {
            float s = row_sum<TPR>(dot_sm<DMAX, TPR>(qr, Ks + c * DMAX, part));
            float dp = row_sum<TPR>(dot_sm<DMAX, TPR>(dor, Vs + c * DMAX, part));
            int64_t key = kt + c;
            float p = (live && key < a.S && key <= lim) ? exp2f(s - l2) : 0.0f;
            axpy_sm<DMAX, TPR>(acc, p * (dp - di), Ks + c * DMAX, part);
        }
    }
    if (!valid) return;
#pragma unroll
    for (int i = 0; i < NPT / 4; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * part + 4 * TPR * i + e;
            if (d < a.D) stf(dq, qbase + d, ldf(dq, qbase + d) + scale * acc[4 * i + e]);
        }
}

/* dK, dV: per key row, over every query head of its KV head and every query
 * tile that can see it. dv += P^T dO, dk += scale * dS^T Q. */
template <int DMAX, int TPR, int BQ>
__global__ void __launch_bounds__(ATT_THREADS) k_attn_bwd_dkdv(fptr dk, fptr dv, fptr dout, fptr q, fptr k, fptr v,
                                                               const float *lse, const float *Dd, attn_shape a,
                                                               float scale) {
    constexpr int NPT = DMAX / TPR, ROWS = ATT_THREADS / TPR;
    __shared__ __align__(16) float Qs[BQ * DMAX];
    __shared__ __align__(16) float Os[BQ * DMAX];
    __shared__ float Ls[BQ], Ds[BQ];
    const int part = threadIdx.x % TPR;
    const int64_t b = blockIdx.z, hk = blockIdx.y, rep = a.Hq / a.Hkv;
    const int64_t s0 = (int64_t)blockIdx.x * ROWS, s = s0 + threadIdx.x / TPR;
    const bool valid = s < a.S;
    const int64_t kbase = ((b * a.S + s) * a.Hkv + hk) * a.D;

    float kr[NPT], vr[NPT], dka[NPT], dva[NPT];
    load_row<DMAX, TPR>(kr, k, kbase, a.D, part, valid, scale * LOG2E);
    load_row<DMAX, TPR>(vr, v, kbase, a.D, part, valid, 1.0f);
#pragma unroll
    for (int i = 0; i < NPT; i++) { dka[i] = 0.0f; dva[i] = 0.0f; }
    /* First query row that sees key s0: t + off >= s0. */
    int64_t tstart = a.causal ? s0 - a.off : 0;
    if (tstart < 0) tstart = 0;
    tstart = (tstart / BQ) * BQ;

    for (int64_t h = hk * rep; h < (hk + 1) * rep; h++) {
        for (int64_t qt = tstart; qt < a.T; qt += BQ) {
            __syncthreads();
            load_tile<DMAX>(Qs, q, b, h, qt, BQ, a.T, a.Hq, a.D);
            load_tile<DMAX>(Os, dout, b, h, qt, BQ, a.T, a.Hq, a.D);
            for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
                int64_t t = qt + r;
                bool ok = t < a.T;
                float l = ok ? lse[(b * a.Hq + h) * a.T + t] : -INFINITY;
                Ls[r] = l * LOG2E;
                Ds[r] = ok ? Dd[(b * a.Hq + h) * a.T + t] : 0.0f;
            }
            __syncthreads();
#pragma unroll 4
            for (int r = 0; r < BQ; r++) {
                float sc = row_sum<TPR>(dot_sm<DMAX, TPR>(kr, Qs + r * DMAX, part));
                float dp = row_sum<TPR>(dot_sm<DMAX, TPR>(vr, Os + r * DMAX, part));
                int64_t t = qt + r;
                bool vis = valid && t < a.T && Ls[r] != -INFINITY && (!a.causal || s <= t + a.off);
                float p = vis ? exp2f(sc - Ls[r]) : 0.0f;
                axpy_sm<DMAX, TPR>(dva, p, Os + r * DMAX, part);
                axpy_sm<DMAX, TPR>(dka, p * (dp - Ds[r]), Qs + r * DMAX, part);
            }
        }
    }
    if (!valid) return;
#pragma unroll
    for (int i = 0; i < NPT / 4; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * part + 4 * TPR * i + e;
            if (d < a.D) {
                stf(dk, kbase + d, ldf(dk, kbase + d) + scale * dka[4 * i + e]);
                stf(dv, kbase + d, ldf(dv, kbase + d) + dva[4 * i + e]);
            }
        }
}

/* ---- host side -------------------------------------------------------------- */
gqe_status gqe_cuda_attn_shape(attn_shape *a, const gqe_tensor *q, const gqe_tensor *k, bool causal, const char *op) {
    if (q->ndim != 4 || k->ndim != 4)
        return gqe_fail(GQE_ERR_SHAPE, "%s: q and k must be 4-D (B, T, H, D)", op);
    a->B = q->shape[0]; a->T = q->shape[1]; a->Hq = q->shape[2]; a->D = q->shape[3];
    a->S = k->shape[1]; a->Hkv = k->shape[2];
    a->causal = causal;
    a->off = a->S - a->T;
    if (a->Hkv <= 0 || a->Hq % a->Hkv)
        return gqe_fail(GQE_ERR_SHAPE, "%s: query heads %lld not a multiple of KV heads %lld", op, (long long)a->Hq,
                        (long long)a->Hkv);
    if (a->D > 256)
        return gqe_fail(GQE_ERR_SHAPE, "%s on cuda: head width %lld above the supported 256", op, (long long)a->D);
    if (a->B > 65535 || a->Hq > 65535)
        return gqe_fail(GQE_ERR_SHAPE, "%s on cuda: batch and heads must be <= 65535", op);
    return GQE_OK;
}

template <int DMAX, int TPR, int BC>
static void launch_fwd(fptr out, float *lse, fptr q, fptr k, fptr v, const attn_shape &a, float scale) {
    constexpr int ROWS = ATT_THREADS / TPR;
    dim3 grid((unsigned)((a.T + ROWS - 1) / ROWS), (unsigned)a.Hq, (unsigned)a.B);
    k_attn_fwd<DMAX, TPR, BC><<<grid, ATT_THREADS>>>(out, lse, q, k, v, a, scale);
}

gqe_status gqe_cuda_attn_fwd_generic(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                     const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale) {
    const char *op = "attention_forward";
    attn_shape a;
    GQE_TRY(gqe_cuda_attn_shape(&a, q, k, causal, op));
    if (a.B * a.T * a.Hq == 0) return GQE_OK;
    fptr o = fp(out), fq = fp(q), fk = fp(k), fv = fp(v);
    float *l = gqe_f32(lse);
    if (a.D <= 16) launch_fwd<16, 4, 32>(o, l, fq, fk, fv, a, scale);
    else if (a.D <= 32) launch_fwd<32, 4, 32>(o, l, fq, fk, fv, a, scale);
    else if (a.D <= 64) launch_fwd<64, 4, 32>(o, l, fq, fk, fv, a, scale);
    else if (a.D <= 128) launch_fwd<128, 4, 32>(o, l, fq, fk, fv, a, scale);
    else launch_fwd<256, 8, 16>(o, l, fq, fk, fv, a, scale);
    LAUNCH_CHECK("attention forward kernel");
    return GQE_OK;
}

template <int DMAX, int TPR_Q, int BC, int TPR_K, int BQ>
static void launch_bwd(fptr dq, fptr dk, fptr dv, fptr dout, fptr q, fptr k, fptr v, const float *lse,
                       const float *Dd, const attn_shape &a, float scale) {
    constexpr int RQ = ATT_THREADS / TPR_Q, RK = ATT_THREADS / TPR_K;
    dim3 gq((unsigned)((a.T + RQ - 1) / RQ), (unsigned)a.Hq, (unsigned)a.B);
    k_attn_bwd_dq<DMAX, TPR_Q, BC><<<gq, ATT_THREADS>>>(dq, dout, q, k, v, lse, Dd, a, scale);
    dim3 gk((unsigned)((a.S + RK - 1) / RK), (unsigned)a.Hkv, (unsigned)a.B);
    k_attn_bwd_dkdv<DMAX, TPR_K, BQ><<<gk, ATT_THREADS>>>(dk, dv, dout, q, k, v, lse, Dd, a, scale);
}

gqe_status gqe_cuda_attn_bwd_generic(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                     const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                     const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                     bool causal, float scale) {
    const char *op = "attention_backward";
    attn_shape a;
    GQE_TRY(gqe_cuda_attn_shape(&a, q, k, causal, op));
    if (a.B * a.Hq == 0 || a.T == 0 || a.S == 0) return GQE_OK;
    float *Dd;
    GQE_TRY(gqe_cuda_scratch((void **)&Dd, (size_t)(a.B * a.Hq * a.T) * sizeof(float)));
    gqe_status st = gqe_cuda_attn_rowdot(Dd, dout, out, a);
    if (st != GQE_OK) { gqe_cuda_scratch_free(Dd); return st; }
    cudaError_t e = cudaSuccess;
    {
        fptr fdq = fp(dq), fdk = fp(dk), fdv = fp(dv), fdo = fp(dout), fq = fp(q), fk = fp(k), fv = fp(v);
        const float *l = gqe_f32(lse);
        if (a.D <= 16) launch_bwd<16, 4, 32, 4, 32>(fdq, fdk, fdv, fdo, fq, fk, fv, l, Dd, a, scale);
        else if (a.D <= 32) launch_bwd<32, 4, 32, 4, 32>(fdq, fdk, fdv, fdo, fq, fk, fv, l, Dd, a, scale);
        else if (a.D <= 64) launch_bwd<64, 4, 32, 4, 32>(fdq, fdk, fdv, fdo, fq, fk, fv, l, Dd, a, scale);
        else if (a.D <= 128) launch_bwd<128, 4, 32, 8, 32>(fdq, fdk, fdv, fdo, fq, fk, fv, l, Dd, a, scale);
        else launch_bwd<256, 8, 16, 16, 16>(fdq, fdk, fdv, fdo, fq, fk, fv, l, Dd, a, scale);
        e = cudaGetLastError();
    }
    gqe_cuda_scratch_free(Dd);  /* later users of the block are ordered after us on the stream */
    if (e != cudaSuccess)
        return gqe_fail(GQE_ERR_DEVICE, "attention backward kernels failed at %s:%d: %s", __FILE__, __LINE__,
                        cudaGetErrorString(e));
    return GQE_OK;
}

/* ---- dispatch ------------------------------------------------------------------ */
gqe_status gqe_cuda_attention_forward(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                      const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale) {
    const char *op = "attention_forward";
    GQE_TRY(gqe_cuda_need_float(out, op, "out"));
    GQE_TRY(gqe_cuda_need_f32(lse, op, "lse"));
    GQE_TRY(gqe_cuda_need_float(q, op, "q"));
    GQE_TRY(gqe_cuda_need_float(k, op, "k"));
    GQE_TRY(gqe_cuda_need_float(v, op, "v"));
    if (gqe_cudnn_attn_fwd_ok(out, lse, q, k, v, causal)) {
        bool used = false;
        GQE_TRY(gqe_cudnn_attn_fwd(out, lse, q, k, v, causal, scale, &used));
        if (used) return GQE_OK;
    }
    if (gqe_cuda_attn_tc_fwd_ok(out, q, k, v)) return gqe_cuda_attn_fwd_tc(out, lse, q, k, v, causal, scale);
    return gqe_cuda_attn_fwd_generic(out, lse, q, k, v, causal, scale);
}

gqe_status gqe_cuda_attention_backward(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                       const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                       const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                       bool causal, float scale, bool accumulate) {
    const char *op = "attention_backward";
    GQE_TRY(gqe_cuda_need_float(dq, op, "dq"));
    GQE_TRY(gqe_cuda_need_float(dk, op, "dk"));
    GQE_TRY(gqe_cuda_need_float(dv, op, "dv"));
    GQE_TRY(gqe_cuda_need_float(dout, op, "dout"));
    GQE_TRY(gqe_cuda_need_float(q, op, "q"));
    GQE_TRY(gqe_cuda_need_float(k, op, "k"));
    GQE_TRY(gqe_cuda_need_float(v, op, "v"));
    GQE_TRY(gqe_cuda_need_float(out, op, "out"));
    GQE_TRY(gqe_cuda_need_f32(lse, op, "lse"));
    if (gqe_cudnn_attn_bwd_ok(dq, dk, dv, dout, q, k, v, out, causal)) {
        bool used = false;
        GQE_TRY(gqe_cudnn_attn_bwd(dq, dk, dv, dout, q, k, v, out, lse, causal, scale, accumulate, &used));
        if (used) return GQE_OK;
    }
    /* the built-in kernels accumulate */
    if (!accumulate) {
        GQE_TRY(gqe_cuda_fill(dq, 0.0f));
        GQE_TRY(gqe_cuda_fill(dk, 0.0f));
        GQE_TRY(gqe_cuda_fill(dv, 0.0f));
    }
    if (gqe_cuda_attn_tc_bwd_ok(dq, dk, dv, dout, q, k, v, out))
        return gqe_cuda_attn_bwd_tc(dq, dk, dv, dout, q, k, v, out, lse, causal, scale);
    return gqe_cuda_attn_bwd_generic(dq, dk, dv, dout, q, k, v, out, lse, causal, scale);
}
