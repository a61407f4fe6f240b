/* Routing (GQE.md steps 3-5): scores with top-k, the fixed routers (random,
 * hash), the scatter of top-k gradients, load statistics, the aux-loss
 * gradient and slot gather/scatter. One thread per (row, group) wherever M
 * and k are small, which they are (M = N/G, a handful).
 * Shapes: probs/logits (R, G, M); idx/topv (R, G, k); Q (R, G*M, D).
 * Random and hash routing reproduce core/cpu/cpu_router.c bit for bit: the
 * same Philox counters (core/philox.h) and the same murmur3 finaliser. */
#include "common.cuh"
#include "philox.h"

#define THREADS 256

static int64_t last(const gqe_tensor *t, int from_end) { return t->shape[t->ndim - 1 - from_end]; }

__device__ __forceinline__ float sigmoid_stable(float v) {
    return v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
}

/* ---- scores and top-k ------------------------------------------------------ */
/* The j-th pick is the best (score, -index) strictly after the previous pick
 * in that order: descending, ties to the lower index, no scratch. NaN ranks
 * as -inf. Same rule as the CPU backend. */
__global__ void k_router_topk(fptr probs, int32_t *idx, fptr topv, fptr logits, const float *bias, int64_t rows,
                              int64_t G, int64_t M, int64_t K, int sigmoid) {
    GRID_STRIDE(rg, rows) {
        int64_t base = rg * M;
        const float *b = bias ? bias + (rg % G) * M : NULL;
        if (!sigmoid) {
            float m = -INFINITY, s = 0;
            for (int64_t j = 0; j < M; j++) m = fmaxf(m, ldf(logits, base + j));
            for (int64_t j = 0; j < M; j++) {
                float e = expf(ldf(logits, base + j) - m);
                stf(probs, base + j, e);
                s += e;
            }
            for (int64_t j = 0; j < M; j++) stf(probs, base + j, ldf(probs, base + j) / s);
        } else {
            for (int64_t j = 0; j < M; j++) stf(probs, base + j, sigmoid_stable(ldf(logits, base + j)));
        }
        float prev_s = INFINITY;
        int64_t prev_m = -1;
        for (int64_t j = 0; j < K; j++) {
            int64_t best = -1;
            float bsc = 0;
            for (int64_t m = 0; m < M; m++) {
                float sc = ldf(probs, base + m) + (b ? b[m] : 0.0f);
                if (sc != sc) sc = -INFINITY;
                bool after = sc < prev_s || (sc == prev_s && m > prev_m);
                if (after && (best < 0 || sc > bsc)) { best = m; bsc = sc; }
            }
            if (best < 0) best = 0;  /* only when k > M, which ops.c rejects */
            idx[rg * K + j] = (int32_t)best;
            stf(topv, rg * K + j, ldf(probs, base + best));
            prev_s = bsc;
            prev_m = best;
        }
    }
}

gqe_status gqe_cuda_router_topk(gqe_tensor *probs, gqe_tensor *idx, gqe_tensor *topv,
                                const gqe_tensor *logits, gqe_score_fn fn, const gqe_tensor *bias) {
    const char *op = "router_topk";
    GQE_TRY(gqe_cuda_need_float(probs, op, "probs"));
    GQE_TRY(gqe_cuda_need_float(topv, op, "topv"));
    GQE_TRY(gqe_cuda_need_float(logits, op, "logits"));
    GQE_TRY(gqe_cuda_need_i32(idx, op, "idx"));
    if (bias) GQE_TRY(gqe_cuda_need_f32(bias, op, "bias"));
    int64_t M = last(logits, 0), G = last(logits, 1), K = last(idx, 0);
    int64_t rows = M ? gqe_tensor_numel(logits) / M : 0;
    if (rows == 0) return GQE_OK;
    k_router_topk<<<gqe_grid_for(rows, THREADS), THREADS>>>(fp(probs), gqe_i32(idx), fp(topv), fp(logits),
                                                             bias ? gqe_f32(bias) : NULL, rows, G, M, K,
                                                             fn == GQE_SCORE_SIGMOID);
    LAUNCH_CHECK("router top-k kernel");
    return GQE_OK;
}

