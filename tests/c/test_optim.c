/* Optimizers, clipping and schedules against plain loops of PyTorch's
 * formulas (torch.optim.AdamW, torch.optim.SGD, clip_grad_norm_). */
#include "testutil.h"
#include "optim.h"
#include "nn/params.h"
#include <string.h>

/* A small model: parameters of every role, declared with weights, norms and
 * embeddings interleaved so decay runs have to split. */
enum { NPARAM = 5 };
typedef struct toy {
    gqe_paramset ps;
    gqe_tensor value[NPARAM], grad[NPARAM];
} toy;

static const struct { const char *name; int64_t d0, d1; gqe_param_role role; } toy_params[NPARAM] = {
    {"w1", 4, 6, GQE_PARAM_WEIGHT},
    {"norm", 6, 0, GQE_PARAM_NORM},
    {"w2", 6, 5, GQE_PARAM_WEIGHT},
    {"emb", 7, 6, GQE_PARAM_EMBEDDING},
    {"router", 3, 6, GQE_PARAM_ROUTER},
};

static void toy_init(toy *t, const int *order, uint64_t seed) {
    memset(t, 0, sizeof *t);
    gqe_paramset_init(&t->ps);
    for (int j = 0; j < NPARAM; j++) {
        int i = order ? order[j] : j;
        int64_t shape[2] = {toy_params[i].d0, toy_params[i].d1};
        CHECK_OK(gqe_paramset_add(&t->ps, toy_params[i].name, shape[1] ? 2 : 1, shape, toy_params[i].role,
                                  &t->value[i], &t->grad[i], NULL));
    }
    CHECK_OK(gqe_paramset_alloc(&t->ps, GQE_CPU));
    /* Parameters only: alignment padding between them stays zero, as a
     * model leaves it. */
    float *p = gqe_f32(&t->ps.data);
    for (int j = 0; j < t->ps.count; j++)
        for (size_t k = 0; k < t->ps.items[j].numel; k++) {
            size_t i = t->ps.items[j].offset + k;
            p[i] = gqe_rng_normal_at(seed, 1, i);
        }
}

/* Gradients of step s: deterministic, different every step; padding zero. */
static void toy_grads(toy *t, int s) {
    float *g = gqe_f32(&t->ps.grad);
    for (int j = 0; j < t->ps.count; j++)
        for (size_t k = 0; k < t->ps.items[j].numel; k++) {
            size_t i = t->ps.items[j].offset + k;
            g[i] = 0.5f * gqe_rng_normal_at(99, (uint64_t)s, i);
        }
}

/* Elements of the flat buffer that belong to no parameter. */
static void assert_padding_zero(const toy *t) {
    char *owned = calloc(t->ps.numel ? t->ps.numel : 1, 1);
    for (int j = 0; j < t->ps.count; j++) memset(owned + t->ps.items[j].offset, 1, t->ps.items[j].numel);
    const float *p = gqe_f32(&t->ps.data);
    for (size_t i = 0; i < t->ps.numel; i++)
        if (!owned[i] && p[i] != 0.0f) fail_msg("padding element %zu changed to %g", i, (double)p[i]);
    free(owned);
}

static void toy_free(toy *t) { gqe_paramset_free(&t->ps); }

#define NEAR(a, b) assert_float_equal((a), (b), 1e-6)

/* Two identical toys: one runs the reference sequence, one the path under test. */
static void twin_toys(toy *a, toy *b, uint64_t seed) {
    toy_init(a, NULL, seed);
    toy_init(b, NULL, seed);
}

/* Per-element weight decay as the optimizer should apply it. */
static void decay_mask(const toy *t, const gqe_optim_config *c, float *wd) {
    for (size_t i = 0; i < t->ps.numel; i++) wd[i] = 0.0f;
    for (int j = 0; j < t->ps.count; j++) {
        const gqe_param *p = &t->ps.items[j];
        float d = gqe_optim_decays_role(c, p->role) ? c->weight_decay : 0.0f;
        for (size_t k = 0; k < p->numel; k++) wd[p->offset + k] = d;
    }
}

/* Per-element factor on lr: router_lr_scale on router weights, as a
 * parameter group of its own with lr * scale would have in PyTorch. */
