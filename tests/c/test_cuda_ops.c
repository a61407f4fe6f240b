/* Every op of the CUDA backend against the CPU backend on the same random
 * inputs. Each check copies the GPU result back and bounds
 * max |gpu - cpu| / max |cpu| (testutil's tu_rel_err):
 *   f32 elementwise 1e-5; f32 reductions, matmul, attention 1e-4;
 *   bf16 operands 2e-2 (the CPU reference runs in f32 on the same
 *   bf16-rounded values). Index outputs (top-k, random, hash) must match
 * exactly. Outputs an op overwrites start as NaN on the GPU, so an element
 * never written fails the check.
 *
 * With no CUDA device the binary prints "skipped: no CUDA device" and exits
 * 77, the status test runners count as skipped (never as passed). `--small` (or GQE_TEST_SMALL=1) shrinks the attention shapes for runs
 * under compute-sanitizer. */
#include "testutil.h"
#include "backend.h"
#include "nn/lm.h"
#include <string.h>

static bool g_small = false;

/* ---- paired tensors: the same values on the CPU (f32) and the GPU -------- */
typedef struct { gqe_tensor c, g; } pair;

static void round_bf16(gqe_tensor *t) {
    float *p = gqe_f32(t);
    for (int64_t i = 0; i < gqe_tensor_numel(t); i++) p[i] = gqe_bf16_to_f32(gqe_f32_to_bf16(p[i]));
}

static pair pr_randn(int nd, const int64_t *shape, float std, uint64_t seed, gqe_dtype gdt) {
    pair p;
    p.c = tu_randn(nd, shape, std, seed);
    if (gdt == GQE_BF16) round_bf16(&p.c);
    CHECK_OK(gqe_tensor_to(&p.g, &p.c, GQE_CUDA, gdt));
    return p;
}
#define RANDN(var, dt, seed, ...) pair var = pr_randn(NARG_(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}, 1.0f, seed, dt)
#define NARG_(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* An output the op overwrites: CPU zeros, GPU NaN. */
static pair pr_out(int nd, const int64_t *shape, gqe_dtype gdt) {
    pair p;
    CHECK_OK(gqe_tensor_zeros(&p.c, GQE_F32, GQE_CPU, nd, shape));
    CHECK_OK(gqe_tensor_new(&p.g, gdt, GQE_CUDA, nd, shape));
    CHECK_OK(gqe_fill(&p.g, NAN));
    return p;
}
#define OUT(var, dt, ...) pair var = pr_out(NARG_(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}, dt)

static pair pr_ids(int64_t n, int64_t lo, int64_t hi, uint64_t seed) {
    pair p;
    CHECK_OK(gqe_tensor_new4(&p.c, GQE_I32, GQE_CPU, n, 0, 0, 0));
    for (int64_t i = 0; i < n; i++) gqe_i32(&p.c)[i] = (int32_t)(lo + gqe_rng_u32_at(seed, 3, (uint64_t)i) % (uint64_t)(hi - lo));
    CHECK_OK(gqe_tensor_to(&p.g, &p.c, GQE_CUDA, GQE_I32));
    return p;
}

static void pr_free(pair *p) { gqe_tensor_free(&p->c); gqe_tensor_free(&p->g); }

static double pr_err(const pair *p) {
    int64_t n = gqe_tensor_numel(&p->c);
    float *a = malloc((size_t)n * sizeof(float) + 4);
    CHECK_OK(gqe_tensor_read_f32(&p->g, a, (size_t)n));
    double e = tu_rel_err(a, gqe_f32(&p->c), n);
    free(a);
    return e;
}
#define PR_CHECK(p, tol) do { double _e = pr_err(&(p)); \
    if (!(_e <= (tol))) fail_msg("%s: gpu vs cpu relative error %.3g > %.3g (line %d)", #p, _e, (double)(tol), __LINE__); } while (0)

static void pr_check_i32(const pair *p) {
    int64_t n = gqe_tensor_numel(&p->c);
    int32_t *a = malloc((size_t)n * 4 + 4);
    CHECK_OK(gqe_backend_for(GQE_CUDA)->download(a, gqe_tensor_data(&p->g), (size_t)n * 4));
    for (int64_t i = 0; i < n; i++)
        if (a[i] != gqe_i32(&p->c)[i]) fail_msg("index %lld: gpu %d, cpu %d", (long long)i, a[i], gqe_i32(&p->c)[i]);
    free(a);
}

#define TOL_EW 1e-5
#define TOL_RED 1e-4
#define TOL_BF16 2e-2

/* ---- elementwise, reductions, copies ---------------------------------- */
static void test_elementwise(void **state) {
    (void)state;
    RANDN(x, GQE_F32, 1, 1000);
    RANDN(y, GQE_F32, 2, 1000);
    OUT(o, GQE_F32, 1000);
    CHECK_OK(gqe_add(&o.c, &x.c, &y.c)); CHECK_OK(gqe_add(&o.g, &x.g, &y.g));
    PR_CHECK(o, TOL_EW);
    CHECK_OK(gqe_axpy(&y.c, -0.7f, &x.c)); CHECK_OK(gqe_axpy(&y.g, -0.7f, &x.g));
    PR_CHECK(y, TOL_EW);
    CHECK_OK(gqe_scale(&y.c, 1.3f)); CHECK_OK(gqe_scale(&y.g, 1.3f));
    PR_CHECK(y, TOL_EW);
    CHECK_OK(gqe_fill(&y.c, 0.25f)); CHECK_OK(gqe_fill(&y.g, 0.25f));
    PR_CHECK(y, 0);
    double sc, sg;
    CHECK_OK(gqe_sum(&x.c, &sc)); CHECK_OK(gqe_sum(&x.g, &sg));
    assert_true(fabs(sc - sg) <= 1e-9 * (1 + fabs(sc)) + 1e-6);
    CHECK_OK(gqe_sumsq(&x.c, &sc)); CHECK_OK(gqe_sumsq(&x.g, &sg));
    assert_true(fabs(sc - sg) <= 1e-6 * sc);
    /* bf16 elementwise against the CPU on the rounded values */
    RANDN(xb, GQE_BF16, 3, 777);
    RANDN(yb, GQE_BF16, 4, 777);
    OUT(ob, GQE_BF16, 777);
    CHECK_OK(gqe_add(&ob.c, &xb.c, &yb.c)); CHECK_OK(gqe_add(&ob.g, &xb.g, &yb.g));
    PR_CHECK(ob, TOL_BF16);
    /* the f32 <-> bf16 conversion kernel is exact on representable values */
    gqe_tensor back;
    CHECK_OK(gqe_tensor_new4(&back, GQE_F32, GQE_CUDA, 777, 0, 0, 0));
    CHECK_OK(gqe_tensor_copy(&back, &xb.g));
    float *h = malloc(777 * sizeof(float));
    CHECK_OK(gqe_tensor_read_f32(&back, h, 777));
    for (int i = 0; i < 777; i++) assert_true(h[i] == gqe_f32(&xb.c)[i]);
    free(h);
    gqe_tensor_free(&back);
    pr_free(&x); pr_free(&y); pr_free(&o); pr_free(&xb); pr_free(&yb); pr_free(&ob);
}

static void test_copy_cols(void **state) {
    (void)state;
    RANDN(src, GQE_F32, 5, 13, 9);
    RANDN(dst, GQE_F32, 6, 13, 11);
    CHECK_OK(gqe_copy_cols(&dst.c, 2, &src.c, 3, 5, false)); CHECK_OK(gqe_copy_cols(&dst.g, 2, &src.g, 3, 5, false));
    PR_CHECK(dst, 0);
    CHECK_OK(gqe_copy_cols(&dst.c, 0, &src.c, 0, 9, true)); CHECK_OK(gqe_copy_cols(&dst.g, 0, &src.g, 0, 9, true));
    PR_CHECK(dst, TOL_EW);
    /* f32 into bf16: the split of the router and shared-query projection */
    pair db = pr_randn(2, (const int64_t[]){13, 11}, 1.0f, 7, GQE_BF16);
    CHECK_OK(gqe_copy_cols(&db.c, 1, &src.c, 2, 6, false)); CHECK_OK(gqe_copy_cols(&db.g, 1, &src.g, 2, 6, false));
    PR_CHECK(db, TOL_BF16);
    /* whole 16-byte words per row (the one-word-per-thread path), bf16 and f32 */
    pair sb = pr_randn(2, (const int64_t[]){13, 80}, 1.0f, 8, GQE_BF16);
    pair wb = pr_randn(2, (const int64_t[]){13, 96}, 1.0f, 9, GQE_BF16);
    CHECK_OK(gqe_copy_cols(&wb.c, 32, &sb.c, 8, 64, false)); CHECK_OK(gqe_copy_cols(&wb.g, 32, &sb.g, 8, 64, false));
    PR_CHECK(wb, 0);
    RANDN(s4, GQE_F32, 10, 13, 20);
    RANDN(w4, GQE_F32, 11, 13, 12);
    CHECK_OK(gqe_copy_cols(&w4.c, 4, &s4.c, 12, 8, false)); CHECK_OK(gqe_copy_cols(&w4.g, 4, &s4.g, 12, 8, false));
    PR_CHECK(w4, 0);
    pr_free(&src); pr_free(&dst); pr_free(&db); pr_free(&sb); pr_free(&wb); pr_free(&s4); pr_free(&w4);
}

/* ---- matmul --------------------------------------------------------------- */
static void test_matmul(void **state) {
    (void)state;
    const int64_t M = 37, N = 29, K = 45;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            RANDN(a, GQE_F32, 10 + ta, ta ? K : M, ta ? M : K);
            RANDN(b, GQE_F32, 20 + tb, tb ? N : K, tb ? K : N);
            RANDN(c, GQE_F32, 30, M, N);
            CHECK_OK(gqe_matmul(&c.c, &a.c, &b.c, ta, tb, 0.8f, 0.5f));
            CHECK_OK(gqe_matmul(&c.g, &a.g, &b.g, ta, tb, 0.8f, 0.5f));
            PR_CHECK(c, TOL_RED);
            pr_free(&a); pr_free(&b); pr_free(&c);
        }
    /* bf16 operands (tensor cores, f32 accumulate) into an f32 C */
    RANDN(a, GQE_BF16, 40, M, K);
    RANDN(b, GQE_BF16, 41, N, K);
    OUT(c, GQE_F32, M, N);
    CHECK_OK(gqe_matmul(&c.c, &a.c, &b.c, false, true, 1, 0));
    CHECK_OK(gqe_matmul(&c.g, &a.g, &b.g, false, true, 1, 0));
    PR_CHECK(c, TOL_RED);  /* exact products of bf16 values, f32 sums */
    /* mixed: bf16 activations times f32 weights (rounded to bf16 inside) */
    RANDN(w, GQE_F32, 42, N, K);
    round_bf16(&w.c);
    CHECK_OK(gqe_tensor_copy(&w.g, &w.c));
    OUT(c2, GQE_BF16, M, N);
    CHECK_OK(gqe_matmul(&c2.c, &a.c, &w.c, false, true, 1, 0));
    CHECK_OK(gqe_matmul(&c2.g, &a.g, &w.g, false, true, 1, 0));
    PR_CHECK(c2, TOL_BF16);
    pr_free(&a); pr_free(&b); pr_free(&c); pr_free(&w); pr_free(&c2);
}

