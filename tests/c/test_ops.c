/* Every CPU op against a plain loop written here (double accumulation), and
 * every backward op against central finite differences of its forward op
 * with the scalar loss sum(out * w), w random. */
#include "testutil.h"
#include "backend.h"
#include <string.h>

#define NARGS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define RANDN(seed, ...) tu_randn(NARGS(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}, 1.0f, (seed))
#define ZEROS(...) zeros_(NARGS(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}, GQE_F32)
#define IZEROS(...) zeros_(NARGS(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}, GQE_I32)

static gqe_tensor zeros_(int nd, const int64_t *shape, gqe_dtype dt) {
    gqe_tensor t;
    CHECK_OK(gqe_tensor_zeros(&t, dt, GQE_CPU, nd, shape));
    return t;
}

static gqe_tensor ints(int64_t n, const int32_t *v) {
    gqe_tensor t = IZEROS(n);
    memcpy(gqe_i32(&t), v, sizeof(int32_t) * (size_t)n);
    return t;
}

/* uniform values in [lo, hi) */
static gqe_tensor uniform(int nd, const int64_t *shape, float lo, float hi, uint64_t seed) {
    gqe_tensor t = zeros_(nd, shape, GQE_F32);
    for (int64_t i = 0; i < gqe_tensor_numel(&t); i++) gqe_f32(&t)[i] = lo + (hi - lo) * gqe_rng_uniform_at(seed, 3, (uint64_t)i);
    return t;
}

static gqe_tensor clone(const gqe_tensor *x) {
    gqe_tensor t;
    CHECK_OK(gqe_tensor_to(&t, x, GQE_CPU, x->dtype));
    return t;
}

static void free_all(gqe_tensor **ts, int n) { for (int i = 0; i < n; i++) gqe_tensor_free(ts[i]); }
#define FREE(...) free_all((gqe_tensor *[]){__VA_ARGS__}, (int)(sizeof((gqe_tensor *[]){__VA_ARGS__}) / sizeof(gqe_tensor *)))

static void assert_close_d(const float *a, const double *b, int64_t n, double tol) {
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) f[i] = (float)b[i];
    ASSERT_CLOSE(a, f, n, tol);
    free(f);
}

/* ---- finite differences ---------------------------------------------------- */
typedef struct {
    gqe_tensor *t[8];
    float f;
    int mode;
} ctx;
typedef void (*fwd_fn)(ctx *c);

static double dotw(const gqe_tensor *out, const gqe_tensor *w) {
    double s = 0;
    for (int64_t i = 0; i < gqe_tensor_numel(out); i++) s += (double)gqe_f32(out)[i] * gqe_f32(w)[i];
    return s;
}

/* d/dx sum(out * w) by central differences, against the analytic grad. */
static void fd_check(const char *what, gqe_tensor *x, const gqe_tensor *grad, fwd_fn f, ctx *c,
                     const gqe_tensor *out, const gqe_tensor *w, double h) {
    int64_t n = gqe_tensor_numel(x);
    float *px = gqe_f32(x), *fd = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        float x0 = px[i];
        px[i] = x0 + (float)h; f(c); double lp = dotw(out, w);
        px[i] = x0 - (float)h; f(c); double lm = dotw(out, w);
        px[i] = x0;
        fd[i] = (float)((lp - lm) / (2 * h));
    }
    f(c);
    double e = tu_rel_err(gqe_f32(grad), fd, n);
    if (!(e <= 1e-2)) fail_msg("%s: gradient vs finite differences: relative error %.3g", what, e);
    free(fd);
}

/* ---- elementwise ------------------------------------------------------------ */
static void test_elementwise(void **state) {
    (void)state;
    gqe_tensor x = RANDN(1, 4, 25), y = RANDN(2, 100), o = ZEROS(100);
    float *px = gqe_f32(&x), *py = gqe_f32(&y), *po = gqe_f32(&o);
    double ref[100];
    CHECK_OK(gqe_add(&o, &x, &y));
    for (int i = 0; i < 100; i++) ref[i] = (double)px[i] + py[i];
    assert_close_d(po, ref, 100, 1e-6);
    CHECK_OK(gqe_axpy(&o, -0.5f, &x));
    for (int i = 0; i < 100; i++) ref[i] -= 0.5 * px[i];
    assert_close_d(po, ref, 100, 1e-6);
    CHECK_OK(gqe_scale(&o, 3.0f));
    for (int i = 0; i < 100; i++) ref[i] *= 3;
    assert_close_d(po, ref, 100, 1e-6);
    CHECK_OK(gqe_add(&o, &o, &o));   /* out aliasing an input */
    for (int i = 0; i < 100; i++) ref[i] *= 2;
    assert_close_d(po, ref, 100, 1e-6);
    double s, ss, rs = 0, rss = 0;
    CHECK_OK(gqe_sum(&x, &s));
    CHECK_OK(gqe_sumsq(&x, &ss));
    for (int i = 0; i < 100; i++) { rs += px[i]; rss += (double)px[i] * px[i]; }
    assert_true(fabs(s - rs) < 1e-9 && fabs(ss - rss) < 1e-9);
    CHECK_OK(gqe_fill(&o, 1.25f));
    for (int i = 0; i < 100; i++) assert_true(po[i] == 1.25f);
    /* fill of i32 and bf16 storage */
    gqe_tensor it = IZEROS(5), bt;
    CHECK_OK(gqe_fill(&it, 7));
    assert_int_equal(gqe_i32(&it)[4], 7);
    CHECK_OK(gqe_tensor_new4(&bt, GQE_BF16, GQE_CPU, 3, 0, 0, 0));
    CHECK_OK(gqe_fill(&bt, 1.5f));
    float back[3];
    CHECK_OK(gqe_tensor_read_f32(&bt, back, 3));
    assert_true(back[0] == 1.5f && back[2] == 1.5f);
    FREE(&x, &y, &o, &it, &bt);
}

static void test_copy_cols(void **state) {
    (void)state;
    gqe_tensor d = RANDN(3, 3, 5), s = RANDN(4, 3, 4), d0 = clone(&d);
    CHECK_OK(gqe_copy_cols(&d, 2, &s, 1, 3, false));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 5; c++) {
            float want = c >= 2 ? gqe_f32(&s)[r * 4 + c - 1] : gqe_f32(&d0)[r * 5 + c];
            assert_true(gqe_f32(&d)[r * 5 + c] == want);
        }
    CHECK_OK(gqe_copy_cols(&d, 0, &s, 0, 2, true));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 2; c++)
            assert_float_equal(gqe_f32(&d)[r * 5 + c], gqe_f32(&d0)[r * 5 + c] + gqe_f32(&s)[r * 4 + c], 1e-6);
    assert_int_equal(gqe_copy_cols(&d, 3, &s, 0, 3, false), GQE_ERR_SHAPE);
    FREE(&d, &s, &d0);
}

/* ---- matmul --------------------------------------------------------------------- */
static void test_matmul(void **state) {
    (void)state;
    const int64_t M = 5, N = 7, K = 6;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gqe_tensor a = ta ? RANDN(10, K, M) : RANDN(10, M, K), b = tb ? RANDN(11, N, K) : RANDN(11, K, N);
            gqe_tensor c = RANDN(12, M, N);
            double ref[35];
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t l = 0; l < K; l++)
                        acc += (double)gqe_f32(&a)[ta ? l * M + i : i * K + l] * gqe_f32(&b)[tb ? j * K + l : l * N + j];
                    ref[i * N + j] = 0.7 * acc + 0.3 * gqe_f32(&c)[i * N + j];
                }
            CHECK_OK(gqe_matmul(&c, &a, &b, ta, tb, 0.7f, 0.3f));
            assert_close_d(gqe_f32(&c), ref, M * N, 1e-5);
            FREE(&a, &b, &c);
        }
}