static void lr_scale_mask(const toy *t, const gqe_optim_config *c, float *ls) {
    for (size_t i = 0; i < t->ps.numel; i++) ls[i] = 1.0f;
    for (int j = 0; j < t->ps.count; j++) {
        const gqe_param *p = &t->ps.items[j];
        float f = p->role == GQE_PARAM_ROUTER ? c->router_lr_scale : 1.0f;
        for (size_t k = 0; k < p->numel; k++) ls[p->offset + k] = f;
    }
}

/* torch.optim.AdamW, one step t (from 1), written as PyTorch does; element i
 * in a group of lr * ls[i] (ls NULL: all 1). */
static void ref_adamw(float *p, const float *g, float *m, float *v, const float *wd, const float *ls, size_t n,
                      float lr0, float b1, float b2, float eps, int t) {
    float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
    for (size_t i = 0; i < n; i++) {
        float lr = ls ? lr0 * ls[i] : lr0;
        p[i] *= 1.0f - lr * wd[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / sqrtf(bc2) + eps;
        p[i] -= (lr / bc1) * m[i] / denom;
    }
}

/* torch.optim.SGD (dampening 0), one step t (from 1); lr * ls[i] as above. */
static void ref_sgd(float *p, const float *g, float *buf, const float *wd, const float *ls, size_t n,
                    float lr0, float mom, bool nesterov, int t) {
    for (size_t i = 0; i < n; i++) {
        float lr = ls ? lr0 * ls[i] : lr0;
        float d = g[i] + wd[i] * p[i];
        if (mom != 0.0f) {
            buf[i] = t == 1 ? d : mom * buf[i] + d;
            d = nesterov ? d + mom * buf[i] : buf[i];
        }
        p[i] -= lr * d;
    }
}

static void run_adamw_case(const gqe_optim_config *c, const int *order) {
    toy t;
    toy_init(&t, order, 3);
    size_t n = t.ps.numel;
    float *p = malloc(n * 4), *m = calloc(n, 4), *v = calloc(n, 4), *wd = malloc(n * 4), *ls = malloc(n * 4);
    memcpy(p, gqe_f32(&t.ps.data), n * 4);
    decay_mask(&t, c, wd);
    lr_scale_mask(&t, c, ls);
    gqe_optimizer *opt;
    CHECK_OK(gqe_optim_create(&opt, c, &t.ps));
    const float lrs[] = {1e-2f, 5e-3f, 2e-2f, 1e-3f, 1e-2f, 0.0f};
    for (int s = 1; s <= 6; s++) {
        toy_grads(&t, s);
        ref_adamw(p, gqe_f32(&t.ps.grad), m, v, wd, ls, n, lrs[s - 1], c->beta1, c->beta2, c->eps, s);
        CHECK_OK(gqe_optim_step(opt, lrs[s - 1]));
        assert_int_equal(gqe_optim_step_count(opt), s);
        ASSERT_CLOSE(gqe_f32(&t.ps.data), p, (int64_t)n, 1e-5);
    }
    gqe_tensor *em, *ev;
    CHECK_OK(gqe_optim_state_find(opt, "exp_avg", &em));
    CHECK_OK(gqe_optim_state_find(opt, "exp_avg_sq", &ev));
    ASSERT_CLOSE(gqe_f32(em), m, (int64_t)n, 1e-5);
    ASSERT_CLOSE(gqe_f32(ev), v, (int64_t)n, 1e-5);
    assert_padding_zero(&t);
    gqe_optim_free(opt);
    free(p); free(m); free(v); free(wd); free(ls);
    toy_free(&t);
}

static void test_adamw_no_decay(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    run_adamw_case(&c, NULL);
}

static void test_adamw_decay_excludes_norms_and_embeddings(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    c.weight_decay = 0.1f;
    c.beta2 = 0.999f;
    run_adamw_case(&c, NULL);
    /* The mask really differs by role: the norm's gain is not decayed. */
    assert_false(gqe_optim_decays_role(&c, GQE_PARAM_NORM));
    assert_false(gqe_optim_decays_role(&c, GQE_PARAM_EMBEDDING));
    assert_true(gqe_optim_decays_role(&c, GQE_PARAM_ROUTER));
    assert_true(gqe_optim_decays_role(&c, GQE_PARAM_WEIGHT));
}

static void test_adamw_decay_everything(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    c.weight_decay = 0.05f;
    c.decay_norms = c.decay_embeddings = true;
    c.decay_router = false;
    run_adamw_case(&c, NULL);
}

/* A norm parameter with zero gradient and wd > 0 must not move when norms are
 * excluded, and must shrink by exactly (1 - lr wd) when they are included. */
static void test_decay_exclusion_exact(void **state) {
    (void)state;
    for (int include = 0; include <= 1; include++) {
        toy t;
        toy_init(&t, NULL, 5);
        gqe_optim_config c = gqe_optim_config_default();
        c.weight_decay = 0.5f;
        c.decay_norms = include;
        gqe_optimizer *opt;
        CHECK_OK(gqe_optim_create(&opt, &c, &t.ps));
        gqe_param *norm = gqe_paramset_find(&t.ps, "norm");
        assert_non_null(norm);
        float before[6];
        memcpy(before, gqe_f32(&t.ps.data) + norm->offset, sizeof before);
        toy_grads(&t, 1);
        memset(gqe_f32(&t.ps.grad) + norm->offset, 0, sizeof before);
        CHECK_OK(gqe_optim_step(opt, 0.1f));
        const float *after = gqe_f32(&t.ps.data) + norm->offset;
        for (int i = 0; i < 6; i++) {
            float want = include ? before[i] * (1.0f - 0.1f * 0.5f) : before[i];
            assert_float_equal(after[i], want, 1e-6f * (1.0f + fabsf(want)));
        }
        gqe_optim_free(opt);
        toy_free(&t);
    }
}

static void test_runs_coalesce(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    c.weight_decay = 0.1f;
    /* Interleaved roles: w1 | norm | w2 | emb | router -> five runs. Declared
     * as w1, w2, router, norm, emb: decayed then not -> two runs. */
    const int grouped[NPARAM] = {0, 2, 4, 1, 3};
    toy a, b;
    toy_init(&a, NULL, 1);
    toy_init(&b, grouped, 1);
    gqe_optimizer *oa, *ob;
    CHECK_OK(gqe_optim_create(&oa, &c, &a.ps));
    CHECK_OK(gqe_optim_create(&ob, &c, &b.ps));
    assert_int_equal(gqe_optim_run_count(oa), 5);
    assert_int_equal(gqe_optim_run_count(ob), 2);
    gqe_optim_free(oa);
    gqe_optim_free(ob);
    /* No decay at all: one run over the whole model, padding included. */
    c.weight_decay = 0.0f;
    CHECK_OK(gqe_optim_create(&oa, &c, &a.ps));
    assert_int_equal(gqe_optim_run_count(oa), 1);
    gqe_optim_free(oa);
    toy_free(&a);
    toy_free(&b);
    /* The grouped order gives the same numbers as the reference. */
    c.weight_decay = 0.1f;
    run_adamw_case(&c, grouped);
}

static void run_sgd_case_scaled(float mom, bool nesterov, float wd, float router_lr_scale) {
    toy t;
    toy_init(&t, NULL, 7);
    size_t n = t.ps.numel;
    gqe_optim_config c = gqe_optim_config_default();
    c.kind = GQE_OPTIM_SGD;
    c.momentum = mom;
    c.nesterov = nesterov;
    c.weight_decay = wd;
    c.router_lr_scale = router_lr_scale;
    float *p = malloc(n * 4), *buf = calloc(n, 4), *mask = malloc(n * 4), *ls = malloc(n * 4);
    memcpy(p, gqe_f32(&t.ps.data), n * 4);
    decay_mask(&t, &c, mask);
    lr_scale_mask(&t, &c, ls);
    gqe_optimizer *opt;
    CHECK_OK(gqe_optim_create(&opt, &c, &t.ps));
    assert_int_equal(gqe_optim_state_count(opt), 1);
    assert_string_equal(gqe_optim_state_name(opt, 0), "momentum_buffer");
    for (int s = 1; s <= 5; s++) {
        toy_grads(&t, s);
        ref_sgd(p, gqe_f32(&t.ps.grad), buf, mask, ls, n, 0.05f, mom, nesterov, s);
        CHECK_OK(gqe_optim_step(opt, 0.05f));
        ASSERT_CLOSE(gqe_f32(&t.ps.data), p, (int64_t)n, 1e-5);
    }
    if (mom != 0.0f) ASSERT_CLOSE(gqe_f32(gqe_optim_state_tensor(opt, 0)), buf, (int64_t)n, 1e-5);
    assert_padding_zero(&t);
    gqe_optim_free(opt);
    free(p); free(buf); free(mask); free(ls);
    toy_free(&t);
}
static void run_sgd_case(float mom, bool nesterov, float wd) { run_sgd_case_scaled(mom, nesterov, wd, 1.0f); }

static void test_sgd_plain(void **state) { (void)state; run_sgd_case(0.0f, false, 0.0f); }
static void test_sgd_momentum(void **state) { (void)state; run_sgd_case(0.9f, false, 0.01f); }
static void test_sgd_nesterov(void **state) { (void)state; run_sgd_case(0.9f, true, 0.01f); }

/* router_lr_scale: router weights step (and decay) at lr * scale, everything
 * else at lr; the router gets a run of its own even where its decay matches
 * its neighbours'. */
static void test_router_lr_scale(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    c.weight_decay = 0.1f;
    c.router_lr_scale = 0.1f;
    NEAR(gqe_optim_lr_scale_role(&c, GQE_PARAM_ROUTER), 0.1f);
    NEAR(gqe_optim_lr_scale_role(&c, GQE_PARAM_WEIGHT), 1.0f);
    run_adamw_case(&c, NULL);
    const int grouped[NPARAM] = {0, 2, 4, 1, 3};   /* w1, w2, router, norm, emb */
    run_adamw_case(&c, grouped);
    toy t;
    toy_init(&t, grouped, 1);
    gqe_optimizer *opt;
    CHECK_OK(gqe_optim_create(&opt, &c, &t.ps));
    assert_int_equal(gqe_optim_run_count(opt), 3);   /* w1 w2 | router | norm emb */
    gqe_optim_free(opt);
    c.router_lr_scale = 1.0f;
    CHECK_OK(gqe_optim_create(&opt, &c, &t.ps));
    assert_int_equal(gqe_optim_run_count(opt), 2);
    gqe_optim_free(opt);
    /* scale 0 freezes the router: no step, no decay */
    c.router_lr_scale = 0.0f;
    CHECK_OK(gqe_optim_create(&opt, &c, &t.ps));
    gqe_param *r = gqe_paramset_find(&t.ps, "router");
    assert_non_null(r);
    float before[18];
    memcpy(before, gqe_f32(&t.ps.data) + r->offset, sizeof before);
    toy_grads(&t, 1);
    CHECK_OK(gqe_optim_step(opt, 0.1f));
    assert_memory_equal(before, gqe_f32(&t.ps.data) + r->offset, sizeof before);
    gqe_optim_free(opt);
    toy_free(&t);
    run_sgd_case_scaled(0.9f, false, 0.01f, 0.25f);
}

/* Saving state, step count into a second optimizer, and continuing, gives the
 * same parameters as never stopping. */
static void test_state_restore(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    c.weight_decay = 0.1f;
    toy a, b;
    gqe_optimizer *oa, *ob;
    twin_toys(&a, &b, 11);
    CHECK_OK(gqe_optim_create(&oa, &c, &a.ps));
    for (int s = 1; s <= 3; s++) { toy_grads(&a, s); CHECK_OK(gqe_optim_step(oa, 1e-2f)); }
    CHECK_OK(gqe_optim_create(&ob, &c, &b.ps));
    CHECK_OK(gqe_tensor_copy(&b.ps.data, &a.ps.data));
    for (int i = 0; i < gqe_optim_state_count(oa); i++) {
        gqe_tensor *dst;
        CHECK_OK(gqe_optim_state_find(ob, gqe_optim_state_name(oa, i), &dst));
        CHECK_OK(gqe_tensor_copy(dst, gqe_optim_state_tensor(oa, i)));
    }
    CHECK_OK(gqe_optim_set_step_count(ob, gqe_optim_step_count(oa)));
    for (int s = 4; s <= 5; s++) {
        toy_grads(&a, s); CHECK_OK(gqe_optim_step(oa, 1e-2f));
        toy_grads(&b, s); CHECK_OK(gqe_optim_step(ob, 1e-2f));
    }
    assert_memory_equal(gqe_f32(&a.ps.data), gqe_f32(&b.ps.data), a.ps.numel * 4);
    assert_int_equal(gqe_optim_step_count(ob), 5);
    assert_int_equal(gqe_optim_set_step_count(ob, -1), GQE_ERR_ARG);
    gqe_tensor *x;
    assert_int_equal(gqe_optim_state_find(ob, "momentum_buffer", &x), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "exp_avg, exp_avg_sq"));
    assert_int_equal(gqe_optim_state_tensor(ob, 0)->shape[0], (int64_t)b.ps.numel);
    gqe_optim_free(oa);
    gqe_optim_free(ob);
    toy_free(&a);
    toy_free(&b);
}

