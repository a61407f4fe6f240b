/* Data sets: text splits and determinism, llm.c shards and every bad shard,
 * associative-recall targets, and the configuration errors. Every file is
 * made here, in a temporary directory. */
#include "testutil.h"
#include "tmpdir.h"
#include "data.h"
#include <string.h>
#include <unistd.h>

static int setup_dir(void **state) {
    (void)state;
    return tmpdir_make("/tmp/gqe_data_XXXXXX");
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

#define ASSERT_MSG_HAS(needle) do { if (!strstr(gqe_last_error(), (needle))) \
    fail_msg("message lacks '%s': %s", (needle), gqe_last_error()); } while (0)

/* A text file whose bytes are easy to locate: a pseudo-random printable mix. */
static unsigned char *make_text(const char *path, size_t n) {
    unsigned char *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(32 + gqe_rng_u32_at(5, 0, i) % 95);
    write_bytes(path, b, n);
    return b;
}

static gqe_dataset *open_text(const char *path, uint64_t seed) {
    gqe_data_config cfg;
    gqe_data_config_default(&cfg);
    cfg.kind = "text";
    cfg.path = path;
    cfg.seed = seed;
    gqe_dataset *ds;
    CHECK_OK(gqe_dataset_open(&ds, &cfg));
    return ds;
}

/* Row must appear in bytes[lo, hi) with targets shifted by one. */
static void assert_row_in(const int32_t *tk, const int32_t *tg, int64_t T, const unsigned char *bytes,
                          int64_t lo, int64_t hi) {
    for (int64_t t = 0; t + 1 < T; t++) assert_int_equal(tg[t], tk[t + 1]);
    for (int64_t s = lo; s + T + 1 <= hi; s++) {
        int ok = 1;
        for (int64_t t = 0; t < T && ok; t++) ok = bytes[s + t] == tk[t] && bytes[s + t + 1] == tg[t];
        if (ok) return;
    }
    fail_msg("row not found in bytes [%lld, %lld)", (long long)lo, (long long)hi);
}

static void test_text_splits_and_determinism(void **state) {
    (void)state;
    const char *path = tmp_path("t.txt");
    unsigned char *bytes = make_text(path, 1000);
    gqe_dataset *ds = open_text(path, 7);
    assert_string_equal(gqe_dataset_kind(ds), "text");
    assert_int_equal(gqe_dataset_vocab(ds), 256);
    assert_int_equal(gqe_dataset_tokens(ds, GQE_SPLIT_TRAIN), 900);
    assert_int_equal(gqe_dataset_tokens(ds, GQE_SPLIT_VAL), 100);
    int64_t counts[256], want[256] = {0};
    for (int i = 900; i < 1000; i++) want[bytes[i]]++;
    CHECK_OK(gqe_dataset_token_counts(ds, GQE_SPLIT_VAL, counts));
    assert_memory_equal(counts, want, sizeof counts);

    enum { B = 4, T = 16 };
    int32_t tk[B * T], tg[B * T], tk2[B * T], tg2[B * T];
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 3, B, T, tk, tg));
    for (int b = 0; b < B; b++) assert_row_in(tk + b * T, tg + b * T, T, bytes, 0, 900);
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 3, B, T, tk2, tg2));
    assert_memory_equal(tk, tk2, sizeof tk);
    assert_memory_equal(tg, tg2, sizeof tg);

    /* Another handle with the same seed gives the same batch. */
    gqe_dataset *same = open_text(path, 7);
    CHECK_OK(gqe_dataset_batch(same, GQE_SPLIT_TRAIN, 3, B, T, tk2, tg2));
    assert_memory_equal(tk, tk2, sizeof tk);
    /* A different index or seed gives a different one. */
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 4, B, T, tk2, tg2));
    assert_memory_not_equal(tk, tk2, sizeof tk);
    gqe_dataset *other = open_text(path, 8);
    CHECK_OK(gqe_dataset_batch(other, GQE_SPLIT_TRAIN, 3, B, T, tk2, tg2));
    assert_memory_not_equal(tk, tk2, sizeof tk);

    /* Validation rows come from the last 100 bytes only, and repeat. */
    for (int idx = 0; idx < 3; idx++) {
        CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_VAL, idx, B, T, tk, tg));
        for (int b = 0; b < B; b++) assert_row_in(tk + b * T, tg + b * T, T, bytes, 900, 1000);
        CHECK_OK(gqe_dataset_batch(same, GQE_SPLIT_VAL, idx, B, T, tk2, tg2));
        assert_memory_equal(tk, tk2, sizeof tk);
    }

    /* Starts cover the range: over many rows both ends of the split are seen. */
    int64_t lo_seen = 1000, hi_seen = -1;
    for (int idx = 0; idx < 200; idx++) {
        int32_t a[T], c[T];
        CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, idx, 1, T, a, c));
        for (int64_t s = 0; s + T + 1 <= 900; s++)
            if (bytes[s] == a[0] && bytes[s + 1] == a[1]
                && bytes[s + T] == c[T - 1]) {
                if (s < lo_seen) lo_seen = s;
                if (s > hi_seen) hi_seen = s;
                break;
            }
    }
    assert_true(lo_seen < 100);
    assert_true(hi_seen > 780);

    gqe_dataset_free(ds);
    gqe_dataset_free(same);
    gqe_dataset_free(other);
    free(bytes);
}