/* ---- embedding, norm, activations, rope ------------------------------------ */
static void test_embedding(void **state) {
    (void)state;
    const int64_t V = 50, D = 24, R = 70;  /* R > V: ids repeat, the backward scatter collides */
    RANDN(table, GQE_F32, 50, V, D);
    pair ids = pr_ids(R, 0, V, 51);
    OUT(out, GQE_F32, R, D);
    CHECK_OK(gqe_embedding_forward(&out.c, &table.c, &ids.c));
    CHECK_OK(gqe_embedding_forward(&out.g, &table.g, &ids.g));
    PR_CHECK(out, 0);
    RANDN(dout, GQE_F32, 52, R, D);
    CHECK_OK(gqe_embedding_backward(&table.c, &dout.c, &ids.c));
    CHECK_OK(gqe_embedding_backward(&table.g, &dout.g, &ids.g));
    PR_CHECK(table, TOL_RED);
    /* an id out of range is reported, not read */
    int32_t bad = (int32_t)V;
    CHECK_OK(gqe_backend_for(GQE_CUDA)->upload(gqe_tensor_data(&ids.g), &bad, 4));
    CHECK_OK(gqe_embedding_forward(&out.g, &table.g, &ids.g));
    assert_int_equal(gqe_backend_for(GQE_CUDA)->synchronize(), GQE_ERR_ARG);
    assert_int_equal(gqe_backend_for(GQE_CUDA)->synchronize(), GQE_OK);  /* the flag is cleared */
    pr_free(&table); pr_free(&ids); pr_free(&out); pr_free(&dout);
}

static void test_rmsnorm(void **state) {
    (void)state;
    const int64_t R = 33, D = 300;
    RANDN(x, GQE_F32, 60, R, D);
    RANDN(w, GQE_F32, 61, D);
    OUT(out, GQE_F32, R, D);
    OUT(rstd, GQE_F32, R);
    CHECK_OK(gqe_rmsnorm_forward(&out.c, &rstd.c, &x.c, &w.c, 1e-5f));
    CHECK_OK(gqe_rmsnorm_forward(&out.g, &rstd.g, &x.g, &w.g, 1e-5f));
    PR_CHECK(out, TOL_RED);
    PR_CHECK(rstd, TOL_RED);
    RANDN(dout, GQE_F32, 62, R, D);
    RANDN(dx, GQE_F32, 63, R, D);
    RANDN(dw, GQE_F32, 64, D);
    CHECK_OK(gqe_rmsnorm_backward(&dx.c, &dw.c, &dout.c, &x.c, &w.c, &rstd.c, NULL));
    CHECK_OK(gqe_rmsnorm_backward(&dx.g, &dw.g, &dout.g, &x.g, &w.g, &rstd.g, NULL));
    PR_CHECK(dx, TOL_RED);
    PR_CHECK(dw, TOL_RED);
    /* fused residual add + norm, f32 and with a bf16 addend and output */
    RANDN(b, GQE_F32, 65, R, D);
    OUT(sum, GQE_F32, R, D);
    CHECK_OK(gqe_add_rmsnorm_forward(&sum.c, &out.c, &rstd.c, &x.c, &b.c, &w.c, 1e-5f));
    CHECK_OK(gqe_add_rmsnorm_forward(&sum.g, &out.g, &rstd.g, &x.g, &b.g, &w.g, 1e-5f));
    PR_CHECK(sum, TOL_EW);
    PR_CHECK(out, TOL_RED);
    PR_CHECK(rstd, TOL_RED);
    pair bb = pr_randn(2, (const int64_t[]){R, D}, 1.0f, 66, GQE_BF16);
    pair ob = pr_out(2, (const int64_t[]){R, D}, GQE_BF16);
    CHECK_OK(gqe_add_rmsnorm_forward(&sum.c, &ob.c, &rstd.c, &x.c, &bb.c, &w.c, 1e-5f));
    CHECK_OK(gqe_add_rmsnorm_forward(&sum.g, &ob.g, &rstd.g, &x.g, &bb.g, &w.g, 1e-5f));
    PR_CHECK(sum, TOL_EW);
    PR_CHECK(ob, TOL_BF16);
    /* backward with a bf16 copy of dx (the mixed-precision residual gradient) */
    pair dxc = pr_out(2, (const int64_t[]){R, D}, GQE_BF16);
    CHECK_OK(gqe_rmsnorm_backward(&dx.c, &dw.c, &dout.c, &x.c, &w.c, &rstd.c, &dxc.c));
    CHECK_OK(gqe_rmsnorm_backward(&dx.g, &dw.g, &dout.g, &x.g, &w.g, &rstd.g, &dxc.g));
    PR_CHECK(dx, TOL_RED);
    PR_CHECK(dxc, TOL_BF16);
    pr_free(&bb); pr_free(&ob); pr_free(&dxc); pr_free(&b); pr_free(&sum);
    pr_free(&x); pr_free(&w); pr_free(&out); pr_free(&rstd); pr_free(&dout); pr_free(&dx); pr_free(&dw);
    /* the other row widths: 16-byte words, a warp per row in backward (300
     * above and 1024: 33 rows are two blocks, the second of one row), a
     * block per row with two words a thread (1500), single values where
     * D % 4 != 0 (1022, 1534), and wider than the register kernels take
     * (2500); each also with bf16 branch tensors */
    const int64_t widths[] = {1024, 1500, 1022, 1534, 2500};
    for (int i = 0; i < 5; i++) {
        const int64_t Dw = widths[i];
        pair xw = pr_randn(2, (const int64_t[]){R, Dw}, 1.0f, 67, GQE_F32), ww = pr_randn(1, &Dw, 1.0f, 68, GQE_F32);
        pair bw = pr_randn(2, (const int64_t[]){R, Dw}, 1.0f, 69, GQE_F32), sw = pr_out(2, (const int64_t[]){R, Dw}, GQE_F32);
        pair ow = pr_out(2, (const int64_t[]){R, Dw}, GQE_F32), rw = pr_out(1, &R, GQE_F32);
        CHECK_OK(gqe_rmsnorm_forward(&ow.c, &rw.c, &xw.c, &ww.c, 1e-5f));
        CHECK_OK(gqe_rmsnorm_forward(&ow.g, &rw.g, &xw.g, &ww.g, 1e-5f));
        PR_CHECK(ow, TOL_RED);
        CHECK_OK(gqe_add_rmsnorm_forward(&sw.c, &ow.c, &rw.c, &xw.c, &bw.c, &ww.c, 1e-5f));
        CHECK_OK(gqe_add_rmsnorm_forward(&sw.g, &ow.g, &rw.g, &xw.g, &bw.g, &ww.g, 1e-5f));
        PR_CHECK(sw, TOL_EW);
        PR_CHECK(ow, TOL_RED);
        PR_CHECK(rw, TOL_RED);
        pair gw = pr_randn(2, (const int64_t[]){R, Dw}, 1.0f, 70, GQE_F32), dww = pr_randn(1, &Dw, 1.0f, 71, GQE_F32);
        CHECK_OK(gqe_rmsnorm_backward(&bw.c, &dww.c, &gw.c, &xw.c, &ww.c, &rw.c, NULL));
        CHECK_OK(gqe_rmsnorm_backward(&bw.g, &dww.g, &gw.g, &xw.g, &ww.g, &rw.g, NULL));
        PR_CHECK(bw, TOL_RED);
        PR_CHECK(dww, TOL_RED);
        pair b16 = pr_randn(2, (const int64_t[]){R, Dw}, 1.0f, 72, GQE_BF16), o16 = pr_out(2, (const int64_t[]){R, Dw}, GQE_BF16);
        CHECK_OK(gqe_add_rmsnorm_forward(&sw.c, &o16.c, &rw.c, &xw.c, &b16.c, &ww.c, 1e-5f));
        CHECK_OK(gqe_add_rmsnorm_forward(&sw.g, &o16.g, &rw.g, &xw.g, &b16.g, &ww.g, 1e-5f));
        PR_CHECK(sw, TOL_EW);
        PR_CHECK(o16, TOL_BF16);
        PR_CHECK(rw, TOL_RED);
        /* a fresh bf16 dout: o16's two sides may differ by a rounding step */
        pair g16 = pr_randn(2, (const int64_t[]){R, Dw}, 1.0f, 73, GQE_BF16), c16 = pr_out(2, (const int64_t[]){R, Dw}, GQE_BF16);
        CHECK_OK(gqe_rmsnorm_backward(&bw.c, &dww.c, &g16.c, &sw.c, &ww.c, &rw.c, &c16.c));
        CHECK_OK(gqe_rmsnorm_backward(&bw.g, &dww.g, &g16.g, &sw.g, &ww.g, &rw.g, &c16.g));
        PR_CHECK(bw, TOL_RED);
        PR_CHECK(dww, TOL_RED);
        PR_CHECK(c16, TOL_BF16);
        pr_free(&b16); pr_free(&o16); pr_free(&g16); pr_free(&c16);
        pr_free(&xw); pr_free(&ww); pr_free(&bw); pr_free(&sw); pr_free(&ow); pr_free(&rw); pr_free(&gw); pr_free(&dww);
    }
}