static void test_create_errors(void **state) {
    (void)state;
    gqe_paramset ps;
    gqe_paramset_init(&ps);
    gqe_optim_config c = gqe_optim_config_default();
    gqe_optimizer *opt = (gqe_optimizer *)&ps;
    assert_int_equal(gqe_optim_create(&opt, &c, &ps), GQE_ERR_ARG);
    assert_null(opt);
    assert_non_null(strstr(gqe_last_error(), "gqe_paramset_alloc"));
    toy t;
    toy_init(&t, NULL, 1);
    c.beta1 = -0.1f;
    assert_int_equal(gqe_optim_create(&opt, &c, &t.ps), GQE_ERR_ARG);
    assert_null(opt);
    c = gqe_optim_config_default();
    CHECK_OK(gqe_optim_create(&opt, &c, &t.ps));
    assert_int_equal(gqe_optim_step(opt, -1.0f), GQE_ERR_ARG);
    assert_int_equal(gqe_optim_step_count(opt), 0);
    assert_int_equal(gqe_optim_step(opt, NAN), GQE_ERR_ARG);
    CHECK_OK(gqe_optim_step(opt, 0.25f));
    assert_float_equal(gqe_optim_lr(opt), 0.25f, 0);
    gqe_optim_free(opt);
    gqe_optim_free(NULL);
    toy_free(&t);
}