__global__ void k_router_score_bwd(fptr dlogits, fptr probs, fptr dprobs, int64_t rows, int64_t M, int sigmoid) {
    GRID_STRIDE(rg, rows) {
        int64_t base = rg * M;
        if (!sigmoid) {
            float dot = 0;
            for (int64_t m = 0; m < M; m++) dot += ldf(probs, base + m) * ldf(dprobs, base + m);
            for (int64_t m = 0; m < M; m++)
                stf(dlogits, base + m, ldf(dlogits, base + m) + ldf(probs, base + m) * (ldf(dprobs, base + m) - dot));
        } else {
            for (int64_t m = 0; m < M; m++) {
                float p = ldf(probs, base + m);
                stf(dlogits, base + m, ldf(dlogits, base + m) + ldf(dprobs, base + m) * p * (1.0f - p));
            }
        }
    }
}

gqe_status gqe_cuda_router_score_backward(gqe_tensor *dlogits, const gqe_tensor *probs,
                                          const gqe_tensor *dprobs, gqe_score_fn fn) {
    const char *op = "router_score_backward";
    GQE_TRY(gqe_cuda_need_float(dlogits, op, "dlogits"));
    GQE_TRY(gqe_cuda_need_float(probs, op, "probs"));
    GQE_TRY(gqe_cuda_need_float(dprobs, op, "dprobs"));
    int64_t M = last(probs, 0), rows = M ? gqe_tensor_numel(probs) / M : 0;
    if (rows == 0) return GQE_OK;
    k_router_score_bwd<<<gqe_grid_for(rows, THREADS), THREADS>>>(fp(dlogits), fp(probs), fp(dprobs), rows, M,
                                                                  fn == GQE_SCORE_SIGMOID);
    LAUNCH_CHECK("router score backward kernel");
    return GQE_OK;
}

/* ---- random and hash routing ---------------------------------------------- */
/* Partial Fisher-Yates over the identity permutation, as the CPU does: pick j
 * swaps position j with j + u_j mod (M - j), u_j being element
 * (r*G+g)*M + j of the stream, and takes the value now at j. The
 * permutation is not stored: the value at a position is found by tracing
 * the earlier swaps backwards (their picks are recomputed from the
 * counter-based stream), so any M works with no per-thread array. */
__device__ int64_t random_pick(uint64_t seed, uint64_t stream, int64_t rg, int64_t M, int64_t j) {
    uint32_t u = gqe_philox_u32_at(seed, stream, (uint64_t)(rg * M + j));
    return j + (int64_t)(u % (uint32_t)(M - j));
}

__global__ void k_router_random(int32_t *idx, fptr topv, int64_t rows, int64_t M, int64_t K, uint64_t seed,
                                uint64_t stream) {
    GRID_STRIDE(rg, rows) {
        for (int64_t j = 0; j < K; j++) {
            int64_t pos = random_pick(seed, stream, rg, M, j);
            for (int64_t i = j - 1; i >= 0; i--) {
                int64_t pi = random_pick(seed, stream, rg, M, i);
                if (pos == i) pos = pi;
                else if (pos == pi) pos = i;
            }
            idx[rg * K + j] = (int32_t)pos;
            stf(topv, rg * K + j, 1.0f / (float)K);
        }
    }
}

gqe_status gqe_cuda_router_random(gqe_tensor *idx, gqe_tensor *topv, int64_t M, uint64_t seed, uint64_t stream) {
    GQE_TRY(gqe_cuda_need_i32(idx, "router_random", "idx"));
    GQE_TRY(gqe_cuda_need_float(topv, "router_random", "topv"));
    int64_t K = last(idx, 0), rows = K ? gqe_tensor_numel(idx) / K : 0;
    if (rows == 0) return GQE_OK;
    if (K > M) return gqe_fail(GQE_ERR_ARG, "router_random: k = %lld exceeds M = %lld", (long long)K, (long long)M);
    k_router_random<<<gqe_grid_for(rows, THREADS), THREADS>>>(gqe_i32(idx), fp(topv), rows, M, K, seed, stream);
    LAUNCH_CHECK("router random kernel");
    return GQE_OK;
}

