/* Multiple-choice evaluation (core/eval.h): scores against a plain
 * computation (one forward per row, log-softmax of the logits in double),
 * the llm.c eval-file reader on good and corrupt files, and the checks on
 * examples and vocabularies. */
#include "testutil.h"
#include "tmpdir.h"
#include "eval.h"
#include <string.h>

#define VOCAB 40

static gqe_lm *tiny_lm(gqe_attn_kind kind) {
    gqe_lm_config c;
    gqe_lm_config_default(&c);
    c.vocab = VOCAB; c.dim = 16; c.layers = 2; c.max_seq = 32; c.mlp_hidden = 24;
    c.attn.experts = 4; c.attn.groups = 2; c.attn.head_dim = 4; c.attn.kind = kind; c.seed = 5;
    c.init_std = 0.5f;   /* large weights: choices get clearly different scores */
    gqe_lm *lm;
    CHECK_OK(gqe_lm_create(&lm, &c, GQE_CPU));
    return lm;
}

static uint32_t lcg(uint32_t *s) { *s = *s * 1103515245u + 12345u; return (*s >> 8) & 0xffffff; }

/* n examples of 2..5 choices, contexts of 1..14 tokens, choices of 1..6. */
static void random_task(gqe_mc_task *t, int n, uint32_t seed) {
    for (int i = 0; i < n; i++) {
        int32_t ctx[16], ch[5][8];
        const int32_t *cp[5];
        int64_t len[5];
        int64_t nctx = 1 + lcg(&seed) % 14;
        int nc = 2 + (int)(lcg(&seed) % 4);
        for (int64_t k = 0; k < nctx; k++) ctx[k] = (int32_t)(lcg(&seed) % VOCAB);
        for (int c = 0; c < nc; c++) {
            len[c] = 1 + lcg(&seed) % 6;
            for (int64_t k = 0; k < len[c]; k++) ch[c][k] = (int32_t)(lcg(&seed) % VOCAB);
            cp[c] = ch[c];
        }
        CHECK_OK(gqe_mc_task_add(t, ctx, nctx, nc, cp, len, NULL, (int)(lcg(&seed) % nc)));
    }
}

/* log P(choice | context) by one forward of exactly the row's tokens (its last T+1). */
static double plain_logprob(gqe_lm *lm, const gqe_mc_task *t, int64_t i, int c, int64_t T) {
    const gqe_mc_example *e = &t->ex[i];
    int32_t row[64];
    int64_t n = 0;
    for (int64_t k = 0; k < e->nctx; k++) row[n++] = t->tok[e->tok_off + k];
    int64_t off = e->tok_off + e->nctx;
    for (int k = 0; k < c; k++) off += t->choice_len[e->choice_off + k];
    int64_t clen = t->choice_len[e->choice_off + c];
    for (int64_t k = 0; k < clen; k++) row[n++] = t->tok[off + k];
    int64_t drop = n > T + 1 ? n - (T + 1) : 0;
    int64_t L = n - drop - 1;
    gqe_tensor tok;
    CHECK_OK(gqe_tensor_new4(&tok, GQE_I32, GQE_CPU, 1, L, 0, 0));
    for (int64_t k = 0; k < L; k++) gqe_i32(&tok)[k] = row[drop + k];
    CHECK_OK(gqe_lm_forward(lm, &tok, NULL, 0.0f, NULL, NULL));
    gqe_tensor logits;
    CHECK_OK(gqe_tensor_new4(&logits, GQE_F32, GQE_CPU, L, VOCAB, 0, 0));
    gqe_tensor *lg = gqe_lm_logits(lm);
    gqe_tensor view = gqe_tensor_view4(lg, 0, L * VOCAB, 0, 0, 0);
    gqe_tensor flat = logits;
    flat.ndim = 1; flat.shape[0] = L * VOCAB; flat.shape[1] = 1;
    CHECK_OK(gqe_tensor_copy(&flat, &view));
    double sum = 0;
    for (int64_t p = 0; p < L; p++) {
        int64_t target_pos = drop + p + 1;   /* position in row of the predicted token */
        if (target_pos < n - clen) continue;
        const float *z = gqe_f32(&logits) + p * VOCAB;
        double mx = z[0], s = 0;
        for (int v = 1; v < VOCAB; v++) if (z[v] > mx) mx = z[v];
        for (int v = 0; v < VOCAB; v++) s += exp((double)z[v] - mx);
        sum += (double)z[row[target_pos]] - mx - log(s);
    }
    gqe_tensor_free(&tok);
    gqe_tensor_free(&logits);
    return sum;
}