/* ---- clipping ----------------------------------------------------------- */

static double grad_norm(const toy *t) {
    double s = 0;
    const float *g = gqe_f32(&t->ps.grad);
    for (size_t i = 0; i < t->ps.numel; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

static void test_clip(void **state) {
    (void)state;
    toy t;
    toy_init(&t, NULL, 2);
    size_t n = t.ps.numel;
    float *orig = malloc(n * 4);
    toy_grads(&t, 1);
    memcpy(orig, gqe_f32(&t.ps.grad), n * 4);
    double want = grad_norm(&t);
    float norm = -1;

    /* Below max: measured, untouched. */
    CHECK_OK(gqe_clip_grad_norm(&t.ps, (float)want * 2.0f, &norm));
    assert_float_equal(norm, want, 1e-5 * want);
    assert_memory_equal(gqe_f32(&t.ps.grad), orig, n * 4);

    /* max_norm <= 0: only measure. */
    CHECK_OK(gqe_clip_grad_norm(&t.ps, 0.0f, &norm));
    assert_float_equal(norm, want, 1e-5 * want);
    assert_memory_equal(gqe_f32(&t.ps.grad), orig, n * 4);

    /* Above max: scaled by max / (norm + 1e-6), norm returned before clipping. */
    float max_norm = (float)want / 4.0f;
    CHECK_OK(gqe_clip_grad_norm(&t.ps, max_norm, &norm));
    assert_float_equal(norm, want, 1e-5 * want);
    float coef = max_norm / (norm + 1e-6f);
    for (size_t i = 0; i < n; i++) orig[i] *= coef;
    ASSERT_CLOSE(gqe_f32(&t.ps.grad), orig, (int64_t)n, 1e-6);
    assert_float_equal(grad_norm(&t), max_norm, 1e-5 * max_norm);
    CHECK_OK(gqe_clip_grad_norm(&t.ps, max_norm, NULL)); /* NULL norm_out is fine */

    /* Non-finite norms propagate and nothing is scaled. */
    toy_grads(&t, 2);
    gqe_f32(&t.ps.grad)[3] = NAN;
    memcpy(orig, gqe_f32(&t.ps.grad), n * 4);
    CHECK_OK(gqe_clip_grad_norm(&t.ps, 1.0f, &norm));
    assert_true(isnan(norm));
    assert_float_equal(gqe_f32(&t.ps.grad)[0], orig[0], 0);
    gqe_f32(&t.ps.grad)[3] = INFINITY;
    CHECK_OK(gqe_clip_grad_norm(&t.ps, 1.0f, &norm));
    assert_true(isinf(norm));
    assert_float_equal(gqe_f32(&t.ps.grad)[0], orig[0], 0);

    /* Zero gradients: norm 0, no division trouble. */
    CHECK_OK(gqe_paramset_zero_grad(&t.ps));
    CHECK_OK(gqe_clip_grad_norm(&t.ps, 1.0f, &norm));
    assert_float_equal(norm, 0.0f, 0);
    free(orig);
    toy_free(&t);
}

/* gqe_optim_clip folds the coefficient into the next step: the parameters
 * end bitwise where clip-then-step puts them, the gradients stay untouched,
 * and zero_grad drops a pending coefficient. */
static void test_optim_clip(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    c.weight_decay = 0.1f;
    for (int kind = 0; kind < 2; kind++) {
        c.kind = kind ? GQE_OPTIM_SGD : GQE_OPTIM_ADAMW;
        c.momentum = 0.9f;
        toy a, b;
        gqe_optimizer *oa, *ob;
        twin_toys(&a, &b, 4);
        CHECK_OK(gqe_optim_create(&oa, &c, &a.ps));
        CHECK_OK(gqe_optim_create(&ob, &c, &b.ps));
        size_t n = a.ps.numel;
        float *before = malloc(n * 4);
        for (int s = 1; s <= 3; s++) {
            toy_grads(&a, s);
            toy_grads(&b, s);
            float na, nb, max_norm = (float)grad_norm(&a) / 3.0f;
            CHECK_OK(gqe_clip_grad_norm(&a.ps, max_norm, &na));
            memcpy(before, gqe_f32(&b.ps.grad), n * 4);
            CHECK_OK(gqe_optim_clip(ob, max_norm, &nb));
            assert_float_equal(na, nb, 0);
            assert_memory_equal(gqe_f32(&b.ps.grad), before, n * 4);
            CHECK_OK(gqe_optim_step(oa, 1e-2f));
            CHECK_OK(gqe_optim_step(ob, 1e-2f));
            assert_memory_equal(gqe_f32(&a.ps.data), gqe_f32(&b.ps.data), n * 4);
        }
        /* a clip whose step never came is dropped by zero_grad */
        CHECK_OK(gqe_optim_clip(ob, 1e-3f, NULL));
        CHECK_OK(gqe_optim_zero_grad(ob));
        toy_grads(&a, 9);
        toy_grads(&b, 9);
        CHECK_OK(gqe_optim_step(oa, 1e-2f));
        CHECK_OK(gqe_optim_step(ob, 1e-2f));
        assert_memory_equal(gqe_f32(&a.ps.data), gqe_f32(&b.ps.data), n * 4);
        free(before);
        gqe_optim_free(oa);
        gqe_optim_free(ob);
        toy_free(&a);
        toy_free(&b);
    }
}

/* ---- schedules ---------------------------------------------------------- */

static float sched(gqe_schedule_kind kind, int64_t warmup, int64_t total, float min_lr, float decay_frac,
                   int64_t step) {
    gqe_schedule_config c = gqe_schedule_config_default();
    c.kind = kind; c.warmup = warmup; c.total = total; c.min_lr = min_lr; c.decay_frac = decay_frac;
    CHECK_OK(gqe_schedule_config_validate(&c));
    return gqe_schedule_lr(&c, 2.0f, step);
}


static void test_schedule_constant(void **state) {
    (void)state;
    NEAR(sched(GQE_SCHEDULE_CONSTANT, 10, 0, 0.1f, 0.2f, 0), 2.0f * 1 / 10);
    NEAR(sched(GQE_SCHEDULE_CONSTANT, 10, 0, 0.1f, 0.2f, 4), 2.0f * 5 / 10);
    NEAR(sched(GQE_SCHEDULE_CONSTANT, 10, 0, 0.1f, 0.2f, 9), 2.0f);
    NEAR(sched(GQE_SCHEDULE_CONSTANT, 10, 0, 0.1f, 0.2f, 10), 2.0f);
    NEAR(sched(GQE_SCHEDULE_CONSTANT, 10, 0, 0.1f, 0.2f, 100000), 2.0f);
    NEAR(sched(GQE_SCHEDULE_CONSTANT, 0, 0, 0.1f, 0.2f, 0), 2.0f);
    NEAR(sched(GQE_SCHEDULE_CONSTANT, 10, 0, 0.1f, 0.2f, -5), 2.0f * 1 / 10);
    gqe_schedule_config d = gqe_schedule_config_default();
    assert_int_equal(d.kind, GQE_SCHEDULE_CONSTANT);
    NEAR(d.min_lr, 0.1f);
    NEAR(d.decay_frac, 0.2f);
}

static void test_schedule_cosine(void **state) {
    (void)state;
    /* warmup 10, total 110: decay over 100 steps from step 10. */
    NEAR(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, 0), 0.2f);
    NEAR(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, 9), 2.0f);
    NEAR(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, 10), 2.0f);
    NEAR(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, 60), 2.0f * (0.1f + 0.9f * 0.5f));
    NEAR(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, 35),
         2.0f * (0.1f + 0.9f * 0.5f * (1.0f + cosf((float)M_PI * 0.25f))));
    NEAR(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, 110), 0.2f);
    NEAR(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, 500), 0.2f);
    NEAR(sched(GQE_SCHEDULE_COSINE, 0, 100, 0.0f, 0.2f, 0), 2.0f);
    NEAR(sched(GQE_SCHEDULE_COSINE, 0, 100, 0.0f, 0.2f, 100), 0.0f);
    /* Monotone non-increasing after warmup. */
    for (int s = 10; s < 120; s++)
        assert_true(sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, s + 1) <=
                    sched(GQE_SCHEDULE_COSINE, 10, 110, 0.1f, 0.2f, s));
}

