/* Flash-style CPU attention against a naive full-matrix reference in double,
 * forward (out, lse) and backward (dq, dk, dv), over causal / non-causal,
 * GQA ratios 1, 2, 4, KV-cache offsets (T < S) and block-straddling T. */
#include "testutil.h"
#include <string.h>

typedef struct { int64_t B, T, S, Hq, Hkv, D; bool causal; } cfg;

static int64_t ix4(int64_t b, int64_t t, int64_t h, int64_t d, int64_t T, int64_t H, int64_t D) {
    return ((b * T + t) * H + h) * D + d;
}

/* Reference: full score matrix per (b, h), double throughout. */
static void naive(const cfg *c, float scale, const float *q, const float *k, const float *v, const float *dout,
                  double *out, double *lse, double *dq, double *dk, double *dv) {
    int64_t rep = c->Hq / c->Hkv, off = c->S - c->T;
    double *p = malloc(sizeof(double) * (size_t)c->S), *dp = malloc(sizeof(double) * (size_t)c->S);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++)
            for (int64_t t = 0; t < c->T; t++) {
                int64_t g = h / rep, lim = c->causal ? t + off + 1 : c->S;
                double m = -INFINITY, sum = 0;
                for (int64_t s = 0; s < lim; s++) {
                    double acc = 0;
                    for (int64_t d = 0; d < c->D; d++)
                        acc += (double)q[ix4(b, t, h, d, c->T, c->Hq, c->D)] * k[ix4(b, s, g, d, c->S, c->Hkv, c->D)];
                    p[s] = acc * scale;
                    if (p[s] > m) m = p[s];
                }
                for (int64_t s = 0; s < lim; s++) { p[s] = exp(p[s] - m); sum += p[s]; }
                for (int64_t s = 0; s < lim; s++) p[s] /= sum;
                lse[(b * c->Hq + h) * c->T + t] = m + log(sum);
                double *o = out + ix4(b, t, h, 0, c->T, c->Hq, c->D);
                for (int64_t d = 0; d < c->D; d++) {
                    o[d] = 0;
                    for (int64_t s = 0; s < lim; s++) o[d] += p[s] * v[ix4(b, s, g, d, c->S, c->Hkv, c->D)];
                }
                /* backward of this row */
                const float *go = dout + ix4(b, t, h, 0, c->T, c->Hq, c->D);
                double Di = 0;
                for (int64_t d = 0; d < c->D; d++) Di += go[d] * o[d];
                for (int64_t s = 0; s < lim; s++) {
                    double acc = 0;
                    for (int64_t d = 0; d < c->D; d++) acc += go[d] * (double)v[ix4(b, s, g, d, c->S, c->Hkv, c->D)];
                    dp[s] = p[s] * (acc - Di);   /* dS */
                    for (int64_t d = 0; d < c->D; d++) {
                        dq[ix4(b, t, h, d, c->T, c->Hq, c->D)] += scale * dp[s] * k[ix4(b, s, g, d, c->S, c->Hkv, c->D)];
                        dk[ix4(b, s, g, d, c->S, c->Hkv, c->D)] += scale * dp[s] * q[ix4(b, t, h, d, c->T, c->Hq, c->D)];
                        dv[ix4(b, s, g, d, c->S, c->Hkv, c->D)] += p[s] * go[d];
                    }
                }
            }
    free(p); free(dp);
}

/* Relative error with a floor on the scale: with a single visible key the
 * exact dq is 0 and only rounding noise remains. */
#define ASSERT_CLOSE_FLOOR(a, b, n, tol) do { double _e = tu_rel_err((a), (b), (n)); \
    double _m = 0; for (int64_t _i = 0; _i < (n); _i++) _m = fmax(_m, fabs((double)(b)[_i])); \
    _e = _e * fmax(_m, 1e-30) / fmax(_m, 1e-2); \
    if (!(_e <= (tol))) fail_msg("%s vs %s: relative error %.3g > %.3g", #a, #b, _e, (double)(tol)); } while (0)

static void to_float(float *dst, const double *src, int64_t n) { for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i]; }

