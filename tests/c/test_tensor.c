/* gqe_tensor: allocation, views, reference counting, copies between dtypes,
 * bf16 rounding, host reads and writes, shape strings and device names. */
#include "testutil.h"
#include <string.h>
#include "backend.h"
#include "size.h"

static void test_new_and_zeros(void **state) {
    (void)state;
    gqe_tensor t;
    int64_t shape[3] = {2, 3, 5};
    CHECK_OK(gqe_tensor_zeros(&t, GQE_F32, GQE_CPU, 3, shape));
    assert_int_equal(gqe_tensor_numel(&t), 30);
    assert_int_equal(gqe_tensor_nbytes(&t), 120);
    assert_int_equal(t.ndim, 3);
    assert_true(((uintptr_t)gqe_tensor_data(&t)) % 64 == 0);   /* backend alignment */
    for (int i = 0; i < 30; i++) assert_true(gqe_f32(&t)[i] == 0.0f);
    gqe_tensor_free(&t);
    assert_true(gqe_tensor_is_empty(&t));
    gqe_tensor_free(&t);   /* safe twice */
    /* odd bf16 count and i32 zeros */
    gqe_tensor h, i;
    CHECK_OK(gqe_tensor_zeros(&h, GQE_BF16, GQE_CPU, 1, (int64_t[]){7}));
    for (int k = 0; k < 7; k++) assert_int_equal(((uint16_t *)gqe_tensor_data(&h))[k], 0);
    CHECK_OK(gqe_tensor_zeros(&i, GQE_I32, GQE_CPU, 1, (int64_t[]){4}));
    for (int k = 0; k < 4; k++) assert_int_equal(gqe_i32(&i)[k], 0);
    gqe_tensor_free(&h); gqe_tensor_free(&i);
    gqe_tensor n4;
    CHECK_OK(gqe_tensor_new4(&n4, GQE_F32, GQE_CPU, 4, 6, 0, 0));
    assert_int_equal(n4.ndim, 2);
    assert_int_equal(n4.shape[1], 6);
    gqe_tensor_free(&n4);
    gqe_tensor sc;   /* a 0-dim tensor holds one element */
    CHECK_OK(gqe_tensor_zeros(&sc, GQE_F32, GQE_CPU, 0, NULL));
    assert_int_equal(gqe_tensor_numel(&sc), 1);
    assert_true(gqe_f32(&sc)[0] == 0.0f);
    gqe_tensor_free(&sc);
    assert_int_equal(gqe_tensor_new(&t, GQE_F32, GQE_CPU, 1, (int64_t[]){-3}), GQE_ERR_SHAPE);
}

static void test_views_and_refcount(void **state) {
    (void)state;
    gqe_tensor t;
    CHECK_OK(gqe_tensor_new4(&t, GQE_F32, GQE_CPU, 4, 6, 0, 0));
    for (int i = 0; i < 24; i++) gqe_f32(&t)[i] = (float)i;
    gqe_tensor row2 = gqe_tensor_view4(&t, 12, 6, 0, 0, 0);
    assert_int_equal(row2.ndim, 1);
    assert_true(gqe_f32(&row2)[0] == 12.0f);
    gqe_f32(&row2)[1] = -1.0f;   /* views share storage */
    assert_true(gqe_f32(&t)[13] == -1.0f);
    gqe_tensor r = gqe_tensor_reshape(&t, 3, (int64_t[]){2, 3, 4});
    assert_int_equal(gqe_tensor_numel(&r), 24);
    assert_true(gqe_tensor_same_shape(&r, &r) && !gqe_tensor_same_shape(&r, &t));
    assert_int_equal(t.storage->refcount, 1);
    gqe_tensor ref = gqe_tensor_ref(&t);
    assert_int_equal(t.storage->refcount, 2);
    gqe_tensor_free(&t);   /* storage lives on through ref */
    assert_int_equal(ref.storage->refcount, 1);
    assert_true(gqe_f32(&ref)[13] == -1.0f);
    gqe_tensor_free(&ref);
}

static void test_copy_and_convert(void **state) {
    (void)state;
    int64_t shape[2] = {3, 5};
    gqe_tensor a = tu_randn(2, shape, 1.0f, 9), b, h, back;
    CHECK_OK(gqe_tensor_new(&b, GQE_F32, GQE_CPU, 2, shape));
    CHECK_OK(gqe_tensor_copy(&b, &a));
    assert_memory_equal(gqe_f32(&a), gqe_f32(&b), 60);
    CHECK_OK(gqe_tensor_to(&h, &a, GQE_CPU, GQE_BF16));
    assert_int_equal(h.dtype, GQE_BF16);
    CHECK_OK(gqe_tensor_to(&back, &h, GQE_CPU, GQE_F32));
    /* bf16 keeps 8 significant bits: relative error at most 2^-8 (half an ulp) */
    for (int i = 0; i < 15; i++) {
        float x = gqe_f32(&a)[i], y = gqe_f32(&back)[i];
        assert_true(fabsf(x - y) <= fabsf(x) * (1.0f / 256.0f));
    }
    /* element counts must agree; i32 never converts to float */
    gqe_tensor small, ints;
    CHECK_OK(gqe_tensor_new4(&small, GQE_F32, GQE_CPU, 4, 0, 0, 0));
    assert_int_equal(gqe_tensor_copy(&small, &a), GQE_ERR_SHAPE);
    CHECK_OK(gqe_tensor_new(&ints, GQE_I32, GQE_CPU, 2, shape));
    assert_int_equal(gqe_tensor_copy(&ints, &a), GQE_ERR_SHAPE);
    gqe_tensor *all[] = {&a, &b, &h, &back, &small, &ints};
    for (size_t i = 0; i < 6; i++) gqe_tensor_free(all[i]);
}

