/* safetensors: round trips through a file, and every kind of corrupt input
 * returning GQE_ERR_FORMAT with a message that names the file and tensor. */
#include "testutil.h"
#include "tmpdir.h"
#include "safetensors.h"
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

static int setup_dir(void **state) {
    (void)state;
    return tmpdir_make("/tmp/gqe_st_XXXXXX");
}

/* A whole file image: length field, header text as given, then data. */
static unsigned char *make_file(const char *header, const void *data, size_t dlen, size_t *len) {
    size_t h = strlen(header);
    unsigned char *b = malloc(8 + h + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (dlen) memcpy(b + 8 + h, data, dlen);
    *len = 8 + h + dlen;
    return b;
}

static void expect_format(const char *header, const void *data, size_t dlen, const char *needle) {
    size_t len;
    unsigned char *b = make_file(header, data, dlen, &len);
    gqe_st_file f;
    gqe_status s = gqe_safetensors_parse(b, len, "mem.safetensors", &f);
    if (s != GQE_ERR_FORMAT) fail_msg("header %s: expected a format error, got %s", header, gqe_status_name(s));
    const char *msg = gqe_last_error();
    if (!strstr(msg, "mem.safetensors")) fail_msg("message does not name the file: %s", msg);
    if (needle && !strstr(msg, needle)) fail_msg("message lacks '%s': %s", needle, msg);
    assert_int_equal(f.count, 0);
    gqe_st_file_free(&f);
    free(b);
}

static void test_round_trip(void **state) {
    (void)state;
    gqe_tensor a, b, c, s, z;
    CHECK_OK(gqe_tensor_new4(&a, GQE_F32, GQE_CPU, 2, 3, 0, 0));
    CHECK_OK(gqe_tensor_new4(&b, GQE_BF16, GQE_CPU, 5, 0, 0, 0));
    CHECK_OK(gqe_tensor_new4(&c, GQE_I32, GQE_CPU, 2, 2, 2, 1));
    int64_t one = 1, zshape[2] = {0, 3};
    CHECK_OK(gqe_tensor_new(&s, GQE_F32, GQE_CPU, 1, &one));
    s.ndim = 0;
    CHECK_OK(gqe_tensor_new(&z, GQE_F32, GQE_CPU, 2, zshape));
    for (int i = 0; i < 6; i++) gqe_f32(&a)[i] = 0.5f * (float)i - 1.0f;
    uint16_t *bp = gqe_tensor_data(&b);
    for (int i = 0; i < 5; i++) bp[i] = gqe_f32_to_bf16(3.25f * (float)i);
    for (int i = 0; i < 8; i++) gqe_i32(&c)[i] = i * 1000 - 3;
    gqe_f32(&s)[0] = 42.0f;

    const char *names[] = {"zeta.weight", "alpha", "mid.bias", "scalar", "empty"};
    const gqe_tensor *ts[] = {&a, &b, &c, &s, &z};
    const char *mk[] = {"format", "note"}, *mv[] = {"pt", "quote \" backslash \\ tab\t end"};
    const char *path = tmp_path("rt.safetensors");
    CHECK_OK(gqe_safetensors_write(path, 5, names, ts, 2, mk, mv));

    struct stat sb;
    assert_int_equal(stat(tmp_path("rt.safetensors.tmp"), &sb), -1);  /* renamed away */
    /* Alignment: the data section starts at a multiple of 8, padded with spaces. */
    FILE *fp = fopen(path, "rb");
    unsigned char len8[8];
    assert_int_equal(fread(len8, 1, 8, fp), 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len8[i];
    assert_int_equal((8 + hlen) % 8, 0);
    char *hdr = calloc(1, hlen + 1);
    assert_int_equal(fread(hdr, 1, hlen, fp), hlen);
    fclose(fp);
    char *close_brace = strrchr(hdr, '}');
    for (char *p = close_brace + 1; *p; p++) assert_int_equal(*p, ' ');
    /* Names sorted in the header. */
    assert_true(strstr(hdr, "\"alpha\"") < strstr(hdr, "\"empty\""));
    assert_true(strstr(hdr, "\"mid.bias\"") < strstr(hdr, "\"scalar\""));
    assert_true(strstr(hdr, "\"scalar\"") < strstr(hdr, "\"zeta.weight\""));
    free(hdr);

    gqe_st_file f;
    CHECK_OK(gqe_safetensors_read(path, &f));
    assert_int_equal(f.count, 5);
    assert_string_equal(f.names[0], "alpha");
    assert_string_equal(f.names[1], "empty");
    assert_string_equal(f.names[2], "mid.bias");
    assert_string_equal(f.names[3], "scalar");
    assert_string_equal(f.names[4], "zeta.weight");
    const gqe_tensor *ra = gqe_st_get(&f, "zeta.weight");
    assert_non_null(ra);
    assert_int_equal(ra->dtype, GQE_F32);
    assert_true(gqe_tensor_same_shape(ra, &a));
    assert_memory_equal(gqe_tensor_data(ra), gqe_tensor_data(&a), 24);
    const gqe_tensor *rb = gqe_st_get(&f, "alpha");
    assert_int_equal(rb->dtype, GQE_BF16);
    assert_int_equal(rb->ndim, 1);
    assert_memory_equal(gqe_tensor_data(rb), bp, 10);
    const gqe_tensor *rc = gqe_st_get(&f, "mid.bias");
    assert_int_equal(rc->dtype, GQE_I32);
    assert_int_equal(rc->ndim, 4);
    assert_true(gqe_tensor_same_shape(rc, &c));
    assert_memory_equal(gqe_tensor_data(rc), gqe_tensor_data(&c), 32);
    const gqe_tensor *rs = gqe_st_get(&f, "scalar");
    assert_int_equal(rs->ndim, 0);
    assert_true(gqe_f32(rs)[0] == 42.0f);
    const gqe_tensor *rz = gqe_st_get(&f, "empty");
    assert_int_equal(rz->ndim, 2);
    assert_int_equal(gqe_tensor_numel(rz), 0);
    assert_null(gqe_st_get(&f, "missing"));
    assert_int_equal(f.meta_count, 2);
    assert_string_equal(gqe_st_meta(&f, "format"), "pt");
    assert_string_equal(gqe_st_meta(&f, "note"), mv[1]);
    assert_null(gqe_st_meta(&f, "other"));
    gqe_st_file_free(&f);
    gqe_st_file_free(&f);  /* idempotent */

    /* Same tensors in another order give the same bytes. */
    const char *names2[] = {"scalar", "empty", "alpha", "zeta.weight", "mid.bias"};
    const gqe_tensor *ts2[] = {&s, &z, &b, &a, &c};
    CHECK_OK(gqe_safetensors_write(tmp_path("rt2.safetensors"), 5, names2, ts2, 2, mk, mv));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", path, tmp_path("rt2.safetensors"));
    assert_int_equal(system(cmd), 0);

    gqe_tensor_free(&a); gqe_tensor_free(&b); gqe_tensor_free(&c); gqe_tensor_free(&s); gqe_tensor_free(&z);
}

static void test_write_errors(void **state) {
    (void)state;
    gqe_tensor a;
    CHECK_OK(gqe_tensor_new4(&a, GQE_F32, GQE_CPU, 2, 0, 0, 0));
    const char *names[] = {"x", "x"};
    const gqe_tensor *ts[] = {&a, &a};
    assert_int_equal(gqe_safetensors_write(tmp_path("dup.safetensors"), 2, names, ts, 0, NULL, NULL), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "'x'"));
    const char *meta_name[] = {"__metadata__"};
    assert_int_equal(gqe_safetensors_write(tmp_path("m.safetensors"), 1, meta_name, ts, 0, NULL, NULL), GQE_ERR_ARG);
    assert_int_equal(gqe_safetensors_write("/nonexistent-dir/x.safetensors", 1, names, ts, 0, NULL, NULL), GQE_ERR_IO);
    assert_non_null(strstr(gqe_last_error(), "/nonexistent-dir/x.safetensors"));
    gqe_tensor_free(&a);
}

static void test_i64(void **state) {
    (void)state;
    int64_t v[3] = {1, -2, INT32_MAX};
    size_t len;
    unsigned char *b = make_file("{\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]}}", v, 24, &len);
    gqe_st_file f;
    CHECK_OK(gqe_safetensors_parse(b, len, "ids.safetensors", &f));
    const gqe_tensor *t = gqe_st_get(&f, "ids");
    assert_int_equal(t->dtype, GQE_I32);
    assert_int_equal(gqe_i32(t)[0], 1);
    assert_int_equal(gqe_i32(t)[1], -2);
    assert_int_equal(gqe_i32(t)[2], INT32_MAX);
    gqe_st_file_free(&f);
    free(b);

    v[1] = (int64_t)INT32_MAX + 1;
    expect_format("{\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]}}", v, 24, "'ids'");
    assert_non_null(strstr(gqe_last_error(), "2147483648"));
    v[1] = (int64_t)INT32_MIN - 1;
    expect_format("{\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]}}", v, 24, "i32");
}

static void test_corrupt_headers(void **state) {
    (void)state;
    unsigned char d[64] = {0};
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],", d, 8, "not valid JSON");
    expect_format("not json at all", d, 8, "not valid JSON");
    expect_format("[1, 2]", d, 8, "expected an object");
    expect_format("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8, "'a': missing or non-string dtype");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", d, 8, "'a': missing or non-array shape");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", d, 8, "'a': missing or non-array data_offsets");
    expect_format("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", d, 4, "unsupported dtype 'F16'");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", d, 8, "more than 4");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", d, 8, "outside the data section");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-4,4]}}", d, 8, "outside");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", d, 8, "outside");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", d, 12, "'a': data_offsets [0,8] span 8 bytes");
    expect_format("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8, "needs 4");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", d, 8, "non-integer");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d, 8, "negative");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", d, 8, "two integers");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", d, 8, "too large");
    expect_format("{\"a\":5}", d, 8, "'a'");
    expect_format("{\"a\":\"x\"}", d, 8, "expected an object");
    expect_format("{\"__metadata__\":{\"k\":1}}", d, 0, "'k'");
    expect_format("{\"__metadata__\":[1]}", d, 0, "__metadata__");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d, 16, "appears twice");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", d, 16, "overlapping");

    /* Valid headers with odd but legal content still parse. */
    size_t len;
    unsigned char *b = make_file("{\"__metadata__\":{},\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}  ", d, 8, &len);
    gqe_st_file f;
    CHECK_OK(gqe_safetensors_parse(b, len, "ok", &f));
    assert_int_equal(f.count, 1);
    assert_int_equal(f.meta_count, 0);
    gqe_st_file_free(&f);
    free(b);
}

