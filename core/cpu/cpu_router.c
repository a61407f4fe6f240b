/* Routing (GQE.md steps 3-5) on the host: scores, top-k, random and hash
 * routing, load statistics, the aux-loss gradient and slot gather/scatter.
 * Shapes: probs/logits (R, G, M); idx/topv (R, G, k); Q (R, G*M, D). */
#include "cpu.h"
#include "rng.h"
#include <stdlib.h>

static inline float sigmoidf(float v) {
    return v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
}

static int64_t dim(const gqe_tensor *t, int from_end) { return t->shape[t->ndim - 1 - from_end]; }

gqe_status cpu_router_topk(gqe_tensor *probs, gqe_tensor *idx, gqe_tensor *topv,
                           const gqe_tensor *logits, gqe_score_fn fn, const gqe_tensor *bias) {
    CPU_NEED_F32("router_topk", probs); CPU_NEED_F32("router_topk", topv);
    CPU_NEED_F32("router_topk", logits); CPU_NEED_F32("router_topk", bias);
    int64_t M = dim(logits, 0), G = dim(logits, 1), K = dim(idx, 0);
    int64_t rows = gqe_tensor_numel(logits) / (M ? M : 1);   /* (r, g) pairs */
    float *p = gqe_f32(probs), *tv = gqe_f32(topv);
    int32_t *ix = gqe_i32(idx);
    const float *lg = gqe_f32(logits), *bs = bias ? gqe_f32(bias) : NULL;
    #pragma omp parallel for if (rows * M > 16384)
    for (int64_t rg = 0; rg < rows; rg++) {
        const float *l = lg + rg * M, *b = bs ? bs + (rg % G) * M : NULL;
        float *pr = p + rg * M;
        if (fn == GQE_SCORE_SOFTMAX) {
            float m = -INFINITY, s = 0;
            for (int64_t j = 0; j < M; j++) m = l[j] > m ? l[j] : m;
            for (int64_t j = 0; j < M; j++) { pr[j] = expf(l[j] - m); s += pr[j]; }
            for (int64_t j = 0; j < M; j++) pr[j] /= s;
        } else {
            for (int64_t j = 0; j < M; j++) pr[j] = sigmoidf(l[j]);
        }
        /* The j-th pick is the best (score, -index) strictly after the
         * previous pick in that order: descending, ties to the lower index,
         * no scratch memory. NaN scores rank as -inf. */
        float prev_s = INFINITY;
        int64_t prev_m = -1;
        for (int64_t j = 0; j < K; j++) {
            int64_t best = -1;
            float bsc = 0;
            for (int64_t m = 0; m < M; m++) {
                float sc = pr[m] + (b ? b[m] : 0.0f);
                if (sc != sc) sc = -INFINITY;
                bool after = sc < prev_s || (sc == prev_s && m > prev_m);
                if (after && (best < 0 || sc > bsc)) { best = m; bsc = sc; }
            }
            ix[rg * K + j] = (int32_t)best;
            tv[rg * K + j] = pr[best];
            prev_s = bsc; prev_m = best;
        }
    }
    return GQE_OK;
}

gqe_status cpu_router_score_backward(gqe_tensor *dlogits, const gqe_tensor *probs,
                                     const gqe_tensor *dprobs, gqe_score_fn fn) {
    CPU_NEED_F32("router_score_backward", dlogits); CPU_NEED_F32("router_score_backward", probs);
    CPU_NEED_F32("router_score_backward", dprobs);
    int64_t M = dim(probs, 0), rows = gqe_tensor_numel(probs) / (M ? M : 1);
    float *dl = gqe_f32(dlogits);
    const float *p = gqe_f32(probs), *dp = gqe_f32(dprobs);
    #pragma omp parallel for if (rows * M > 16384)
    for (int64_t rg = 0; rg < rows; rg++) {
        const float *pr = p + rg * M, *dpr = dp + rg * M;
        float *d = dl + rg * M;
        if (fn == GQE_SCORE_SOFTMAX) {
            float dot = 0;
            for (int64_t m = 0; m < M; m++) dot += pr[m] * dpr[m];
            for (int64_t m = 0; m < M; m++) d[m] += pr[m] * (dpr[m] - dot);
        } else {
            for (int64_t m = 0; m < M; m++) d[m] += dpr[m] * pr[m] * (1.0f - pr[m]);
        }
    }
    return GQE_OK;
}