/* ---- embedding, rmsnorm ------------------------------------------------------ */
static void test_embedding(void **state) {
    (void)state;
    gqe_tensor table = RANDN(20, 10, 6), out = ZEROS(7, 6), g = RANDN(21, 7, 6), dt = ZEROS(10, 6);
    gqe_tensor ids = ints(7, (int32_t[]){3, 0, 9, 3, 3, 5, 0});
    CHECK_OK(gqe_embedding_forward(&out, &table, &ids));
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 6; c++) assert_true(gqe_f32(&out)[r * 6 + c] == gqe_f32(&table)[gqe_i32(&ids)[r] * 6 + c]);
    CHECK_OK(gqe_embedding_backward(&dt, &g, &ids));
    double ref[60] = {0};
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 6; c++) ref[gqe_i32(&ids)[r] * 6 + c] += gqe_f32(&g)[r * 6 + c];
    assert_close_d(gqe_f32(&dt), ref, 60, 1e-6);
    gqe_i32(&ids)[2] = 10;
    assert_int_equal(gqe_embedding_forward(&out, &table, &ids), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "ids[2]"));
    FREE(&table, &out, &g, &dt, &ids);
}

static void rms_fwd(ctx *c) { CHECK_OK(gqe_rmsnorm_forward(c->t[0], c->t[1], c->t[2], c->t[3], c->f)); }

static void test_rmsnorm(void **state) {
    (void)state;
    gqe_tensor x = RANDN(30, 2, 3, 8), w = RANDN(31, 8), out = ZEROS(2, 3, 8), rstd = ZEROS(6);
    gqe_tensor g = RANDN(32, 2, 3, 8), dx = ZEROS(2, 3, 8), dw = ZEROS(8);
    ctx c = {{&out, &rstd, &x, &w}, 1e-5f, 0};
    rms_fwd(&c);
    double ref[48];
    for (int r = 0; r < 6; r++) {
        double ms = 0;
        for (int i = 0; i < 8; i++) ms += (double)gqe_f32(&x)[r * 8 + i] * gqe_f32(&x)[r * 8 + i];
        double inv = 1 / sqrt(ms / 8 + 1e-5);
        for (int i = 0; i < 8; i++) ref[r * 8 + i] = gqe_f32(&x)[r * 8 + i] * inv * gqe_f32(&w)[i];
    }
    assert_close_d(gqe_f32(&out), ref, 48, 1e-5);
    CHECK_OK(gqe_rmsnorm_backward(&dx, &dw, &g, &x, &w, &rstd, NULL));
    fd_check("rmsnorm dx", &x, &dx, rms_fwd, &c, &out, &g, 1e-3);
    fd_check("rmsnorm dw", &w, &dw, rms_fwd, &c, &out, &g, 1e-3);
    /* dx_copy receives dx after the accumulation */
    gqe_tensor dx2 = RANDN(33, 2, 3, 8), dw2 = ZEROS(8), dxc = ZEROS(2, 3, 8);
    CHECK_OK(gqe_rmsnorm_backward(&dx2, &dw2, &g, &x, &w, &rstd, &dxc));
    assert_memory_equal(gqe_f32(&dxc), gqe_f32(&dx2), 48 * sizeof(float));
    FREE(&x, &w, &out, &rstd, &g, &dx, &dw, &dx2, &dw2, &dxc);
}

/* The fused residual add + norm gives exactly what the two ops give. */
static void test_add_rmsnorm(void **state) {
    (void)state;
    gqe_tensor a = RANDN(34, 5, 16), b = RANDN(35, 5, 16), w = RANDN(36, 16);
    gqe_tensor s1 = ZEROS(5, 16), o1 = ZEROS(5, 16), r1 = ZEROS(5), s2 = ZEROS(5, 16), o2 = ZEROS(5, 16), r2 = ZEROS(5);
    CHECK_OK(gqe_add(&s1, &a, &b));
    CHECK_OK(gqe_rmsnorm_forward(&o1, &r1, &s1, &w, 1e-5f));
    CHECK_OK(gqe_add_rmsnorm_forward(&s2, &o2, &r2, &a, &b, &w, 1e-5f));
    assert_memory_equal(gqe_f32(&s1), gqe_f32(&s2), 80 * sizeof(float));
    assert_memory_equal(gqe_f32(&o1), gqe_f32(&o2), 80 * sizeof(float));
    assert_memory_equal(gqe_f32(&r1), gqe_f32(&r2), 5 * sizeof(float));
    /* in place: sum may be a */
    CHECK_OK(gqe_add_rmsnorm_forward(&a, &o2, &r2, &a, &b, &w, 1e-5f));
    assert_memory_equal(gqe_f32(&s1), gqe_f32(&a), 80 * sizeof(float));
    gqe_tensor bad = ZEROS(5, 15);
    assert_int_equal(gqe_add_rmsnorm_forward(&s2, &o2, &r2, &a, &bad, &w, 1e-5f), GQE_ERR_SHAPE);
    FREE(&a, &b, &w, &s1, &o1, &r1, &s2, &o2, &r2, &bad);
}

/* ---- activations ----------------------------------------------------------------- */
static void gelu_fwd(ctx *c) { CHECK_OK(gqe_gelu_forward(c->t[0], c->t[1])); }
static void swiglu_fwd(ctx *c) { CHECK_OK(gqe_swiglu_forward(c->t[0], c->t[1])); }

static void test_gelu(void **state) {
    (void)state;
    /* dx starts nonzero: the backward overwrites it */
    gqe_tensor x = RANDN(40, 50), out = ZEROS(50), g = RANDN(41, 50), dx = RANDN(42, 50);
    for (int i = 0; i < 50; i++) gqe_f32(&x)[i] *= 2;
    ctx c = {{&out, &x}, 0, 0};
    gelu_fwd(&c);
    double ref[50];
    for (int i = 0; i < 50; i++) { double v = gqe_f32(&x)[i]; ref[i] = 0.5 * v * (1 + erf(v / sqrt(2.0))); }
    assert_close_d(gqe_f32(&out), ref, 50, 1e-5);
    CHECK_OK(gqe_gelu_backward(&dx, &x, &g, NULL));
    fd_check("gelu dx", &x, &dx, gelu_fwd, &c, &out, &g, 1e-3);
    /* the recomputing form: the same dx, and out = gelu(x) */
    gqe_tensor dx2 = RANDN(43, 50), out2 = RANDN(44, 50);
    CHECK_OK(gqe_gelu_backward(&dx2, &x, &g, &out2));
    assert_memory_equal(gqe_f32(&dx2), gqe_f32(&dx), 50 * 4);
    assert_close_d(gqe_f32(&out2), ref, 50, 1e-5);
    FREE(&x, &out, &g, &dx, &dx2, &out2);
}

static void test_swiglu(void **state) {
    (void)state;
    gqe_tensor x = RANDN(50, 4, 10), out = ZEROS(4, 5), g = RANDN(51, 4, 5), dx = RANDN(52, 4, 10);
    ctx c = {{&out, &x}, 0, 0};
    swiglu_fwd(&c);
    double ref[20];
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 5; i++) {
            double a = gqe_f32(&x)[r * 10 + i], u = gqe_f32(&x)[r * 10 + 5 + i];
            ref[r * 5 + i] = a / (1 + exp(-a)) * u;
        }
    assert_close_d(gqe_f32(&out), ref, 20, 1e-5);
    CHECK_OK(gqe_swiglu_backward(&dx, &x, &g));
    fd_check("swiglu dx", &x, &dx, swiglu_fwd, &c, &out, &g, 1e-3);
    FREE(&x, &out, &g, &dx);
}

/* ---- rope ---------------------------------------------------------------------------- */
static void test_rope(void **state) {
    (void)state;
    const int64_t B = 2, T = 3, H = 2, D = 8, off = 5;
    gqe_tensor x = RANDN(60, B, T, H, D), x0 = clone(&x), w = RANDN(61, B, T, H, D);
    CHECK_OK(gqe_rope_forward(&x, 10000.0f, off));
    double ref[96];
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < D / 2; i++) {
                    int64_t base = ((b * T + t) * H + h) * D;
                    double ang = (double)(t + off) * pow(10000.0, -2.0 * (double)i / (double)D);
                    double x1 = gqe_f32(&x0)[base + i], x2 = gqe_f32(&x0)[base + i + D / 2];
                    ref[base + i] = x1 * cos(ang) - x2 * sin(ang);
                    ref[base + i + D / 2] = x2 * cos(ang) + x1 * sin(ang);
                }
    assert_close_d(gqe_f32(&x), ref, 96, 1e-5);
    /* backward is the adjoint (a rotation's transpose): <R x0, w> = <x0, R^T w> */
    gqe_tensor dw = clone(&w);
    CHECK_OK(gqe_rope_backward(&dw, 10000.0f, off));
    double lhs = dotw(&x, &w), rhs = dotw(&x0, &dw);
    assert_true(fabs(lhs - rhs) <= 1e-5 * (fabs(lhs) + 1));
    CHECK_OK(gqe_rope_backward(&x, 10000.0f, off));   /* inverse brings x back */
    ASSERT_CLOSE(gqe_f32(&x), gqe_f32(&x0), 96, 1e-5);
    FREE(&x, &x0, &w, &dw);
}