static void test_activations(void **state) {
    (void)state;
    RANDN(x, GQE_F32, 70, 31, 40);
    OUT(o, GQE_F32, 31, 40);
    CHECK_OK(gqe_gelu_forward(&o.c, &x.c)); CHECK_OK(gqe_gelu_forward(&o.g, &x.g));
    PR_CHECK(o, TOL_EW);
    RANDN(g, GQE_F32, 71, 31, 40);
    RANDN(dx, GQE_F32, 72, 31, 40);
    CHECK_OK(gqe_gelu_backward(&dx.c, &x.c, &g.c, NULL)); CHECK_OK(gqe_gelu_backward(&dx.g, &x.g, &g.g, NULL));
    PR_CHECK(dx, TOL_EW);
    /* the recomputing form also writes gelu(x) */
    CHECK_OK(gqe_gelu_backward(&dx.c, &x.c, &g.c, &o.c)); CHECK_OK(gqe_gelu_backward(&dx.g, &x.g, &g.g, &o.g));
    PR_CHECK(dx, TOL_EW);
    PR_CHECK(o, TOL_EW);
    OUT(s, GQE_F32, 31, 20);
    CHECK_OK(gqe_swiglu_forward(&s.c, &x.c)); CHECK_OK(gqe_swiglu_forward(&s.g, &x.g));
    PR_CHECK(s, TOL_EW);
    RANDN(gs, GQE_F32, 73, 31, 20);
    CHECK_OK(gqe_swiglu_backward(&dx.c, &x.c, &gs.c)); CHECK_OK(gqe_swiglu_backward(&dx.g, &x.g, &gs.g));
    PR_CHECK(dx, TOL_EW);
    pr_free(&x); pr_free(&o); pr_free(&g); pr_free(&dx); pr_free(&s); pr_free(&gs);
    /* all-bf16 GELU: 8 values per thread when the count divides by 8, else scalar */
    const int64_t cols[] = {40, 41};
    for (int c = 0; c < 2; c++) {
        pair xb = pr_randn(2, (const int64_t[]){31, cols[c]}, 1.0f, 74, GQE_BF16);
        pair ob = pr_out(2, (const int64_t[]){31, cols[c]}, GQE_BF16);
        CHECK_OK(gqe_gelu_forward(&ob.c, &xb.c)); CHECK_OK(gqe_gelu_forward(&ob.g, &xb.g));
        PR_CHECK(ob, TOL_BF16);
        pair gb = pr_randn(2, (const int64_t[]){31, cols[c]}, 1.0f, 75, GQE_BF16);
        pair db = pr_randn(2, (const int64_t[]){31, cols[c]}, 1.0f, 76, GQE_BF16);
        CHECK_OK(gqe_gelu_backward(&db.c, &xb.c, &gb.c, NULL)); CHECK_OK(gqe_gelu_backward(&db.g, &xb.g, &gb.g, NULL));
        PR_CHECK(db, TOL_BF16);
        CHECK_OK(gqe_gelu_backward(&db.c, &xb.c, &gb.c, &ob.c)); CHECK_OK(gqe_gelu_backward(&db.g, &xb.g, &gb.g, &ob.g));
        PR_CHECK(db, TOL_BF16);
        PR_CHECK(ob, TOL_BF16);
        pr_free(&xb); pr_free(&ob); pr_free(&gb); pr_free(&db);
    }
}

static void test_rope(void **state) {
    (void)state;
    RANDN(x, GQE_F32, 80, 2, 19, 3, 32);
    CHECK_OK(gqe_rope_forward(&x.c, 10000.0f, 5)); CHECK_OK(gqe_rope_forward(&x.g, 10000.0f, 5));
    PR_CHECK(x, TOL_EW);
    CHECK_OK(gqe_rope_backward(&x.c, 10000.0f, 5)); CHECK_OK(gqe_rope_backward(&x.g, 10000.0f, 5));
    PR_CHECK(x, TOL_EW);
    /* bf16, D = 64: 8 pairs per thread */
    RANDN(xb, GQE_BF16, 81, 1, 7, 2, 64);
    CHECK_OK(gqe_rope_forward(&xb.c, 500000.0f, 100)); CHECK_OK(gqe_rope_forward(&xb.g, 500000.0f, 100));
    PR_CHECK(xb, TOL_BF16);
    CHECK_OK(gqe_rope_backward(&xb.c, 500000.0f, 100)); CHECK_OK(gqe_rope_backward(&xb.g, 500000.0f, 100));
    PR_CHECK(xb, TOL_BF16);
    pr_free(&x); pr_free(&xb);
}

/* ---- loss -------------------------------------------------------------------- */
static void test_cross_entropy(void **state) {
    (void)state;
    const int64_t R = 21, V = 1000;
    RANDN(lg, GQE_F32, 90, R, V);
    pair tg = pr_ids(R, -1, V, 91);  /* some -1: ignored rows */
    OUT(loss, GQE_F32, R);
    CHECK_OK(gqe_cross_entropy_forward(&loss.c, &lg.c, &tg.c));
    CHECK_OK(gqe_cross_entropy_forward(&loss.g, &lg.g, &tg.g));
    PR_CHECK(loss, TOL_RED);
    OUT(d, GQE_F32, R, V);
    CHECK_OK(gqe_cross_entropy_backward(&d.c, &lg.c, &tg.c, 0.5f));
    CHECK_OK(gqe_cross_entropy_backward(&d.g, &lg.g, &tg.g, 0.5f));
    PR_CHECK(d, TOL_RED);
    /* in place */
    CHECK_OK(gqe_cross_entropy_backward(&lg.c, &lg.c, &tg.c, 1.0f));
    CHECK_OK(gqe_cross_entropy_backward(&lg.g, &lg.g, &tg.g, 1.0f));
    PR_CHECK(lg, TOL_RED);
    pr_free(&lg); pr_free(&tg); pr_free(&loss); pr_free(&d);
    /* bf16 logits: rows of 1000, 24000 and 50304 (the LM head's) take the
     * backward that keeps the row in registers (2, 4 and 8 words a thread),
     * 65544 the 8-wide two-pass one, 1001 the scalar one */
    const int64_t widths[] = {1000, 1001, 24000, 50304, 65544};
    for (int w = 0; w < 5; w++) {
        pair lb = pr_randn(2, (const int64_t[]){R, widths[w]}, 1.0f, 92, GQE_BF16);
        pair tb = pr_ids(R, -1, widths[w], 93);
        pair lossb = pr_out(1, (const int64_t[]){R}, GQE_F32);
        CHECK_OK(gqe_cross_entropy_forward(&lossb.c, &lb.c, &tb.c));
        CHECK_OK(gqe_cross_entropy_forward(&lossb.g, &lb.g, &tb.g));
        PR_CHECK(lossb, TOL_RED);
        /* the fused loss pass, in place (as the LM runs it), on a copy */
        pair lf = pr_randn(2, (const int64_t[]){R, widths[w]}, 1.0f, 92, GQE_BF16);
        pair lossf = pr_out(1, (const int64_t[]){R}, GQE_F32), hits = pr_out(1, (const int64_t[]){R}, GQE_F32);
        CHECK_OK(gqe_cross_entropy_fused(&lf.c, &lossf.c, &hits.c, &lf.c, &tb.c, 0.5f));
        CHECK_OK(gqe_cross_entropy_fused(&lf.g, &lossf.g, &hits.g, &lf.g, &tb.g, 0.5f));
        PR_CHECK(lossf, TOL_RED);
        PR_CHECK(hits, 0.0);   /* first maximum on both sides: identical */
        CHECK_OK(gqe_cross_entropy_backward(&lb.c, &lb.c, &tb.c, 0.5f));
        CHECK_OK(gqe_cross_entropy_backward(&lb.g, &lb.g, &tb.g, 0.5f));
        PR_CHECK(lb, TOL_BF16);
        PR_CHECK(lf, TOL_BF16);
        pr_free(&lb); pr_free(&tb); pr_free(&lossb); pr_free(&lf); pr_free(&lossf); pr_free(&hits);
    }
    /* The LM head's width with more rows than the GPU runs blocks at once,
     * in and out of place, some rows ignored (-1). */
    {
        const int64_t Rm = 301, Vm = 50304;
        pair lm = pr_randn(2, (const int64_t[]){Rm, Vm}, 2.0f, 96, GQE_BF16);
        pair tm = pr_ids(Rm, -1, Vm, 97);
        pair lossm = pr_out(1, (const int64_t[]){Rm}, GQE_F32), hitm = pr_out(1, (const int64_t[]){Rm}, GQE_F32);
        pair dm = pr_out(2, (const int64_t[]){Rm, Vm}, GQE_BF16);
        CHECK_OK(gqe_cross_entropy_backward(&dm.c, &lm.c, &tm.c, 0.5f));
        CHECK_OK(gqe_cross_entropy_backward(&dm.g, &lm.g, &tm.g, 0.5f));
        PR_CHECK(dm, TOL_BF16);
        CHECK_OK(gqe_cross_entropy_fused(&lm.c, &lossm.c, &hitm.c, &lm.c, &tm.c, 0.5f));
        CHECK_OK(gqe_cross_entropy_fused(&lm.g, &lossm.g, &hitm.g, &lm.g, &tm.g, 0.5f));
        PR_CHECK(lossm, TOL_RED);
        PR_CHECK(hitm, 0.0);
        PR_CHECK(lm, TOL_BF16);
        pr_free(&lm); pr_free(&tm); pr_free(&lossm); pr_free(&hitm); pr_free(&dm);
    }
    /* f32 logits, out of place: the fallback of three kernels */
    RANDN(lx, GQE_F32, 94, R, V);
    pair tx = pr_ids(R, -1, V, 95);
    OUT(dx, GQE_F32, R, V);
    OUT(lossx, GQE_F32, R);
    OUT(hitx, GQE_F32, R);
    CHECK_OK(gqe_cross_entropy_fused(&dx.c, &lossx.c, &hitx.c, &lx.c, &tx.c, 0.25f));
    CHECK_OK(gqe_cross_entropy_fused(&dx.g, &lossx.g, &hitx.g, &lx.g, &tx.g, 0.25f));
    PR_CHECK(dx, TOL_RED);
    PR_CHECK(lossx, TOL_RED);
    PR_CHECK(hitx, 0.0);
    pr_free(&lx); pr_free(&tx); pr_free(&dx); pr_free(&lossx); pr_free(&hitx);
}