static void test_text_errors(void **state) {
    (void)state;
    const char *path = tmp_path("short.txt");
    free(make_text(path, 50));
    gqe_dataset *ds = open_text(path, 1);
    int32_t tk[4 * 16], tg[4 * 16];
    /* 45 train bytes, one batch of 4 x 17 needs 68. */
    assert_int_equal(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 0, 4, 16, tk, tg), GQE_ERR_ARG);
    ASSERT_MSG_HAS(path);
    ASSERT_MSG_HAS("50 bytes");
    ASSERT_MSG_HAS("68");
    assert_int_equal(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 0, 1, 4, tk, tg), GQE_OK);  /* 5 val bytes suffice */
    assert_int_equal(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 0, 1, 5, tk, tg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("val");
    assert_int_equal(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, -1, 1, 4, tk, tg), GQE_ERR_ARG);
    assert_int_equal(gqe_dataset_batch(ds, (gqe_split)5, 0, 1, 4, tk, tg), GQE_ERR_ARG);
    gqe_dataset_free(ds);

    /* With the batch shape in the config, open itself fails. */
    gqe_data_config cfg;
    gqe_data_config_default(&cfg);
    cfg.path = path;
    cfg.batch = 4;
    cfg.seq = 16;
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_ARG);
    ASSERT_MSG_HAS(path);
    assert_null(ds);

    gqe_data_config_default(&cfg);
    cfg.path = tmp_path("absent.txt");
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_IO);
    ASSERT_MSG_HAS("absent.txt");
    write_bytes(tmp_path("empty.txt"), "", 0);
    cfg.path = tmp_path("empty.txt");
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_FORMAT);
    ASSERT_MSG_HAS("empty");
    cfg.path = path;
    cfg.val_frac = 1.0;
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("val_frac");
    cfg.val_frac = 0.1;
    cfg.vocab = 300;
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("256");
    cfg.vocab = 0;
    cfg.kind = "images";
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("text, shards, recall");
    ASSERT_MSG_HAS("images");

    gqe_split sp;
    CHECK_OK(gqe_split_parse("val", &sp));
    assert_int_equal(sp, GQE_SPLIT_VAL);
    assert_int_equal(gqe_split_parse("test", &sp), GQE_ERR_ARG);
    ASSERT_MSG_HAS("train, val");
}

