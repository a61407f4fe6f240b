/* Golden tests: GQEAttention, the LM and one AdamW run against the outputs of
 * our PyTorch reference (tests/reference/, files in tests/golden/).
 * Relative tolerance 1e-4 in f32. Run from the repository root. */
#include "testutil.h"
#include "checkpoint.h"
#include "safetensors.h"
#include <dirent.h>
#include <string.h>

#define TOL 1e-4
#define GOLDEN_DIR "tests/golden"

/* GQE_TEST_DEVICE=cuda runs the same goldens on the GPU (make test-cuda). */
static gqe_device test_device(void) {
    const char *d = getenv("GQE_TEST_DEVICE");
    return d && strcmp(d, "cuda") == 0 ? GQE_CUDA : GQE_CPU;
}

/* A CPU copy of t (a new reference when t already lives there). */
static gqe_tensor on_host(const gqe_tensor *t) {
    if (t->device == GQE_CPU) return gqe_tensor_ref(t);
    gqe_tensor h;
    CHECK_OK(gqe_tensor_to(&h, t, GQE_CPU, t->dtype));
    return h;
}

static gqe_tensor on_dev(const gqe_tensor *t) {
    gqe_tensor d;
    CHECK_OK(gqe_tensor_to(&d, t, test_device(), t->dtype));
    return d;
}

static const gqe_tensor *need(const gqe_st_file *f, const char *path, const char *name) {
    const gqe_tensor *t = gqe_st_get(f, name);
    if (!t) fail_msg("%s: missing tensor %s", path, name);
    return t;
}

static int64_t meta_int(const gqe_st_file *f, const char *key) {
    const char *v = gqe_st_meta(f, key);
    if (!v) fail_msg("golden metadata lacks %s", key);
    return strtoll(v, NULL, 10);
}
static bool meta_bool(const gqe_st_file *f, const char *key) {
    const char *v = gqe_st_meta(f, key);
    return v && (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "1") == 0);
}
static float meta_float(const gqe_st_file *f, const char *key) {
    const char *v = gqe_st_meta(f, key);
    return v ? strtof(v, NULL) : 0.0f;
}

static void close_to(const char *path, const char *what, const gqe_tensor *got_any, const gqe_tensor *want) {
    if (gqe_tensor_numel(got_any) != gqe_tensor_numel(want)) fail_msg("%s: %s has %lld values, golden %lld", path, what,
        (long long)gqe_tensor_numel(got_any), (long long)gqe_tensor_numel(want));
    gqe_tensor got = on_host(got_any);
    double e = tu_rel_err(gqe_f32(&got), gqe_f32(want), gqe_tensor_numel(want));
    gqe_tensor_free(&got);
    if (!(e <= TOL)) fail_msg("%s: %s relative error %.3g > %.0e", path, what, e, TOL);
}

static int list(const char *prefix, char names[][256], int max) {
    DIR *d = opendir(GOLDEN_DIR);
    if (!d) fail_msg("cannot open %s (run the tests from the repository root)", GOLDEN_DIR);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".safetensors"))
            snprintf(names[n++], 256, "%s/%.200s", GOLDEN_DIR, e->d_name);
    closedir(d);
    return n;
}