/* Top-1 hits must match exactly. The logits are small integers, so most
 * rows have their maximum at several indices spread over the block's
 * threads (bf16 holds them exactly): the first maximum must win. Targets
 * name the first maximum, the last one (a tie lost), a random class, or -1;
 * one row is constant (every index ties), one holds a NaN at index 0. */
static void check_argmax(int64_t R, int64_t V, gqe_dtype dt, uint64_t seed) {
    pair lg;
    lg.c = tu_randn(2, (const int64_t[]){R, V}, 1.0f, seed);
    float *x = gqe_f32(&lg.c);
    for (int64_t i = 0; i < R * V; i++) x[i] = fminf(floorf(x[i] * 1.5f), 3.0f);   /* about 2% of a row at 3 */
    for (int64_t j = 0; j < V; j++) x[0 * V + j] = 3.0f;
    x[1 * V + 0] = NAN;
    CHECK_OK(gqe_tensor_to(&lg.g, &lg.c, GQE_CUDA, dt));
    pair tg;
    CHECK_OK(gqe_tensor_new4(&tg.c, GQE_I32, GQE_CPU, R, 0, 0, 0));
    int64_t ties = 0;
    for (int64_t r = 0; r < R; r++) {
        int64_t first = -1, last = -1;
        for (int64_t j = 0; j < V; j++) {
            float v = x[r * V + j];
            if (isnan(v)) continue;
            if (first < 0 || v > x[r * V + first]) first = last = j;
            else if (v == x[r * V + first]) last = j;
        }
        ties += last != first;
        int32_t t;
        switch (r % 4) {
        case 0: t = (int32_t)first; break;
        case 1: t = (int32_t)last; break;
        case 2: t = (int32_t)(gqe_rng_u32_at(seed, 5, (uint64_t)r) % (uint64_t)V); break;
        default: t = -1;
        }
        gqe_i32(&tg.c)[r] = t;
    }
    assert_true(ties > R / 2);   /* the test exercises ties */
    CHECK_OK(gqe_tensor_to(&tg.g, &tg.c, GQE_CUDA, GQE_I32));
    OUT(hits, GQE_F32, R);
    CHECK_OK(gqe_argmax_correct(&hits.c, &lg.c, &tg.c));
    CHECK_OK(gqe_argmax_correct(&hits.g, &lg.g, &tg.g));
    float *a = malloc((size_t)R * sizeof(float));
    CHECK_OK(gqe_tensor_read_f32(&hits.g, a, (size_t)R));
    int64_t n = 0;
    for (int64_t r = 0; r < R; r++) {
        if (a[r] != gqe_f32(&hits.c)[r])
            fail_msg("argmax_correct %s V=%lld row %lld: gpu %g, cpu %g", gqe_dtype_name(dt), (long long)V,
                     (long long)r, a[r], gqe_f32(&hits.c)[r]);
        n += a[r] == 1.0f;
    }
    assert_true(n >= R / 4 && n < R);   /* the first-max rows count, the lost ties do not */
    double sum = 0;
    CHECK_OK(gqe_sum(&hits.g, &sum));
    assert_int_equal((int64_t)sum, n);
    free(a);
    pr_free(&lg); pr_free(&tg); pr_free(&hits);
}

static void test_argmax_correct(void **state) {
    (void)state;
    /* f32; bf16 rows of 1000 take the 8-wide path, 1001 the scalar one;
     * 70000 classes leave each thread many values */
    check_argmax(37, 1000, GQE_F32, 94);
    check_argmax(37, 1001, GQE_F32, 95);
    check_argmax(37, 1000, GQE_BF16, 96);
    check_argmax(37, 1001, GQE_BF16, 97);
    check_argmax(9, 70000, GQE_BF16, 98);
    /* a target >= V is refused at the next synchronisation */
    pair lg = pr_randn(2, (const int64_t[]){3, 10}, 1.0f, 99, GQE_F32);
    pair tg = pr_ids(3, 0, 10, 100);
    gqe_i32(&tg.c)[1] = 10;
    gqe_tensor_free(&tg.g);
    CHECK_OK(gqe_tensor_to(&tg.g, &tg.c, GQE_CUDA, GQE_I32));
    OUT(hits, GQE_F32, 3);
    CHECK_OK(gqe_argmax_correct(&hits.g, &lg.g, &tg.g));
    assert_int_equal(gqe_backend_for(GQE_CUDA)->synchronize(), GQE_ERR_ARG);
    pr_free(&lg); pr_free(&tg); pr_free(&hits);
}

/* ---- routing ------------------------------------------------------------------ */
static void test_router(void **state) {
    (void)state;
    const int64_t R = 57, G = 4, M = 6, K = 2;
    for (int fn = 0; fn < 2; fn++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            RANDN(lg, GQE_F32, 100 + fn, R, G, M);
            RANDN(bias, GQE_F32, 102, G, M);
            OUT(p, GQE_F32, R, G, M);
            OUT(tv, GQE_F32, R, G, K);
            pair ix;
            CHECK_OK(gqe_tensor_zeros(&ix.c, GQE_I32, GQE_CPU, 3, (const int64_t[]){R, G, K}));
            CHECK_OK(gqe_tensor_zeros(&ix.g, GQE_I32, GQE_CUDA, 3, (const int64_t[]){R, G, K}));
            CHECK_OK(gqe_router_topk(&p.c, &ix.c, &tv.c, &lg.c, fn, with_bias ? &bias.c : NULL));
            CHECK_OK(gqe_router_topk(&p.g, &ix.g, &tv.g, &lg.g, fn, with_bias ? &bias.g : NULL));
            PR_CHECK(p, TOL_EW);
            PR_CHECK(tv, TOL_EW);
            pr_check_i32(&ix);
            RANDN(dp, GQE_F32, 103, R, G, M);
            RANDN(dl, GQE_F32, 104, R, G, M);
            CHECK_OK(gqe_router_score_backward(&dl.c, &p.c, &dp.c, fn));
            CHECK_OK(gqe_router_score_backward(&dl.g, &p.g, &dp.g, fn));
            PR_CHECK(dl, TOL_EW);
            RANDN(dtv, GQE_F32, 105, R, G, K);
            CHECK_OK(gqe_router_scatter_probs(&dp.c, &dtv.c, &ix.c));
            CHECK_OK(gqe_router_scatter_probs(&dp.g, &dtv.g, &ix.g));
            PR_CHECK(dp, TOL_EW);
            OUT(cnt, GQE_F32, G, M);
            OUT(ps, GQE_F32, G, M);
            CHECK_OK(gqe_router_stats(&cnt.c, &ps.c, &ix.c, &p.c, fn == 1));
            CHECK_OK(gqe_router_stats(&cnt.g, &ps.g, &ix.g, &p.g, fn == 1));
            PR_CHECK(cnt, 0);
            PR_CHECK(ps, TOL_RED);
            RANDN(coef, GQE_F32, 106, G, M);
            CHECK_OK(gqe_router_aux_backward(&dp.c, &p.c, &coef.c, fn == 1));
            CHECK_OK(gqe_router_aux_backward(&dp.g, &p.g, &coef.g, fn == 1));
            PR_CHECK(dp, TOL_EW);
            /* the fused backward against the CPU, and bit for bit against the
             * GPU's own chain (scatter, aux from scaled counts, score), in
             * f32 and with bf16 dlogits */
            for (int bf = 0; bf < 2; bf++) {
                gqe_dtype dt = bf ? GQE_BF16 : GQE_F32;
                pair fused = pr_out(3, (const int64_t[]){R, G, M}, dt), chain = pr_out(3, (const int64_t[]){R, G, M}, dt);
                OUT(dpz, GQE_F32, R, G, M);
                OUT(cf, GQE_F32, G, M);
                CHECK_OK(gqe_router_backward(&fused.c, &dtv.c, &ix.c, &p.c, &cnt.c, 0.013f, fn, fn == 1));
                CHECK_OK(gqe_router_backward(&fused.g, &dtv.g, &ix.g, &p.g, &cnt.g, 0.013f, fn, fn == 1));
                PR_CHECK(fused, bf ? TOL_BF16 : TOL_EW);
                CHECK_OK(gqe_fill(&dpz.g, 0.0f));
                CHECK_OK(gqe_router_scatter_probs(&dpz.g, &dtv.g, &ix.g));
                CHECK_OK(gqe_tensor_copy(&cf.g, &cnt.g));
                CHECK_OK(gqe_scale(&cf.g, 0.013f));
                CHECK_OK(gqe_router_aux_backward(&dpz.g, &p.g, &cf.g, fn == 1));
                CHECK_OK(gqe_fill(&chain.g, 0.0f));
                CHECK_OK(gqe_router_score_backward(&chain.g, &p.g, &dpz.g, fn));
                size_t nb = (size_t)(R * G * M) * (bf ? 2 : 4);
                void *h1 = malloc(nb), *h2 = malloc(nb);
                CHECK_OK(gqe_backend_for(GQE_CUDA)->download(h1, gqe_tensor_data(&fused.g), nb));
                CHECK_OK(gqe_backend_for(GQE_CUDA)->download(h2, gqe_tensor_data(&chain.g), nb));
                assert_memory_equal(h1, h2, nb);
                free(h1); free(h2);
                pr_free(&fused); pr_free(&chain); pr_free(&dpz); pr_free(&cf);
            }
            pr_free(&lg); pr_free(&bias); pr_free(&p); pr_free(&tv); pr_free(&ix); pr_free(&dp); pr_free(&dl);
            pr_free(&dtv); pr_free(&cnt); pr_free(&ps); pr_free(&coef);
        }
    /* ties: all-equal logits pick the lowest indices in order */
    {
        OUT(p, GQE_F32, R, G, M);
        OUT(tv, GQE_F32, R, G, K);
        pair lg, ix;
        CHECK_OK(gqe_tensor_zeros(&lg.c, GQE_F32, GQE_CPU, 3, (const int64_t[]){R, G, M}));
        CHECK_OK(gqe_tensor_zeros(&lg.g, GQE_F32, GQE_CUDA, 3, (const int64_t[]){R, G, M}));
        CHECK_OK(gqe_tensor_zeros(&ix.c, GQE_I32, GQE_CPU, 3, (const int64_t[]){R, G, K}));
        CHECK_OK(gqe_tensor_zeros(&ix.g, GQE_I32, GQE_CUDA, 3, (const int64_t[]){R, G, K}));
        CHECK_OK(gqe_router_topk(&p.c, &ix.c, &tv.c, &lg.c, GQE_SCORE_SOFTMAX, NULL));
        CHECK_OK(gqe_router_topk(&p.g, &ix.g, &tv.g, &lg.g, GQE_SCORE_SOFTMAX, NULL));
        pr_check_i32(&ix);
        assert_int_equal(gqe_i32(&ix.c)[1], 1);
        pr_free(&p); pr_free(&tv); pr_free(&lg); pr_free(&ix);
    }
}

