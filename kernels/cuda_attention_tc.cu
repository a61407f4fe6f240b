/* Flash attention on bf16 tensor cores (mma.sync m16n8k16, f32 accumulate)
 * for head widths 64 and 128: FlashAttention-2's schedule.
 *
 * Forward: a block of 4 warps owns BR = 4 * MT * 16 query rows of one head;
 * each warp owns MT m-tiles of 16 rows, keeps its O accumulator and softmax
 * statistics in registers, and walks the KV tiles (BC keys) of its KV head,
 * loaded by cp.async into a double buffer while the previous tile is in use.
 * Scores never leave registers: S = Q K^T, online softmax in the log2 domain,
 * P packed to bf16 in place as the A operand of O += P V.
 * Causal blocks stop at their last visible key tile and mask only tiles that
 * cross the diagonal or the end of the sequence; blocks run heaviest first.
 *
 * Backward: two kernels, each shaped like the forward, so neither needs
 * atomics (every output element has one owner, the result is the same on
 * every run) at the price of recomputing S and dP once more:
 *   dQ   per query block:  S = Q K^T, dP = dO V^T, dS = P (dP - D_i), dQ += dS K
 *   dKdV per key block, over the query heads of its KV head and their query
 *        tiles: S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q.
 * All of q, k, v, out, dout must be bf16, 16-byte aligned; dq/dk/dv and out
 * may be f32 or bf16 and are accumulated into (+=) as ops.h says. */
#include "attention.cuh"
#include "mma.cuh"
#include <stdlib.h>

#define TC_THREADS 128
#define TC_WARPS 4

typedef __nv_bfloat16 bf16;

/* cp.async a (ROWS, D) tile of rows [r0, r0+ROWS) of a (B, L, H, D) tensor at
 * (b, h) into a swizzled shared tile; rows past L become zeros. */
template <int D, int ROWS>
__device__ __forceinline__ void cp_tile(uint32_t sbase, const bf16 *g, int64_t b, int64_t h, int64_t r0, int64_t L,
                                        int64_t H) {
    constexpr int CH = D / 8;
    static_assert((ROWS * CH) % TC_THREADS == 0, "tile chunks must split evenly over the block");
#pragma unroll
    for (int i = 0; i < ROWS * CH / TC_THREADS; i++) {
        const int c = threadIdx.x + i * TC_THREADS;
        const int row = c / CH, ch = c % CH;
        int64_t r = r0 + row;
        const bf16 *src = g;
        int bytes = 0;
        if (r < L) {
            src = g + ((b * L + r) * H + h) * D + ch * 8;
            bytes = 16;
        }
        cp_async16(sbase + swz<D>(row, ch), src, bytes);
    }
}

__device__ __forceinline__ int64_t tc_key_end(const attn_shape &a, int64_t t_end) {
    if (!a.causal) return a.S;
    int64_t e = t_end + a.off;
    return e < 0 ? 0 : (e < a.S ? e : a.S);
}