static void test_bad_length_field(void **state) {
    (void)state;
    gqe_st_file f;
    unsigned char b[32] = {0};
    assert_int_equal(gqe_safetensors_parse(b, 5, "short", &f), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), "short"));
    b[0] = 100;  /* header length 100 > 24 bytes available */
    assert_int_equal(gqe_safetensors_parse(b, 32, "long", &f), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), "header length 100"));
    memset(b, 0xff, 8);
    assert_int_equal(gqe_safetensors_parse(b, 32, "huge", &f), GQE_ERR_FORMAT);
    /* NUL bytes inside the header */
    memset(b, 0, sizeof b);
    b[0] = 4;
    memcpy(b + 8, "{}\0 ", 4);
    assert_int_equal(gqe_safetensors_parse(b, 12, "nul", &f), GQE_ERR_FORMAT);
}

static void test_truncated_file(void **state) {
    (void)state;
    gqe_tensor a;
    CHECK_OK(gqe_tensor_new4(&a, GQE_F32, GQE_CPU, 16, 0, 0, 0));
    for (int i = 0; i < 16; i++) gqe_f32(&a)[i] = (float)i;
    const char *names[] = {"w"};
    const gqe_tensor *ts[] = {&a};
    const char *path = tmp_path("trunc.safetensors");
    CHECK_OK(gqe_safetensors_write(path, 1, names, ts, 0, NULL, NULL));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    /* Cut into the data: the offsets now point past the end. */
    assert_int_equal(truncate(path, sb.st_size - 4), 0);
    gqe_st_file f;
    assert_int_equal(gqe_safetensors_read(path, &f), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), path));
    assert_non_null(strstr(gqe_last_error(), "'w'"));
    /* Cut into the header: the length field now exceeds the file. */
    assert_int_equal(truncate(path, 20), 0);
    assert_int_equal(gqe_safetensors_read(path, &f), GQE_ERR_FORMAT);
    assert_non_null(strstr(gqe_last_error(), "exceeds"));
    assert_int_equal(truncate(path, 3), 0);
    assert_int_equal(gqe_safetensors_read(path, &f), GQE_ERR_FORMAT);
    assert_int_equal(gqe_safetensors_read(tmp_path("absent.safetensors"), &f), GQE_ERR_IO);
    assert_non_null(strstr(gqe_last_error(), "absent.safetensors"));
    gqe_tensor_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_i64),
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_bad_length_field),
        cmocka_unit_test(test_truncated_file),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
