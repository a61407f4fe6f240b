/* Checkpoints: a run stopped and resumed logs the same losses, bit for bit,
 * as an uninterrupted run; corrupt or mismatched checkpoints are refused. */
#include "testutil.h"
#include "checkpoint.h"
#include <string.h>
#include <unistd.h>

static gqe_lm *make_lm(gqe_router_kind router) {
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = 31; c.dim = 16; c.layers = 2; c.max_seq = 16; c.mlp_hidden = 32;
    c.attn.experts = 4; c.attn.groups = 2; c.attn.head_dim = 4; c.attn.router = router; c.seed = 3;
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, GQE_CPU));
    return lm;
}

static gqe_optimizer *make_opt(gqe_lm *lm) {
    gqe_optim_config oc = gqe_optim_config_default();
    oc.lr = 1e-2f; oc.weight_decay = 0.1f;
    gqe_optimizer *opt;
    CHECK_OK(gqe_optim_create(&opt, &oc, gqe_lm_params(lm)));
    return opt;
}

static float train_step(gqe_lm *lm, gqe_optimizer *opt, int64_t index) {
    int64_t shp[2] = {2, 8};
    gqe_tensor tok, tgt;
    CHECK_OK(gqe_tensor_new(&tok, GQE_I32, GQE_CPU, 2, shp));
    CHECK_OK(gqe_tensor_new(&tgt, GQE_I32, GQE_CPU, 2, shp));
    for (int i = 0; i < 16; i++) {
        gqe_i32(&tok)[i] = (int32_t)(gqe_rng_u32_at(1, (uint64_t)index, (uint64_t)i) % 31);
        gqe_i32(&tgt)[i] = (int32_t)(gqe_rng_u32_at(2, (uint64_t)index, (uint64_t)i) % 31);
    }
    float loss;
    CHECK_OK(gqe_paramset_zero_grad(gqe_lm_params(lm)));
    CHECK_OK(gqe_lm_forward(lm, &tok, &tgt, 0.01f, &loss, NULL));
    CHECK_OK(gqe_lm_backward(lm));
    float norm;
    CHECK_OK(gqe_clip_grad_norm(gqe_lm_params(lm), 1.0f, &norm));
    CHECK_OK(gqe_optim_step(opt, 1e-2f));
    CHECK_OK(gqe_lm_after_step(lm));
    gqe_tensor_free(&tok);
    gqe_tensor_free(&tgt);
    return loss;
}

static void resume_case(gqe_router_kind router) {
    char path[] = "/tmp/gqe_ckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    float straight[16], resumed[16];
    gqe_lm *lm = make_lm(router);
    gqe_optimizer *opt = make_opt(lm);
    for (int s = 0; s < 16; s++) straight[s] = train_step(lm, opt, s);
    gqe_optim_free(opt);
    gqe_lm_destroy(lm);

    lm = make_lm(router);
    opt = make_opt(lm);
    for (int s = 0; s < 8; s++) resumed[s] = train_step(lm, opt, s);
    gqe_checkpoint_info info = {.step = 8, .data_index = 8, .config_json = (char *)"{\"k\":1}"};
    CHECK_OK(gqe_checkpoint_save(path, lm, opt, &info));
    gqe_optim_free(opt);
    gqe_lm_destroy(lm);

    lm = make_lm(router);
    opt = make_opt(lm);
    gqe_checkpoint_info back = {0};
    CHECK_OK(gqe_checkpoint_load(path, lm, opt, &back));
    assert_int_equal(back.step, 8);
    assert_int_equal(back.data_index, 8);
    assert_string_equal(back.config_json, "{\"k\":1}");
    assert_int_equal(back.verified, 1);
    gqe_checkpoint_info_free(&back);
    for (int s = 8; s < 16; s++) resumed[s] = train_step(lm, opt, s);
    for (int s = 0; s < 16; s++)
        if (memcmp(&straight[s], &resumed[s], sizeof(float)) != 0)
            fail_msg("router %s step %d: %.9g (straight) != %.9g (resumed)", gqe_router_name(router), s, straight[s], resumed[s]);
    gqe_optim_free(opt);
    gqe_lm_destroy(lm);
    unlink(path);
}

static void test_resume_bit_exact(void **state) {
    (void)state;
    resume_case(GQE_ROUTER_SOFTMAX);
    resume_case(GQE_ROUTER_BALANCED);
    resume_case(GQE_ROUTER_RANDOM);
}

static void test_mismatched_checkpoint(void **state) {
    (void)state;
    char path[] = "/tmp/gqe_ckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    gqe_lm *lm = make_lm(GQE_ROUTER_SOFTMAX);
    gqe_checkpoint_info info = {.step = 1, .data_index = 1};
    CHECK_OK(gqe_checkpoint_save(path, lm, NULL, &info));
    gqe_lm_config c = *gqe_lm_get_config(lm);
    c.mlp_hidden = 48;
    gqe_lm *other;
    CHECK_OK(gqe_lm_create(&other, &c, GQE_CPU));
    gqe_checkpoint_info back = {0};
    assert_int_equal(gqe_checkpoint_load(path, other, NULL, &back), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), "mlp.fc_in.weight"));
    /* a truncated file */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 100), 0);
    fclose(f);
    assert_int_equal(gqe_checkpoint_load(path, lm, NULL, &back), GQE_ERR_FORMAT);
    gqe_lm_destroy(other);
    gqe_lm_destroy(lm);
    unlink(path);
}