/* Partial Fisher-Yates: draw j picks position j + u_j mod (M - j) of the
 * remaining experts; u_j is element (r*G+g)*M + j of the Philox stream, so
 * the choice is the same on every backend and thread count. */
gqe_status cpu_router_random(gqe_tensor *idx, gqe_tensor *topv, int64_t M, uint64_t seed, uint64_t stream) {
    CPU_NEED_F32("router_random", topv);
    int64_t K = dim(idx, 0), rows = gqe_tensor_numel(idx) / (K ? K : 1);
    int32_t *ix = gqe_i32(idx);
    float *tv = gqe_f32(topv);
    int fail = 0;
    #pragma omp parallel if (rows * M > 16384)
    {
        int32_t *perm = malloc((size_t)M * sizeof(int32_t));
        if (!perm) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for
        for (int64_t rg = 0; rg < rows; rg++) {
            if (!perm) continue;
            for (int64_t m = 0; m < M; m++) perm[m] = (int32_t)m;
            for (int64_t j = 0; j < K; j++) {
                uint32_t u = gqe_rng_u32_at(seed, stream, (uint64_t)(rg * M + j));
                int64_t pick = j + (int64_t)(u % (uint32_t)(M - j));
                int32_t t = perm[j]; perm[j] = perm[pick]; perm[pick] = t;
                ix[rg * K + j] = perm[j];
                tv[rg * K + j] = 1.0f / (float)K;
            }
        }
        free(perm);
    }
    if (fail) return gqe_fail(GQE_ERR_NOMEM, "router_random: out of host memory");
    return GQE_OK;
}