/* ---- cross-entropy ------------------------------------------------------------------- */
static void ce_fwd(ctx *c) { CHECK_OK(gqe_cross_entropy_forward(c->t[0], c->t[1], c->t[2])); }

static void test_cross_entropy(void **state) {
    (void)state;
    const int R = 6, V = 11;
    gqe_tensor x = RANDN(70, R, V), losses = ZEROS(R), dx = ZEROS(R, V);
    gqe_tensor tg = ints(R, (int32_t[]){3, 10, -1, 0, 7, 3});
    ctx c = {{&losses, &x, &tg}, 0, 0};
    ce_fwd(&c);
    double ref[6];
    for (int r = 0; r < R; r++) {
        double m = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) m = fmax(m, gqe_f32(&x)[r * V + j]);
        for (int j = 0; j < V; j++) s += exp(gqe_f32(&x)[r * V + j] - m);
        int t = gqe_i32(&tg)[r];
        ref[r] = t < 0 ? 0 : m + log(s) - gqe_f32(&x)[r * V + t];
    }
    assert_close_d(gqe_f32(&losses), ref, R, 1e-5);
    CHECK_OK(gqe_cross_entropy_backward(&dx, &x, &tg, 0.5f));
    gqe_tensor w = ZEROS(R);
    CHECK_OK(gqe_fill(&w, 0.5f));
    fd_check("cross_entropy dlogits", &x, &dx, ce_fwd, &c, &losses, &w, 1e-3);
    for (int j = 0; j < V; j++) assert_true(gqe_f32(&dx)[2 * V + j] == 0.0f);   /* ignored row */
    gqe_tensor x2 = clone(&x);   /* in place: dlogits is logits */
    CHECK_OK(gqe_cross_entropy_backward(&x2, &x2, &tg, 0.5f));
    ASSERT_CLOSE(gqe_f32(&x2), gqe_f32(&dx), R * V, 1e-6);
    /* the fused pass: the same loss, gradient and hits as the three ops,
     * in place */
    gqe_tensor x3 = clone(&x), l3 = ZEROS(R), hits = ZEROS(R), hits_ref = ZEROS(R);
    CHECK_OK(gqe_argmax_correct(&hits_ref, &x, &tg));
    CHECK_OK(gqe_cross_entropy_forward(&losses, &x, &tg));
    CHECK_OK(gqe_cross_entropy_fused(&x3, &l3, &hits, &x3, &tg, 0.5f));
    ASSERT_CLOSE(gqe_f32(&l3), gqe_f32(&losses), R, 1e-6);
    ASSERT_CLOSE(gqe_f32(&x3), gqe_f32(&dx), R * V, 1e-6);
    for (int r = 0; r < R; r++) assert_true(gqe_f32(&hits)[r] == gqe_f32(&hits_ref)[r]);
    gqe_i32(&tg)[0] = V;
    assert_int_equal(gqe_cross_entropy_forward(&losses, &x, &tg), GQE_ERR_ARG);
    assert_int_equal(gqe_cross_entropy_fused(&x3, &l3, &hits, &x, &tg, 0.5f), GQE_ERR_ARG);
    FREE(&x, &losses, &dx, &tg, &w, &x2, &x3, &l3, &hits, &hits_ref);
}

/* ---- routing ------------------------------------------------------------------------- */
/* Reference top-k: insertion sort by (score desc, index asc). */
static void naive_topk(const double *score, int M, int k, int32_t *idx) {
    int order[64];
    for (int m = 0; m < M; m++) {
        int j = m;
        while (j > 0 && score[order[j - 1]] < score[m]) { order[j] = order[j - 1]; j--; }
        order[j] = m;
    }
    for (int j = 0; j < k; j++) idx[j] = order[j];
}

static void check_topk(gqe_score_fn fn, bool with_bias) {
    const int R = 5, G = 3, M = 4, K = 2;
    gqe_tensor lg = RANDN(80, R, G, M), bias = RANDN(81, G, M), probs = ZEROS(R, G, M), idx = IZEROS(R, G, K), tv = ZEROS(R, G, K);
    CHECK_OK(gqe_router_topk(&probs, &idx, &tv, &lg, fn, with_bias ? &bias : NULL));
    for (int rg = 0; rg < R * G; rg++) {
        const float *l = gqe_f32(&lg) + rg * M;
        double p[4], sc[4], m = -INFINITY, s = 0;
        for (int i = 0; i < M; i++) m = fmax(m, l[i]);
        for (int i = 0; i < M; i++) { p[i] = fn == GQE_SCORE_SOFTMAX ? exp(l[i] - m) : 1 / (1 + exp(-(double)l[i])); s += p[i]; }
        for (int i = 0; i < M; i++) {
            if (fn == GQE_SCORE_SOFTMAX) p[i] /= s;
            sc[i] = p[i] + (with_bias ? gqe_f32(&bias)[(rg % G) * M + i] : 0);
        }
        assert_close_d(gqe_f32(&probs) + rg * M, p, M, 1e-5);
        int32_t want[2];
        naive_topk(sc, M, K, want);
        for (int j = 0; j < K; j++) {
            assert_int_equal(gqe_i32(&idx)[rg * K + j], want[j]);
            assert_float_equal(gqe_f32(&tv)[rg * K + j], p[want[j]], 1e-6);
        }
    }
    FREE(&lg, &bias, &probs, &idx, &tv);
}

static void test_router_topk(void **state) {
    (void)state;
    check_topk(GQE_SCORE_SOFTMAX, false);
    check_topk(GQE_SCORE_SOFTMAX, true);
    check_topk(GQE_SCORE_SIGMOID, false);
    check_topk(GQE_SCORE_SIGMOID, true);
    /* ties go to the lower index */
    gqe_tensor lg = ZEROS(2, 1, 4), probs = ZEROS(2, 1, 4), idx = IZEROS(2, 1, 3), tv = ZEROS(2, 1, 3);
    float vals[8] = {1, 3, 3, 0, 2, 2, 2, 2};
    memcpy(gqe_f32(&lg), vals, sizeof vals);
    CHECK_OK(gqe_router_topk(&probs, &idx, &tv, &lg, GQE_SCORE_SOFTMAX, NULL));
    int32_t want[6] = {1, 2, 0, 0, 1, 2};
    for (int i = 0; i < 6; i++) assert_int_equal(gqe_i32(&idx)[i], want[i]);
    assert_float_equal(gqe_f32(&tv)[3], 0.25f, 1e-7);
    FREE(&lg, &probs, &idx, &tv);
}

static void score_fwd(ctx *c) {
    CHECK_OK(gqe_router_topk(c->t[0], c->t[1], c->t[2], c->t[3], (gqe_score_fn)c->mode, NULL));
}

static void test_router_score_backward(void **state) {
    (void)state;
    for (int fn = 0; fn < 2; fn++) {
        gqe_tensor lg = RANDN(90, 3, 2, 5), probs = ZEROS(3, 2, 5), idx = IZEROS(3, 2, 1), tv = ZEROS(3, 2, 1);
        gqe_tensor w = RANDN(91, 3, 2, 5), dl = ZEROS(3, 2, 5);
        ctx c = {{&probs, &idx, &tv, &lg}, 0, fn};
        score_fwd(&c);
        CHECK_OK(gqe_router_score_backward(&dl, &probs, &w, (gqe_score_fn)fn));
        fd_check(fn ? "sigmoid dlogits" : "softmax dlogits", &lg, &dl, score_fwd, &c, &probs, &w, 1e-3);
        FREE(&lg, &probs, &idx, &tv, &w, &dl);
    }
}