static void test_router_fixed(void **state) {
    (void)state;
    const int64_t R = 300, G = 8, M = 5, K = 3;
    pair ix, tv;
    CHECK_OK(gqe_tensor_zeros(&ix.c, GQE_I32, GQE_CPU, 3, (const int64_t[]){R, G, K}));
    CHECK_OK(gqe_tensor_zeros(&ix.g, GQE_I32, GQE_CUDA, 3, (const int64_t[]){R, G, K}));
    tv = pr_out(3, (const int64_t[]){R, G, K}, GQE_F32);
    CHECK_OK(gqe_router_random(&ix.c, &tv.c, M, 1234, 9));
    CHECK_OK(gqe_router_random(&ix.g, &tv.g, M, 1234, 9));
    pr_check_i32(&ix);
    PR_CHECK(tv, 0);
    pair tok = pr_ids(R, 0, 50000, 7);
    CHECK_OK(gqe_router_hash(&ix.c, &tv.c, &tok.c, M));
    CHECK_OK(gqe_router_hash(&ix.g, &tv.g, &tok.g, M));
    pr_check_i32(&ix);
    PR_CHECK(tv, 0);
    pr_free(&ix); pr_free(&tv); pr_free(&tok);
}

static void test_slots(void **state) {
    (void)state;
    const int64_t R = 29, G = 4, M = 3, K = 2, D = 40, S = 6;
    /* gather / scatter with random-router indices */
    pair ix, tv;
    CHECK_OK(gqe_tensor_zeros(&ix.c, GQE_I32, GQE_CPU, 3, (const int64_t[]){R, G, K}));
    CHECK_OK(gqe_tensor_zeros(&ix.g, GQE_I32, GQE_CUDA, 3, (const int64_t[]){R, G, K}));
    tv = pr_out(3, (const int64_t[]){R, G, K}, GQE_F32);
    CHECK_OK(gqe_router_random(&ix.c, &tv.c, M, 5, 1));
    CHECK_OK(gqe_router_random(&ix.g, &tv.g, M, 5, 1));
    RANDN(q, GQE_F32, 110, R, G * M, D);
    OUT(sl, GQE_F32, R, G * K, D);
    CHECK_OK(gqe_gather_slots(&sl.c, &q.c, &ix.c)); CHECK_OK(gqe_gather_slots(&sl.g, &q.g, &ix.g));
    PR_CHECK(sl, 0);
    /* the gather with RoPE on the way: f32 (R = 29 rows as B=1, T=29) */
    OUT(slr, GQE_F32, 1, R, G * K, D);
    CHECK_OK(gqe_gather_slots_rope(&slr.c, &q.c, &ix.c, 10000.0f, 7));
    CHECK_OK(gqe_gather_slots_rope(&slr.g, &q.g, &ix.g, 10000.0f, 7));
    PR_CHECK(slr, TOL_EW);
    pr_free(&slr);
    /* into a buffer with the shared query's head after the slots: the
     * plain gather leaves it, the one with RoPE turns it in place */
    RANDN(slw, GQE_F32, 127, R, G * K + 1, D);
    CHECK_OK(gqe_gather_slots(&slw.c, &q.c, &ix.c)); CHECK_OK(gqe_gather_slots(&slw.g, &q.g, &ix.g));
    PR_CHECK(slw, 0);
    pr_free(&slw);
    RANDN(slrw, GQE_F32, 128, 1, R, G * K + 1, D);
    CHECK_OK(gqe_gather_slots_rope(&slrw.c, &q.c, &ix.c, 10000.0f, 7));
    CHECK_OK(gqe_gather_slots_rope(&slrw.g, &q.g, &ix.g, 10000.0f, 7));
    PR_CHECK(slrw, TOL_EW);
    pr_free(&slrw);
    RANDN(dsl, GQE_F32, 111, R, G * K, D);
    CHECK_OK(gqe_scatter_slots(&q.c, &dsl.c, &ix.c)); CHECK_OK(gqe_scatter_slots(&q.g, &dsl.g, &ix.g));
    PR_CHECK(q, TOL_EW);
    RANDN(dslw, GQE_F32, 129, R, G * K + 1, D);
    CHECK_OK(gqe_scatter_slots(&q.c, &dslw.c, &ix.c)); CHECK_OK(gqe_scatter_slots(&q.g, &dslw.g, &ix.g));
    PR_CHECK(q, TOL_EW);
    pr_free(&dslw);

    /* slot mix (B), slot scale (weighted_concat), group mean (shared head) */
    RANDN(o, GQE_F32, 112, R, S, D);
    pair p = pr_randn(2, (const int64_t[]){R, S}, 1.0f, 113, GQE_F32);
    for (int64_t i = 0; i < R * S; i++) gqe_f32(&p.c)[i] = fabsf(gqe_f32(&p.c)[i]);
    for (int64_t s = 0; s < S; s++) gqe_f32(&p.c)[s] = 1e-12f;  /* row 0: sum below eps, the clamp is active */
    CHECK_OK(gqe_tensor_copy(&p.g, &p.c));
    /* the mix writes o_proj's input [slots | mix | shared] from o's S slots,
     * the shared head and one copy of it (k = 2's layout) */
    RANDN(om, GQE_F32, 135, R, S + 2, D);
    OUT(cat, GQE_F32, R, S + 2, D);
    OUT(w, GQE_F32, R, S);
    CHECK_OK(gqe_slot_mix_forward(&cat.c, &w.c, &om.c, &p.c, 1e-9f));
    CHECK_OK(gqe_slot_mix_forward(&cat.g, &w.g, &om.g, &p.g, 1e-9f));
    PR_CHECK(cat, TOL_EW);
    PR_CHECK(w, TOL_EW);
    RANDN(dcat, GQE_F32, 114, R, S + 2, D);
    OUT(d_om, GQE_F32, R, S + 2, D);   /* both overwritten: NaN on the GPU until written */
    OUT(dp, GQE_F32, R, S);
    CHECK_OK(gqe_slot_mix_backward(&d_om.c, &dp.c, &dcat.c, &om.c, &p.c, &cat.c, &w.c, 1e-9f));
    CHECK_OK(gqe_slot_mix_backward(&d_om.g, &dp.g, &dcat.g, &om.g, &p.g, &cat.g, &w.g, 1e-9f));
    PR_CHECK(d_om, TOL_EW);
    PR_CHECK(dp, TOL_RED);
    pr_free(&om); pr_free(&cat); pr_free(&dcat); pr_free(&d_om);
    RANDN(d_o, GQE_F32, 115, R, S, D);
    OUT(sc, GQE_F32, R, S, D);
    CHECK_OK(gqe_slot_scale_forward(&sc.c, &o.c, &p.c)); CHECK_OK(gqe_slot_scale_forward(&sc.g, &o.g, &p.g));
    PR_CHECK(sc, TOL_EW);
    RANDN(dsc, GQE_F32, 117, R, S, D);
    CHECK_OK(gqe_slot_scale_backward(&d_o.c, &dp.c, &dsc.c, &o.c, &p.c));
    CHECK_OK(gqe_slot_scale_backward(&d_o.g, &dp.g, &dsc.g, &o.g, &p.g));
    PR_CHECK(d_o, TOL_EW);
    PR_CHECK(dp, TOL_RED);
    /* the shared head's K and V beside the groups' (RoPE at an offset, and
     * without), and the backward, f32 (D = 40: one pair per thread) */
    for (int rope = 0; rope < 2; rope++) {
        RANDN(kx, GQE_F32, 118, 1, R, G, D);
        OUT(km, GQE_F32, 1, R, G + 1, D);
        CHECK_OK(gqe_group_mean_append(&km.c, &kx.c, rope, 10000.0f, 5));
        CHECK_OK(gqe_group_mean_append(&km.g, &kx.g, rope, 10000.0f, 5));
        PR_CHECK(km, TOL_EW);
        RANDN(dkm, GQE_F32, 119, 1, R, G + 1, D);
        OUT(dkx, GQE_F32, 1, R, G, D);
        CHECK_OK(gqe_group_mean_append_backward(&dkx.c, &dkm.c, rope, 10000.0f));
        CHECK_OK(gqe_group_mean_append_backward(&dkx.g, &dkm.g, rope, 10000.0f));
        PR_CHECK(dkx, TOL_EW);
        pr_free(&kx); pr_free(&km); pr_free(&dkm); pr_free(&dkx);
    }
    /* all-bf16, D = 64: 8 pairs per thread */
    for (int rope = 0; rope < 2; rope++) {
        pair kb = pr_randn(4, (const int64_t[]){1, R, 4, 64}, 1.0f, 137, GQE_BF16);
        pair kmb = pr_out(4, (const int64_t[]){1, R, 5, 64}, GQE_BF16);
        CHECK_OK(gqe_group_mean_append(&kmb.c, &kb.c, rope, 10000.0f, 3));
        CHECK_OK(gqe_group_mean_append(&kmb.g, &kb.g, rope, 10000.0f, 3));
        PR_CHECK(kmb, TOL_BF16);
        pair dkmb = pr_randn(4, (const int64_t[]){1, R, 5, 64}, 1.0f, 138, GQE_BF16);
        pair dkb = pr_out(4, (const int64_t[]){1, R, 4, 64}, GQE_BF16);
        CHECK_OK(gqe_group_mean_append_backward(&dkb.c, &dkmb.c, rope, 10000.0f));
        CHECK_OK(gqe_group_mean_append_backward(&dkb.g, &dkmb.g, rope, 10000.0f));
        PR_CHECK(dkb, TOL_BF16);
        pr_free(&kb); pr_free(&kmb); pr_free(&dkmb); pr_free(&dkb);
    }
    /* all-bf16 gather / scatter (8 columns per thread), D = 64 */
    pair qb = pr_randn(3, (const int64_t[]){R, G * M, 64}, 1.0f, 121, GQE_BF16);
    pair slb = pr_out(3, (const int64_t[]){R, G * K, 64}, GQE_BF16);
    CHECK_OK(gqe_gather_slots(&slb.c, &qb.c, &ix.c)); CHECK_OK(gqe_gather_slots(&slb.g, &qb.g, &ix.g));
    PR_CHECK(slb, 0);
    /* and with RoPE, 8 pairs per thread (R = 29 rows as B=1, T=29) */
    pair slrb = pr_out(4, (const int64_t[]){1, R, G * K, 64}, GQE_BF16);
    CHECK_OK(gqe_gather_slots_rope(&slrb.c, &qb.c, &ix.c, 10000.0f, 3));
    CHECK_OK(gqe_gather_slots_rope(&slrb.g, &qb.g, &ix.g, 10000.0f, 3));
    PR_CHECK(slrb, TOL_BF16);
    pr_free(&slrb);
    pair slrbw = pr_randn(4, (const int64_t[]){1, R, G * K + 1, 64}, 1.0f, 139, GQE_BF16);
    CHECK_OK(gqe_gather_slots_rope(&slrbw.c, &qb.c, &ix.c, 10000.0f, 3));
    CHECK_OK(gqe_gather_slots_rope(&slrbw.g, &qb.g, &ix.g, 10000.0f, 3));
    PR_CHECK(slrbw, TOL_BF16);
    pr_free(&slrbw);
    /* bf16 slot mix, 8 columns per thread: o of k = 1 (S slots and the
     * shared head), then of k = 2 (and a copy of the shared head) */
    for (int copies = 0; copies < 2; copies++) {
        int64_t H = S + 1 + copies;
        pair ob = pr_randn(3, (const int64_t[]){R, H, 64}, 1.0f, 123 + copies, GQE_BF16);
        pair catb = pr_out(3, (const int64_t[]){R, S + 2, 64}, GQE_BF16), wb = pr_out(2, (const int64_t[]){R, S}, GQE_F32);
        CHECK_OK(gqe_slot_mix_forward(&catb.c, &wb.c, &ob.c, &p.c, 1e-9f));
        CHECK_OK(gqe_slot_mix_forward(&catb.g, &wb.g, &ob.g, &p.g, 1e-9f));
        PR_CHECK(catb, TOL_BF16);
        PR_CHECK(wb, TOL_EW);
        /* and its backward (row 0 clamped, the rest not) */
        pair dcatb = pr_randn(3, (const int64_t[]){R, S + 2, 64}, 1.0f, 125 + copies, GQE_BF16);
        pair d_ob = pr_out(3, (const int64_t[]){R, H, 64}, GQE_BF16), dpb = pr_out(2, (const int64_t[]){R, S}, GQE_F32);
        CHECK_OK(gqe_slot_mix_backward(&d_ob.c, &dpb.c, &dcatb.c, &ob.c, &p.c, &catb.c, &wb.c, 1e-9f));
        CHECK_OK(gqe_slot_mix_backward(&d_ob.g, &dpb.g, &dcatb.g, &ob.g, &p.g, &catb.g, &wb.g, 1e-9f));
        PR_CHECK(d_ob, TOL_BF16);
        PR_CHECK(dpb, TOL_BF16);
        pr_free(&ob); pr_free(&catb); pr_free(&wb); pr_free(&dcatb); pr_free(&d_ob); pr_free(&dpb);
    }
    pair dslb = pr_randn(3, (const int64_t[]){R, G * K, 64}, 1.0f, 122, GQE_BF16);
    CHECK_OK(gqe_scatter_slots(&qb.c, &dslb.c, &ix.c)); CHECK_OK(gqe_scatter_slots(&qb.g, &dslb.g, &ix.g));
    PR_CHECK(qb, TOL_BF16);
    pair dslbw = pr_randn(3, (const int64_t[]){R, G * K + 1, 64}, 1.0f, 143, GQE_BF16);
    CHECK_OK(gqe_scatter_slots(&qb.c, &dslbw.c, &ix.c)); CHECK_OK(gqe_scatter_slots(&qb.g, &dslbw.g, &ix.g));
    PR_CHECK(qb, TOL_BF16);
    pr_free(&dslbw);
    pr_free(&qb); pr_free(&slb); pr_free(&dslb);
    pr_free(&ix); pr_free(&tv); pr_free(&q); pr_free(&sl); pr_free(&dsl); pr_free(&o); pr_free(&p);
    pr_free(&w); pr_free(&d_o); pr_free(&dp); pr_free(&sc); pr_free(&dsc);
}