/* ---- forward ------------------------------------------------------------- */
template <int D, int MT, int BC>
__global__ void __launch_bounds__(TC_THREADS) k_fa_fwd(fptr out, float *lse, const bf16 *q, const bf16 *k,
                                                       const bf16 *v, attn_shape a, float sl2) {
    constexpr int BR = TC_WARPS * MT * 16, NT_D = D / 8, NT_C = BC / 8;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t sQ = smem_u32(smem);
    const uint32_t sK0 = sQ + BR * D * 2, sV0 = sK0 + BC * D * 2;
    const uint32_t KV_STRIDE = 2 * BC * D * 2;  /* bytes from buffer 0 to buffer 1 */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / (a.Hq / a.Hkv);
    const int64_t t0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * BR;  /* heaviest (latest) rows first */
    const int64_t t_end = t0 + BR < a.T ? t0 + BR : a.T;
    const int64_t kend = tc_key_end(a, t_end);
    const int ntiles = (int)((kend + BC - 1) / BC);

    cp_tile<D, BR>(sQ, q, b, h, t0, a.T, a.Hq);
    if (ntiles > 0) {
        cp_tile<D, BC>(sK0, k, b, hk, 0, a.S, a.Hkv);
        cp_tile<D, BC>(sV0, v, b, hk, 0, a.S, a.Hkv);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    float o[MT][NT_D][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int n = 0; n < NT_D; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[mt][n][e] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }
    const int wrow = warp * MT * 16;

    for (int j = 0; j < ntiles; j++) {
        const int64_t kt = (int64_t)j * BC;
        const uint32_t sK = sK0 + (j & 1) * KV_STRIDE, sV = sV0 + (j & 1) * KV_STRIDE;
        if (j + 1 < ntiles) {
            const uint32_t nb = ((j + 1) & 1) * KV_STRIDE;
            cp_tile<D, BC>(sK0 + nb, k, b, hk, kt + BC, a.S, a.Hkv);
            cp_tile<D, BC>(sV0 + nb, v, b, hk, kt + BC, a.S, a.Hkv);
        }
        cp_async_commit();

        /* S = Q K^T */
        float s[MT][NT_C][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int n = 0; n < NT_C; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mt][n][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) ldsm_x4(qa[mt], sQ + swz<D>(wrow + mt * 16 + lane % 16, 2 * ks + lane / 16));
#pragma unroll
            for (int np = 0; np < BC / 16; np++) {
                uint32_t kb[4];
                ldsm_x4(kb, sK + swz<D>(np * 16 + (lane % 8) + 8 * (lane / 16), 2 * ks + (lane / 8) % 2));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16_16816(s[mt][2 * np], qa[mt], kb[0], kb[1]);
                    mma_bf16_16816(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
                }
            }
        }

        /* Online softmax, rows g and g+8 of each m-tile. */
        const bool need_mask = (kt + BC > a.S) || (a.causal && kt + BC - 1 > t0 + a.off);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hi = 0; hi < 2; hi++) {
                const int64_t t = t0 + wrow + mt * 16 + lane / 4 + 8 * hi;
                const int64_t lim = a.causal ? t + a.off : a.S - 1;
                float mx = -INFINITY;
#pragma unroll
                for (int n = 0; n < NT_C; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float x = s[mt][n][2 * hi + e] * sl2;
                        if (need_mask) {
                            int64_t key = kt + n * 8 + 2 * (lane % 4) + e;
                            if (key > lim || key >= a.S) x = -INFINITY;
                        }
                        s[mt][n][2 * hi + e] = x;
                        mx = fmaxf(mx, x);
                    }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mn = fmaxf(m[mt][hi], mx);
                const float mu = mn == -INFINITY ? 0.0f : mn;  /* all masked so far: keep p = 0, no NaN */
                const float alpha = exp2f(m[mt][hi] - mu);
                m[mt][hi] = mn;
                float ls = 0.0f;
#pragma unroll
                for (int n = 0; n < NT_C; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float p = exp2f(s[mt][n][2 * hi + e] - mu);
                        s[mt][n][2 * hi + e] = p;
                        ls += p;
                    }
                l[mt][hi] = l[mt][hi] * alpha + ls;
#pragma unroll
                for (int n = 0; n < NT_D; n++) {
                    o[mt][n][2 * hi] *= alpha;
                    o[mt][n][2 * hi + 1] *= alpha;
                }
            }

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t vb[4];
                ldsm_x4_t(vb, sV + swz<D>(kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2), 2 * dp + lane / 16));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16_16816(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
                    mma_bf16_16816(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                }
            }
        }
        cp_async_wait<0>();
        __syncthreads();
    }

    /* Epilogue: O / l, and lse in natural log. */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hi = 0; hi < 2; hi++) {
            float lt = l[mt][hi];
            lt += __shfl_xor_sync(0xffffffffu, lt, 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            const int64_t t = t0 + wrow + mt * 16 + lane / 4 + 8 * hi;
            if (t >= a.T) continue;
            const float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
            const int64_t base = ((b * a.T + t) * a.Hq + h) * D + 2 * (lane % 4);
            if (out.bf) {
                bf16 *po = (bf16 *)out.p + base;
#pragma unroll
                for (int n = 0; n < NT_D; n++)
                    *reinterpret_cast<uint32_t *>(po + n * 8) =
                        pack_bf16(o[mt][n][2 * hi] * inv, o[mt][n][2 * hi + 1] * inv);
            } else {
                float *po = (float *)out.p + base;
#pragma unroll
                for (int n = 0; n < NT_D; n++) {
                    po[n * 8] = o[mt][n][2 * hi] * inv;
                    po[n * 8 + 1] = o[mt][n][2 * hi + 1] * inv;
                }
            }
            if (lane % 4 == 0)
                lse[(b * a.Hq + h) * a.T + t] = lt > 0.0f ? (m[mt][hi] + log2f(lt)) * LN2 : -INFINITY;
        }
}