/* Shard n holds tokens base, base+1, ... so rows show where they came from. */
static void write_seq_shard(const char *path, int base, int n) {
    uint16_t *t = malloc(sizeof *t * (size_t)n);
    for (int i = 0; i < n; i++) t[i] = (uint16_t)(base + i);
    CHECK_OK(gqe_shard_write(path, t, n));
    free(t);
}

static gqe_dataset *open_shards(const char *train, const char *val, int64_t vocab, gqe_status want) {
    gqe_data_config cfg;
    gqe_data_config_default(&cfg);
    cfg.kind = "shards";
    cfg.path = train;
    cfg.val_path = val;
    cfg.vocab = vocab;
    gqe_dataset *ds = NULL;
    gqe_status s = gqe_dataset_open(&ds, &cfg);
    if (s != want) fail_msg("open %s: got %s (%s), want %s", train, gqe_status_name(s), gqe_last_error(), gqe_status_name(want));
    return ds;
}

static void test_shards(void **state) {
    (void)state;
    write_seq_shard(tmp_path("s_train_000.bin"), 1000, 300);
    write_seq_shard(tmp_path("s_train_001.bin"), 5000, 200);
    write_seq_shard(tmp_path("s_train_002.bin"), 9000, 5);  /* too short for a row: never sampled */
    write_seq_shard(tmp_path("s_val_000.bin"), 20000, 200);
    gqe_dataset *ds = open_shards(tmp_path("s_train_*.bin"), tmp_path("s_val_000.bin"), 0, GQE_OK);
    assert_int_equal(gqe_dataset_vocab(ds), 50257);
    assert_int_equal(gqe_dataset_tokens(ds, GQE_SPLIT_TRAIN), 505);
    assert_int_equal(gqe_dataset_tokens(ds, GQE_SPLIT_VAL), 200);
    enum { B = 8, T = 32 };
    int32_t tk[B * T], tg[B * T], tk2[B * T], tg2[B * T];
    int from[2] = {0, 0};
    for (int idx = 0; idx < 20; idx++) {
        CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, idx, B, T, tk, tg));
        for (int b = 0; b < B; b++) {
            int32_t *r = tk + b * T, *g = tg + b * T;
            /* A row never crosses shards: consecutive within one shard. */
            for (int t = 0; t < T; t++) {
                assert_int_equal(r[t], r[0] + t);
                assert_int_equal(g[t], r[t] + 1);
            }
            int shard0 = r[0] >= 1000 && r[0] + T < 1300, shard1 = r[0] >= 5000 && r[0] + T < 5200;
            assert_true(shard0 || shard1);
            from[shard1]++;
        }
    }
    assert_true(from[0] > 0 && from[1] > 0);
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 0, 4, T, tk, tg));
    for (int i = 0; i < 4 * T; i++) assert_true(tk[i] >= 20000 && tg[i] < 20200);
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 0, 4, T, tk2, tg2));
    assert_memory_equal(tk, tk2, 4 * T * sizeof *tk);
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 1, 4, T, tk2, tg2));
    assert_memory_not_equal(tk, tk2, 4 * T * sizeof *tk);
    /* 200 val tokens cannot fill 8 rows of 33. */
    assert_int_equal(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 0, B, T, tk, tg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("needs 264");
    ASSERT_MSG_HAS("s_val_000.bin");
    /* token counts over a whole split: each id once */
    int64_t *counts = malloc(sizeof *counts * 50257);
    CHECK_OK(gqe_dataset_token_counts(ds, GQE_SPLIT_TRAIN, counts));
    int64_t total = 0;
    for (int i = 0; i < 50257; i++) {
        int want = (i >= 1000 && i < 1300) || (i >= 5000 && i < 5200) || (i >= 9000 && i < 9005);
        if (counts[i] != want) fail_msg("train count of %d: %lld, want %d", i, (long long)counts[i], want);
        total += counts[i];
    }
    assert_int_equal(total, 505);
    CHECK_OK(gqe_dataset_token_counts(ds, GQE_SPLIT_VAL, counts));
    assert_int_equal(counts[20000], 1);
    assert_int_equal(counts[20199], 1);
    assert_int_equal(counts[20200], 0);
    free(counts);
    gqe_dataset_free(ds);

    /* Without val_path: training works, validation says what to set. */
    ds = open_shards(tmp_path("s_train_*.bin"), NULL, 0, GQE_OK);
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 0, B, T, tk, tg));
    assert_int_equal(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 0, B, T, tk, tg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("val_path");
    gqe_dataset_free(ds);
}