/* murmur3's 32-bit finaliser of token * G + g (unsigned 32-bit arithmetic). */
__device__ __forceinline__ uint32_t hash32(uint32_t h) {
    h ^= h >> 16; h *= 0x85ebca6bu;
    h ^= h >> 13; h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

__global__ void k_router_hash(int32_t *idx, fptr topv, const int32_t *tokens, int64_t R, int64_t G, int64_t M,
                              int64_t K) {
    GRID_STRIDE(rg, R * G) {
        int64_t r = rg / G, g = rg % G;
        uint32_t first = hash32((uint32_t)tokens[r] * (uint32_t)G + (uint32_t)g) % (uint32_t)M;
        for (int64_t j = 0; j < K; j++) {
            idx[rg * K + j] = (int32_t)((first + j) % M);
            stf(topv, rg * K + j, 1.0f / (float)K);
        }
    }
}

gqe_status gqe_cuda_router_hash(gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens, int64_t M) {
    GQE_TRY(gqe_cuda_need_i32(idx, "router_hash", "idx"));
    GQE_TRY(gqe_cuda_need_i32(tokens, "router_hash", "tokens"));
    GQE_TRY(gqe_cuda_need_float(topv, "router_hash", "topv"));
    int64_t K = last(idx, 0), G = last(idx, 1), R = gqe_tensor_numel(tokens);
    if (R * G == 0) return GQE_OK;
    k_router_hash<<<gqe_grid_for(R * G, THREADS), THREADS>>>(gqe_i32(idx), fp(topv), gqe_i32(tokens), R, G, M, K);
    LAUNCH_CHECK("router hash kernel");
    return GQE_OK;
}

/* ---- gradients and statistics ------------------------------------------- */
/* One thread per (r, g) walks its k picks, so repeated indices never race. */
__global__ void k_scatter_probs(fptr dprobs, fptr dtopv, const int32_t *idx, int64_t rows, int64_t M, int64_t K,
                                int *flag) {
    GRID_STRIDE(rg, rows) {
        for (int64_t j = 0; j < K; j++) {
            int32_t m = idx[rg * K + j];
            if (m < 0 || m >= M) { atomicOr(flag, GQE_FLAG_EXPERT); continue; }
            int64_t i = rg * M + m;
            stf(dprobs, i, ldf(dprobs, i) + ldf(dtopv, rg * K + j));
        }
    }
}

gqe_status gqe_cuda_router_scatter_probs(gqe_tensor *dprobs, const gqe_tensor *dtopv, const gqe_tensor *idx) {
    GQE_TRY(gqe_cuda_need_float(dprobs, "router_scatter_probs", "dprobs"));
    GQE_TRY(gqe_cuda_need_float(dtopv, "router_scatter_probs", "dtopv"));
    GQE_TRY(gqe_cuda_need_i32(idx, "router_scatter_probs", "idx"));
    int64_t M = last(dprobs, 0), K = last(idx, 0), rows = K ? gqe_tensor_numel(idx) / K : 0;
    if (rows == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "router_scatter_probs: no device flag");
    k_scatter_probs<<<gqe_grid_for(rows, THREADS), THREADS>>>(fp(dprobs), fp(dtopv), gqe_i32(idx), rows, M, K, flag);
    LAUNCH_CHECK("router scatter kernel");
    return GQE_OK;
}

/* Statistics in two fixed-order passes, so they are the same on every run:
 * STAT_PARTS blocks per (g, m) each sum a contiguous span of rows in double,
 * then one thread per (g, m) adds the spans in order. (One block per (g, m)
 * left all but G*M SMs idle.) */
#define STAT_PARTS 32
__global__ void k_router_stats_part(double *part, const int32_t *idx, fptr probs, int64_t R, int64_t G,
                                    int64_t M, int64_t K, int normalise) {
    __shared__ double scratch[32];
    int64_t gm = blockIdx.x / STAT_PARTS, pi = blockIdx.x % STAT_PARTS, g = gm / M, m = gm % M;
    int64_t span = (R + STAT_PARTS - 1) / STAT_PARTS, r0 = pi * span, r1 = r0 + span < R ? r0 + span : R;
    double c = 0, s = 0;
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) {
        int64_t rg = r * G + g;
        double p = ldf(probs, rg * M + m);
        if (normalise) {
            double tot = 0;
            for (int64_t j = 0; j < M; j++) tot += ldf(probs, rg * M + j);
            p = tot > 0 ? p / tot : 0.0;
        }
        s += p;
        for (int64_t j = 0; j < K; j++) c += idx[rg * K + j] == m ? 1.0 : 0.0;
    }
    c = block_sum(c, scratch);
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) { part[2 * blockIdx.x] = c; part[2 * blockIdx.x + 1] = s; }
}