/* ---- backward: dQ -------------------------------------------------------- */
template <int D, int BC>
__global__ void __launch_bounds__(TC_THREADS) k_fa_bwd_dq(fptr dq, const bf16 *dout, const bf16 *q, const bf16 *k,
                                                          const bf16 *v, const float *lse, const float *Dd,
                                                          attn_shape a, float sl2, float scale) {
    constexpr int BR = TC_WARPS * 16, NT_D = D / 8, NT_C = BC / 8;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t sQ = smem_u32(smem), sO = sQ + BR * D * 2;
    const uint32_t sK0 = sO + BR * D * 2, sV0 = sK0 + BC * D * 2;
    const uint32_t KV_STRIDE = 2 * BC * D * 2;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / (a.Hq / a.Hkv);
    const int64_t t0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * BR;
    const int64_t t_end = t0 + BR < a.T ? t0 + BR : a.T;
    const int64_t kend = tc_key_end(a, t_end);
    const int ntiles = (int)((kend + BC - 1) / BC);
    const int wrow = warp * 16;

    cp_tile<D, BR>(sQ, q, b, h, t0, a.T, a.Hq);
    cp_tile<D, BR>(sO, dout, b, h, t0, a.T, a.Hq);
    if (ntiles > 0) {
        cp_tile<D, BC>(sK0, k, b, hk, 0, a.S, a.Hkv);
        cp_tile<D, BC>(sV0, v, b, hk, 0, a.S, a.Hkv);
    }
    cp_async_commit();

    float l2[2], di[2];
#pragma unroll
    for (int hi = 0; hi < 2; hi++) {
        const int64_t t = t0 + wrow + lane / 4 + 8 * hi;
        const bool ok = t < a.T;
        l2[hi] = ok ? lse[(b * a.Hq + h) * a.T + t] * LOG2E : -INFINITY;
        di[hi] = ok ? Dd[(b * a.Hq + h) * a.T + t] : 0.0f;
    }
    float acc[NT_D][4];
#pragma unroll
    for (int n = 0; n < NT_D; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[n][e] = 0.0f;
    cp_async_wait<0>();
    __syncthreads();

    for (int j = 0; j < ntiles; j++) {
        const int64_t kt = (int64_t)j * BC;
        const uint32_t sK = sK0 + (j & 1) * KV_STRIDE, sV = sV0 + (j & 1) * KV_STRIDE;
        if (j + 1 < ntiles) {
            const uint32_t nb = ((j + 1) & 1) * KV_STRIDE;
            cp_tile<D, BC>(sK0 + nb, k, b, hk, kt + BC, a.S, a.Hkv);
            cp_tile<D, BC>(sV0 + nb, v, b, hk, kt + BC, a.S, a.Hkv);
        }
        cp_async_commit();

        float s[NT_C][4], dp[NT_C][4];
#pragma unroll
        for (int n = 0; n < NT_C; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) { s[n][e] = 0.0f; dp[n][e] = 0.0f; }
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t qa[4], oa[4];
            ldsm_x4(qa, sQ + swz<D>(wrow + lane % 16, 2 * ks + lane / 16));
            ldsm_x4(oa, sO + swz<D>(wrow + lane % 16, 2 * ks + lane / 16));
#pragma unroll
            for (int np = 0; np < BC / 16; np++) {
                uint32_t kb[4], vb[4];
                const int r = np * 16 + (lane % 8) + 8 * (lane / 16), c = 2 * ks + (lane / 8) % 2;
                ldsm_x4(kb, sK + swz<D>(r, c));
                ldsm_x4(vb, sV + swz<D>(r, c));
                mma_bf16_16816(s[2 * np], qa, kb[0], kb[1]);
                mma_bf16_16816(s[2 * np + 1], qa, kb[2], kb[3]);
                mma_bf16_16816(dp[2 * np], oa, vb[0], vb[1]);
                mma_bf16_16816(dp[2 * np + 1], oa, vb[2], vb[3]);
            }
        }
        /* dS = P (dP - D_i), into s. Tiles wholly below the diagonal and
         * inside S skip the mask: per element it costs about what the
         * products do. (Rows past T compute garbage there; they are not
         * stored.) */
        const bool full = kt + BC <= a.S && (!a.causal || kt + BC - 1 <= t0 + a.off);
        if (full) {
#pragma unroll
            for (int hi = 0; hi < 2; hi++)
#pragma unroll
                for (int n = 0; n < NT_C; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++)
                        s[n][2 * hi + e] = exp2f(s[n][2 * hi + e] * sl2 - l2[hi]) * (dp[n][2 * hi + e] - di[hi]);
        } else {
#pragma unroll
            for (int hi = 0; hi < 2; hi++) {
                const int64_t t = t0 + wrow + lane / 4 + 8 * hi;
                const int64_t lim = a.causal ? t + a.off : a.S - 1;
                const bool live = l2[hi] != -INFINITY;
#pragma unroll
                for (int n = 0; n < NT_C; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int64_t key = kt + n * 8 + 2 * (lane % 4) + e;
                        const bool vis = live && key <= lim && key < a.S;
                        const float p = vis ? exp2f(s[n][2 * hi + e] * sl2 - l2[hi]) : 0.0f;
                        s[n][2 * hi + e] = p * (dp[n][2 * hi + e] - di[hi]);
                    }
            }
        }
        /* dQ += dS K: K as the B operand [key][d], read transposed. */
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t pa[4];
            pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t kb[4];
                ldsm_x4_t(kb, sK + swz<D>(kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2), 2 * d2 + lane / 16));
                mma_bf16_16816(acc[2 * d2], pa, kb[0], kb[1]);
                mma_bf16_16816(acc[2 * d2 + 1], pa, kb[2], kb[3]);
            }
        }
        cp_async_wait<0>();
        __syncthreads();
    }