/* An optimizer of another model: refused before reading or writing (it used
 * to read past the end of the other model's buffers into the file, and to
 * write 64 KB past them on load). */
static void test_foreign_optimizer(void **state) {
    (void)state;
    char path[] = "/tmp/gqe_ckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    gqe_lm *lm = make_lm(GQE_ROUTER_SOFTMAX);
    gqe_lm_config c = *gqe_lm_get_config(lm);
    c.layers = 1;
    gqe_lm *small;
    CHECK_OK(gqe_lm_create(&small, &c, GQE_CPU));
    gqe_optimizer *small_opt = make_opt(small);
    gqe_checkpoint_info info = {.step = 1, .data_index = 1};
    assert_int_equal(gqe_checkpoint_save(path, lm, small_opt, &info), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "belongs to another model"));
    assert_int_equal(access(path, F_OK), -1);
    gqe_optimizer *opt = make_opt(lm);
    CHECK_OK(gqe_checkpoint_save(path, lm, opt, &info));
    gqe_checkpoint_info back;
    assert_int_equal(gqe_checkpoint_load(path, lm, small_opt, &back), GQE_ERR_ARG);
    CHECK_OK(gqe_checkpoint_load(path, lm, opt, &back));
    gqe_checkpoint_info_free(&back);
    gqe_optim_free(opt);
    gqe_optim_free(small_opt);
    gqe_lm_destroy(small);
    gqe_lm_destroy(lm);
    unlink(path);
}

/* Identity in the metadata; a flipped bit in tensor data fails the checksum
 * and leaves the model as it was. */
static void test_identity_and_checksum(void **state) {
    (void)state;
    char path[] = "/tmp/gqe_ckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    gqe_lm *lm = make_lm(GQE_ROUTER_SOFTMAX);
    gqe_checkpoint_info info = {.step = 5, .data_index = 6, .run_uid = (char *)"0123abcd", .config_hash = (char *)"feed"};
    CHECK_OK(gqe_checkpoint_save(path, lm, NULL, &info));
    gqe_checkpoint_info back;
    CHECK_OK(gqe_checkpoint_load(path, lm, NULL, &back));
    assert_string_equal(back.run_uid, "0123abcd");
    assert_string_equal(back.config_hash, "feed");
    assert_int_equal(back.verified, 1);
    gqe_checkpoint_info_free(&back);
    gqe_checkpoint_info bad = {.step = 5, .run_uid = (char *)"../x"};
    assert_int_equal(gqe_checkpoint_save(path, lm, NULL, &bad), GQE_ERR_ARG);
    /* Another run's, another config's or another step's file: refused
     * before anything is restored. */
    gqe_lm *fresh = make_lm(GQE_ROUTER_SOFTMAX);
    CHECK_OK(gqe_fill(&gqe_lm_params(fresh)->data, 0.25f));
    gqe_checkpoint_info want_uid = {.step = -1, .run_uid = (char *)"ffff"};
    gqe_checkpoint_info want_hash = {.step = -1, .config_hash = (char *)"beef"};
    gqe_checkpoint_info want_step = {.step = 4};
    assert_int_equal(gqe_checkpoint_load_expecting(path, fresh, NULL, &want_uid, &back), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), "belongs to another run (uid 0123abcd"));
    assert_int_equal(gqe_checkpoint_load_expecting(path, fresh, NULL, &want_hash, &back), GQE_ERR_FORMAT);
    assert_int_equal(gqe_checkpoint_load_expecting(path, fresh, NULL, &want_step, &back), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), "holds step 5"));
    assert_true(gqe_f32(&gqe_lm_params(fresh)->data)[0] == 0.25f);
    gqe_checkpoint_info want_all = {.step = 5, .run_uid = (char *)"0123abcd", .config_hash = (char *)"feed"};
    CHECK_OK(gqe_checkpoint_load_expecting(path, fresh, NULL, &want_all, &back));
    gqe_checkpoint_info_free(&back);
    gqe_lm_destroy(fresh);

    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, -3, SEEK_END), 0);
    int ch = fgetc(f);
    assert_int_equal(fseek(f, -3, SEEK_END), 0);
    fputc(ch ^ 0x10, f);
    fclose(f);
    gqe_lm *other = make_lm(GQE_ROUTER_SOFTMAX);
    gqe_paramset *ps = gqe_lm_params(other);
    CHECK_OK(gqe_fill(&ps->data, 0.5f));
    assert_int_equal(gqe_checkpoint_load(path, other, NULL, &back), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), "checksum mismatch"));
    assert_true(gqe_f32(&ps->data)[0] == 0.5f);
    gqe_lm_destroy(other);
    gqe_lm_destroy(lm);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_bit_exact),
        cmocka_unit_test(test_mismatched_checkpoint),
        cmocka_unit_test(test_foreign_optimizer),
        cmocka_unit_test(test_identity_and_checksum),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