__global__ void k_router_stats_sum(float *counts, float *psum, const double *part, int64_t GM) {
    GRID_STRIDE(gm, GM) {
        double c = 0, s = 0;
        for (int p = 0; p < STAT_PARTS; p++) {
            c += part[2 * (gm * STAT_PARTS + p)];
            s += part[2 * (gm * STAT_PARTS + p) + 1];
        }
        counts[gm] = (float)c;
        psum[gm] = (float)s;
    }
}

gqe_status gqe_cuda_router_stats(gqe_tensor *counts, gqe_tensor *psum, const gqe_tensor *idx,
                                 const gqe_tensor *probs, bool normalise) {
    GQE_TRY(gqe_cuda_need_f32(counts, "router_stats", "counts"));
    GQE_TRY(gqe_cuda_need_f32(psum, "router_stats", "psum"));
    GQE_TRY(gqe_cuda_need_float(probs, "router_stats", "probs"));
    GQE_TRY(gqe_cuda_need_i32(idx, "router_stats", "idx"));
    int64_t M = last(probs, 0), G = last(probs, 1), K = last(idx, 0);
    int64_t R = (G * M != 0) ? gqe_tensor_numel(probs) / (G * M) : 0;
    if (G * M == 0) return GQE_OK;
    double *part = NULL;
    GQE_TRY(gqe_cuda_scratch((void **)&part, (size_t)(G * M * STAT_PARTS) * 2 * sizeof(double)));
    k_router_stats_part<<<(unsigned)(G * M * STAT_PARTS), THREADS>>>(part, gqe_i32(idx), fp(probs), R, G, M, K,
                                                                      normalise);
    cudaError_t e1 = cudaGetLastError();
    if (e1 == cudaSuccess)
        k_router_stats_sum<<<gqe_grid_for(G * M, THREADS), THREADS>>>(gqe_f32(counts), gqe_f32(psum), part, G * M);
    gqe_cuda_scratch_free(part);
    if (e1 != cudaSuccess) return gqe_fail(GQE_ERR_DEVICE, "router stats kernel failed: %s", cudaGetErrorString(e1));
    LAUNCH_CHECK("router stats kernel");
    return GQE_OK;
}

/* With q = p / S: d/dp_i sum_m c_m q_m = (c_i - sum_m c_m q_m) / S. */
__global__ void k_router_aux_bwd(fptr dprobs, fptr probs, const float *coef, int64_t rows, int64_t G, int64_t M,
                                 int normalise) {
    GRID_STRIDE(rg, rows) {
        const float *c = coef + (rg % G) * M;
        int64_t base = rg * M;
        if (!normalise) {
            for (int64_t m = 0; m < M; m++) stf(dprobs, base + m, ldf(dprobs, base + m) + c[m]);
            continue;
        }
        float s = 0, cq = 0;
        for (int64_t m = 0; m < M; m++) s += ldf(probs, base + m);
        if (!(s > 0)) continue;
        for (int64_t m = 0; m < M; m++) cq += c[m] * ldf(probs, base + m);
        cq /= s;
        for (int64_t m = 0; m < M; m++) stf(dprobs, base + m, ldf(dprobs, base + m) + (c[m] - cq) / s);
    }
}

