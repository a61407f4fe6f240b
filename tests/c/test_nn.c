/* Layer tests: every gradient of GQEAttention (each variant, router and the
 * dense kinds) and of the LM against central finite differences, config
 * validation messages, and KV-cache decoding against a full prefill. */
#include "testutil.h"
#include "nn/lm.h"
#include <string.h>

/* Random values for every parameter, the router included: zero router
 * weights would tie every top-k and make finite differences meaningless. */
static void randomize(gqe_paramset *ps, float std, uint64_t seed) {
    float *p = gqe_f32(&ps->data);
    for (size_t i = 0; i < ps->numel; i++) p[i] = std * gqe_rng_normal_at(seed, 11, i);
}

typedef struct attn_case {
    const char *name;
    gqe_attn_kind kind;
    gqe_variant variant;
    gqe_router_kind router;
    int64_t N, G, k;
    bool rope, causal;
} attn_case;

static double attn_loss(gqe_attn *a, const gqe_tensor *x, const gqe_tensor *dy, const gqe_tensor *tok, float aux_coef) {
    gqe_tensor y;
    CHECK_OK(gqe_tensor_new(&y, GQE_F32, GQE_CPU, 3, x->shape));
    gqe_attn_set_route_calls(a, 0); /* the random router draws the same experts every pass */
    CHECK_OK(gqe_attn_forward(a, &y, x, tok));
    double L = 0;
    for (int64_t i = 0; i < gqe_tensor_numel(&y); i++) L += (double)gqe_f32(&y)[i] * gqe_f32(dy)[i];
    float aux;
    CHECK_OK(gqe_attn_aux(a, &aux));
    if (gqe_attn_aux_trains(a)) L += aux_coef * aux;
    gqe_tensor_free(&y);
    return L;
}