static void test_router_random(void **state) {
    (void)state;
    const int R = 500, G = 3, M = 6, K = 3;
    gqe_tensor idx = IZEROS(R, G, K), idx2 = IZEROS(R, G, K), idx3 = IZEROS(R, G, K), tv = ZEROS(R, G, K);
    CHECK_OK(gqe_router_random(&idx, &tv, M, 42, 1));
    CHECK_OK(gqe_router_random(&idx2, &tv, M, 42, 1));
    CHECK_OK(gqe_router_random(&idx3, &tv, M, 43, 1));
    assert_memory_equal(gqe_i32(&idx), gqe_i32(&idx2), sizeof(int32_t) * R * G * K);
    assert_true(memcmp(gqe_i32(&idx), gqe_i32(&idx3), sizeof(int32_t) * R * G * K) != 0);
    int counts[3][6] = {{0}};
    for (int rg = 0; rg < R * G; rg++) {
        const int32_t *e = gqe_i32(&idx) + rg * K;
        for (int j = 0; j < K; j++) {
            assert_true(e[j] >= 0 && e[j] < M);
            for (int i = 0; i < j; i++) assert_int_not_equal(e[i], e[j]);
            counts[rg % G][e[j]]++;
            assert_float_equal(gqe_f32(&tv)[rg * K + j], 1.0f / K, 1e-7);
        }
    }
    /* expected R*K/M = 250 per expert; binomial sd about 11 */
    for (int g = 0; g < G; g++)
        for (int m = 0; m < M; m++) assert_true(counts[g][m] > 200 && counts[g][m] < 300);
    FREE(&idx, &idx2, &idx3, &tv);
}

static void test_router_hash(void **state) {
    (void)state;
    const int R = 40, G = 2, M = 5, K = 2;
    int32_t tok[40];
    for (int r = 0; r < R; r++) tok[r] = (r * 7) % 13;
    gqe_tensor tokens = ints(R, tok), idx = IZEROS(R, G, K), idx2 = IZEROS(R, G, K), tv = ZEROS(R, G, K);
    CHECK_OK(gqe_router_hash(&idx, &tv, &tokens, M));
    CHECK_OK(gqe_router_hash(&idx2, &tv, &tokens, M));
    assert_memory_equal(gqe_i32(&idx), gqe_i32(&idx2), sizeof(int32_t) * R * G * K);
    int used[5] = {0};
    for (int r = 0; r < R; r++)
        for (int g = 0; g < G; g++) {
            const int32_t *e = gqe_i32(&idx) + (r * G + g) * K;
            assert_true(e[0] >= 0 && e[0] < M);
            assert_int_equal(e[1], (e[0] + 1) % M);
            used[e[0]]++;
            for (int r2 = 0; r2 < r; r2++)   /* same token, same experts */
                if (tok[r2] == tok[r]) assert_int_equal(gqe_i32(&idx)[(r2 * G + g) * K], e[0]);
            assert_float_equal(gqe_f32(&tv)[(r * G + g) * K], 0.5f, 1e-7);
        }
    int distinct = 0;
    for (int m = 0; m < M; m++) distinct += used[m] > 0;
    assert_true(distinct >= 3);
    FREE(&tokens, &idx, &idx2, &tv);
}

static void test_router_scatter_and_stats(void **state) {
    (void)state;
    const int R = 6, G = 2, M = 4, K = 2;
    gqe_tensor lg = RANDN(100, R, G, M), probs = ZEROS(R, G, M), idx = IZEROS(R, G, K), tv = ZEROS(R, G, K);
    CHECK_OK(gqe_router_topk(&probs, &idx, &tv, &lg, GQE_SCORE_SIGMOID, NULL));
    gqe_tensor dtv = RANDN(101, R, G, K), dp = RANDN(102, R, G, M), dp0 = clone(&dp);
    CHECK_OK(gqe_router_scatter_probs(&dp, &dtv, &idx));
    double ref[48];
    for (int i = 0; i < R * G * M; i++) ref[i] = gqe_f32(&dp0)[i];
    for (int rg = 0; rg < R * G; rg++)
        for (int j = 0; j < K; j++) ref[rg * M + gqe_i32(&idx)[rg * K + j]] += gqe_f32(&dtv)[rg * K + j];
    assert_close_d(gqe_f32(&dp), ref, R * G * M, 1e-6);
    for (int norm = 0; norm < 2; norm++) {
        gqe_tensor counts = ZEROS(G, M), psum = ZEROS(G, M);
        CHECK_OK(gqe_router_stats(&counts, &psum, &idx, &probs, norm));
        double rc[8] = {0}, rp[8] = {0};
        for (int r = 0; r < R; r++)
            for (int g = 0; g < G; g++) {
                const float *p = gqe_f32(&probs) + (r * G + g) * M;
                double s = 0;
                for (int m = 0; m < M; m++) s += p[m];
                for (int m = 0; m < M; m++) rp[g * M + m] += norm ? p[m] / s : p[m];
                for (int j = 0; j < K; j++) rc[g * M + gqe_i32(&idx)[(r * G + g) * K + j]] += 1;
            }
        assert_close_d(gqe_f32(&counts), rc, G * M, 1e-6);
        assert_close_d(gqe_f32(&psum), rp, G * M, 1e-5);
        FREE(&counts, &psum);
    }
    FREE(&lg, &probs, &idx, &tv, &dtv, &dp, &dp0);
}

static void stats_fwd(ctx *c) { CHECK_OK(gqe_router_stats(c->t[0], c->t[1], c->t[2], c->t[3], c->mode)); }

static void test_router_aux_backward(void **state) {
    (void)state;
    const int R = 4, G = 2, M = 3;
    for (int norm = 0; norm < 2; norm++) {
        gqe_tensor probs = uniform(3, (const int64_t[]){R, G, M}, 0.1f, 1.0f, 110), idx = IZEROS(R, G, 1);
        gqe_tensor coef = RANDN(111, G, M), counts = ZEROS(G, M), psum = ZEROS(G, M), dp = ZEROS(R, G, M);
        ctx c = {{&counts, &psum, &idx, &probs}, 0, norm};
        stats_fwd(&c);
        CHECK_OK(gqe_router_aux_backward(&dp, &probs, &coef, norm));
        fd_check(norm ? "aux dprobs (normalised)" : "aux dprobs", &probs, &dp, stats_fwd, &c, &psum, &coef, 1e-3);
        FREE(&probs, &idx, &coef, &counts, &psum, &dp);
    }
}

/* The fused router backward is the chain scatter -> aux -> score from zeros,
 * value for value; every combination of its two optional terms. */
