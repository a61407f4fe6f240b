/* A training step gives the same bits whatever the thread count: sums run in
 * fixed chunks and matmuls in fixed tiles, so runs and resumes reproduce on
 * any machine with the same build. */
#include "testutil.h"
#include "nn/lm.h"
#include <omp.h>
#include <string.h>

static void step(int threads, float *loss, float *grads, size_t n) {
    omp_set_num_threads(threads);
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = 97; c.dim = 64; c.layers = 2; c.max_seq = 64; c.mlp_hidden = 256;
    c.attn.experts = 8; c.attn.groups = 4; c.attn.head_dim = 8; c.seed = 5;
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, GQE_CPU));
    int64_t shp[2] = {4, 64};
    gqe_tensor tok, tgt;
    CHECK_OK(gqe_tensor_new(&tok, GQE_I32, GQE_CPU, 2, shp));
    CHECK_OK(gqe_tensor_new(&tgt, GQE_I32, GQE_CPU, 2, shp));
    for (int i = 0; i < 256; i++) {
        gqe_i32(&tok)[i] = (int32_t)(gqe_rng_u32_at(3, 0, (uint64_t)i) % 97);
        gqe_i32(&tgt)[i] = (int32_t)(gqe_rng_u32_at(3, 1, (uint64_t)i) % 97);
    }
    CHECK_OK(gqe_lm_forward(lm, &tok, &tgt, 0.01f, loss, NULL));
    CHECK_OK(gqe_lm_backward(lm));
    assert_true(gqe_lm_params(lm)->numel == n);
    memcpy(grads, gqe_f32(&gqe_lm_params(lm)->grad), n * sizeof *grads);
    gqe_tensor_free(&tok);
    gqe_tensor_free(&tgt);
    gqe_lm_destroy(lm);
}

static void test_thread_count_invariance(void **state) {
    (void)state;
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = 97; c.dim = 64; c.layers = 2; c.max_seq = 64; c.mlp_hidden = 256;
    c.attn.experts = 8; c.attn.groups = 4; c.attn.head_dim = 8;
    gqe_lm *probe;
    CHECK_OK(gqe_lm_create(&probe, &c, GQE_CPU));
    size_t n = gqe_lm_params(probe)->numel;
    gqe_lm_destroy(probe);
    float l1, l2, l4;
    float *g1 = malloc(n * sizeof *g1), *g2 = malloc(n * sizeof *g2), *g4 = malloc(n * sizeof *g4);
    step(1, &l1, g1, n);
    step(2, &l2, g2, n);
    step(4, &l4, g4, n);
    assert_memory_equal(&l1, &l2, sizeof l1);
    assert_memory_equal(&l1, &l4, sizeof l1);
    assert_memory_equal(g1, g2, n * sizeof *g1);
    assert_memory_equal(g1, g4, n * sizeof *g1);
    free(g1); free(g2); free(g4);
}

int main(void) {
    setenv("GQE_CPU_ADAPT", "0", 1); /* the thread count under test, not the machine's load, decides */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_count_invariance),
    };
    return cmocka_run_group_tests_name("determinism", tests, NULL, NULL);
}