gqe_status gqe_cuda_router_aux_backward(gqe_tensor *dprobs, const gqe_tensor *probs,
                                        const gqe_tensor *coef, bool normalise) {
    GQE_TRY(gqe_cuda_need_float(dprobs, "router_aux_backward", "dprobs"));
    GQE_TRY(gqe_cuda_need_float(probs, "router_aux_backward", "probs"));
    GQE_TRY(gqe_cuda_need_f32(coef, "router_aux_backward", "coef"));
    int64_t M = last(probs, 0), G = last(probs, 1), rows = M ? gqe_tensor_numel(probs) / M : 0;
    if (rows == 0) return GQE_OK;
    k_router_aux_bwd<<<gqe_grid_for(rows, THREADS), THREADS>>>(fp(dprobs), fp(probs), gqe_f32(coef), rows, G, M,
                                                                normalise);
    LAUNCH_CHECK("router aux backward kernel");
    return GQE_OK;
}

/* The router's backward, one thread per (r, g): dprobs is never stored, each
 * of its values is rebuilt where it is read, by the float steps of
 * k_scatter_probs and k_router_aux_bwd from zero; dlogits gets
 * k_router_score_bwd's value added to zero. */
__device__ __forceinline__ float router_dprob(fptr dtopv, const int32_t *idx, int64_t rg, int64_t K, int64_t m,
                                              const float *cnt, float scale, bool aux, bool normalise, float cq,
                                              float s) {
    float v = 0.0f;
    if (dtopv.p)
        for (int64_t j = 0; j < K; j++)
            if (idx[rg * K + j] == m) v = v + ldf(dtopv, rg * K + j);
    /* coef rounded on its own, as the scaled copy stored it (no fused multiply-add) */
    if (aux) v = normalise ? v + (__fmul_rn(cnt[m], scale) - cq) / s : v + __fmul_rn(cnt[m], scale);
    return v;
}

__global__ void k_router_bwd(fptr dlogits, fptr dtopv, const int32_t *idx, fptr probs, const float *counts,
                             float scale, int64_t rows, int64_t G, int64_t M, int64_t K, int sigmoid, int normalise,
                             int *flag) {
    GRID_STRIDE(rg, rows) {
        int64_t base = rg * M;
        if (dtopv.p)
            for (int64_t j = 0; j < K; j++) {
                int32_t m = idx[rg * K + j];
                if (m < 0 || m >= M) atomicOr(flag, GQE_FLAG_EXPERT);
            }
        const float *cnt = counts ? counts + (rg % G) * M : NULL;
        bool aux = cnt != NULL;
        float s = 0, cq = 0;
        if (aux && normalise) {
            for (int64_t m = 0; m < M; m++) s += ldf(probs, base + m);
            if (!(s > 0)) aux = false;
            for (int64_t m = 0; aux && m < M; m++) cq += __fmul_rn(cnt[m], scale) * ldf(probs, base + m);
            if (aux) cq /= s;
        }
#define DPROB(m) router_dprob(dtopv, idx, rg, K, (m), cnt, scale, aux, normalise, cq, s)
        if (!sigmoid) {
            float dot = 0;
            for (int64_t m = 0; m < M; m++) dot += ldf(probs, base + m) * DPROB(m);
            for (int64_t m = 0; m < M; m++)
                stf(dlogits, base + m, 0.0f + ldf(probs, base + m) * (DPROB(m) - dot));
        } else {
            for (int64_t m = 0; m < M; m++) {
                float p = ldf(probs, base + m);
                stf(dlogits, base + m, 0.0f + DPROB(m) * p * (1.0f - p));
            }
        }
#undef DPROB
    }
}