static void test_router_backward(void **state) {
    (void)state;
    const int R = 5, G = 2, M = 4, K = 2;
    for (int fn = 0; fn < 2; fn++)
        for (int terms = 1; terms < 4; terms++) {
            bool with_p = terms & 1, with_aux = terms & 2;
            gqe_tensor lg = RANDN(140, R, G, M), probs = ZEROS(R, G, M), idx = IZEROS(R, G, K), tv = ZEROS(R, G, K);
            CHECK_OK(gqe_router_topk(&probs, &idx, &tv, &lg, (gqe_score_fn)fn, NULL));
            gqe_tensor dtv = RANDN(141, R, G, K), counts = uniform(2, (const int64_t[]){G, M}, 0.0f, 9.0f, 142);
            gqe_tensor dp = ZEROS(R, G, M), coef = clone(&counts), want = ZEROS(R, G, M), got = RANDN(143, R, G, M);
            if (with_p) CHECK_OK(gqe_router_scatter_probs(&dp, &dtv, &idx));
            if (with_aux) {
                CHECK_OK(gqe_scale(&coef, 0.37f));
                CHECK_OK(gqe_router_aux_backward(&dp, &probs, &coef, fn == 1));
            }
            CHECK_OK(gqe_router_score_backward(&want, &probs, &dp, (gqe_score_fn)fn));
            CHECK_OK(gqe_router_backward(&got, with_p ? &dtv : NULL, &idx, &probs, with_aux ? &counts : NULL, 0.37f,
                                         (gqe_score_fn)fn, fn == 1));
            assert_memory_equal(gqe_f32(&got), gqe_f32(&want), sizeof(float) * R * G * M);
            FREE(&lg, &probs, &idx, &tv, &dtv, &counts, &dp, &coef, &want, &got);
        }
    /* an expert out of range is refused; so are a wrong counts shape and score */
    gqe_tensor probs = ZEROS(R, G, M), idx = IZEROS(R, G, K), dtv = ZEROS(R, G, K), dl = ZEROS(R, G, M);
    gqe_tensor bad = ZEROS(G, M + 1);
    gqe_i32(&idx)[3] = M;
    assert_int_equal(gqe_router_backward(&dl, &dtv, &idx, &probs, NULL, 0, GQE_SCORE_SOFTMAX, false), GQE_ERR_ARG);
    gqe_i32(&idx)[3] = 0;
    assert_int_equal(gqe_router_backward(&dl, &dtv, &idx, &probs, &bad, 1, GQE_SCORE_SOFTMAX, false), GQE_ERR_SHAPE);
    assert_int_equal(gqe_router_backward(&dl, &dtv, &idx, &probs, NULL, 0, (gqe_score_fn)7, false), GQE_ERR_SHAPE);
    FREE(&probs, &idx, &dtv, &dl, &bad);
}

static void test_gather_scatter_slots(void **state) {
    (void)state;
    const int R = 3, G = 2, M = 3, K = 2, D = 4;
    gqe_tensor q = RANDN(120, R, G * M, D), idx = IZEROS(R, G, K), tv = ZEROS(R, G, K), slots = ZEROS(R, G * K, D);
    CHECK_OK(gqe_router_random(&idx, &tv, M, 5, 0));
    CHECK_OK(gqe_gather_slots(&slots, &q, &idx));
    for (int r = 0; r < R; r++)
        for (int g = 0; g < G; g++)
            for (int j = 0; j < K; j++) {
                int e = gqe_i32(&idx)[(r * G + g) * K + j];
                assert_memory_equal(gqe_f32(&slots) + ((r * G + g) * K + j) * D,
                                    gqe_f32(&q) + (r * G * M + g * M + e) * D, sizeof(float) * D);
            }
    /* round trip: scattering the gathered slots rebuilds q on chosen experts, 0 elsewhere */
    gqe_tensor dq = ZEROS(R, G * M, D);
    CHECK_OK(gqe_scatter_slots(&dq, &slots, &idx));
    for (int r = 0; r < R; r++)
        for (int g = 0; g < G; g++)
            for (int m = 0; m < M; m++) {
                bool chosen = false;
                for (int j = 0; j < K; j++) chosen |= gqe_i32(&idx)[(r * G + g) * K + j] == m;
                for (int d = 0; d < D; d++) {
                    int64_t i = (r * G * M + g * M + m) * D + d;
                    assert_true(gqe_f32(&dq)[i] == (chosen ? gqe_f32(&q)[i] : 0.0f));
                }
            }
    /* adjoint: <gather(q), s> = <q, scatter(s)> */
    gqe_tensor s = RANDN(121, R, G * K, D), sq = ZEROS(R, G * M, D);
    CHECK_OK(gqe_scatter_slots(&sq, &s, &idx));
    double a = dotw(&slots, &s), b = dotw(&q, &sq);
    assert_true(fabs(a - b) < 1e-5 * (1 + fabs(a)));
    /* a buffer with one head more (the shared query's place): the gather
     * leaves it alone and the scatter ignores it */
    gqe_tensor wide = RANDN(123, R, G * K + 1, D), keep = ZEROS(R, G * K + 1, D), dq2 = ZEROS(R, G * M, D);
    CHECK_OK(gqe_tensor_copy(&keep, &wide));
    CHECK_OK(gqe_gather_slots(&wide, &q, &idx));
    for (int r = 0; r < R; r++) {
        const float *row = gqe_f32(&wide) + r * (G * K + 1) * D;
        assert_memory_equal(row, gqe_f32(&slots) + r * G * K * D, sizeof(float) * G * K * D);
        assert_memory_equal(row + G * K * D, gqe_f32(&keep) + (r * (G * K + 1) + G * K) * D, sizeof(float) * D);
    }
    CHECK_OK(gqe_scatter_slots(&dq2, &wide, &idx));
    assert_memory_equal(gqe_f32(&dq2), gqe_f32(&dq), sizeof(float) * R * G * M * D);
    gqe_tensor narrow = ZEROS(R, G * K - 1, D);
    assert_int_equal(gqe_gather_slots(&narrow, &q, &idx), GQE_ERR_SHAPE);
    gqe_i32(&idx)[0] = M;
    assert_int_equal(gqe_gather_slots(&slots, &q, &idx), GQE_ERR_ARG);
    FREE(&q, &idx, &tv, &slots, &dq, &s, &sq, &wide, &keep, &dq2, &narrow);
}

/* gather_slots_rope is the gather then rope_forward on every head of the
 * (B, T, H, D) slots: H = G*k, and H = G*k + 1 with the shared query there */
static void test_gather_slots_rope(void **state) {
    (void)state;
    const int B = 2, T = 5, G = 2, M = 3, K = 2, D = 8;
    gqe_tensor q = RANDN(122, B * T, G * M, D), idx = IZEROS(B * T, G, K), tv = ZEROS(B * T, G, K);
    gqe_tensor want = ZEROS(B, T, G * K, D), got = ZEROS(B, T, G * K, D);
    CHECK_OK(gqe_router_random(&idx, &tv, M, 6, 0));
    gqe_tensor want3 = gqe_tensor_reshape(&want, 3, (const int64_t[]){B * T, G * K, D});
    CHECK_OK(gqe_gather_slots(&want3, &q, &idx));
    CHECK_OK(gqe_rope_forward(&want, 10000.0f, 3));
    CHECK_OK(gqe_gather_slots_rope(&got, &q, &idx, 10000.0f, 3));
    assert_memory_equal(gqe_f32(&got), gqe_f32(&want), sizeof(float) * B * T * G * K * D);
    gqe_tensor wide = RANDN(124, B, T, G * K + 1, D), want9 = ZEROS(B, T, G * K + 1, D);
    CHECK_OK(gqe_tensor_copy(&want9, &wide));
    gqe_tensor want93 = gqe_tensor_reshape(&want9, 3, (const int64_t[]){B * T, G * K + 1, D});
    CHECK_OK(gqe_gather_slots(&want93, &q, &idx));
    CHECK_OK(gqe_rope_forward(&want9, 10000.0f, 3));
    CHECK_OK(gqe_gather_slots_rope(&wide, &q, &idx, 10000.0f, 3));
    assert_memory_equal(gqe_f32(&wide), gqe_f32(&want9), sizeof(float) * B * T * (G * K + 1) * D);
    gqe_tensor bad = ZEROS(B, T + 1, G * K, D);
    assert_int_equal(gqe_gather_slots_rope(&bad, &q, &idx, 10000.0f, 0), GQE_ERR_SHAPE);
    assert_int_equal(gqe_gather_slots_rope(&got, &q, &idx, 10000.0f, -1), GQE_ERR_SHAPE);
    gqe_i32(&idx)[0] = -1;
    assert_int_equal(gqe_gather_slots_rope(&got, &q, &idx, 10000.0f, 0), GQE_ERR_ARG);
    FREE(&q, &idx, &tv, &want, &got, &bad, &wide, &want9);
}

/* qkv_grad_pack against its definition written as plain loops: the slots
 * turned back by RoPE at their experts, K and V with the shared head's
 * share (their last head), the router logits, the shared query (the slots'
 * last head) turned back. */
static void rot_inv(double *x1, double *x2, int64_t t, int64_t i, int64_t D) {
    double ang = (double)t * pow(10000.0, -2.0 * (double)i / (double)D), a = *x1, b = *x2;
    *x1 = a * cos(ang) + b * sin(ang);
    *x2 = b * cos(ang) - a * sin(ang);
}