static void attn_case(const char *path) {
    gqe_st_file f = {0};
    CHECK_OK(gqe_safetensors_read(path, &f));
    gqe_attn_config c;
    gqe_attn_config_default(&c);
    c.dim = meta_int(&f, "dim"); c.experts = meta_int(&f, "experts"); c.groups = meta_int(&f, "groups");
    c.k = meta_int(&f, "k"); c.head_dim = meta_int(&f, "head_dim");
    CHECK_OK(gqe_attn_kind_parse(gqe_st_meta(&f, "kind"), &c.kind));
    CHECK_OK(gqe_variant_parse(gqe_st_meta(&f, "variant"), &c.variant));
    CHECK_OK(gqe_router_parse(gqe_st_meta(&f, "router"), &c.router));
    c.rope = meta_bool(&f, "rope"); c.causal = meta_bool(&f, "causal"); c.rope_theta = meta_float(&f, "rope_theta");
    float aux_coef = meta_float(&f, "aux_coef");
    gqe_paramset ps;
    gqe_paramset_init(&ps);
    gqe_attn *a;
    CHECK_OK(gqe_attn_create(&a, &c, &ps, ""));
    CHECK_OK(gqe_paramset_alloc(&ps, test_device()));
    for (int i = 0; i < ps.count; i++) CHECK_OK(gqe_tensor_copy(ps.items[i].value, need(&f, path, ps.items[i].name)));
    gqe_tensor xd = on_dev(need(&f, path, "x")), dyd = on_dev(need(&f, path, "dy"));
    const gqe_tensor *x = &xd, *dy = &dyd;
    gqe_tensor y, dx;
    CHECK_OK(gqe_tensor_new(&y, GQE_F32, test_device(), 3, x->shape));
    CHECK_OK(gqe_tensor_zeros(&dx, GQE_F32, test_device(), 3, x->shape));
    CHECK_OK(gqe_attn_forward(a, &y, x, NULL));
    close_to(path, "y", &y, need(&f, path, "y"));
    if (c.kind == GQE_ATTN_GQE) {
        gqe_tensor probs, idx;
        CHECK_OK(gqe_attn_routing(a, &probs, &idx));
        close_to(path, "probs", &probs, need(&f, path, "probs"));
        const gqe_tensor *gi = need(&f, path, "indices");
        assert_int_equal(gqe_tensor_numel(&idx), gqe_tensor_numel(gi));
        gqe_tensor hidx = on_host(&idx);
        assert_memory_equal(gqe_i32(&hidx), gqe_i32(gi), gqe_tensor_nbytes(gi));
        gqe_tensor_free(&hidx);
        float want = gqe_f32(need(&f, path, "aux"))[0], got;
        CHECK_OK(gqe_attn_aux(a, &got));
        if (fabsf(got - want) > TOL * fmaxf(1.0f, fabsf(want)))
            fail_msg("%s: aux %.7g, golden %.7g", path, got, want);
    }
    CHECK_OK(gqe_attn_backward(a, &dx, dy, aux_coef));
    close_to(path, "dx", &dx, need(&f, path, "dx"));
    for (int i = 0; i < ps.count; i++) {
        char name[200];
        snprintf(name, sizeof name, "grad.%s", ps.items[i].name);
        close_to(path, name, ps.items[i].grad, need(&f, path, name));
    }
    gqe_tensor_free(&y);
    gqe_tensor_free(&dx);
    gqe_tensor_free(&xd);
    gqe_tensor_free(&dyd);
    gqe_attn_destroy(a);
    gqe_paramset_free(&ps);
    gqe_st_file_free(&f);
}

static void test_attention_goldens(void **state) {
    (void)state;
    static char names[64][256];
    int n = list("attn_", names, 64);
    assert_true(n >= 8);
    for (int i = 0; i < n; i++) attn_case(names[i]);
    printf("  %d attention goldens match\n", n);
}