#pragma unroll
    for (int hi = 0; hi < 2; hi++) {
        const int64_t t = t0 + wrow + lane / 4 + 8 * hi;
        if (t >= a.T) continue;
        const int64_t base = ((b * a.T + t) * a.Hq + h) * D + 2 * (lane % 4);
#pragma unroll
        for (int n = 0; n < NT_D; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int64_t i = base + n * 8 + e;
                stf(dq, i, ldf(dq, i) + scale * acc[n][2 * hi + e]);
            }
    }
}

/* ---- backward: dK, dV ---------------------------------------------------- */
template <int D, int BQ>
__global__ void __launch_bounds__(TC_THREADS) k_fa_bwd_dkdv(fptr dk, fptr dv, const bf16 *dout, const bf16 *q,
                                                            const bf16 *k, const bf16 *v, const float *lse,
                                                            const float *Dd, attn_shape a, float sl2, float scale) {
    constexpr int BC = TC_WARPS * 16, NT_D = D / 8, NT_Q = BQ / 8;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t sK = smem_u32(smem), sV = sK + BC * D * 2;
    const uint32_t sQ0 = sV + BC * D * 2, sO0 = sQ0 + BQ * D * 2;
    const uint32_t QO_STRIDE = 2 * BQ * D * 2;
    float *Ls = reinterpret_cast<float *>(smem + BC * D * 4 + 2 * QO_STRIDE);  /* [2][BQ] lse */
    float *Ds = Ls + 2 * BQ;                                                   /* [2][BQ] D_i */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t b = blockIdx.z, hk = blockIdx.y, rep = a.Hq / a.Hkv;
    const int64_t s0 = (int64_t)blockIdx.x * BC;
    const int wrow = warp * 16;

    /* Query tiles that see any of keys [s0, s0 + BC): t + off >= s0. */
    int64_t tstart = a.causal ? s0 - a.off : 0;
    if (tstart < 0) tstart = 0;
    tstart = tstart / BQ * BQ;
    const int nqt = tstart < a.T ? (int)((a.T - tstart + BQ - 1) / BQ) : 0;
    const int nitems = (int)rep * nqt;

    cp_tile<D, BC>(sK, k, b, hk, s0, a.S, a.Hkv);
    cp_tile<D, BC>(sV, v, b, hk, s0, a.S, a.Hkv);
    /* Item i: query head hk*rep + i / nqt, query tile tstart + (i % nqt) * BQ. */
    auto issue = [&](int item, int buf) {
        const int64_t h = hk * rep + item / nqt, qt = tstart + (int64_t)(item % nqt) * BQ;
        cp_tile<D, BQ>(sQ0 + buf * QO_STRIDE, q, b, h, qt, a.T, a.Hq);
        cp_tile<D, BQ>(sO0 + buf * QO_STRIDE, dout, b, h, qt, a.T, a.Hq);
        for (int r = threadIdx.x; r < BQ; r += TC_THREADS) {
            const int64_t t = qt + r;
            const bool ok = t < a.T;
            const int64_t si = (b * a.Hq + h) * a.T + (ok ? t : 0);
            cp_async4(smem_u32(Ls + buf * BQ + r), lse + si, ok ? 4 : 0);
            cp_async4(smem_u32(Ds + buf * BQ + r), Dd + si, ok ? 4 : 0);
        }
    };
    if (nitems > 0) issue(0, 0);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    float dka[NT_D][4], dva[NT_D][4];
#pragma unroll
    for (int n = 0; n < NT_D; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) { dka[n][e] = 0.0f; dva[n][e] = 0.0f; }

    for (int it = 0; it < nitems; it++) {
        const int buf = it & 1;
        const int64_t qt = tstart + (int64_t)(it % nqt) * BQ;
        const uint32_t sQ = sQ0 + buf * QO_STRIDE, sO = sO0 + buf * QO_STRIDE;
        const float *L = Ls + buf * BQ, *Dv = Ds + buf * BQ;
        if (it + 1 < nitems) issue(it + 1, buf ^ 1);
        cp_async_commit();

        /* S^T = K Q^T and dP^T = V dO^T, this warp's 16 keys x BQ queries. */
        float s[NT_Q][4], dp[NT_Q][4];
#pragma unroll
        for (int n = 0; n < NT_Q; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) { s[n][e] = 0.0f; dp[n][e] = 0.0f; }
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t ka[4], va[4];
            ldsm_x4(ka, sK + swz<D>(wrow + lane % 16, 2 * ks + lane / 16));
            ldsm_x4(va, sV + swz<D>(wrow + lane % 16, 2 * ks + lane / 16));
#pragma unroll
            for (int np = 0; np < BQ / 16; np++) {
                uint32_t qb[4], ob[4];
                const int r = np * 16 + (lane % 8) + 8 * (lane / 16), c = 2 * ks + (lane / 8) % 2;
                ldsm_x4(qb, sQ + swz<D>(r, c));
                ldsm_x4(ob, sO + swz<D>(r, c));
                mma_bf16_16816(s[2 * np], ka, qb[0], qb[1]);
                mma_bf16_16816(s[2 * np + 1], ka, qb[2], qb[3]);
                mma_bf16_16816(dp[2 * np], va, ob[0], ob[1]);
                mma_bf16_16816(dp[2 * np + 1], va, ob[2], ob[3]);
            }
        }
        /* P^T into s, dS^T into dp. Element (key, query t). Tiles whose
         * queries all lie in T and all see every key of the block skip the
         * mask (every such row has a finite lse: key 0 is always visible). */
        const bool full = qt + BQ <= a.T && s0 + BC <= a.S && (!a.causal || s0 + BC - 1 <= qt + a.off);
        if (full) {
#pragma unroll
            for (int n = 0; n < NT_Q; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int c = n * 8 + 2 * (lane % 4) + e;
                    const float lq = L[c] * LOG2E, dv_ = Dv[c];
#pragma unroll
                    for (int hi = 0; hi < 2; hi++) {
                        const float p = exp2f(s[n][2 * hi + e] * sl2 - lq);
                        s[n][2 * hi + e] = p;
                        dp[n][2 * hi + e] = p * (dp[n][2 * hi + e] - dv_);
                    }
                }
        } else {
#pragma unroll
            for (int hi = 0; hi < 2; hi++) {
                const int64_t key = s0 + wrow + lane / 4 + 8 * hi;
#pragma unroll
                for (int n = 0; n < NT_Q; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int c = n * 8 + 2 * (lane % 4) + e;
                        const int64_t t = qt + c;
                        const float lq = L[c] * LOG2E;
                        const bool vis = t < a.T && key < a.S && lq != -INFINITY && (!a.causal || key <= t + a.off);
                        const float p = vis ? exp2f(s[n][2 * hi + e] * sl2 - lq) : 0.0f;
                        s[n][2 * hi + e] = p;
                        dp[n][2 * hi + e] = p * (dp[n][2 * hi + e] - Dv[c]);
                    }
            }
        }
        /* dV += P^T dO and dK += dS^T Q: dO and Q as B operands [query][d]. */
#pragma unroll
        for (int kk = 0; kk < BQ / 16; kk++) {
            uint32_t pa[4], da[4];
            pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            da[0] = pack_bf16(dp[2 * kk][0], dp[2 * kk][1]);
            da[1] = pack_bf16(dp[2 * kk][2], dp[2 * kk][3]);
            da[2] = pack_bf16(dp[2 * kk + 1][0], dp[2 * kk + 1][1]);
            da[3] = pack_bf16(dp[2 * kk + 1][2], dp[2 * kk + 1][3]);
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t ob[4], qb[4];
                const int r = kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2), c = 2 * d2 + lane / 16;
                ldsm_x4_t(ob, sO + swz<D>(r, c));
                ldsm_x4_t(qb, sQ + swz<D>(r, c));
                mma_bf16_16816(dva[2 * d2], pa, ob[0], ob[1]);
                mma_bf16_16816(dva[2 * d2 + 1], pa, ob[2], ob[3]);
                mma_bf16_16816(dka[2 * d2], da, qb[0], qb[1]);
                mma_bf16_16816(dka[2 * d2 + 1], da, qb[2], qb[3]);
            }
        }
        cp_async_wait<0>();
        __syncthreads();
    }