static void check_grad_pack(int K, bool rope, bool shared, bool routed) {
    const int64_t B = 2, T = 3, R = B * T, G = 2, M = 3, D = 8, h2 = D / 2, N = G * M;
    const int64_t SH = shared ? 1 : 0, W = (N + 2 * G + SH) * D + (routed ? N : 0), HS = (G + SH) * K, HK = G + SH;
    gqe_tensor idx = IZEROS(R, G, K), tv = ZEROS(R, G, K), ds = RANDN(160, B, T, HS, D);
    gqe_tensor dk = RANDN(161, B, T, HK, D), dv = RANDN(162, B, T, HK, D);
    gqe_tensor dl = RANDN(166, R, N), dy = RANDN(167, R, W);
    CHECK_OK(gqe_router_random(&idx, &tv, M, 7, 0));
    CHECK_OK(gqe_qkv_grad_pack(&dy, &ds, &idx, &dk, &dv, routed ? &dl : NULL, shared, M, rope, 10000.0f));
    double *ref = calloc((size_t)(R * W), sizeof(double));
    const float *pds = gqe_f32(&ds), *pk = gqe_f32(&dk), *pv = gqe_f32(&dv);
    for (int64_t r = 0; r < R; r++) {
        int64_t t = r % T;
        double *row = ref + r * W;
        for (int64_t g = 0; g < G; g++)
            for (int64_t j = 0; j < K; j++) {
                int64_t m = gqe_i32(&idx)[(r * G + g) * K + j];
                for (int64_t i = 0; i < h2; i++) {
                    const float *src = pds + (r * HS + g * K + j) * D;
                    double x1 = src[i], x2 = src[i + h2];
                    if (rope) rot_inv(&x1, &x2, t, i, D);
                    row[(g * M + m) * D + i] += x1;
                    row[(g * M + m) * D + i + h2] += x2;
                }
            }
        for (int64_t g = 0; g < G; g++)
            for (int64_t i = 0; i < h2; i++) {
                int64_t a = (r * HK + g) * D + i, b = (r * HK + G) * D + i;
                double k1 = pk[a], k2 = pk[a + h2], v1 = pv[a], v2 = pv[a + h2];
                if (shared) {
                    k1 += pk[b] / (double)G; k2 += pk[b + h2] / (double)G;
                    v1 += pv[b] / (double)G; v2 += pv[b + h2] / (double)G;
                }
                if (rope) rot_inv(&k1, &k2, t, i, D);
                row[(N + g) * D + i] = k1; row[(N + g) * D + i + h2] = k2;
                row[(N + G + g) * D + i] = v1; row[(N + G + g) * D + i + h2] = v2;
            }
        if (routed)
            for (int64_t c = 0; c < N; c++) row[(N + 2 * G) * D + c] = gqe_f32(&dl)[r * N + c];
        if (shared)
            for (int64_t i = 0; i < h2; i++) {
                double x1 = pds[(r * HS + G * K) * D + i], x2 = pds[(r * HS + G * K) * D + i + h2];
                if (rope) rot_inv(&x1, &x2, t, i, D);
                row[(N + 2 * G) * D + (routed ? N : 0) + i] = x1;
                row[(N + 2 * G) * D + (routed ? N : 0) + i + h2] = x2;
            }
    }
    assert_close_d(gqe_f32(&dy), ref, R * W, 1e-5);
    free(ref);
    FREE(&idx, &tv, &ds, &dk, &dv, &dl, &dy);
}

static void test_qkv_grad_pack(void **state) {
    (void)state;
    check_grad_pack(1, true, true, true);
    check_grad_pack(2, true, true, true);
    check_grad_pack(1, false, false, true);
    check_grad_pack(2, true, true, false);
    check_grad_pack(1, true, false, false);
    /* the shared head needs its extra heads (and dy its columns); an expert
     * out of range is refused */
    const int64_t B = 1, T = 2, G = 2, M = 2, D = 4;
    gqe_tensor idx = IZEROS(B * T, G, 1), ds = ZEROS(B, T, G, D), dk = ZEROS(B, T, G, D), dv = ZEROS(B, T, G, D);
    gqe_tensor dy = ZEROS(B * T, (G * M + 2 * G + 1) * D);
    assert_int_equal(gqe_qkv_grad_pack(&dy, &ds, &idx, &dk, &dv, NULL, true, M, true, 1e4f), GQE_ERR_SHAPE);
    gqe_tensor small = ZEROS(B * T, (G * M + 2 * G) * D);
    CHECK_OK(gqe_qkv_grad_pack(&small, &ds, &idx, &dk, &dv, NULL, false, M, true, 1e4f));
    assert_int_equal(gqe_qkv_grad_pack(&dy, &ds, &idx, &dk, &dv, NULL, false, M, true, 1e4f), GQE_ERR_SHAPE);
    /* pairs of columns: an odd head dim is refused, RoPE or not */
    gqe_tensor ds3 = ZEROS(B, T, G, 3), dk3 = ZEROS(B, T, G, 3), dv3 = ZEROS(B, T, G, 3), dy3 = ZEROS(B * T, (G * M + 2 * G) * 3);
    assert_int_equal(gqe_qkv_grad_pack(&dy3, &ds3, &idx, &dk3, &dv3, NULL, false, M, false, 1e4f), GQE_ERR_SHAPE);
    gqe_i32(&idx)[1] = M;
    assert_int_equal(gqe_qkv_grad_pack(&small, &ds, &idx, &dk, &dv, NULL, false, M, true, 1e4f), GQE_ERR_ARG);
    FREE(&idx, &ds, &dk, &dv, &dy, &small, &ds3, &dk3, &dv3, &dy3);
}

/* ---- output slots ------------------------------------------------------------------- */
static void mix_fwd(ctx *c) { CHECK_OK(gqe_slot_mix_forward(c->t[0], c->t[1], c->t[2], c->t[3], c->f)); }
static void scale_fwd(ctx *c) { CHECK_OK(gqe_slot_scale_forward(c->t[0], c->t[1], c->t[2])); }
/* c->f: 1 turns by RoPE (positions from 0, as the backward assumes) */
static void mean_fwd(ctx *c) { CHECK_OK(gqe_group_mean_append(c->t[0], c->t[1], c->f != 0, 10000.0f, 0)); }

static void test_slot_mix(void **state) {
    (void)state;
    /* o: S slots, the shared head, one copy of it (k = 2's layout) */
    const int R = 4, S = 3, D = 5, H = S + 2, C = S + 2;
    /* eps 1e-9: the normal case; eps 10 > sum P: the clamp is active */
    float epss[2] = {1e-9f, 10.0f};
    for (int e = 0; e < 2; e++) {
        gqe_tensor o = RANDN(130, R, H, D), p = uniform(2, (const int64_t[]){R, S}, 0.1f, 1.0f, 131);
        gqe_tensor cat = ZEROS(R, C, D), w = ZEROS(R, S), g = RANDN(132, R, C, D);
        /* both gradients are overwritten: start them from noise */
        gqe_tensor dO = RANDN(133, R, H, D), dp = RANDN(134, R, S);
        ctx c = {{&cat, &w, &o, &p}, epss[e], 0};
        mix_fwd(&c);
        double ref[R * D];
        memset(ref, 0, sizeof ref);
        const float *po = gqe_f32(&o), *pc = gqe_f32(&cat);
        for (int r = 0; r < R; r++) {
            double sum = 0;
            for (int s = 0; s < S; s++) sum += gqe_f32(&p)[r * S + s];
            sum = fmax(sum, epss[e]);
            for (int s = 0; s < S; s++)
                for (int d = 0; d < D; d++) ref[r * D + d] += gqe_f32(&p)[r * S + s] / sum * po[(r * H + s) * D + d];
            /* the slots and the shared head are copied as they are */
            assert_memory_equal(pc + r * C * D, po + r * H * D, sizeof(float) * S * D);
            assert_memory_equal(pc + (r * C + S + 1) * D, po + (r * H + S) * D, sizeof(float) * D);
            for (int d = 0; d < D; d++) assert_true(fabs(pc[(r * C + S) * D + d] - ref[r * D + d]) < 1e-5);
        }
        CHECK_OK(gqe_slot_mix_backward(&dO, &dp, &g, &o, &p, &cat, &w, epss[e]));
        fd_check("slot_mix d_o", &o, &dO, mix_fwd, &c, &cat, &g, 1e-3);
        fd_check("slot_mix dP", &p, &dp, mix_fwd, &c, &cat, &g, 1e-3);
        /* the shared head's copy gets exactly zero */
        for (int r = 0; r < R; r++)
            for (int d = 0; d < D; d++) assert_true(gqe_f32(&dO)[(r * H + S + 1) * D + d] == 0.0f);
        FREE(&o, &p, &cat, &w, &g, &dO, &dp);
    }
    /* o needs the shared head after the slots, cat its S + 2 heads */
    gqe_tensor p = ZEROS(2, S), w = ZEROS(2, S), o = ZEROS(2, S, D), cat = ZEROS(2, S + 2, D);
    assert_int_equal(gqe_slot_mix_forward(&cat, &w, &o, &p, 1e-9f), GQE_ERR_SHAPE);
    gqe_tensor o4 = ZEROS(2, S + 1, D), cat1 = ZEROS(2, S + 1, D);
    assert_int_equal(gqe_slot_mix_forward(&cat1, &w, &o4, &p, 1e-9f), GQE_ERR_SHAPE);
    CHECK_OK(gqe_slot_mix_forward(&cat, &w, &o4, &p, 1e-9f));
    FREE(&p, &w, &o, &cat, &o4, &cat1);
}