static void lm_case(const char *path) {
    gqe_st_file f = {0};
    CHECK_OK(gqe_safetensors_read(path, &f));
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = meta_int(&f, "vocab"); c.dim = meta_int(&f, "dim"); c.layers = meta_int(&f, "layers");
    c.mlp_hidden = meta_int(&f, "mlp_hidden"); c.tied = meta_bool(&f, "tied"); c.max_seq = 64;
    c.norm_eps = meta_float(&f, "norm_eps");
    CHECK_OK(gqe_mlp_parse(gqe_st_meta(&f, "mlp"), &c.mlp));
    c.attn.experts = meta_int(&f, "experts"); c.attn.groups = meta_int(&f, "groups");
    c.attn.k = meta_int(&f, "k"); c.attn.head_dim = meta_int(&f, "head_dim");
    CHECK_OK(gqe_attn_kind_parse(gqe_st_meta(&f, "kind"), &c.attn.kind));
    CHECK_OK(gqe_variant_parse(gqe_st_meta(&f, "variant"), &c.attn.variant));
    CHECK_OK(gqe_router_parse(gqe_st_meta(&f, "router"), &c.attn.router));
    c.attn.rope = meta_bool(&f, "rope"); c.attn.causal = meta_bool(&f, "causal");
    c.attn.rope_theta = meta_float(&f, "rope_theta");
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, test_device()));
    gqe_paramset *ps = gqe_lm_params(lm);
    for (int i = 0; i < ps->count; i++) CHECK_OK(gqe_tensor_copy(ps->items[i].value, need(&f, path, ps->items[i].name)));
    float loss, aux;
    CHECK_OK(gqe_lm_forward(lm, need(&f, path, "tokens"), need(&f, path, "targets"), meta_float(&f, "aux_coef"), &loss, &aux));
    float want = gqe_f32(need(&f, path, "loss"))[0];
    if (fabsf(loss - want) > TOL * fabsf(want)) fail_msg("%s: loss %.7g, golden %.7g", path, loss, want);
    want = gqe_f32(need(&f, path, "ce"))[0];
    if (fabsf(gqe_lm_ce_loss(lm) - want) > TOL * fabsf(want)) fail_msg("%s: ce %.7g, golden %.7g", path, gqe_lm_ce_loss(lm), want);
    CHECK_OK(gqe_paramset_zero_grad(ps));
    CHECK_OK(gqe_lm_backward(lm));
    for (int i = 0; i < ps->count; i++) {
        char name[200];
        snprintf(name, sizeof name, "grad.%s", ps->items[i].name);
        close_to(path, name, ps->items[i].grad, need(&f, path, name));
    }
    gqe_lm_destroy(lm);
    gqe_st_file_free(&f);
}

static void test_lm_goldens(void **state) {
    (void)state;
    static char names[16][256];
    int n = list("lm_", names, 16);
    assert_true(n >= 2);
    for (int i = 0; i < n; i++) lm_case(names[i]);
    printf("  %d LM goldens match\n", n);
}

/* Three torch.optim.AdamW steps; weight decay on p only (a norm-like n is excluded). */
static void test_adamw_golden(void **state) {
    (void)state;
    const char *path = GOLDEN_DIR "/adamw_step.safetensors";
    gqe_st_file f = {0};
    CHECK_OK(gqe_safetensors_read(path, &f));
    gqe_paramset ps;
    gqe_paramset_init(&ps);
    gqe_tensor p, dp, n, dn;
    CHECK_OK(gqe_paramset_add(&ps, "p", 2, (int64_t[]){5, 7}, GQE_PARAM_WEIGHT, &p, &dp, NULL));
    CHECK_OK(gqe_paramset_add(&ps, "n", 1, (int64_t[]){7}, GQE_PARAM_NORM, &n, &dn, NULL));
    CHECK_OK(gqe_paramset_alloc(&ps, test_device()));
    CHECK_OK(gqe_tensor_copy(&p, need(&f, path, "p")));
    CHECK_OK(gqe_tensor_copy(&n, need(&f, path, "n")));
    gqe_optim_config oc = gqe_optim_config_default();
    oc.lr = 1e-2f; oc.beta1 = 0.9f; oc.beta2 = 0.95f; oc.eps = 1e-8f; oc.weight_decay = 0.1f;
    gqe_optimizer *opt;
    CHECK_OK(gqe_optim_create(&opt, &oc, &ps));
    for (int s = 1; s <= 3; s++) {
        char name[32];
        snprintf(name, sizeof name, "p_grad%d", s);
        CHECK_OK(gqe_tensor_copy(&dp, need(&f, path, name)));
        snprintf(name, sizeof name, "n_grad%d", s);
        CHECK_OK(gqe_tensor_copy(&dn, need(&f, path, name)));
        CHECK_OK(gqe_optim_step(opt, 1e-2f));
        snprintf(name, sizeof name, "p_step%d", s);
        close_to(path, name, &p, need(&f, path, name));
        snprintf(name, sizeof name, "n_step%d", s);
        close_to(path, name, &n, need(&f, path, name));
    }
    gqe_optim_free(opt);
    gqe_paramset_free(&ps);
    gqe_st_file_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_goldens),
        cmocka_unit_test(test_lm_goldens),
        cmocka_unit_test(test_adamw_golden),
    };
    return cmocka_run_group_tests_name("golden", tests, NULL, NULL);
}