static void test_schedule_wsd(void **state) {
    (void)state;
    /* warmup 10, total 100, decay_frac 0.2: stable until 80, linear to 0.1 at 100. */
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 0), 0.2f);
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 9), 2.0f);
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 50), 2.0f);
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 79), 2.0f);
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 80), 2.0f);
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 81), 2.0f * (1.0f - 0.9f / 20));
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 90), 2.0f * (1.0f - 0.9f * 0.5f));
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 100), 0.2f);
    NEAR(sched(GQE_SCHEDULE_WSD, 10, 100, 0.1f, 0.2f, 1000), 0.2f);
    /* decay_frac 1: decays from the start (no warmup). */
    NEAR(sched(GQE_SCHEDULE_WSD, 0, 10, 0.0f, 1.0f, 5), 1.0f);
}

/* ---- validation messages ------------------------------------------------- */

#define EXPECT_FAIL(call, text) do { assert_int_equal((call), GQE_ERR_ARG); \
    if (!strstr(gqe_last_error(), (text))) fail_msg("message '%s' lacks '%s'", gqe_last_error(), (text)); } while (0)

static void test_optim_validation(void **state) {
    (void)state;
    gqe_optim_config c = gqe_optim_config_default();
    CHECK_OK(gqe_optim_config_validate(&c));
    assert_int_equal(c.kind, GQE_OPTIM_ADAMW);
    NEAR(c.beta1, 0.9f); NEAR(c.beta2, 0.95f); NEAR(c.eps, 1e-8f); NEAR(c.weight_decay, 0.0f);
    assert_false(c.decay_norms); assert_false(c.decay_embeddings); assert_false(c.nesterov);

    c.beta2 = 1.5f;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.beta2 must be in [0, 1), got 1.5");
    c.beta2 = 1.0f;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.beta2");
    c = gqe_optim_config_default(); c.beta1 = NAN;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.beta1 must be in [0, 1)");
    c = gqe_optim_config_default(); c.lr = -1e-3f;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.lr must be finite and >= 0");
    c = gqe_optim_config_default(); c.eps = 0.0f;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.eps must be finite and > 0");
    c = gqe_optim_config_default(); c.weight_decay = -0.1f;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.weight_decay");
    c = gqe_optim_config_default(); c.kind = GQE_OPTIM_SGD; c.nesterov = true;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.nesterov needs optim.momentum > 0");
    c.momentum = -0.5f; c.nesterov = false;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.momentum");
    c.momentum = 0.9f; c.nesterov = true;
    CHECK_OK(gqe_optim_config_validate(&c));
    c = gqe_optim_config_default();
    NEAR(c.router_lr_scale, 1.0f);
    c.router_lr_scale = -0.5f;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.router_lr_scale must be finite and >= 0, got -0.5");
    c.router_lr_scale = INFINITY;
    EXPECT_FAIL(gqe_optim_config_validate(&c), "optim.router_lr_scale");

    gqe_optim_kind k;
    CHECK_OK(gqe_optim_kind_parse("sgd", &k));
    assert_int_equal(k, GQE_OPTIM_SGD);
    CHECK_OK(gqe_optim_kind_parse("adamw", &k));
    assert_int_equal(k, GQE_OPTIM_ADAMW);
    assert_string_equal(gqe_optim_kind_name(GQE_OPTIM_SGD), "sgd");
    EXPECT_FAIL(gqe_optim_kind_parse("adam", &k), "unknown optim.kind 'adam' (allowed: adamw, sgd)");
    EXPECT_FAIL(gqe_optim_kind_parse(NULL, &k), "adamw, sgd");
}