/* qkv_grad_pack: against the CPU, and on the GPU against the op chain it
 * replaces (rope_backward, scatter_slots, group_mean_append_backward,
 * copy_cols),
 * which it must equal bit for bit: it rounds where each of those ops does. */
static gqe_tensor gpu_clone(const gqe_tensor *t) {
    gqe_tensor c;
    CHECK_OK(gqe_tensor_to(&c, t, GQE_CUDA, t->dtype));
    return c;
}

static void check_grad_pack(int64_t T, int64_t G, int64_t M, int64_t K, int64_t D, gqe_dtype dt, uint64_t seed) {
    const int64_t R = T, N = G * M, W = (N + 2 * G + 1) * D + N;
    pair ix, tv;
    CHECK_OK(gqe_tensor_zeros(&ix.c, GQE_I32, GQE_CPU, 3, (const int64_t[]){R, G, K}));
    CHECK_OK(gqe_tensor_zeros(&ix.g, GQE_I32, GQE_CUDA, 3, (const int64_t[]){R, G, K}));
    tv = pr_out(3, (const int64_t[]){R, G, K}, GQE_F32);
    CHECK_OK(gqe_router_random(&ix.c, &tv.c, M, seed, 1));
    CHECK_OK(gqe_router_random(&ix.g, &tv.g, M, seed, 1));
    /* with the shared head: its query's gradient is the slots' last head,
     * its K's and V's the last head of dk and dv */
    RANDN(ds, dt, seed + 1, 1, T, G * K + 1, D);
    RANDN(dk, dt, seed + 2, 1, T, G + 1, D);
    RANDN(dv, dt, seed + 3, 1, T, G + 1, D);
    RANDN(dl, dt, seed + 7, R, N);
    OUT(dy, dt, R, W);
    CHECK_OK(gqe_qkv_grad_pack(&dy.c, &ds.c, &ix.c, &dk.c, &dv.c, &dl.c, true, M, true, 10000.0f));
    CHECK_OK(gqe_qkv_grad_pack(&dy.g, &ds.g, &ix.g, &dk.g, &dv.g, &dl.g, true, M, true, 10000.0f));
    PR_CHECK(dy, dt == GQE_BF16 ? TOL_BF16 : TOL_EW);
    /* the chain, on copies (its ops work in place) */
    gqe_tensor s4 = gpu_clone(&ds.g), k4, v4, dq, chain;
    CHECK_OK(gqe_tensor_zeros(&dq, dt, GQE_CUDA, 3, (const int64_t[]){R, N, D}));
    CHECK_OK(gqe_tensor_zeros(&k4, dt, GQE_CUDA, 4, (const int64_t[]){1, T, G, D}));
    CHECK_OK(gqe_tensor_zeros(&v4, dt, GQE_CUDA, 4, (const int64_t[]){1, T, G, D}));
    CHECK_OK(gqe_tensor_new(&chain, dt, GQE_CUDA, 2, (const int64_t[]){R, W}));
    CHECK_OK(gqe_rope_backward(&s4, 10000.0f, 0));
    gqe_tensor s3 = gqe_tensor_reshape(&s4, 3, (const int64_t[]){R, G * K + 1, D});
    CHECK_OK(gqe_scatter_slots(&dq, &s3, &ix.g));
    CHECK_OK(gqe_group_mean_append_backward(&k4, &dk.g, true, 10000.0f));
    CHECK_OK(gqe_group_mean_append_backward(&v4, &dv.g, false, 10000.0f));
    const gqe_tensor *parts[4] = {&dq, &k4, &v4, &dl.g};
    int64_t col = 0;
    for (int i = 0; i < 4; i++) {
        int64_t cols = gqe_tensor_numel(parts[i]) / R;
        gqe_tensor src = gqe_tensor_reshape(parts[i], 2, (const int64_t[]){R, cols});
        CHECK_OK(gqe_copy_cols(&chain, col, &src, 0, cols, false));
        col += cols;
    }
    gqe_tensor s2 = gqe_tensor_reshape(&s4, 2, (const int64_t[]){R, (G * K + 1) * D});
    CHECK_OK(gqe_copy_cols(&chain, col, &s2, G * K * D, D, false));
    float *a = malloc((size_t)(R * W) * sizeof(float)), *b = malloc((size_t)(R * W) * sizeof(float));
    CHECK_OK(gqe_tensor_read_f32(&dy.g, a, (size_t)(R * W)));
    CHECK_OK(gqe_tensor_read_f32(&chain, b, (size_t)(R * W)));
    for (int64_t i = 0; i < R * W; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)))
            fail_msg("qkv_grad_pack (%s, D=%lld, M=%lld) differs from the op chain at row %lld col %lld: %.9g vs %.9g",
                     gqe_dtype_name(dt), (long long)D, (long long)M, (long long)(i / W), (long long)(i % W), a[i], b[i]);
    free(a); free(b);
    gqe_tensor_free(&s4); gqe_tensor_free(&k4); gqe_tensor_free(&v4);
    gqe_tensor_free(&dq); gqe_tensor_free(&chain);
    pr_free(&ix); pr_free(&tv); pr_free(&ds); pr_free(&dk); pr_free(&dv); pr_free(&dl); pr_free(&dy);
}