static void test_slot_scale(void **state) {
    (void)state;
    const int R = 3, S = 4, D = 5;
    gqe_tensor o = RANDN(140, R, S, D), p = RANDN(141, R, S), out = ZEROS(R, S, D), g = RANDN(142, R, S, D);
    gqe_tensor dO = ZEROS(R, S, D), dp = ZEROS(R, S);
    ctx c = {{&out, &o, &p}, 0, 0};
    scale_fwd(&c);
    double ref[60];
    for (int i = 0; i < R * S * D; i++) ref[i] = (double)gqe_f32(&p)[i / D] * gqe_f32(&o)[i];
    assert_close_d(gqe_f32(&out), ref, R * S * D, 1e-6);
    CHECK_OK(gqe_slot_scale_backward(&dO, &dp, &g, &o, &p));
    fd_check("slot_scale d_o", &o, &dO, scale_fwd, &c, &out, &g, 1e-3);
    fd_check("slot_scale dP", &p, &dp, scale_fwd, &c, &out, &g, 1e-3);
    FREE(&o, &p, &out, &g, &dO, &dp);
}

/* group_mean_append: [rope(x) | mean_g rope(x)], against rope_forward and
 * plain means; its backward against finite differences, with RoPE and
 * without. */
static void test_group_mean_append(void **state) {
    (void)state;
    const int B = 2, T = 3, G = 4, D = 6, R = B * T;
    for (int rope = 0; rope < 2; rope++) {
        gqe_tensor x = RANDN(150, B, T, G, D), out = ZEROS(B, T, G + 1, D), g = RANDN(151, B, T, G + 1, D);
        gqe_tensor dx = RANDN(152, B, T, G, D), y = ZEROS(B, T, G, D);
        CHECK_OK(gqe_tensor_copy(&y, &x));
        if (rope) CHECK_OK(gqe_rope_forward(&y, 10000.0f, 2));
        CHECK_OK(gqe_group_mean_append(&out, &x, rope, 10000.0f, 2));
        double ref[6 * 5 * 6] = {0};
        for (int r = 0; r < R; r++)
            for (int k = 0; k < G; k++)
                for (int d = 0; d < D; d++) {
                    double v = gqe_f32(&y)[(r * G + k) * D + d];
                    ref[(r * (G + 1) + k) * D + d] = v;
                    ref[(r * (G + 1) + G) * D + d] += v / (double)G;
                }
        assert_close_d(gqe_f32(&out), ref, R * (G + 1) * D, 1e-6);
        ctx c = {{&out, &x}, (float)rope, 0};
        mean_fwd(&c);
        CHECK_OK(gqe_group_mean_append_backward(&dx, &g, rope, 10000.0f));   /* overwrites dx */
        fd_check("group_mean_append dx", &x, &dx, mean_fwd, &c, &out, &g, 1e-3);
        gqe_tensor bad = ZEROS(B, T, G, D);
        assert_int_equal(gqe_group_mean_append(&bad, &x, rope, 10000.0f, 0), GQE_ERR_SHAPE);
        FREE(&x, &out, &g, &dx, &y, &bad);
    }
    gqe_tensor x5 = ZEROS(1, 2, 2, 5), o5 = ZEROS(1, 2, 3, 5);
    assert_int_equal(gqe_group_mean_append(&o5, &x5, true, 10000.0f, 0), GQE_ERR_SHAPE);
    CHECK_OK(gqe_group_mean_append(&o5, &x5, false, 10000.0f, 0));
    FREE(&x5, &o5);
}

/* ---- optimizers ---------------------------------------------------------------------- */
static void test_adamw(void **state) {
    (void)state;
    const int N = 20;
    gqe_tensor p = RANDN(160, N), m = ZEROS(N), v = ZEROS(N);
    double rp[20], rm[20] = {0}, rv[20] = {0};
    for (int i = 0; i < N; i++) rp[i] = gqe_f32(&p)[i];
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-7, wd = 0.1;
    for (int step = 1; step <= 3; step++) {
        gqe_tensor g = RANDN(170 + step, N);
        /* step 2 folds a clip coefficient into the update */
        float gs = step == 2 ? 0.375f : 1.0f;
        CHECK_OK(gqe_adamw_update(&p, &g, &m, &v, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, step, gs));
        for (int i = 0; i < N; i++) {
            double gi = gqe_f32(&g)[i] * (double)gs;
            rp[i] *= 1 - lr * wd;
            rm[i] = b1 * rm[i] + (1 - b1) * gi;
            rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
            double mh = rm[i] / (1 - pow(b1, step)), vh = rv[i] / (1 - pow(b2, step));
            rp[i] -= lr * mh / (sqrt(vh) + eps);
        }
        gqe_tensor_free(&g);
    }
    assert_close_d(gqe_f32(&p), rp, N, 1e-5);
    assert_close_d(gqe_f32(&m), rm, N, 1e-5);
    assert_close_d(gqe_f32(&v), rv, N, 1e-5);
    assert_int_equal(gqe_adamw_update(&p, &m, &m, &v, 1, 0.9f, 0.9f, 1e-8f, 0, 0, 1.0f), GQE_ERR_ARG);
    assert_int_equal(gqe_adamw_update(&p, &m, &m, &v, 1, 0.9f, 0.9f, 1e-8f, 0, 1, 0.0f), GQE_ERR_ARG);
    FREE(&p, &m, &v);
}

static void test_sgd(void **state) {
    (void)state;
    const int N = 16;
    for (int variant = 0; variant < 3; variant++) {   /* plain, momentum, nesterov */
        float mom = variant ? 0.9f : 0.0f, wd = 0.01f, lr = 0.1f;
        bool nest = variant == 2;
        gqe_tensor p = RANDN(180, N), buf = ZEROS(N);
        double rp[16], rb[16] = {0};
        for (int i = 0; i < N; i++) rp[i] = gqe_f32(&p)[i];
        for (int step = 1; step <= 3; step++) {
            gqe_tensor g = RANDN(190 + step, N);
            float gs = step == 3 ? 0.625f : 1.0f;
            CHECK_OK(gqe_sgd_update(&p, &g, variant ? &buf : NULL, lr, mom, wd, nest, step, gs));
            for (int i = 0; i < N; i++) {
                double d = gqe_f32(&g)[i] * (double)gs + (double)wd * rp[i];
                if (variant) {
                    rb[i] = step == 1 ? d : mom * rb[i] + d;
                    d = nest ? d + mom * rb[i] : rb[i];
                }
                rp[i] -= lr * d;
            }
            gqe_tensor_free(&g);
        }
        assert_close_d(gqe_f32(&p), rp, N, 1e-5);
        FREE(&p, &buf);
    }
}