static void test_schedule_validation(void **state) {
    (void)state;
    gqe_schedule_kind k;
    CHECK_OK(gqe_schedule_kind_parse("wsd", &k));
    assert_int_equal(k, GQE_SCHEDULE_WSD);
    CHECK_OK(gqe_schedule_kind_parse("cosine", &k));
    assert_int_equal(k, GQE_SCHEDULE_COSINE);
    assert_string_equal(gqe_schedule_kind_name(GQE_SCHEDULE_CONSTANT), "constant");
    EXPECT_FAIL(gqe_schedule_kind_parse("linear", &k), "unknown schedule.kind 'linear' (allowed: constant, cosine, wsd)");

    gqe_schedule_config c = gqe_schedule_config_default();
    CHECK_OK(gqe_schedule_config_validate(&c));
    c.warmup = -1;
    EXPECT_FAIL(gqe_schedule_config_validate(&c), "schedule.warmup must be >= 0, got -1");
    c = gqe_schedule_config_default(); c.total = -3;
    EXPECT_FAIL(gqe_schedule_config_validate(&c), "schedule.total must be >= 0");
    c = gqe_schedule_config_default(); c.min_lr = 1.5f;
    EXPECT_FAIL(gqe_schedule_config_validate(&c), "schedule.min_lr must be in [0, 1]");
    c = gqe_schedule_config_default(); c.decay_frac = 0.0f;
    EXPECT_FAIL(gqe_schedule_config_validate(&c), "schedule.decay_frac must be in (0, 1]");
    c = gqe_schedule_config_default(); c.kind = GQE_SCHEDULE_COSINE; c.warmup = 4; c.total = 2;
    EXPECT_FAIL(gqe_schedule_config_validate(&c), "schedule.total must be > schedule.warmup (4) for cosine, got 2");
    c.kind = GQE_SCHEDULE_WSD; c.warmup = 90; c.total = 100; c.decay_frac = 0.2f;
    EXPECT_FAIL(gqe_schedule_config_validate(&c), "before schedule.warmup (90) ends");
    c.warmup = 80;
    CHECK_OK(gqe_schedule_config_validate(&c));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_no_decay),
        cmocka_unit_test(test_adamw_decay_excludes_norms_and_embeddings),
        cmocka_unit_test(test_adamw_decay_everything),
        cmocka_unit_test(test_decay_exclusion_exact),
        cmocka_unit_test(test_runs_coalesce),
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_router_lr_scale),
        cmocka_unit_test(test_state_restore),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_optim_clip),
        cmocka_unit_test(test_schedule_constant),
        cmocka_unit_test(test_schedule_cosine),
        cmocka_unit_test(test_schedule_wsd),
        cmocka_unit_test(test_optim_validation),
        cmocka_unit_test(test_schedule_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