static void test_qkv_grad_pack(void **state) {
    (void)state;
    check_grad_pack(29, 4, 3, 2, 40, GQE_F32, 130);   /* one pair per thread */
    check_grad_pack(37, 4, 2, 1, 64, GQE_BF16, 140);  /* 8 pairs per thread (16-byte words) */
    check_grad_pack(37, 4, 3, 2, 64, GQE_BF16, 150);  /* bf16, G*M = 12: one pair per thread */
}

/* ---- optimizers ---------------------------------------------------------------- */
static void test_optim(void **state) {
    (void)state;
    const int64_t n = 5000;
    RANDN(p, GQE_F32, 120, n);
    RANDN(m, GQE_F32, 121, n);
    RANDN(v, GQE_F32, 122, n);
    for (int64_t i = 0; i < n; i++) gqe_f32(&v.c)[i] = fabsf(gqe_f32(&v.c)[i]);
    CHECK_OK(gqe_tensor_copy(&v.g, &v.c));
    for (int step = 1; step <= 3; step++) {
        RANDN(g, GQE_F32, 123 + step, n);
        float gs = step == 2 ? 0.375f : 1.0f;   /* a folded clip coefficient */
        CHECK_OK(gqe_adamw_update(&p.c, &g.c, &m.c, &v.c, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, gs));
        CHECK_OK(gqe_adamw_update(&p.g, &g.g, &m.g, &v.g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, gs));
        pr_free(&g);
    }
    PR_CHECK(p, TOL_EW);
    PR_CHECK(m, TOL_EW);
    PR_CHECK(v, TOL_EW);
    {   /* a count not divisible by 4: one parameter per thread, not 16-byte words */
        const int64_t n1 = 1003;
        RANDN(p1, GQE_F32, 140, n1);
        RANDN(m1, GQE_F32, 141, n1);
        OUT(v1, GQE_F32, n1);
        CHECK_OK(gqe_fill(&v1.c, 0.0f));
        CHECK_OK(gqe_fill(&v1.g, 0.0f));
        RANDN(g1, GQE_F32, 142, n1);
        CHECK_OK(gqe_adamw_update(&p1.c, &g1.c, &m1.c, &v1.c, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f));
        CHECK_OK(gqe_adamw_update(&p1.g, &g1.g, &m1.g, &v1.g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f));
        PR_CHECK(p1, TOL_EW);
        PR_CHECK(m1, TOL_EW);
        PR_CHECK(v1, TOL_EW);
        pr_free(&p1); pr_free(&m1); pr_free(&v1); pr_free(&g1);
    }
    for (int nesterov = 0; nesterov < 2; nesterov++)
        for (int step = 1; step <= 3; step++) {
            RANDN(g, GQE_F32, 130 + step, n);
            float gs = step == 3 ? 0.625f : 1.0f;
            CHECK_OK(gqe_sgd_update(&p.c, &g.c, &m.c, 0.01f, 0.9f, 1e-4f, nesterov, step, gs));
            CHECK_OK(gqe_sgd_update(&p.g, &g.g, &m.g, 0.01f, 0.9f, 1e-4f, nesterov, step, gs));
            CHECK_OK(gqe_sgd_update(&v.c, &g.c, NULL, 0.01f, 0.0f, 0.0f, false, step, gs));  /* no momentum buffer */
            CHECK_OK(gqe_sgd_update(&v.g, &g.g, NULL, 0.01f, 0.0f, 0.0f, false, step, gs));
            pr_free(&g);
        }
    PR_CHECK(p, TOL_EW);
    PR_CHECK(m, TOL_EW);
    PR_CHECK(v, TOL_EW);
    pr_free(&p); pr_free(&m); pr_free(&v);
}

/* ---- attention -------------------------------------------------------------- */
typedef struct { int64_t B, T, S, Hq, Hkv, D; bool causal; } acfg;

static void check_attention(const acfg *c, gqe_dtype dt, uint64_t seed) {
    double tol = dt == GQE_BF16 ? TOL_BF16 : TOL_RED;
    float scale = 1.0f / sqrtf((float)c->D);
    RANDN(q, dt, seed, c->B, c->T, c->Hq, c->D);
    RANDN(k, dt, seed + 1, c->B, c->S, c->Hkv, c->D);
    RANDN(v, dt, seed + 2, c->B, c->S, c->Hkv, c->D);
    OUT(out, dt, c->B, c->T, c->Hq, c->D);
    OUT(lse, GQE_F32, c->B, c->Hq, c->T);
    CHECK_OK(gqe_attention_forward(&out.c, &lse.c, &q.c, &k.c, &v.c, c->causal, scale));
    CHECK_OK(gqe_attention_forward(&out.g, &lse.g, &q.g, &k.g, &v.g, c->causal, scale));
    char what[160];
    snprintf(what, sizeof what, "%s B=%lld T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld %s", gqe_dtype_name(dt),
             (long long)c->B, (long long)c->T, (long long)c->S, (long long)c->Hq, (long long)c->Hkv, (long long)c->D,
             c->causal ? "causal" : "full");
    double e_out = pr_err(&out), e_lse = pr_err(&lse);
    /* backward: out as the GPU computed it (bf16-rounded) on both sides, so
     * D_i = rowsum(dO * O) agrees; gradients start nonzero (they accumulate). */
    if (dt == GQE_BF16) CHECK_OK(gqe_tensor_read_f32(&out.g, gqe_f32(&out.c), (size_t)gqe_tensor_numel(&out.c)));
    RANDN(dout, dt, seed + 3, c->B, c->T, c->Hq, c->D);
    RANDN(dq, GQE_F32, seed + 4, c->B, c->T, c->Hq, c->D);
    RANDN(dk, GQE_F32, seed + 5, c->B, c->S, c->Hkv, c->D);
    RANDN(dv, GQE_F32, seed + 6, c->B, c->S, c->Hkv, c->D);
    CHECK_OK(gqe_attention_backward(&dq.c, &dk.c, &dv.c, &dout.c, &q.c, &k.c, &v.c, &out.c, &lse.c, c->causal, scale, true));
    CHECK_OK(gqe_attention_backward(&dq.g, &dk.g, &dv.g, &dout.g, &q.g, &k.g, &v.g, &out.g, &lse.g, c->causal, scale, true));
    double e_dq = pr_err(&dq), e_dk = pr_err(&dk), e_dv = pr_err(&dv);
    print_message("attention %-52s out %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n", what, e_out, e_lse, e_dq, e_dk, e_dv);
    if (!(e_out <= tol && e_lse <= tol && e_dq <= tol && e_dk <= tol && e_dv <= tol))
        fail_msg("attention %s: error above %.1e", what, tol);
    /* accumulate = false overwrites; the gradients here are in the dtype of
     * the inputs (bf16 gradients let cuDNN write them directly) */
    OUT(dq2, dt, c->B, c->T, c->Hq, c->D);
    OUT(dk2, dt, c->B, c->S, c->Hkv, c->D);
    OUT(dv2, dt, c->B, c->S, c->Hkv, c->D);
    CHECK_OK(gqe_attention_backward(&dq2.c, &dk2.c, &dv2.c, &dout.c, &q.c, &k.c, &v.c, &out.c, &lse.c, c->causal, scale, false));
    CHECK_OK(gqe_attention_backward(&dq2.g, &dk2.g, &dv2.g, &dout.g, &q.g, &k.g, &v.g, &out.g, &lse.g, c->causal, scale, false));
    e_dq = pr_err(&dq2); e_dk = pr_err(&dk2); e_dv = pr_err(&dv2);
    if (!(e_dq <= tol && e_dk <= tol && e_dv <= tol))
        fail_msg("attention %s, overwriting: dq %.2e dk %.2e dv %.2e above %.1e", what, e_dq, e_dk, e_dv, tol);
    pr_free(&dq2); pr_free(&dk2); pr_free(&dv2);
    pr_free(&q); pr_free(&k); pr_free(&v); pr_free(&out); pr_free(&lse); pr_free(&dout);
    pr_free(&dq); pr_free(&dk); pr_free(&dv);
}