static void write_raw_shard(const char *path, int32_t magic, int32_t version, int32_t count, int ntok, int extra) {
    size_t n = 1024 + 2 * (size_t)ntok + (size_t)extra;
    unsigned char *b = calloc(1, n);
    int32_t h[3] = {magic, version, count};
    memcpy(b, h, sizeof h);
    for (int i = 0; i < ntok; i++) { uint16_t t = (uint16_t)i; memcpy(b + 1024 + 2 * i, &t, 2); }
    write_bytes(path, b, n);
    free(b);
}

static void expect_bad_shard(const char *name, int64_t vocab, gqe_status want, const char *needle) {
    const char *path = tmp_path(name);
    open_shards(path, NULL, vocab, want);
    ASSERT_MSG_HAS(path);
    ASSERT_MSG_HAS(needle);
}

static void test_bad_shards(void **state) {
    (void)state;
    expect_bad_shard("missing.bin", 0, GQE_ERR_IO, "not found");
    open_shards(tmp_path("nothing_*.bin"), NULL, 0, GQE_ERR_IO);
    ASSERT_MSG_HAS("no shard files match");
    write_bytes(tmp_path("empty.bin"), "", 0);
    expect_bad_shard("empty.bin", 0, GQE_ERR_FORMAT, "empty");
    write_bytes(tmp_path("tiny.bin"), "abcdefgh", 8);
    expect_bad_shard("tiny.bin", 0, GQE_ERR_FORMAT, "shorter than the 1024-byte");
    write_raw_shard(tmp_path("magic.bin"), 12345, 1, 10, 10, 0);
    expect_bad_shard("magic.bin", 0, GQE_ERR_FORMAT, "magic number 12345");
    write_raw_shard(tmp_path("version.bin"), GQE_SHARD_MAGIC, 2, 10, 10, 0);
    expect_bad_shard("version.bin", 0, GQE_ERR_FORMAT, "version 2");
    write_raw_shard(tmp_path("trunc.bin"), GQE_SHARD_MAGIC, 1, 100, 50, 0);
    expect_bad_shard("trunc.bin", 0, GQE_ERR_FORMAT, "truncated");
    ASSERT_MSG_HAS("100 tokens");
    write_raw_shard(tmp_path("trail.bin"), GQE_SHARD_MAGIC, 1, 10, 10, 3);
    expect_bad_shard("trail.bin", 0, GQE_ERR_FORMAT, "trailing");
    write_raw_shard(tmp_path("neg.bin"), GQE_SHARD_MAGIC, 1, -1, 0, 0);
    expect_bad_shard("neg.bin", 0, GQE_ERR_FORMAT, "negative");
    write_raw_shard(tmp_path("vocab.bin"), GQE_SHARD_MAGIC, 1, 200, 200, 0);  /* tokens 0..199 */
    expect_bad_shard("vocab.bin", 150, GQE_ERR_FORMAT, "token 150 at position 150");
    gqe_dataset_free(open_shards(tmp_path("vocab.bin"), NULL, 200, GQE_OK));
    open_shards(tmp_path("vocab.bin"), NULL, 70000, GQE_ERR_ARG);
    ASSERT_MSG_HAS("65536");
    /* A bad validation shard fails the open too. */
    open_shards(tmp_path("vocab.bin"), tmp_path("magic.bin"), 0, GQE_ERR_FORMAT);
    ASSERT_MSG_HAS("magic.bin");
}