static void check_against_plain(gqe_attn_kind kind, int64_t B, int64_t T) {
    gqe_lm *lm = tiny_lm(kind);
    gqe_mc_task t = {0};
    random_task(&t, 23, 11);
    CHECK_OK(gqe_mc_task_measure(&t, NULL));
    double *lp = malloc((size_t)t.nchoice * sizeof *lp);
    gqe_mc_summary sum;
    CHECK_OK(gqe_mc_score(lm, &t, B, T, lp, &sum));
    assert_int_equal(sum.n, 23);
    int64_t correct = 0, correct_norm = 0;
    for (int64_t i = 0; i < t.n; i++) {
        const gqe_mc_example *e = &t.ex[i];
        int best = 0, best_norm = 0;
        double bv = -INFINITY, bvn = -INFINITY;
        for (int c = 0; c < e->nchoices; c++) {
            double want = plain_logprob(lm, &t, i, c, T), got = lp[e->choice_off + c];
            if (fabs(want - got) > 1e-4 * (1 + fabs(want)))
                fail_msg("example %lld choice %d: scored %.7f, plain %.7f", (long long)i, c, got, want);
            double norm = want / (double)t.choice_len[e->choice_off + c];
            if (want > bv) bv = want, best = c;
            if (norm > bvn) bvn = norm, best_norm = c;
        }
        correct += best == e->label;
        correct_norm += best_norm == e->label;
    }
    assert_true(fabs(sum.acc - (double)correct / 23) < 1e-12);
    assert_true(fabs(sum.acc_norm - (double)correct_norm / 23) < 1e-12);
    free(lp);
    gqe_mc_task_free(&t);
    gqe_lm_destroy(lm);
}

/* Batches of 6 rows: examples continue from one batch into the next; T = 24 fits every row. */
static void test_score_matches_plain_gqa(void **s) { (void)s; check_against_plain(GQE_ATTN_GQA, 6, 24); }
/* One row per forward. */
static void test_score_one_row_batches(void **s) { (void)s; check_against_plain(GQE_ATTN_GQA, 1, 24); }
static void test_score_matches_plain_gqe(void **s) { (void)s; check_against_plain(GQE_ATTN_GQE, 11, 24); }
/* T = 8: long rows lose their first tokens, as lm-evaluation-harness truncates. */
static void test_score_truncates_left(void **s) { (void)s; check_against_plain(GQE_ATTN_GQA, 5, 8); }

static void test_score_errors(void **s) {
    (void)s;
    gqe_lm *lm = tiny_lm(GQE_ATTN_GQA);
    gqe_mc_task t = {0};
    random_task(&t, 3, 4);
    gqe_mc_summary sum;
    assert_int_not_equal(gqe_mc_score(lm, &t, 0, 8, NULL, &sum), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "batch shape must be >= 1"));
    /* choices of up to 6 tokens: a window of 5 would cut one */
    assert_int_not_equal(gqe_mc_score(lm, &t, 4, 3, NULL, &sum), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "do not fit the model's window of 3"));
    assert_int_not_equal(gqe_mc_task_check_vocab(&t, 3, "tiny"), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "tiny: example 0 holds token"));
    assert_non_null(strstr(gqe_last_error(), "outside the model's vocabulary of 3"));
    gqe_mc_task_free(&t);
    gqe_lm_destroy(lm);
}

static void test_add_checks(void **s) {
    (void)s;
    gqe_mc_task t = {0};
    int32_t ctx[2] = {1, 2}, a[1] = {3};
    const int32_t *cp[2] = {a, a};
    int64_t len[2] = {1, 1}, zero[2] = {1, 0};
    assert_int_not_equal(gqe_mc_task_add(&t, ctx, 2, 2, cp, len, NULL, 2), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "label 2 is out of range for 2 choices (0..1)"));
    assert_int_not_equal(gqe_mc_task_add(&t, ctx, 2, 0, cp, len, NULL, 0), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "no choices"));
    assert_int_not_equal(gqe_mc_task_add(&t, ctx, 2, 2, cp, zero, NULL, 0), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "choice 1 is empty"));
    assert_int_not_equal(gqe_mc_task_add(&t, ctx, 0, 2, cp, len, NULL, 0), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "empty context"));
    assert_int_equal(t.n, 0);
    gqe_mc_task_free(&t);
}

/* An llm.c eval file as dev/data/hellaswag.py writes it (header[3]: the longest example). */
typedef struct { uint16_t *u; size_t n; } stream;
static void put(stream *s, uint16_t v) { s->u = realloc(s->u, (s->n + 1) * 2); s->u[s->n++] = v; }