static void test_attention_f32(void **state) {
    (void)state;
    const acfg small[] = {
        {2, 37, 37, 4, 2, 16, true}, {1, 19, 45, 4, 4, 32, true}, {2, 23, 23, 2, 1, 64, false},
        {1, 70, 70, 2, 2, 128, true}, {1, 9, 17, 3, 1, 40, true}, {1, 20, 20, 2, 2, 200, true},
    };
    const acfg big[] = {{2, 300, 300, 4, 2, 64, true}, {1, 130, 333, 8, 2, 128, true}, {1, 257, 257, 4, 1, 64, false}};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) check_attention(&small[i], GQE_F32, 200 + 10 * i);
    if (!g_small)
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) check_attention(&big[i], GQE_F32, 300 + 10 * i);
}

/* bf16 at D = 64 and 128 takes the tensor-core kernels; D = 32 the generic path in bf16. */
static void test_attention_bf16(void **state) {
    (void)state;
    const acfg small[] = {
        {1, 37, 37, 2, 1, 64, true}, {2, 19, 83, 4, 2, 128, true}, {1, 70, 70, 2, 2, 64, false},
        {1, 33, 33, 2, 1, 32, true},
    };
    const acfg big[] = {
        {2, 300, 300, 4, 2, 64, true}, {1, 200, 455, 8, 2, 128, true}, {1, 257, 257, 4, 4, 128, false},
        {1, 513, 513, 2, 1, 64, true},
    };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) check_attention(&small[i], GQE_BF16, 400 + 10 * i);
    if (!g_small)
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) check_attention(&big[i], GQE_BF16, 500 + 10 * i);
}

/* Shapes cuDNN's fused kernels take (bf16, S == T a multiple of 128): the
 * GQE slot heads (H == Hk), dense GQA (16 over 8), the one-head shared
 * attention, D = 128, and no mask. Gradients start nonzero, so cuDNN's
 * overwriting results must be added, as the op's contract says. With
 * GQE_TEST_REQUIRE_CUDNN=1 the test fails unless cuDNN served them. */
static void test_attention_cudnn(void **state) {
    (void)state;
    const acfg small[] = {{1, 128, 128, 2, 2, 64, true}};
    const acfg big[] = {
        {2, 256, 256, 8, 8, 64, true}, {1, 384, 384, 16, 8, 64, true}, {2, 256, 256, 1, 1, 64, true},
        {1, 256, 256, 4, 4, 128, true}, {1, 256, 256, 4, 2, 64, false},
    };
    int64_t before = gqe_cuda_cudnn_attention_calls();
    size_t n = 0;
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++, n++) check_attention(&small[i], GQE_BF16, 700 + 10 * i);
    if (!g_small)
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++, n++) check_attention(&big[i], GQE_BF16, 800 + 10 * i);
    int64_t served = gqe_cuda_cudnn_attention_calls() - before;
    /* per case: a forward and two backwards (accumulating, overwriting) */
    print_message("cuDNN served %lld of %zu attention calls\n", (long long)served, 3 * n);
    const char *req = getenv("GQE_TEST_REQUIRE_CUDNN");
    if (req && !strcmp(req, "1") && served != (int64_t)(3 * n))
        fail_msg("GQE_TEST_REQUIRE_CUDNN=1 but cuDNN served %lld of %zu calls", (long long)served, 3 * n);
}

/* ---- decoding ------------------------------------------------------------------ */
/* Decoding with the KV cache on the GPU (a 3-token prefill, then one token
 * at a time) gives the logits of a full prefill on the GPU: every kind and
 * variant in f32, GQE also in bf16. tests/c/test_nn.c checks the same on
 * the CPU. */
static void check_cache(gqe_attn_kind kind, gqe_variant variant, const char *precision, double tol) {
    enum { V = 19, T = 11 };
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = V; c.dim = 32; c.layers = 2; c.max_seq = 16; c.mlp_hidden = 32;
    c.attn.experts = 4; c.attn.head_dim = 8; c.attn.kind = kind; c.attn.variant = variant;
    c.attn.groups = kind == GQE_ATTN_MHA || kind == GQE_ATTN_MQA ? 0 : 2;   /* implied by the kind */
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, GQE_CUDA));
    CHECK_OK(gqe_fill_normal(&gqe_lm_params(lm)->data, 8, 11, 0.5f));
    CHECK_OK(gqe_lm_set_precision(lm, precision));
    gqe_tensor tok, lg;
    CHECK_OK(gqe_tensor_new4(&tok, GQE_I32, GQE_CPU, 1, T, 0, 0));
    for (int i = 0; i < T; i++) gqe_i32(&tok)[i] = (i * 7 + 3) % V;
    CHECK_OK(gqe_lm_forward(lm, &tok, NULL, 0, NULL, NULL));
    float full[T * V];
    CHECK_OK(gqe_tensor_read_f32(gqe_lm_logits(lm), full, (size_t)(T * V)));
    CHECK_OK(gqe_lm_cache_reset(lm, 1));
    for (int64_t pos = 0, n = 3; pos < T; pos += n, n = 1) {
        gqe_tensor step = gqe_tensor_view4(&tok, (size_t)pos, 1, n, 0, 0);
        CHECK_OK(gqe_tensor_new4(&lg, GQE_F32, GQE_CPU, n, V, 0, 0));
        CHECK_OK(gqe_lm_forward_cached(lm, &step, &lg));
        double err = tu_rel_err(gqe_f32(&lg), full + pos * V, n * V);
        if (!(err <= tol))
            fail_msg("cached decoding (%s, %s, %s) at position %lld: rel err %.3g > %.3g", gqe_attn_kind_name(kind),
                     gqe_variant_name(variant), precision, (long long)pos, err, tol);
        gqe_tensor_free(&lg);
    }
    gqe_tensor_free(&tok);
    gqe_lm_destroy(lm);
}

static void test_kv_cache(void **state) {
    (void)state;
    const gqe_variant variants[] = {GQE_VARIANT_GQE, GQE_VARIANT_HARD_CONCAT, GQE_VARIANT_WEIGHTED_CONCAT};
    /* bf16: both paths round to bf16 at different points (cuBLAS picks its
     * algorithm by row count, and decoding's MLP and head read the f32
     * master weights), so the bound is bf16's noise; a wrong position or a
     * stale cache row errs by O(1). */
    for (int v = 0; v < 3; v++) {
        check_cache(GQE_ATTN_GQE, variants[v], "fp32", 1e-4);
        check_cache(GQE_ATTN_GQE, variants[v], "bf16", 6e-2);
    }
    const gqe_attn_kind dense[] = {GQE_ATTN_GQA, GQE_ATTN_MHA, GQE_ATTN_MQA};
    for (int d = 0; d < 3; d++) check_cache(dense[d], GQE_VARIANT_GQE, "fp32", 1e-4);
}

/* ---- the table ---------------------------------------------------------------- */
/* The CUDA backend implements every op of core/op_list.h. */
static void test_complete_table(void **state) {
    (void)state;
    const gqe_backend *be = gqe_backend_for(GQE_CUDA);
    for (int i = 0; i < GQE_OP_COUNT; i++)
        if (!gqe_backend_supports(be, (gqe_op_id)i)) fail_msg("the cuda backend lacks op %s", gqe_op_name((gqe_op_id)i));
}

/* ---- memory ----------------------------------------------------------------- */
/* A released block returns from the cache on the next request of its size
 * class: the steady-state training step does no cudaMalloc. */
static void test_allocator_reuse(void **state) {
    (void)state;
    const gqe_backend *be = gqe_backend_for(GQE_CUDA);
    void *a = NULL, *b = NULL;
    CHECK_OK(be->alloc(&a, 123457));
    be->release(a);
    CHECK_OK(be->alloc(&b, 123457));
    assert_ptr_equal(a, b);
    be->release(b);
    CHECK_OK(be->synchronize());
}

int main(int argc, char **argv) {
    if (!gqe_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    const char *env = getenv("GQE_TEST_SMALL");
    g_small = env && env[0] == '1';
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--small") == 0) g_small = true;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_copy_cols),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_argmax_correct),
        cmocka_unit_test(test_router),
        cmocka_unit_test(test_router_fixed),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_qkv_grad_pack),
        cmocka_unit_test(test_optim),
        cmocka_unit_test(test_attention_f32),
        cmocka_unit_test(test_attention_bf16),
        cmocka_unit_test(test_attention_cudnn),
        cmocka_unit_test(test_allocator_reuse),
        cmocka_unit_test(test_complete_table),
        cmocka_unit_test(test_kv_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