/* ---- argument checking ---------------------------------------------------------------- */
#define EXPECT_FAIL(code, call, op) do { gqe_clear_error(); assert_int_equal((call), (code)); \
    if (!strstr(gqe_last_error(), (op))) fail_msg("message '%s' does not name %s", gqe_last_error(), (op)); } while (0)

/* The top-1 hits against a plain loop; ties go to the first maximum; NaNs
 * never win; ignored rows give 0. */
static void test_argmax_correct(void **state) {
    (void)state;
    const int R = 9, V = 7;
    /* integers in [0, 3): many ties */
    gqe_tensor x = uniform(2, (const int64_t[]){R, V}, 0, 3, 71), hits = ZEROS(R);
    for (int64_t i = 0; i < R * V; i++) gqe_f32(&x)[i] = floorf(gqe_f32(&x)[i]);
    float *px = gqe_f32(&x);
    /* row 0: ties at 2 and 5, the target is the later one: wrong */
    for (int j = 0; j < V; j++) px[0 * V + j] = j == 2 || j == 5 ? 9.0f : 1.0f;
    /* row 1: the same ties, the target is the first: right */
    for (int j = 0; j < V; j++) px[1 * V + j] = j == 2 || j == 5 ? 9.0f : 1.0f;
    /* row 2: a NaN before the maximum does not win */
    for (int j = 0; j < V; j++) px[2 * V + j] = j == 0 ? NAN : (j == 4 ? 2.0f : -1.0f);
    /* row 3: NaNs only: never correct */
    for (int j = 0; j < V; j++) px[3 * V + j] = NAN;
    /* row 4: all -inf: the first index */
    for (int j = 0; j < V; j++) px[4 * V + j] = -INFINITY;
    gqe_tensor tg = ints(R, (int32_t[]){5, 2, 4, 0, 0, -1, 1, 6, 3});
    CHECK_OK(gqe_argmax_correct(&hits, &x, &tg));
    const float want_fixed[5] = {0, 1, 1, 0, 1};
    for (int r = 0; r < R; r++) {
        /* the plain loop: the first j with the maximum over non-NaN values */
        int best = -1;
        for (int j = 0; j < V; j++) {
            float v = px[r * V + j];
            if (isnan(v)) continue;
            if (best < 0 || v > px[r * V + best]) best = j;
        }
        int t = gqe_i32(&tg)[r];
        float want = t >= 0 && best == t ? 1.0f : 0.0f;
        if (r < 5) assert_true(want == want_fixed[r]);
        if (gqe_f32(&hits)[r] != want) fail_msg("row %d: got %g, want %g", r, gqe_f32(&hits)[r], want);
    }
    assert_true(gqe_f32(&hits)[5] == 0.0f);   /* ignored row */
    /* random rows: the count equals the loop's */
    gqe_tensor y = RANDN(72, 200, 13), h2 = ZEROS(200), t2 = IZEROS(200);
    int want_n = 0;
    for (int r = 0; r < 200; r++) {
        int best = 0;
        for (int j = 1; j < 13; j++) if (gqe_f32(&y)[r * 13 + j] > gqe_f32(&y)[r * 13 + best]) best = j;
        int t = r % 3 == 0 ? -1 : (r % 2 ? best : (int)(gqe_rng_u32_at(73, 3, (uint64_t)r) % 13));
        gqe_i32(&t2)[r] = t;
        want_n += t >= 0 && t == best;
    }
    CHECK_OK(gqe_argmax_correct(&h2, &y, &t2));
    double got = 0;
    CHECK_OK(gqe_sum(&h2, &got));
    assert_int_equal((int)got, want_n);
    gqe_i32(&tg)[0] = V;
    assert_int_equal(gqe_argmax_correct(&hits, &x, &tg), GQE_ERR_ARG);
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_argmax_correct(&h2, &x, &tg), "argmax_correct");
    FREE(&x, &hits, &tg, &y, &h2, &t2);
}

static void test_rejects_bad_arguments(void **state) {
    (void)state;
    gqe_tensor a = RANDN(1, 3, 4), b = RANDN(2, 5, 6), c = ZEROS(3, 6), w = ZEROS(5), rs = ZEROS(3), empty = {0};
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_matmul(&c, &a, &b, false, false, 1, 0), "matmul");
    assert_non_null(strstr(gqe_last_error(), "(5, 6)"));
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_add(&c, &a, &b), "add");
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_rmsnorm_forward(&a, &rs, &a, &w, 1e-5f), "rmsnorm_forward");
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_scale(&empty, 2), "scale");
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_gelu_forward(&a, &b), "gelu_forward");
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_swiglu_forward(&c, &a), "swiglu_forward");
    gqe_tensor ids = IZEROS(3), lg = RANDN(3, 3, 2, 4), pr = ZEROS(3, 2, 4), ix = IZEROS(3, 2, 5), tv = ZEROS(3, 2, 5);
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_router_topk(&pr, &ix, &tv, &lg, GQE_SCORE_SOFTMAX, NULL), "router_topk");
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_embedding_forward(&c, &a, &ids), "embedding_forward");
    /* i32 where a float is needed, float where i32 is needed */
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_scale(&ids, 2), "scale");
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_cross_entropy_forward(&rs, &a, &rs), "cross_entropy_forward");
    /* bf16 compute on the CPU */
    gqe_tensor h;
    CHECK_OK(gqe_tensor_to(&h, &a, GQE_CPU, GQE_BF16));
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_scale(&h, 2), "scale");
    assert_non_null(strstr(gqe_last_error(), "f32 only"));
    /* mixed devices, and an op missing from a backend's table */
    gqe_tensor fake = a;
    fake.device = GQE_CUDA;
    EXPECT_FAIL(GQE_ERR_SHAPE, gqe_axpy(&a, 1, &fake), "axpy");
    EXPECT_FAIL(GQE_ERR_DEVICE, gqe_scale(&fake, 2), "scale");
    FREE(&a, &b, &c, &w, &rs, &ids, &lg, &pr, &ix, &tv, &h);
}

/* The op list drives every table: the CPU backend fills every slot, each op
 * has a distinct name, and a backend without an op (here the CUDA table of
 * a build without nvcc, which has none) says so through the table. */
static void test_op_list(void **state) {
    (void)state;
    const gqe_backend *cpu = gqe_backend_for(GQE_CPU);
    for (int i = 0; i < GQE_OP_COUNT; i++) {
        const char *name = gqe_op_name((gqe_op_id)i);
        assert_non_null(name);
        if (!gqe_backend_supports(cpu, (gqe_op_id)i)) fail_msg("the cpu backend lacks op %s", name);
        for (int j = 0; j < i; j++) assert_string_not_equal(name, gqe_op_name((gqe_op_id)j));
    }
    assert_null(gqe_op_name(GQE_OP_COUNT));
    assert_string_equal(gqe_op_name(GQE_OP_ID_matmul), "matmul");
    assert_false(gqe_backend_supports(cpu, GQE_OP_COUNT));
    const gqe_backend *cuda = gqe_backend_for(GQE_CUDA);
    if (strstr(cuda->name, "not built"))
        for (int i = 0; i < GQE_OP_COUNT; i++)
            if (gqe_backend_supports(cuda, (gqe_op_id)i))
                fail_msg("the CUDA stub claims op %s", gqe_op_name((gqe_op_id)i));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_copy_cols),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_add_rmsnorm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_argmax_correct),
        cmocka_unit_test(test_router_topk),
        cmocka_unit_test(test_router_score_backward),
        cmocka_unit_test(test_router_random),
        cmocka_unit_test(test_router_hash),
        cmocka_unit_test(test_router_scatter_and_stats),
        cmocka_unit_test(test_router_aux_backward),
        cmocka_unit_test(test_router_backward),
        cmocka_unit_test(test_gather_scatter_slots),
        cmocka_unit_test(test_gather_slots_rope),
        cmocka_unit_test(test_qkv_grad_pack),
        cmocka_unit_test(test_slot_mix),
        cmocka_unit_test(test_slot_scale),
        cmocka_unit_test(test_group_mean_append),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_rejects_bad_arguments),
        cmocka_unit_test(test_op_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
