/* The GPT-2 tokenizer in C (and so under AddressSanitizer): round trips of
 * random bytes, long pieces (heap merging) and invalid UTF-8, the same ids
 * from a fresh tokenizer as from one with a full cache, and the shard
 * writer. Ids against references are checked by tests/lua/tokenizer_spec.lua.
 * Needs data/gpt2 (make data): skipped without it. */
#include "testutil.h"
#include "tmpdir.h"
#include "tok.h"
#include "tok/shards.h"
#include "data.h"
#include <string.h>
#include <unistd.h>

#define ENC "data/gpt2/encoder.json"
#define BPE "data/gpt2/vocab.bpe"

static gqe_tokenizer *load_or_skip(void) {
    if (access(ENC, R_OK) != 0 || access(BPE, R_OK) != 0) {
        print_message("data/gpt2 missing (make data): skipped\n");
        skip();
    }
    gqe_tokenizer *t;
    CHECK_OK(gqe_tok_load(&t, ENC, BPE));
    return t;
}

static void roundtrip(gqe_tokenizer *t, const char *s, size_t n) {
    gqe_tok_ids ids = {0};
    CHECK_OK(gqe_tok_encode(t, s, n, &ids));
    char *back;
    size_t len;
    CHECK_OK(gqe_tok_decode(t, ids.ids, ids.n, &back, &len));
    assert_int_equal(len, n);
    assert_memory_equal(back, s, n);
    free(back);
    gqe_tok_ids_free(&ids);
}

static void test_roundtrips(void **state) {
    (void)state;
    gqe_tokenizer *t = load_or_skip();
    uint32_t seed = 3;
    char buf[4096];
    for (int k = 0; k < 300; k++) {
        size_t n = 1 + (size_t)(k * 37 % 4000);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            uint32_t r = seed >> 8;
            /* mostly letters and spaces (long pieces), some arbitrary bytes */
            buf[i] = (char)(r % 8 == 0 ? r >> 8 : r % 5 == 0 ? ' ' : 'a' + (r >> 4) % 6);
        }
        roundtrip(t, buf, n);
    }
    const char *cases[] = {"", "\xff", "\xc3", "a\xe2\x82", "\xed\xa0\x80", "caf\xc3\xa9 \xf0\x9f\xa4\x97 !!", "<|endoftext|>"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) roundtrip(t, cases[i], strlen(cases[i]));
    gqe_tok_free(t);
}

/* The cache changes nothing: a second pass, and a fresh tokenizer, give the same ids. */
static void test_cache_consistent(void **state) {
    (void)state;
    gqe_tokenizer *a = load_or_skip(), *b;
    CHECK_OK(gqe_tok_load(&b, ENC, BPE));
    const char *text = "The quick brown fox jumps over the lazy dog. The dog's quick; the fox isn't.  Twice: the quick.";
    gqe_tok_ids x = {0}, y = {0}, z = {0};
    CHECK_OK(gqe_tok_encode(a, text, strlen(text), &x));
    CHECK_OK(gqe_tok_encode(a, text, strlen(text), &y));
    CHECK_OK(gqe_tok_encode(b, text + 4, strlen(text) - 4, &z));   /* warms b differently */
    gqe_tok_ids_free(&z);
    CHECK_OK(gqe_tok_encode(b, text, strlen(text), &z));
    assert_int_equal(x.n, y.n);
    assert_int_equal(x.n, z.n);
    assert_memory_equal(x.ids, y.ids, (size_t)x.n * 4);
    assert_memory_equal(x.ids, z.ids, (size_t)x.n * 4);
    assert_int_equal(x.ids[0], 464);   /* "The" */
    gqe_tok_ids_free(&x); gqe_tok_ids_free(&y); gqe_tok_ids_free(&z);
    size_t len;
    assert_null(gqe_tok_token(a, 50257, &len));
    int32_t bad = -1;
    char *out;
    assert_int_not_equal(gqe_tok_decode(a, &bad, 1, &out, &len), GQE_OK);
    gqe_tok_free(a);
    gqe_tok_free(b);
}

static void test_load_errors(void **state) {
    (void)state;
    gqe_tokenizer *t;
    assert_int_not_equal(gqe_tok_load(&t, "/nonexistent/encoder.json", BPE), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "/nonexistent/encoder.json: cannot open the GPT-2 encoder"));
    assert_null(t);
}

static void test_shard_writer(void **state) {
    (void)state;
    gqe_shard_writer *w;
    CHECK_OK(gqe_shard_writer_open(&w, tmp_path("s"), 5));
    int32_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = 50000 + i;
    CHECK_OK(gqe_shard_writer_add(w, ids, 7));
    CHECK_OK(gqe_shard_writer_add(w, ids + 7, 5));
    int64_t n;
    int files;
    CHECK_OK(gqe_shard_writer_finish(w, &n, &files));
    assert_int_equal(n, 12);
    assert_int_equal(files, 3);   /* 5 + 5 + 2 */
    FILE *f = fopen(tmp_path("s_000002.bin"), "rb");
    assert_non_null(f);
    unsigned char buf[1024 + 4];
    assert_int_equal(fread(buf, 1, sizeof buf, f), sizeof buf);
    fclose(f);
    const uint16_t *tok;
    int64_t nt;
    CHECK_OK(gqe_shard_parse(buf, sizeof buf, "s_000002.bin", 50257, &tok, &nt));
    assert_int_equal(nt, 2);
    uint16_t last;
    memcpy(&last, buf + 1024 + 2, 2);
    assert_int_equal(last, 50011);
    CHECK_OK(gqe_shard_writer_open(&w, tmp_path("t"), 5));
    int32_t big = 70000;
    assert_int_not_equal(gqe_shard_writer_add(w, &big, 1), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "does not fit the uint16 shard format"));
    gqe_shard_writer_free(w);
    assert_int_not_equal(gqe_shard_writer_open(&w, tmp_path("u"), 0), GQE_OK);
}

static int setup(void **s) { (void)s; return tmpdir_make("/tmp/gqe_tok_XXXXXX"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_cache_consistent),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_shard_writer),
    };
    return cmocka_run_group_tests(tests, setup, remove_dir);
}