static void run_cfg(const cfg *c, uint64_t seed) {
    int64_t qs[4] = {c->B, c->T, c->Hq, c->D}, ks[4] = {c->B, c->S, c->Hkv, c->D};
    int64_t nq = c->B * c->T * c->Hq * c->D, nk = c->B * c->S * c->Hkv * c->D, nl = c->B * c->Hq * c->T;
    float scale = 1.0f / sqrtf((float)c->D);
    gqe_tensor q = tu_randn(4, qs, 1.0f, seed), k = tu_randn(4, ks, 1.0f, seed + 1), v = tu_randn(4, ks, 1.0f, seed + 2);
    gqe_tensor dout = tu_randn(4, qs, 1.0f, seed + 3), out, lse, dq, dk, dv;
    int64_t ls[3] = {c->B, c->Hq, c->T};
    CHECK_OK(gqe_tensor_new(&out, GQE_F32, GQE_CPU, 4, qs));
    CHECK_OK(gqe_tensor_new(&lse, GQE_F32, GQE_CPU, 3, ls));
    CHECK_OK(gqe_tensor_zeros(&dq, GQE_F32, GQE_CPU, 4, qs));
    CHECK_OK(gqe_tensor_zeros(&dk, GQE_F32, GQE_CPU, 4, ks));
    CHECK_OK(gqe_tensor_zeros(&dv, GQE_F32, GQE_CPU, 4, ks));
    CHECK_OK(gqe_attention_forward(&out, &lse, &q, &k, &v, c->causal, scale));
    CHECK_OK(gqe_attention_backward(&dq, &dk, &dv, &dout, &q, &k, &v, &out, &lse, c->causal, scale, true));

    double *ro = calloc((size_t)nq, 8), *rl = calloc((size_t)nl, 8), *rdq = calloc((size_t)nq, 8);
    double *rdk = calloc((size_t)nk, 8), *rdv = calloc((size_t)nk, 8);
    naive(c, scale, gqe_f32(&q), gqe_f32(&k), gqe_f32(&v), gqe_f32(&dout), ro, rl, rdq, rdk, rdv);
    float *f = malloc(sizeof(float) * (size_t)(nq > nk ? nq : nk));
    print_message("  B=%lld T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld causal=%d\n", (long long)c->B, (long long)c->T,
                  (long long)c->S, (long long)c->Hq, (long long)c->Hkv, (long long)c->D, c->causal);
    to_float(f, ro, nq); ASSERT_CLOSE(gqe_f32(&out), f, nq, 1e-4);
    to_float(f, rl, nl); ASSERT_CLOSE(gqe_f32(&lse), f, nl, 1e-4);
    to_float(f, rdq, nq); ASSERT_CLOSE_FLOOR(gqe_f32(&dq), f, nq, 1e-4);
    to_float(f, rdk, nk); ASSERT_CLOSE_FLOOR(gqe_f32(&dk), f, nk, 1e-4);
    to_float(f, rdv, nk); ASSERT_CLOSE_FLOOR(gqe_f32(&dv), f, nk, 1e-4);
    free(f); free(ro); free(rl); free(rdq); free(rdk); free(rdv);
    gqe_tensor *all[] = {&q, &k, &v, &dout, &out, &lse, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gqe_tensor_free(all[i]);
}

static void test_attention_vs_naive(void **state) {
    (void)state;
    static const cfg cfgs[] = {
        /* B  T    S    Hq Hkv D   causal */
        {1, 1,   1,   1, 1, 8,  true},
        {2, 37,  37,  2, 2, 8,  true},
        {1, 37,  37,  4, 2, 16, false},
        {2, 130, 130, 4, 1, 16, true},
        {1, 130, 130, 2, 1, 64, false},
        {1, 1,   50,  4, 1, 16, true},    /* one decode step against a cache */
        {2, 37,  100, 2, 1, 8,  true},    /* prefill chunk after a cache */
        {1, 130, 200, 4, 4, 64, true},
        {1, 37,  90,  4, 2, 64, false},
        {1, 64,  64,  2, 1, 16, true},    /* exactly one block */
        {1, 65,  129, 4, 1, 8,  true},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) run_cfg(&cfgs[i], 100 + 10 * i);
}

static void test_attention_d256(void **state) {
    (void)state;
    cfg c = {1, 70, 70, 2, 1, 256, true};
    run_cfg(&c, 900);
}

/* The reference's backward is itself checked against finite differences of
 * the op's forward, so the two cannot share a mistake. */
static void test_attention_grad_fd(void **state) {
    (void)state;
    for (int causal = 0; causal < 2; causal++) {
        cfg c = {1, 5, 7, 2, 1, 4, causal};
        int64_t qs[4] = {c.B, c.T, c.Hq, c.D}, ks[4] = {c.B, c.S, c.Hkv, c.D}, ls[3] = {c.B, c.Hq, c.T};
        float scale = 0.5f;
        gqe_tensor q = tu_randn(4, qs, 1, 1), k = tu_randn(4, ks, 1, 2), v = tu_randn(4, ks, 1, 3), w = tu_randn(4, qs, 1, 4);
        gqe_tensor out, lse, dq, dk, dv;
        CHECK_OK(gqe_tensor_new(&out, GQE_F32, GQE_CPU, 4, qs));
        CHECK_OK(gqe_tensor_new(&lse, GQE_F32, GQE_CPU, 3, ls));
        CHECK_OK(gqe_tensor_zeros(&dq, GQE_F32, GQE_CPU, 4, qs));
        CHECK_OK(gqe_tensor_zeros(&dk, GQE_F32, GQE_CPU, 4, ks));
        CHECK_OK(gqe_tensor_zeros(&dv, GQE_F32, GQE_CPU, 4, ks));
        CHECK_OK(gqe_attention_forward(&out, &lse, &q, &k, &v, c.causal, scale));
        CHECK_OK(gqe_attention_backward(&dq, &dk, &dv, &w, &q, &k, &v, &out, &lse, c.causal, scale, true));
        gqe_tensor *ins[3] = {&q, &k, &v}, *gr[3] = {&dq, &dk, &dv};
        for (int a = 0; a < 3; a++) {
            int64_t n = gqe_tensor_numel(ins[a]);
            float *x = gqe_f32(ins[a]), *fd = malloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++) {
                float x0 = x[i];
                double l[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    x[i] = x0 + (sgn ? -1e-3f : 1e-3f);
                    CHECK_OK(gqe_attention_forward(&out, &lse, &q, &k, &v, c.causal, scale));
                    l[sgn] = 0;
                    for (int64_t j = 0; j < gqe_tensor_numel(&out); j++) l[sgn] += (double)gqe_f32(&out)[j] * gqe_f32(&w)[j];
                }
                x[i] = x0;
                fd[i] = (float)((l[0] - l[1]) / 2e-3);
            }
            ASSERT_CLOSE(gqe_f32(gr[a]), fd, n, 1e-2);
            free(fd);
        }
        gqe_tensor *all[] = {&q, &k, &v, &w, &out, &lse, &dq, &dk, &dv};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) gqe_tensor_free(all[i]);
    }
}

