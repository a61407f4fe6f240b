/* Flash-style attention on the host. Per (batch, head) and block of BQ query
 * rows, the score block (BQ x keys up to the causal limit) lives in a
 * per-thread buffer; only out and the per-row log-sum-exp are kept, and the
 * backward pass rebuilds probabilities from lse. q/k/v are read in place
 * from their (B, T, H, D) layout through leading dimensions H*D, so every
 * product is one sgemm with no transposed copies.
 *
 * The OpenMP OpenBLAS runs single-threaded inside our parallel regions, so
 * threads split blocks and BLAS stays out of their way. When there are fewer
 * tasks than threads the region is switched off and BLAS threads itself. */
#include "cpu.h"
#include <string.h>
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#define BQ 64

typedef struct {
    int64_t B, T, S, Hq, Hkv, D, off;   /* off = S - T when causal: row t sits at t + off */
    bool causal;
    float scale;
} attn_dims;

static attn_dims dims_of(const gqe_tensor *q, const gqe_tensor *k, bool causal, float scale) {
    attn_dims a = {q->shape[0], q->shape[1], k->shape[1], q->shape[2], k->shape[2], q->shape[3], 0, causal, scale};
    a.off = causal ? a.S - a.T : 0;
    return a;
}

/* Keys visible to query rows t0 .. t0+n-1: the causal limit of the last row. */
static int64_t keys_for_block(const attn_dims *a, int64_t t0, int64_t n) {
    if (!a->causal) return a->S;
    int64_t lim = t0 + n + a->off;
    return lim < a->S ? lim : a->S;
}

/* Keys visible to query row t: s < row_limit. */
static int64_t row_limit(const attn_dims *a, int64_t t, int64_t nk) {
    if (!a->causal) return nk;
    int64_t lim = t + a->off + 1;
    return lim < 0 ? 0 : lim < nk ? lim : nk;
}

/* sc (n x nk) = scale * q_blk k^T; the softmax loops mask the causal part. */
static void scores(const attn_dims *a, float *sc, const float *qb, const float *kb, int64_t n, int64_t nk) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)nk, (blasint)a->D, a->scale,
                qb, (blasint)(a->Hq * a->D), kb, (blasint)(a->Hkv * a->D), 0.0f, sc, (blasint)nk);
}

/* The row loops below vectorise (cpu_expf); sums run in 16 fixed lanes
 * so that every instruction set adds in the same order. */
CPU_SPAN static float row_max(const float *restrict row, int64_t n) {
    float m = -INFINITY;
    #pragma omp simd reduction(max : m)
    for (int64_t s = 0; s < n; s++) m = row[s] > m ? row[s] : m;
    return m;
}

/* row[s] = exp(row[s] - m) for s < n, 0 for n <= s < nk; returns the sum. */
CPU_SPAN static float row_exp(float *restrict row, int64_t n, int64_t nk, float m) {
    float acc[16] = {0};
    int64_t s = 0;
    for (; s + 16 <= n; s += 16) {
        #pragma omp simd
        for (int j = 0; j < 16; j++) {
            float e = cpu_expf(row[s + j] - m);
            row[s + j] = e;
            acc[j] += e;
        }
    }
    for (; s < n; s++) {
        float e = cpu_expf(row[s] - m);
        row[s] = e;
        acc[0] += e;
    }
    for (s = n; s < nk; s++) row[s] = 0.0f;
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    return sum;
}

CPU_SPAN static void row_scale(float *restrict row, int64_t n, float c) {
    #pragma omp simd
    for (int64_t s = 0; s < n; s++) row[s] *= c;
}

/* dS = P (dP - Di), in place over P. */
CPU_SPAN static void row_dscore(float *restrict p, const float *restrict dp, int64_t n, float di) {
    #pragma omp simd
    for (int64_t s = 0; s < n; s++) p[s] *= dp[s] - di;
}

static bool too_few_tasks(int64_t tasks) { return tasks < omp_get_max_threads(); }

gqe_status cpu_attention_forward(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                 const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale) {
    CPU_NEED_F32("attention_forward", out); CPU_NEED_F32("attention_forward", lse);
    CPU_NEED_F32("attention_forward", q); CPU_NEED_F32("attention_forward", k); CPU_NEED_F32("attention_forward", v);
    cpu_threads_adapt();
    attn_dims a = dims_of(q, k, causal, scale);
    int64_t nblk = (a.T + BQ - 1) / BQ, tasks = a.B * a.Hq * nblk, rep = a.Hq / a.Hkv;
    float *po = gqe_f32(out), *pl = gqe_f32(lse);
    const float *pq = gqe_f32(q), *pk = gqe_f32(k), *pv = gqe_f32(v);
    int fail = 0;
    #pragma omp parallel if (!too_few_tasks(tasks))
    {
        float *sc = malloc((size_t)BQ * (size_t)a.S * sizeof(float));
        if (!sc) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < tasks; task++) {
            if (!sc) continue;
            int64_t blk = task % nblk, h = (task / nblk) % a.Hq, b = task / (nblk * a.Hq), g = h / rep;
            int64_t t0 = blk * BQ, n = a.T - t0 < BQ ? a.T - t0 : BQ, nk = keys_for_block(&a, t0, n);
            const float *qb = pq + ((b * a.T + t0) * a.Hq + h) * a.D;
            const float *kb = pk + (b * a.S * a.Hkv + g) * a.D;
            const float *vb = pv + (b * a.S * a.Hkv + g) * a.D;
            float *ob = po + ((b * a.T + t0) * a.Hq + h) * a.D;
            float *lb = pl + (b * a.Hq + h) * a.T + t0;
            scores(&a, sc, qb, kb, n, nk);
            for (int64_t i = 0; i < n; i++) {
                float *row = sc + i * nk;
                int64_t lim = row_limit(&a, t0 + i, nk);
                float m = row_max(row, lim);
                float sum = row_exp(row, lim, nk, m);
                row_scale(row, lim, 1.0f / sum);
                lb[i] = m + logf(sum);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)a.D, (blasint)nk, 1.0f,
                        sc, (blasint)nk, vb, (blasint)(a.Hkv * a.D), 0.0f, ob, (blasint)(a.Hq * a.D));
        }
        free(sc);
    }
    if (fail) return gqe_fail(GQE_ERR_NOMEM, "attention_forward: out of host memory for score blocks");
    return GQE_OK;
}