static size_t llmc_image(unsigned char **out, int nex, int label_of_last, int nchoices) {
    stream s = {0};
    int longest = 0;
    for (int i = 0; i < nex; i++) {
        size_t start = s.n;
        int nc = i == nex - 1 ? nchoices : 4;
        put(&s, 65535); put(&s, 0); put(&s, (uint16_t)i); put(&s, (uint16_t)(i == nex - 1 ? label_of_last : i % 4));
        put(&s, (uint16_t)nc);
        put(&s, 3); put(&s, 10); put(&s, 11); put(&s, (uint16_t)(12 + i));
        for (int c = 0; c < nc; c++) { put(&s, (uint16_t)(1 + c % 2)); for (int k = 0; k <= c % 2; k++) put(&s, (uint16_t)(20 + c)); }
        s.u[start + 1] = (uint16_t)((s.n - start) * 2);
        if ((int)(s.n - start) * 2 > longest) longest = (int)(s.n - start) * 2;
    }
    size_t len = 1024 + s.n * 2;
    unsigned char *b = calloc(1, len);
    int32_t h[4] = {GQE_EVAL_MAGIC, 1, nex, longest};
    memcpy(b, h, sizeof h);
    memcpy(b + 1024, s.u, s.n * 2);
    free(s.u);
    *out = b;
    return len;
}

static void expect_bad(const unsigned char *b, size_t len, const char *want) {
    gqe_mc_task t = {0};
    gqe_status st = gqe_mc_task_parse_llmc(&t, b, len, "x.bin");
    if (st == GQE_OK) fail_msg("accepted; expected an error containing '%s'", want);
    if (!strstr(gqe_last_error(), want)) fail_msg("message '%s' lacks '%s'", gqe_last_error(), want);
    gqe_mc_task_free(&t);
}

static void test_llmc_file(void **s) {
    (void)s;
    unsigned char *b;
    size_t len = llmc_image(&b, 3, 1, 4);
    FILE *f = fopen(tmp_path("ok.bin"), "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    gqe_mc_task t = {0};
    CHECK_OK(gqe_mc_task_read_llmc(&t, tmp_path("ok.bin")));
    assert_int_equal(t.n, 3);
    assert_int_equal(t.nchoice, 12);
    assert_int_equal(t.ex[2].label, 1);
    assert_int_equal(t.ex[1].nctx, 3);
    assert_int_equal(t.tok[t.ex[1].tok_off + 2], 13);
    assert_int_equal(t.choice_len[t.ex[0].choice_off + 1], 2);
    assert_int_equal(t.tok[t.ex[0].tok_off + 3 + 1], 21);   /* choice 1's first token */
    CHECK_OK(gqe_mc_task_measure(&t, NULL));
    assert_int_equal(t.choice_bytes[1], 2);
    gqe_mc_task_free(&t);

    unsigned char *c = malloc(len);
    memcpy(c, b, len); ((int32_t *)c)[0] = 20240520;
    expect_bad(c, len, "magic number 20240520, expected 20240522 (not an llm.c eval file; this is a token shard)");
    expect_bad(b, 100, "shorter than the 1024-byte header");
    expect_bad(b, len - 3, "truncated");
    expect_bad(b, 1024 + 8, "truncated");
    memcpy(c, b, len); ((int32_t *)c)[2] = 4;
    expect_bad(c, len, "truncated: example 3 of 4");
    memcpy(c, b, len); c[1024] = 7;
    expect_bad(c, len, "does not start with 65535");
    memcpy(c, b, len); ((int32_t *)c)[1] = 2;
    expect_bad(c, len, "version 2, expected 1");
    free(c);
    free(b);
    len = llmc_image(&b, 2, 4, 4);
    expect_bad(b, len, "example 1: label 4 is out of range for 4 choices (0..3)");
    free(b);
    len = llmc_image(&b, 2, 0, 0);
    expect_bad(b, len, "example 1: no choices");
    free(b);
    len = llmc_image(&b, 2, 0, 4);
    unsigned char *longer = calloc(1, len + 2);
    memcpy(longer, b, len);
    expect_bad(longer, len + 2, "2 bytes after the 2 examples");
    free(longer);
    free(b);
    assert_int_not_equal(gqe_mc_task_read_llmc(&t, tmp_path("missing.bin")), GQE_OK);
    assert_non_null(strstr(gqe_last_error(), "missing.bin: cannot open task file"));
}

static int setup(void **s) { (void)s; return tmpdir_make("/tmp/gqe_eval_XXXXXX"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_matches_plain_gqa),
        cmocka_unit_test(test_score_matches_plain_gqe),
        cmocka_unit_test(test_score_one_row_batches),
        cmocka_unit_test(test_score_truncates_left),
        cmocka_unit_test(test_score_errors),
        cmocka_unit_test(test_add_checks),
        cmocka_unit_test(test_llmc_file),
    };
    return cmocka_run_group_tests(tests, setup, remove_dir);
}