/* Compares analytic and central-difference gradients on a sample of entries. */
static void check_grad(const char *what, float *param, const float *grad, int64_t n, double (*loss)(void *), void *ctx) {
    const float h = 1e-2f;
    double worst = 0, scale = 1e-3;
    int64_t stride = n > 24 ? n / 24 : 1;
    for (int64_t i = 0; i < n; i += stride) {
        float keep = param[i];
        param[i] = keep + h; double lp = loss(ctx);
        param[i] = keep - h; double lm = loss(ctx);
        param[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double err = fabs(fd - grad[i]);
        if (err > worst) worst = err;
        if (fabs(fd) > scale) scale = fabs(fd);
    }
    if (worst / scale > 2e-2) fail_msg("%s: finite-difference mismatch, max error %.3g relative to %.3g", what, worst, scale);
}

typedef struct attn_ctx { gqe_attn *a; gqe_tensor *x, *dy, *tok; float aux_coef; } attn_ctx;
static double attn_loss_cb(void *c) { attn_ctx *t = c; return attn_loss(t->a, t->x, t->dy, t->tok, t->aux_coef); }

static void run_attn_case(const attn_case *c) {
    gqe_attn_config cfg;
    gqe_attn_config_default(&cfg);
    cfg.dim = 16; cfg.experts = c->N; cfg.groups = c->G; cfg.k = c->k; cfg.head_dim = 4;
    cfg.kind = c->kind; cfg.variant = c->variant; cfg.router = c->router;
    cfg.rope = c->rope; cfg.causal = c->causal; cfg.seed = 5;
    gqe_paramset ps;
    gqe_paramset_init(&ps);
    gqe_attn *a;
    CHECK_OK(gqe_attn_create(&a, &cfg, &ps, ""));
    CHECK_OK(gqe_paramset_alloc(&ps, GQE_CPU));
    randomize(&ps, 0.4f, 3);
    int64_t xs[3] = {2, 5, 16}, ts[2] = {2, 5};
    gqe_tensor x = tu_randn(3, xs, 1.0f, 21), dy = tu_randn(3, xs, 1.0f, 22), dx, tok;
    dx = tu_randn(3, xs, 1.0f, 23); /* nonzero: the backward overwrites dx */
    CHECK_OK(gqe_tensor_new(&tok, GQE_I32, GQE_CPU, 2, ts));
    for (int i = 0; i < 10; i++) gqe_i32(&tok)[i] = (i * 7) % 13;
    float aux_coef = 0.3f;
    attn_ctx ctx = {a, &x, &dy, &tok, aux_coef};
    attn_loss(a, &x, &dy, &tok, aux_coef);
    CHECK_OK(gqe_paramset_zero_grad(&ps));
    CHECK_OK(gqe_attn_backward(a, &dx, &dy, aux_coef));
    char what[160];
    snprintf(what, sizeof what, "%s dx", c->name);
    check_grad(what, gqe_f32(&x), gqe_f32(&dx), gqe_tensor_numel(&x), attn_loss_cb, &ctx);
    for (int i = 0; i < ps.count; i++) {
        snprintf(what, sizeof what, "%s %s", c->name, ps.items[i].name);
        check_grad(what, gqe_f32(ps.items[i].value), gqe_f32(ps.items[i].grad), (int64_t)ps.items[i].numel, attn_loss_cb, &ctx);
    }
    gqe_tensor_free(&x); gqe_tensor_free(&dy); gqe_tensor_free(&dx); gqe_tensor_free(&tok);
    gqe_attn_destroy(a);
    gqe_paramset_free(&ps);
}

static void test_attn_gradients(void **state) {
    (void)state;
    static const attn_case cases[] = {
        {"gqe k1 rope", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_SOFTMAX, 4, 2, 1, true, true},
        {"gqe k2 M4", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_SOFTMAX, 8, 2, 2, true, true},
        {"gqe G1 norope", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_SOFTMAX, 4, 1, 2, false, true},
        {"hard_concat", GQE_ATTN_GQE, GQE_VARIANT_HARD_CONCAT, GQE_ROUTER_SOFTMAX, 4, 2, 1, true, true},
        {"weighted_concat", GQE_ATTN_GQE, GQE_VARIANT_WEIGHTED_CONCAT, GQE_ROUTER_SOFTMAX, 4, 2, 1, true, true},
        {"sigmoid", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_SIGMOID, 4, 2, 1, true, true},
        {"balanced", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_BALANCED, 4, 2, 1, true, true},
        {"hash", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_HASH, 4, 2, 1, true, true},
        {"random k2", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_RANDOM, 8, 2, 2, true, true},
        {"noncausal", GQE_ATTN_GQE, GQE_VARIANT_GQE, GQE_ROUTER_SOFTMAX, 4, 2, 1, true, false},
        {"gqa", GQE_ATTN_GQA, GQE_VARIANT_GQE, GQE_ROUTER_SOFTMAX, 4, 2, 1, true, true},
        {"mqa", GQE_ATTN_MQA, GQE_VARIANT_GQE, GQE_ROUTER_SOFTMAX, 4, 0, 1, true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_attn_case(&cases[i]);
}

static void expect_invalid(gqe_attn_config c, const char *needle) {
    gqe_status st = gqe_attn_config_validate(&c);
    assert_int_equal(st, GQE_ERR_ARG);
    if (!strstr(gqe_last_error(), needle)) fail_msg("message '%s' lacks '%s'", gqe_last_error(), needle);
}

static void test_attn_config_errors(void **state) {
    (void)state;
    gqe_attn_config c;
    gqe_attn_config_default(&c);
    c.dim = 32; c.experts = 8; c.groups = 4;
    gqe_attn_config bad = c; bad.groups = 3;
    expect_invalid(bad, "divisible by groups");
    bad = c; bad.k = 3;
    expect_invalid(bad, "k must be in 1..2");
    bad = c; bad.k = 0;
    expect_invalid(bad, "k must be in 1..2");
    bad = c; bad.head_dim = 5;
    expect_invalid(bad, "head_dim must be even");
    gqe_variant v;
    assert_int_equal(gqe_variant_parse("soft", &v), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "hard_concat"));
    gqe_router_kind r;
    assert_int_equal(gqe_router_parse("top2", &r), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "balanced"));
    gqe_attn_kind k;
    assert_int_equal(gqe_attn_kind_parse("dense", &k), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "mqa"));
}

typedef struct lm_ctx { gqe_lm *lm; gqe_tensor *tok, *tgt; } lm_ctx;
static double lm_loss_cb(void *c) {
    lm_ctx *t = c;
    float loss;
    CHECK_OK(gqe_lm_forward(t->lm, t->tok, t->tgt, 0.1f, &loss, NULL));
    return loss;
}

static gqe_lm *small_lm(gqe_mlp_kind mlp, bool tied, gqe_attn_kind kind) {
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = 23; c.dim = 16; c.layers = 2; c.max_seq = 16; c.mlp = mlp; c.tied = tied; c.mlp_hidden = 24;
    c.attn.experts = 4; c.attn.groups = 2; c.attn.head_dim = 4; c.attn.kind = kind; c.seed = 9;
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, GQE_CPU));
    return lm;
}