static void test_bf16_rounding(void **state) {
    (void)state;
    assert_int_equal(gqe_f32_to_bf16(1.0f), 0x3f80);
    assert_true(gqe_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 sits halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even (1) */
    assert_int_equal(gqe_f32_to_bf16(1.0f + 1.0f / 256.0f), 0x3f80);
    /* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even */
    assert_int_equal(gqe_f32_to_bf16(1.0f + 3.0f / 256.0f), 0x3f82);
    assert_true(isnan(gqe_bf16_to_f32(gqe_f32_to_bf16(NAN))));
    assert_true(isinf(gqe_bf16_to_f32(gqe_f32_to_bf16(INFINITY))));
    for (int i = 0; i < 200; i++) {   /* every bf16 value converts back exactly */
        uint16_t b = (uint16_t)(gqe_rng_u32_at(3, 0, (uint64_t)i) & 0x7f7f);
        assert_int_equal(gqe_f32_to_bf16(gqe_bf16_to_f32(b)), b);
    }
}

static void test_read_write(void **state) {
    (void)state;
    gqe_tensor f, i, h;
    CHECK_OK(gqe_tensor_new4(&f, GQE_F32, GQE_CPU, 2, 2, 0, 0));
    CHECK_OK(gqe_tensor_new4(&i, GQE_I32, GQE_CPU, 4, 0, 0, 0));
    CHECK_OK(gqe_tensor_new4(&h, GQE_BF16, GQE_CPU, 4, 0, 0, 0));
    float src[4] = {1.5f, -2.0f, 3.0f, 42.0f}, dst[4];
    CHECK_OK(gqe_tensor_write_f32(&f, src, 4));
    CHECK_OK(gqe_tensor_read_f32(&f, dst, 4));
    assert_memory_equal(src, dst, sizeof src);
    CHECK_OK(gqe_tensor_write_f32(&i, src, 4));
    assert_int_equal(gqe_i32(&i)[3], 42);
    CHECK_OK(gqe_tensor_read_f32(&i, dst, 4));
    assert_true(dst[1] == -2.0f && dst[0] == 1.0f);   /* i32 truncates */
    CHECK_OK(gqe_tensor_write_f32(&h, src, 4));
    CHECK_OK(gqe_tensor_read_f32(&h, dst, 4));
    assert_memory_equal(src, dst, sizeof src);   /* all exactly representable */
    assert_int_equal(gqe_tensor_read_f32(&f, dst, 3), GQE_ERR_SHAPE);
    assert_int_equal(gqe_tensor_write_f32(&f, src, 5), GQE_ERR_SHAPE);
    gqe_tensor_free(&f); gqe_tensor_free(&i); gqe_tensor_free(&h);
}

static void test_names(void **state) {
    (void)state;
    gqe_tensor t;
    CHECK_OK(gqe_tensor_new4(&t, GQE_F32, GQE_CPU, 2, 3, 4, 0));
    char buf[64];
    assert_string_equal(gqe_tensor_shape_str(&t, buf, sizeof buf), "(2, 3, 4)");
    gqe_tensor_free(&t);
    assert_string_equal(gqe_dtype_name(GQE_BF16), "bf16");
    assert_string_equal(gqe_device_name(GQE_CPU), "cpu");
    gqe_device d;
    CHECK_OK(gqe_device_parse("cpu", &d));
    assert_int_equal(d, GQE_CPU);
    assert_int_equal(gqe_device_parse("tpu", &d), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "tpu"));
    assert_string_equal(gqe_backend_for(GQE_CPU)->name, "cpu");
}

/* Sizes from user input are checked, and messages show the operands, not a
 * wrapped product. */
static void test_checked_sizes(void **state) {
    (void)state;
    int64_t out = -7;
    assert_true(gqe_mul_ok(3, 4, &out) && out == 12);
    assert_false(gqe_mul_ok(INT64_C(1) << 31, INT64_C(1) << 31, &out));
    assert_false(gqe_mul_ok(-1, 2, &out));
    assert_false(gqe_mul_ok(INT64_MAX, INT64_MAX, &out));
    assert_true(gqe_mul_ok(GQE_MAX_NUMEL, 1, &out) && out == GQE_MAX_NUMEL);
    assert_false(gqe_add_ok(GQE_MAX_NUMEL, 1, &out));
    int64_t shape[2] = {INT64_C(1) << 31, INT64_C(1) << 31};
    assert_int_equal(gqe_shape_numel("zeros", 2, shape, &out), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "zeros: shape (2147483648, 2147483648) has too many elements"));
    gqe_tensor t;
    assert_int_equal(gqe_tensor_new(&t, GQE_F32, GQE_CPU, 2, shape), GQE_ERR_ARG);
    int64_t wrap[3] = {INT64_C(1) << 32, INT64_C(1) << 32, 4};   /* the product wraps to 0 in 64 bits */
    assert_int_equal(gqe_tensor_new(&t, GQE_F32, GQE_CPU, 3, wrap), GQE_ERR_ARG);
    int64_t f[3] = {1, 4000000000, 1000000000};
    assert_int_equal(gqe_size_product("mlp_hidden x dim", 3, f, &out), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "1 x 4000000000 x 1000000000 is too large"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_and_zeros),
        cmocka_unit_test(test_views_and_refcount),
        cmocka_unit_test(test_copy_and_convert),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_checked_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