#pragma unroll
    for (int hi = 0; hi < 2; hi++) {
        const int64_t key = s0 + wrow + lane / 4 + 8 * hi;
        if (key >= a.S) continue;
        const int64_t base = ((b * a.S + key) * a.Hkv + hk) * D + 2 * (lane % 4);
#pragma unroll
        for (int n = 0; n < NT_D; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int64_t i = base + n * 8 + e;
                stf(dk, i, ldf(dk, i) + scale * dka[n][2 * hi + e]);
                stf(dv, i, ldf(dv, i) + dva[n][2 * hi + e]);
            }
    }
}

/* ---- host side -------------------------------------------------------------- */
static bool aligned16(const gqe_tensor *t) { return ((uintptr_t)gqe_tensor_data(t) & 15) == 0; }
static bool tc_disabled(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *e = getenv("GQE_CUDA_ATTN_GENERIC");
        cached = (e && e[0] == '1') ? 1 : 0;
    }
    return cached == 1;
}

static bool tc_common_ok(const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v) {
    if (tc_disabled()) return false;
    if (q->dtype != GQE_BF16 || k->dtype != GQE_BF16 || v->dtype != GQE_BF16) return false;
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) return false;
    int64_t D = q->shape[3];
    if (D != 64 && D != 128) return false;
    if (k->shape[3] != D || v->shape[3] != D) return false;
    return aligned16(q) && aligned16(k) && aligned16(v);
}