static void run_lm_grad(gqe_mlp_kind mlp, bool tied, gqe_attn_kind kind) {
    gqe_lm *lm = small_lm(mlp, tied, kind);
    randomize(gqe_lm_params(lm), 0.3f, 4);
    gqe_paramset *ps = gqe_lm_params(lm);
    for (int i = 0; i < ps->count; i++)    /* norms near one, like trained models */
        if (ps->items[i].role == GQE_PARAM_NORM) {
            float *w = gqe_f32(ps->items[i].value);
            for (size_t j = 0; j < ps->items[i].numel; j++) w[j] += 1.0f;
        }
    int64_t shp[2] = {2, 6};
    gqe_tensor tok, tgt;
    CHECK_OK(gqe_tensor_new(&tok, GQE_I32, GQE_CPU, 2, shp));
    CHECK_OK(gqe_tensor_new(&tgt, GQE_I32, GQE_CPU, 2, shp));
    for (int i = 0; i < 12; i++) { gqe_i32(&tok)[i] = (i * 5 + 1) % 23; gqe_i32(&tgt)[i] = i == 3 ? -1 : (i * 3 + 2) % 23; }
    lm_ctx ctx = {lm, &tok, &tgt};
    lm_loss_cb(&ctx);
    CHECK_OK(gqe_paramset_zero_grad(ps));
    CHECK_OK(gqe_lm_backward(lm));
    /* backward consumed the forward; copy the gradients before the FD passes */
    float *g = malloc(ps->numel * sizeof *g);
    memcpy(g, gqe_f32(&ps->grad), ps->numel * sizeof *g);
    for (int i = 0; i < ps->count; i++) {
        char what[160];
        snprintf(what, sizeof what, "lm(%s,%s,%s) %s", gqe_mlp_name(mlp), tied ? "tied" : "untied",
                 gqe_attn_kind_name(kind), ps->items[i].name);
        check_grad(what, gqe_f32(ps->items[i].value), g + ps->items[i].offset, (int64_t)ps->items[i].numel, lm_loss_cb, &ctx);
    }
    free(g);
    gqe_tensor_free(&tok); gqe_tensor_free(&tgt);
    gqe_lm_destroy(lm);
}

static void test_lm_gradients(void **state) {
    (void)state;
    run_lm_grad(GQE_MLP_GELU, true, GQE_ATTN_GQE);
    run_lm_grad(GQE_MLP_SWIGLU, false, GQE_ATTN_GQE);
    run_lm_grad(GQE_MLP_GELU, false, GQE_ATTN_GQA);
}

/* Step-by-step decoding with the cache must give the logits of a full prefill. */
static void run_cache(gqe_attn_kind kind, gqe_variant variant, gqe_router_kind router, int64_t k) {
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = 19; c.dim = 16; c.layers = 2; c.max_seq = 12; c.mlp_hidden = 16;
    c.attn.experts = 4; c.attn.head_dim = 4; c.attn.kind = kind; c.attn.variant = variant;
    c.attn.router = router; c.attn.k = k;
    c.attn.groups = kind == GQE_ATTN_MHA || kind == GQE_ATTN_MQA ? 0 : 2;   /* implied by the kind */
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, GQE_CPU));
    randomize(gqe_lm_params(lm), 0.5f, 8);
    const int T = 9;
    int64_t shp[2] = {1, T};
    gqe_tensor tok, step, lg;
    CHECK_OK(gqe_tensor_new(&tok, GQE_I32, GQE_CPU, 2, shp));
    for (int i = 0; i < T; i++) gqe_i32(&tok)[i] = (i * 7 + 3) % 19;
    CHECK_OK(gqe_lm_forward(lm, &tok, NULL, 0, NULL, NULL));
    const float *full = gqe_f32(gqe_lm_logits(lm));
    CHECK_OK(gqe_lm_cache_reset(lm, 1));
    /* first a 3-token chunk, then one token at a time */
    int64_t pos = 0;
    while (pos < T) {
        int64_t n = pos == 0 ? 3 : 1;
        step = gqe_tensor_view4(&tok, (size_t)pos, 1, n, 0, 0);
        CHECK_OK(gqe_tensor_new4(&lg, GQE_F32, GQE_CPU, n, 19, 0, 0));
        CHECK_OK(gqe_lm_forward_cached(lm, &step, &lg));
        ASSERT_CLOSE(gqe_f32(&lg), full + pos * 19, n * 19, 1e-4);
        gqe_tensor_free(&lg);
        pos += n;
    }
    int32_t out[12];
    gqe_sample_opts greedy = {0, 0, 1};
    CHECK_OK(gqe_lm_generate(lm, gqe_i32(&tok), 4, 5, &greedy, out));
    for (int i = 0; i < 4; i++) assert_int_equal(out[i], gqe_i32(&tok)[i]);
    for (int i = 4; i < 9; i++) assert_true(out[i] >= 0 && out[i] < 19);
    gqe_tensor_free(&tok);
    gqe_lm_destroy(lm);
}