gqe_status gqe_cuda_router_backward(gqe_tensor *dlogits, const gqe_tensor *dtopv, const gqe_tensor *idx,
                                    const gqe_tensor *probs, const gqe_tensor *counts, float coef_scale,
                                    gqe_score_fn fn, bool normalise) {
    const char *op = "router_backward";
    GQE_TRY(gqe_cuda_need_float(dlogits, op, "dlogits"));
    GQE_TRY(gqe_cuda_need_float(probs, op, "probs"));
    GQE_TRY(gqe_cuda_need_i32(idx, op, "idx"));
    if (dtopv) GQE_TRY(gqe_cuda_need_float(dtopv, op, "dtopv"));
    if (counts) GQE_TRY(gqe_cuda_need_f32(counts, op, "counts"));
    int64_t M = last(probs, 0), G = last(probs, 1), K = last(idx, 0), rows = M ? gqe_tensor_numel(probs) / M : 0;
    if (rows == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "router_backward: no device flag");
    fptr dt = {};
    if (dtopv) dt = fp(dtopv);
    k_router_bwd<<<gqe_grid_for(rows, THREADS), THREADS>>>(fp(dlogits), dt, gqe_i32(idx), fp(probs),
                                                            counts ? gqe_f32(counts) : NULL, coef_scale, rows, G, M, K,
                                                            fn == GQE_SCORE_SIGMOID, normalise, flag);
    LAUNCH_CHECK("router backward kernel");
    return GQE_OK;
}

/* ---- slot gather / scatter -------------------------------------------------- */
/* slots (R, H, D), H >= G*K: slot g*K + j = Q[r, g*M + idx[r,g,j]]; heads
 * past G*K belong to the caller (the shared query) and are not touched. */
__global__ void k_gather_slots(fptr slots, fptr q, const int32_t *idx, int64_t R, int64_t G, int64_t M, int64_t K,
                               int64_t H, int64_t D, int *flag) {
    GRID_STRIDE(e, R * G * K * D) {
        int64_t d = e % D, s = e / D;            /* s = (r*G + g)*K + j */
        int64_t rg = s / K, r = rg / G, g = rg % G;
        int64_t o = (r * H + s % (G * K)) * D + d;
        int32_t m = idx[s];
        if (m < 0 || m >= M) {
            if (d == 0) atomicOr(flag, GQE_FLAG_EXPERT);
            stf(slots, o, 0.0f);
            continue;
        }
        stf(slots, o, ldf(q, ((r * G + g) * M + m) * D + d));
    }
}

/* bf16 fast path: 8 values of one slot row per thread. */
__global__ void k_gather_slots8(uint4 *slots, const uint4 *__restrict__ q, const int32_t *idx, int64_t R, int64_t G,
                                int64_t M, int64_t K, int64_t H, int64_t D8, int *flag) {
    GRID_STRIDE(e, R * G * K * D8) {
        int64_t d = e % D8, s = e / D8, rg = s / K;
        int64_t o = (s / (G * K) * H + s % (G * K)) * D8 + d;
        int32_t m = idx[s];
        if (m < 0 || m >= M) {
            if (d == 0) atomicOr(flag, GQE_FLAG_EXPERT);
            slots[o] = make_uint4(0, 0, 0, 0);
            continue;
        }
        slots[o] = q[(rg * M + m) * D8 + d];
    }
}

/* One thread per (r, g, d) walks the k picks: repeated experts never race.
 * dslots (R, H, D): only its first G*K heads are read. */
__global__ void k_scatter_slots(fptr dq, fptr dslots, const int32_t *idx, int64_t R, int64_t G, int64_t M, int64_t K,
                                int64_t H, int64_t D, int *flag) {
    GRID_STRIDE(e, R * G * D) {
        int64_t d = e % D, rg = e / D;
        int64_t src = ((rg / G) * H + (rg % G) * K) * D + d;   /* slot (r, g*K) */
        for (int64_t j = 0; j < K; j++) {
            int32_t m = idx[rg * K + j];
            if (m < 0 || m >= M) {
                if (d == 0) atomicOr(flag, GQE_FLAG_EXPERT);
                continue;
            }
            int64_t o = (rg * M + m) * D + d;
            stf(dq, o, ldf(dq, o) + ldf(dslots, src + j * D));
        }
    }
}