/* murmur3's 32-bit finaliser: a full-avalanche mix of token * G + g. */
static uint32_t hash32(uint32_t h) {
    h ^= h >> 16; h *= 0x85ebca6bu;
    h ^= h >> 13; h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

gqe_status cpu_router_hash(gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens, int64_t M) {
    CPU_NEED_F32("router_hash", topv);
    int64_t K = dim(idx, 0), G = dim(idx, 1), R = gqe_tensor_numel(tokens);
    int32_t *ix = gqe_i32(idx);
    const int32_t *tok = gqe_i32(tokens);
    float *tv = gqe_f32(topv);
    for (int64_t r = 0; r < R; r++)
        for (int64_t g = 0; g < G; g++) {
            uint32_t first = hash32((uint32_t)tok[r] * (uint32_t)G + (uint32_t)g) % (uint32_t)M;
            for (int64_t j = 0; j < K; j++) {
                ix[(r * G + g) * K + j] = (int32_t)((first + j) % M);
                tv[(r * G + g) * K + j] = 1.0f / (float)K;
            }
        }
    return GQE_OK;
}

static gqe_status check_idx(const char *op, const gqe_tensor *idx, int64_t M) {
    int64_t n = gqe_tensor_numel(idx), bad = cpu_find_bad_index(gqe_i32(idx), n, M);
    if (bad >= 0) return gqe_fail(GQE_ERR_ARG, "%s: idx element %lld = %d is outside the %lld experts of a group",
                                  op, (long long)bad, gqe_i32(idx)[bad], (long long)M);
    return GQE_OK;
}

gqe_status cpu_router_scatter_probs(gqe_tensor *dprobs, const gqe_tensor *dtopv, const gqe_tensor *idx) {
    CPU_NEED_F32("router_scatter_probs", dprobs); CPU_NEED_F32("router_scatter_probs", dtopv);
    int64_t M = dim(dprobs, 0), K = dim(idx, 0), rows = gqe_tensor_numel(idx) / (K ? K : 1);
    GQE_TRY(check_idx("router_scatter_probs", idx, M));
    float *dp = gqe_f32(dprobs);
    const float *dt = gqe_f32(dtopv);
    const int32_t *ix = gqe_i32(idx);
    for (int64_t rg = 0; rg < rows; rg++)
        for (int64_t j = 0; j < K; j++) dp[rg * M + ix[rg * K + j]] += dt[rg * K + j];
    return GQE_OK;
}

gqe_status cpu_router_stats(gqe_tensor *counts, gqe_tensor *psum, const gqe_tensor *idx,
                            const gqe_tensor *probs, bool normalise) {
    CPU_NEED_F32("router_stats", counts); CPU_NEED_F32("router_stats", psum); CPU_NEED_F32("router_stats", probs);
    int64_t M = dim(probs, 0), G = dim(probs, 1), K = dim(idx, 0);
    int64_t R = gqe_tensor_numel(probs) / (G * M > 0 ? G * M : 1);
    GQE_TRY(check_idx("router_stats", idx, M));
    double *acc = calloc((size_t)(2 * G * M + 1), sizeof(double));
    if (!acc) return gqe_fail(GQE_ERR_NOMEM, "router_stats: out of host memory");
    double *cnt = acc, *ps = acc + G * M;
    const int32_t *ix = gqe_i32(idx);
    const float *p = gqe_f32(probs);
    for (int64_t r = 0; r < R; r++)
        for (int64_t g = 0; g < G; g++) {
            const float *pr = p + (r * G + g) * M;
            double norm = 1.0;
            if (normalise) {
                double s = 0;
                for (int64_t m = 0; m < M; m++) s += pr[m];
                norm = s > 0 ? 1.0 / s : 0.0;
            }
            for (int64_t m = 0; m < M; m++) ps[g * M + m] += pr[m] * norm;
            for (int64_t j = 0; j < K; j++) cnt[g * M + ix[(r * G + g) * K + j]] += 1.0;
        }
    float *c = gqe_f32(counts), *s = gqe_f32(psum);
    for (int64_t i = 0; i < G * M; i++) { c[i] = (float)cnt[i]; s[i] = (float)ps[i]; }
    free(acc);
    return GQE_OK;
}

/* With q = p / S (S = sum_m p): d/dp_i sum_m c_m q_m = (c_i - sum_m c_m q_m) / S. */
gqe_status cpu_router_aux_backward(gqe_tensor *dprobs, const gqe_tensor *probs,
                                   const gqe_tensor *coef, bool normalise) {
    CPU_NEED_F32("router_aux_backward", dprobs); CPU_NEED_F32("router_aux_backward", probs);
    CPU_NEED_F32("router_aux_backward", coef);
    int64_t M = dim(probs, 0), G = dim(probs, 1), rows = gqe_tensor_numel(probs) / (M ? M : 1);
    float *dp = gqe_f32(dprobs);
    const float *p = gqe_f32(probs), *cf = gqe_f32(coef);
    #pragma omp parallel for if (rows * M > 16384)
    for (int64_t rg = 0; rg < rows; rg++) {
        const float *c = cf + (rg % G) * M, *pr = p + rg * M;
        float *d = dp + rg * M;
        if (!normalise) { for (int64_t m = 0; m < M; m++) d[m] += c[m]; continue; }
        float s = 0, cq = 0;
        for (int64_t m = 0; m < M; m++) s += pr[m];
        if (!(s > 0)) continue;
        for (int64_t m = 0; m < M; m++) cq += c[m] * pr[m];
        cq /= s;
        for (int64_t m = 0; m < M; m++) d[m] += (c[m] - cq) / s;
    }
    return GQE_OK;
}

gqe_status cpu_gather_slots(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx) {
    CPU_NEED_F32("gather_slots", slots); CPU_NEED_F32("gather_slots", q);
    int64_t K = dim(idx, 0), G = dim(idx, 1), D = dim(q, 0), GM = dim(q, 1), M = GM / G, H = dim(slots, 1);
    int64_t R = gqe_tensor_numel(idx) / (G * K > 0 ? G * K : 1);
    GQE_TRY(check_idx("gather_slots", idx, M));
    float *sl = gqe_f32(slots);
    const float *pq = gqe_f32(q);
    const int32_t *ix = gqe_i32(idx);
    #pragma omp parallel for if (R * G * K * D > 32768)
    for (int64_t r = 0; r < R; r++)
        for (int64_t g = 0; g < G; g++)
            for (int64_t j = 0; j < K; j++)
                memcpy(sl + (r * H + g * K + j) * D, pq + (r * GM + g * M + ix[(r * G + g) * K + j]) * D,
                       (size_t)D * sizeof(float));
    return GQE_OK;
}

/* The composition itself: on the CPU a second pass over slots costs little.
 * It turns every head of slots, the shared query's among them. */
gqe_status cpu_gather_slots_rope(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx,
                                 float theta, int64_t pos_offset) {
    GQE_TRY(cpu_gather_slots(slots, q, idx));
    return cpu_rope_forward(slots, theta, pos_offset);
}

/* Rows r are independent, so threads split r without conflicts even when
 * two slots of one row name the same expert (they stay in one thread). */
gqe_status cpu_scatter_slots(gqe_tensor *dq, const gqe_tensor *dslots, const gqe_tensor *idx) {
    CPU_NEED_F32("scatter_slots", dq); CPU_NEED_F32("scatter_slots", dslots);
    int64_t K = dim(idx, 0), G = dim(idx, 1), D = dim(dq, 0), GM = dim(dq, 1), M = GM / G, H = dim(dslots, 1);
    int64_t R = gqe_tensor_numel(idx) / (G * K > 0 ? G * K : 1);
    GQE_TRY(check_idx("scatter_slots", idx, M));
    float *pdq = gqe_f32(dq);
    const float *ds = gqe_f32(dslots);
    const int32_t *ix = gqe_i32(idx);
    #pragma omp parallel for if (R * G * K * D > 32768)
    for (int64_t r = 0; r < R; r++)
        for (int64_t g = 0; g < G; g++)
            for (int64_t j = 0; j < K; j++) {
                float *dst = pdq + (r * GM + g * M + ix[(r * G + g) * K + j]) * D;
                const float *src = ds + (r * H + g * K + j) * D;
                for (int64_t c = 0; c < D; c++) dst[c] += src[c];
            }
    return GQE_OK;
}

/* The chain itself, on temporaries: the fused op's definition. */
gqe_status cpu_router_backward(gqe_tensor *dlogits, const gqe_tensor *dtopv, const gqe_tensor *idx,
                               const gqe_tensor *probs, const gqe_tensor *counts, float coef_scale, gqe_score_fn fn,
                               bool normalise) {
    CPU_NEED_F32("router_backward", dlogits); CPU_NEED_F32("router_backward", probs);
    if (dtopv) CPU_NEED_F32("router_backward", dtopv);
    gqe_tensor dprobs = {0}, coef = {0};
    gqe_status st = gqe_tensor_zeros(&dprobs, GQE_F32, GQE_CPU, probs->ndim, probs->shape);
    if (st == GQE_OK && dtopv) st = cpu_router_scatter_probs(&dprobs, dtopv, idx);
    if (st == GQE_OK && counts) {
        st = gqe_tensor_zeros(&coef, GQE_F32, GQE_CPU, counts->ndim, counts->shape);
        if (st == GQE_OK) memcpy(gqe_f32(&coef), gqe_f32(counts), sizeof(float) * (size_t)gqe_tensor_numel(counts));
        if (st == GQE_OK) st = cpu_scale(&coef, coef_scale);
        if (st == GQE_OK) st = cpu_router_aux_backward(&dprobs, probs, &coef, normalise);
    }
    if (st == GQE_OK) st = cpu_fill(dlogits, 0.0f);
    if (st == GQE_OK) st = cpu_router_score_backward(dlogits, probs, &dprobs, fn);
    gqe_tensor_free(&dprobs);
    gqe_tensor_free(&coef);
    return st;
}