bool gqe_cuda_attn_tc_fwd_ok(const gqe_tensor *out, const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v) {
    return tc_common_ok(q, k, v) && (out->dtype == GQE_BF16 ? aligned16(out) : true);
}

bool gqe_cuda_attn_tc_bwd_ok(const gqe_tensor *dq, const gqe_tensor *dk, const gqe_tensor *dv,
                             const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                             const gqe_tensor *v, const gqe_tensor *out) {
    (void)dq; (void)dk; (void)dv; (void)out;
    return tc_common_ok(q, k, v) && dout->dtype == GQE_BF16 && aligned16(dout);
}

/* Shared memory above 48 KB must be granted per kernel before launch. */
template <typename K>
static cudaError_t allow_smem(K kernel, size_t bytes) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

template <int D, int MT, int BC>
static gqe_status launch_fa_fwd(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q, const gqe_tensor *k,
                                const gqe_tensor *v, const attn_shape &a, float scale) {
    constexpr int BR = TC_WARPS * MT * 16;
    const size_t smem = (size_t)(BR + 4 * BC) * D * 2;
    CUDA_CHECK(allow_smem(k_fa_fwd<D, MT, BC>, smem));
    dim3 grid((unsigned)((a.T + BR - 1) / BR), (unsigned)a.Hq, (unsigned)a.B);
    k_fa_fwd<D, MT, BC><<<grid, TC_THREADS, smem>>>(fp(out), gqe_f32(lse), (const bf16 *)gqe_tensor_data(q),
                                                    (const bf16 *)gqe_tensor_data(k), (const bf16 *)gqe_tensor_data(v),
                                                    a, scale * LOG2E);
    LAUNCH_CHECK("tensor-core attention forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_attn_fwd_tc(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale) {
    attn_shape a;
    GQE_TRY(gqe_cuda_attn_shape(&a, q, k, causal, "attention_forward"));
    if (a.B * a.T * a.Hq == 0) return GQE_OK;
    /* Tile shapes measured on an H200 (kernels/NOTES.md): one m-tile per warp
     * (64-row blocks) wins at both widths; 128-key tiles at D = 64. */
    if (a.D == 64) return launch_fa_fwd<64, 1, 128>(out, lse, q, k, v, a, scale);
    return launch_fa_fwd<128, 1, 64>(out, lse, q, k, v, a, scale);
}

template <int D, int BC, int BQ>
static gqe_status launch_fa_bwd(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv, const gqe_tensor *dout,
                                const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v, const gqe_tensor *lse,
                                const float *Dd, const attn_shape &a, float scale) {
    constexpr int BR = TC_WARPS * 16, BK = TC_WARPS * 16;
    const bf16 *pq = (const bf16 *)gqe_tensor_data(q), *pk = (const bf16 *)gqe_tensor_data(k);
    const bf16 *pv = (const bf16 *)gqe_tensor_data(v), *pdo = (const bf16 *)gqe_tensor_data(dout);
    const size_t smem_q = (size_t)(2 * BR + 4 * BC) * D * 2;
    CUDA_CHECK(allow_smem(k_fa_bwd_dq<D, BC>, smem_q));
    dim3 gq((unsigned)((a.T + BR - 1) / BR), (unsigned)a.Hq, (unsigned)a.B);
    k_fa_bwd_dq<D, BC><<<gq, TC_THREADS, smem_q>>>(fp(dq), pdo, pq, pk, pv, gqe_f32(lse), Dd, a, scale * LOG2E, scale);
    LAUNCH_CHECK("tensor-core attention backward (dQ) kernel");
    const size_t smem_k = (size_t)(2 * BK + 4 * BQ) * D * 2 + 4 * BQ * sizeof(float);
    CUDA_CHECK(allow_smem(k_fa_bwd_dkdv<D, BQ>, smem_k));
    dim3 gk((unsigned)((a.S + BK - 1) / BK), (unsigned)a.Hkv, (unsigned)a.B);
    k_fa_bwd_dkdv<D, BQ><<<gk, TC_THREADS, smem_k>>>(fp(dk), fp(dv), pdo, pq, pk, pv, gqe_f32(lse), Dd, a,
                                                     scale * LOG2E, scale);
    LAUNCH_CHECK("tensor-core attention backward (dK, dV) kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_attn_bwd_tc(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                bool causal, float scale) {
    attn_shape a;
    GQE_TRY(gqe_cuda_attn_shape(&a, q, k, causal, "attention_backward"));
    if (a.B * a.Hq == 0 || a.T == 0 || a.S == 0) return GQE_OK;
    float *Dd;
    GQE_TRY(gqe_cuda_scratch((void **)&Dd, (size_t)(a.B * a.Hq * a.T) * sizeof(float)));
    gqe_status st = gqe_cuda_attn_rowdot(Dd, dout, out, a);
    if (st == GQE_OK) {
        if (a.D == 64) st = launch_fa_bwd<64, 64, 64>(dq, dk, dv, dout, q, k, v, lse, Dd, a, scale);
        else st = launch_fa_bwd<128, 64, 32>(dq, dk, dv, dout, q, k, v, lse, Dd, a, scale);
    }
    gqe_cuda_scratch_free(Dd);  /* later users of the block are ordered after us on the stream */
    return st;
}