__global__ void k_scatter_slots8(uint4 *dq, const uint4 *__restrict__ dslots, const int32_t *idx, int64_t R,
                                 int64_t G, int64_t M, int64_t K, int64_t H, int64_t D8, int *flag) {
    GRID_STRIDE(e, R * G * D8) {
        int64_t d = e % D8, rg = e / D8;
        int64_t src = ((rg / G) * H + (rg % G) * K) * D8 + d;
        for (int64_t j = 0; j < K; j++) {
            int32_t m = idx[rg * K + j];
            if (m < 0 || m >= M) {
                if (d == 0) atomicOr(flag, GQE_FLAG_EXPERT);
                continue;
            }
            int64_t o = (rg * M + m) * D8 + d;
            float a[8], b[8];
            unpack8(dq[o], a);
            unpack8(dslots[src + j * D8], b);
#pragma unroll
            for (int t = 0; t < 8; t++) a[t] += b[t];
            dq[o] = pack8(a);
        }
    }
}

gqe_status gqe_cuda_gather_slots(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx) {
    GQE_TRY(gqe_cuda_need_float(slots, "gather_slots", "slots"));
    GQE_TRY(gqe_cuda_need_float(q, "gather_slots", "q"));
    GQE_TRY(gqe_cuda_need_i32(idx, "gather_slots", "idx"));
    int64_t K = last(idx, 0), G = last(idx, 1), D = last(q, 0), GM = last(q, 1), M = G ? GM / G : 0;
    int64_t R = (G * K != 0) ? gqe_tensor_numel(idx) / (G * K) : 0, H = last(slots, 1);
    int64_t n = R * G * K * D;
    if (n == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "gather_slots: no device flag");
    if (all_bf16(slots, q) && vec8_ok(D, gqe_tensor_data(slots), gqe_tensor_data(q)))
        k_gather_slots8<<<gqe_grid_for(n / 8, THREADS), THREADS>>>((uint4 *)gqe_tensor_data(slots),
                                                                   (const uint4 *)gqe_tensor_data(q), gqe_i32(idx), R,
                                                                   G, M, K, H, D / 8, flag);
    else
        k_gather_slots<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(slots), fp(q), gqe_i32(idx), R, G, M, K, H, D, flag);
    LAUNCH_CHECK("gather slots kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_scatter_slots(gqe_tensor *dq, const gqe_tensor *dslots, const gqe_tensor *idx) {
    GQE_TRY(gqe_cuda_need_float(dq, "scatter_slots", "dq"));
    GQE_TRY(gqe_cuda_need_float(dslots, "scatter_slots", "dslots"));
    GQE_TRY(gqe_cuda_need_i32(idx, "scatter_slots", "idx"));
    int64_t K = last(idx, 0), G = last(idx, 1), D = last(dq, 0), GM = last(dq, 1), M = G ? GM / G : 0;
    int64_t R = (G * K != 0) ? gqe_tensor_numel(idx) / (G * K) : 0, H = last(dslots, 1);
    int64_t n = R * G * D;
    if (n == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "scatter_slots: no device flag");
    if (all_bf16(dq, dslots) && vec8_ok(D, gqe_tensor_data(dq), gqe_tensor_data(dslots)))
        k_scatter_slots8<<<gqe_grid_for(n / 8, THREADS), THREADS>>>((uint4 *)gqe_tensor_data(dq),
                                                                    (const uint4 *)gqe_tensor_data(dslots),
                                                                    gqe_i32(idx), R, G, M, K, H, D / 8, flag);
    else
        k_scatter_slots<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(dq), fp(dslots), gqe_i32(idx), R, G, M, K, H, D, flag);
    LAUNCH_CHECK("scatter slots kernel");
    return GQE_OK;
}