/* Backward per block: P = exp(S - lse), dP = dO V^T, Di = rowsum(dO * O),
 * dS = P (dP - Di); dQ += scale dS K, dK += scale dS^T Q, dV += P^T dO.
 * Threads own a (batch, kv head) each and walk its query heads, so dK and
 * dV of one KV head are written by one thread only. */
gqe_status cpu_attention_backward(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                  const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                  const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                  bool causal, float scale, bool accumulate) {
    const char *op = "attention_backward";
    CPU_NEED_F32(op, dq); CPU_NEED_F32(op, dk); CPU_NEED_F32(op, dv); CPU_NEED_F32(op, dout);
    CPU_NEED_F32(op, q); CPU_NEED_F32(op, k); CPU_NEED_F32(op, v); CPU_NEED_F32(op, out); CPU_NEED_F32(op, lse);
    cpu_threads_adapt();
    attn_dims a = dims_of(q, k, causal, scale);
    int64_t nblk = (a.T + BQ - 1) / BQ, tasks = a.B * a.Hkv, rep = a.Hq / a.Hkv;
    int64_t ldq = a.Hq * a.D, ldk = a.Hkv * a.D;
    float *pdq = gqe_f32(dq), *pdk = gqe_f32(dk), *pdv = gqe_f32(dv);
    if (!accumulate) {
        memset(pdq, 0, gqe_tensor_nbytes(dq));
        memset(pdk, 0, gqe_tensor_nbytes(dk));
        memset(pdv, 0, gqe_tensor_nbytes(dv));
    }
    const float *pdo = gqe_f32(dout), *pq = gqe_f32(q), *pk = gqe_f32(k), *pv = gqe_f32(v);
    const float *po = gqe_f32(out), *pl = gqe_f32(lse);
    int fail = 0;
    #pragma omp parallel if (!too_few_tasks(tasks))
    {
        float *buf = malloc(((size_t)2 * BQ * (size_t)a.S + BQ) * sizeof(float));
        if (!buf) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < tasks; task++) {
            if (!buf) continue;
            int64_t b = task / a.Hkv, g = task % a.Hkv;
            const float *kb = pk + (b * a.S * a.Hkv + g) * a.D, *vb = pv + (b * a.S * a.Hkv + g) * a.D;
            float *dkb = pdk + (b * a.S * a.Hkv + g) * a.D, *dvb = pdv + (b * a.S * a.Hkv + g) * a.D;
            for (int64_t h = g * rep; h < (g + 1) * rep; h++)
                for (int64_t blk = 0; blk < nblk; blk++) {
                    int64_t t0 = blk * BQ, n = a.T - t0 < BQ ? a.T - t0 : BQ, nk = keys_for_block(&a, t0, n);
                    size_t rowoff = (size_t)(((b * a.T + t0) * a.Hq + h) * a.D);
                    const float *qb = pq + rowoff, *dob = pdo + rowoff, *ob = po + rowoff;
                    float *dqb = pdq + rowoff;
                    const float *lb = pl + (b * a.Hq + h) * a.T + t0;
                    float *P = buf, *dP = buf + (size_t)BQ * a.S, *Di = dP + (size_t)BQ * a.S;
                    scores(&a, P, qb, kb, n, nk);
                    for (int64_t i = 0; i < n; i++) {
                        float *row = P + i * nk;
                        row_exp(row, row_limit(&a, t0 + i, nk), nk, lb[i]);
                        const float *dor = dob + i * ldq, *orow = ob + i * ldq;
                        float d = 0;
                        for (int64_t c = 0; c < a.D; c++) d += dor[c] * orow[c];
                        Di[i] = d;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)nk, (blasint)a.D, 1.0f,
                                dob, (blasint)ldq, vb, (blasint)ldk, 0.0f, dP, (blasint)nk);
                    /* dV += P^T dO before P is overwritten by dS */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)nk, (blasint)a.D, (blasint)n, 1.0f,
                                P, (blasint)nk, dob, (blasint)ldq, 1.0f, dvb, (blasint)ldk);
                    for (int64_t i = 0; i < n; i++)
                        row_dscore(P + i * nk, dP + i * nk, row_limit(&a, t0 + i, nk), Di[i]);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)a.D, (blasint)nk, a.scale,
                                P, (blasint)nk, kb, (blasint)ldk, 1.0f, dqb, (blasint)ldq);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)nk, (blasint)a.D, (blasint)n, a.scale,
                                P, (blasint)nk, qb, (blasint)ldq, 1.0f, dkb, (blasint)ldk);
                }
        }
        free(buf);
    }
    if (fail) return gqe_fail(GQE_ERR_NOMEM, "attention_backward: out of host memory for score blocks");
    return GQE_OK;
}