/* Backward accumulates: a second call doubles the gradients; with
 * accumulate = false a third call brings them back to one call's. */
static void test_attention_backward_accumulates(void **state) {
    (void)state;
    int64_t qs[4] = {1, 9, 2, 8}, ks[4] = {1, 9, 1, 8}, ls[3] = {1, 2, 9};
    gqe_tensor q = tu_randn(4, qs, 1, 11), k = tu_randn(4, ks, 1, 12), v = tu_randn(4, ks, 1, 13), g = tu_randn(4, qs, 1, 14);
    gqe_tensor out, lse, dq, dk, dv;
    CHECK_OK(gqe_tensor_new(&out, GQE_F32, GQE_CPU, 4, qs));
    CHECK_OK(gqe_tensor_new(&lse, GQE_F32, GQE_CPU, 3, ls));
    CHECK_OK(gqe_tensor_zeros(&dq, GQE_F32, GQE_CPU, 4, qs));
    CHECK_OK(gqe_tensor_zeros(&dk, GQE_F32, GQE_CPU, 4, ks));
    CHECK_OK(gqe_tensor_zeros(&dv, GQE_F32, GQE_CPU, 4, ks));
    CHECK_OK(gqe_attention_forward(&out, &lse, &q, &k, &v, true, 0.3f));
    CHECK_OK(gqe_attention_backward(&dq, &dk, &dv, &g, &q, &k, &v, &out, &lse, true, 0.3f, true));
    float once[72];
    memcpy(once, gqe_f32(&dk), sizeof(float) * 72);
    for (int i = 0; i < 72; i++) once[i] *= 2;
    CHECK_OK(gqe_attention_backward(&dq, &dk, &dv, &g, &q, &k, &v, &out, &lse, true, 0.3f, true));
    ASSERT_CLOSE(gqe_f32(&dk), once, 72, 1e-6);
    CHECK_OK(gqe_attention_backward(&dq, &dk, &dv, &g, &q, &k, &v, &out, &lse, true, 0.3f, false));
    for (int i = 0; i < 72; i++) once[i] /= 2;
    ASSERT_CLOSE(gqe_f32(&dk), once, 72, 1e-6);
    gqe_tensor *all[] = {&q, &k, &v, &g, &out, &lse, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gqe_tensor_free(all[i]);
}

static void test_attention_rejects_bad_shapes(void **state) {
    (void)state;
    int64_t qs[4] = {1, 8, 3, 8}, ks[4] = {1, 8, 2, 8}, ls[3] = {1, 3, 8};
    gqe_tensor q = tu_randn(4, qs, 1, 1), k = tu_randn(4, ks, 1, 2), v = tu_randn(4, ks, 1, 3), out = tu_randn(4, qs, 1, 4);
    gqe_tensor lse = tu_randn(3, ls, 1, 5);
    assert_int_equal(gqe_attention_forward(&out, &lse, &q, &k, &v, true, 1.0f), GQE_ERR_SHAPE);
    assert_non_null(strstr(gqe_last_error(), "attention_forward"));
    /* causal needs S >= T */
    int64_t ks2[4] = {1, 4, 1, 8};
    gqe_tensor k2 = tu_randn(4, ks2, 1, 6), v2 = tu_randn(4, ks2, 1, 7);
    assert_int_equal(gqe_attention_forward(&out, &lse, &q, &k2, &v2, true, 1.0f), GQE_ERR_SHAPE);
    gqe_tensor *all[] = {&q, &k, &v, &out, &lse, &k2, &v2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gqe_tensor_free(all[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_vs_naive),
        cmocka_unit_test(test_attention_d256),
        cmocka_unit_test(test_attention_grad_fd),
        cmocka_unit_test(test_attention_backward_accumulates),
        cmocka_unit_test(test_attention_rejects_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