/* Every kind, every variant, and the routers that route a token the same
 * way whatever else is in the batch (random routing draws per call). */
static void test_kv_cache(void **state) {
    (void)state;
    const gqe_variant variants[] = {GQE_VARIANT_GQE, GQE_VARIANT_HARD_CONCAT, GQE_VARIANT_WEIGHTED_CONCAT};
    for (int v = 0; v < 3; v++)
        for (int64_t k = 1; k <= 2; k++) run_cache(GQE_ATTN_GQE, variants[v], GQE_ROUTER_SOFTMAX, k);
    const gqe_router_kind routers[] = {GQE_ROUTER_SIGMOID, GQE_ROUTER_BALANCED, GQE_ROUTER_HASH};
    for (int r = 0; r < 3; r++) run_cache(GQE_ATTN_GQE, GQE_VARIANT_GQE, routers[r], 1);
    const gqe_attn_kind dense[] = {GQE_ATTN_GQA, GQE_ATTN_MHA, GQE_ATTN_MQA};
    for (int d = 0; d < 3; d++) run_cache(dense[d], GQE_VARIANT_GQE, GQE_ROUTER_SOFTMAX, 1);
}

static void test_lm_bad_tokens(void **state) {
    (void)state;
    gqe_lm *lm = small_lm(GQE_MLP_GELU, true, GQE_ATTN_GQE);
    int64_t shp[2] = {1, 4};
    gqe_tensor tok;
    CHECK_OK(gqe_tensor_new(&tok, GQE_I32, GQE_CPU, 2, shp));
    for (int i = 0; i < 4; i++) gqe_i32(&tok)[i] = i;
    gqe_i32(&tok)[2] = 99;
    assert_int_equal(gqe_lm_forward(lm, &tok, NULL, 0, NULL, NULL), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "outside the vocabulary"));
    gqe_tensor_free(&tok);
    gqe_lm_destroy(lm);
}

/* Attention keeps outputs and log-sum-exp only, so a 4-layer model trains at
 * sequence length 2048 with memory linear in S. */
static void test_long_sequence(void **state) {
    (void)state;
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = 64; c.dim = 32; c.layers = 4; c.max_seq = 2048; c.mlp_hidden = 64;
    c.attn.experts = 4; c.attn.groups = 2; c.attn.head_dim = 8;
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, GQE_CPU));
    int64_t shp[2] = {1, 2048};
    gqe_tensor tok, tgt;
    CHECK_OK(gqe_tensor_new(&tok, GQE_I32, GQE_CPU, 2, shp));
    CHECK_OK(gqe_tensor_new(&tgt, GQE_I32, GQE_CPU, 2, shp));
    for (int i = 0; i < 2048; i++) { gqe_i32(&tok)[i] = (i * 13) % 64; gqe_i32(&tgt)[i] = (i * 13 + 13) % 64; }
    float loss;
    CHECK_OK(gqe_lm_forward(lm, &tok, &tgt, 0.01f, &loss, NULL));
    assert_true(isfinite(loss) && loss > 0);
    /* the loss pass wrote the logits' gradient over them: no logits to hand
     * out, while the hits it marked still give the accuracy */
    assert_null(gqe_lm_logits(lm));
    int64_t correct = -1, counted = -1;
    CHECK_OK(gqe_lm_accuracy(lm, &correct, &counted));
    assert_int_equal(counted, 2048);
    assert_true(correct >= 0 && correct <= counted);
    CHECK_OK(gqe_lm_backward(lm));
    double gn;
    CHECK_OK(gqe_sumsq(&gqe_lm_params(lm)->grad, &gn));
    assert_true(isfinite(gn) && gn > 0);
    gqe_tensor_free(&tok);
    gqe_tensor_free(&tgt);
    gqe_lm_destroy(lm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attn_config_errors),
        cmocka_unit_test(test_attn_gradients),
        cmocka_unit_test(test_lm_gradients),
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_lm_bad_tokens),
        cmocka_unit_test(test_long_sequence),
    };
    return cmocka_run_group_tests_name("nn", tests, NULL, NULL);
}