static void test_recall(void **state) {
    (void)state;
    gqe_data_config cfg;
    gqe_data_config_default(&cfg);
    cfg.kind = "recall";
    cfg.seed = 11;
    cfg.num_pairs = 8;
    cfg.num_queries = 5;
    gqe_dataset *ds;
    CHECK_OK(gqe_dataset_open(&ds, &cfg));
    const int64_t V = gqe_dataset_vocab(ds), K = (V - 1) / 2;
    assert_int_equal(V, 256);
    assert_int_equal(gqe_dataset_tokens(ds, GQE_SPLIT_TRAIN), -1);
    int64_t counts[256];
    assert_int_equal(gqe_dataset_token_counts(ds, GQE_SPLIT_VAL, counts), GQE_ERR_ARG);
    ASSERT_MSG_HAS("generated");
    enum { B = 16, T = 48, P = 8, Q = 5 };
    int32_t tk[B * T], tg[B * T], tk2[B * T], tg2[B * T];
    for (int split = 0; split < 2; split++) {
        CHECK_OK(gqe_dataset_batch(ds, (gqe_split)split, 2, B, T, tk, tg));
        for (int b = 0; b < B; b++) {
            int32_t *r = tk + b * T, *g = tg + b * T;
            for (int i = 0; i < P; i++) {
                assert_true(r[2 * i] >= 1 && r[2 * i] <= K);          /* key range */
                assert_true(r[2 * i + 1] > K && r[2 * i + 1] < V);    /* value range */
                for (int j = 0; j < i; j++) assert_int_not_equal(r[2 * i], r[2 * j]);
            }
            int queries = 0;
            for (int t = 0; t < T; t++) {
                assert_true(r[t] >= 0 && r[t] < V);
                if (t < 2 * P) { assert_int_equal(g[t], -1); continue; }
                if (g[t] == -1) { assert_int_equal(r[t], 0); continue; }
                queries++;
                int found = 0;  /* the target is the value paired with the queried key */
                for (int i = 0; i < P; i++)
                    if (r[2 * i] == r[t]) { assert_int_equal(g[t], r[2 * i + 1]); found = 1; }
                assert_true(found);
            }
            assert_int_equal(queries, Q);
        }
    }
    /* Reproducible; train and val differ; rows within a batch differ. */
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 2, B, T, tk, tg));
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 2, B, T, tk2, tg2));
    assert_memory_equal(tk, tk2, sizeof tk);
    assert_memory_equal(tg, tg2, sizeof tg);
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_VAL, 2, B, T, tk2, tg2));
    assert_memory_not_equal(tk, tk2, sizeof tk);
    assert_memory_not_equal(tk, tk + T, T * sizeof *tk);
    /* Too short a row for the pairs and queries. */
    assert_int_equal(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 0, 1, 20, tk, tg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("21");
    gqe_dataset_free(ds);

    /* Small vocabularies still keep keys and values apart. */
    cfg.vocab = 20;
    cfg.num_pairs = 9;
    cfg.num_queries = 0;  /* all keys */
    CHECK_OK(gqe_dataset_open(&ds, &cfg));
    CHECK_OK(gqe_dataset_batch(ds, GQE_SPLIT_TRAIN, 0, B, T, tk, tg));
    for (int i = 0; i < B * T; i++) assert_true(tk[i] >= 0 && tk[i] < 20 && tg[i] < 20);
    gqe_dataset_free(ds);
    cfg.vocab = 18;  /* 8 keys < 9 pairs */
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("num_pairs=9");
    cfg.vocab = 0;
    cfg.num_queries = 10;
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("num_queries");
    cfg.num_queries = 0;
    cfg.seq = 10;
    assert_int_equal(gqe_dataset_open(&ds, &cfg), GQE_ERR_ARG);
    ASSERT_MSG_HAS("seq 10");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_splits_and_determinism),
        cmocka_unit_test(test_text_errors),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_bad_shards),
        cmocka_unit_test(test_recall),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
