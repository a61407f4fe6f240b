/* Loading GPT-2's encoder.json and vocab.bpe. Token strings in both files
 * are written in GPT-2's byte-to-unicode alphabet (every byte shown as a
 * printable character); they are turned back into bytes here, so the
 * encoder works on raw bytes only. encoder.json is parsed by SQLite's JSON
 * functions (json_each), which the run log links anyway. */
#include "tok_internal.h"
#include "file.h"
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
 * the other 68 bytes become U+0100.. in byte order. */
static void byte_to_unicode(uint32_t map[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* Decodes the UTF-8 token string s into raw bytes (out has room for slen
 * bytes); returns the byte count or -1 for a character outside the alphabet. */
static long unicode_to_bytes(const int16_t inverse[512], const unsigned char *s, size_t slen, char *out) {
    long n = 0;
    for (size_t i = 0; i < slen;) {
        uint32_t cp;
        if (s[i] < 0x80) cp = s[i++];
        else if ((s[i] & 0xE0) == 0xC0 && i + 1 < slen) { cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F); i += 2; }
        else return -1;   /* the alphabet ends at U+0143: two bytes at most */
        if (cp >= 512 || inverse[cp] < 0) return -1;
        out[n++] = (char)inverse[cp];
    }
    return n;
}


/* encoder.json -> t->pool/off/len. */
static gqe_status load_encoder(gqe_tokenizer *t, const char *path, const int16_t inverse[512]) {
    char *json;
    size_t jlen;
    GQE_TRY(gqe_file_read(path, "the GPT-2 encoder (encoder.json)", " (run `make data`, which fetches it)", (unsigned char **)&json, &jlen));
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    gqe_status s = GQE_OK;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT key, value, type FROM json_each(?1)", -1, &st, NULL) != SQLITE_OK) {
        s = gqe_fail(GQE_ERR_DB, "%s: cannot start SQLite's JSON reader: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto done;
    }
    sqlite3_bind_text(st, 1, json, (int)jlen, SQLITE_STATIC);
    t->vocab = GQE_TOK_GPT2_VOCAB;
    t->off = calloc((size_t)t->vocab, sizeof *t->off);
    t->len = calloc((size_t)t->vocab, sizeof *t->len);
    t->pool = malloc(jlen + 1);   /* a token's bytes are never longer than its JSON key */
    unsigned char *seen = calloc((size_t)t->vocab, 1);
    if (!t->off || !t->len || !t->pool || !seen) { free(seen); s = gqe_fail(GQE_ERR_NOMEM, "%s: out of memory", path); goto done; }
    size_t used = 0;
    int64_t count = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *key = sqlite3_column_text(st, 0);
        size_t klen = (size_t)sqlite3_column_bytes(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 2);
        sqlite3_int64 id = sqlite3_column_int64(st, 1);
        if (!type || strcmp(type, "integer") != 0 || id < 0 || id >= t->vocab) {
            s = gqe_fail(GQE_ERR_FORMAT, "%s: entry \"%s\" has id %s; expected an integer in 0..%lld (is this GPT-2's encoder.json?)",
                         path, key ? (const char *)key : "?", (const char *)sqlite3_column_text(st, 1), (long long)t->vocab - 1);
            break;
        }
        if (seen[id]) { s = gqe_fail(GQE_ERR_FORMAT, "%s: id %lld appears twice", path, (long long)id); break; }
        long nb;
        if (id == GQE_TOK_GPT2_EOT && klen == 13 && memcmp(key, "<|endoftext|>", 13) == 0) {
            memcpy(t->pool + used, key, klen);
            nb = 13;
        } else if ((nb = unicode_to_bytes(inverse, key, klen, t->pool + used)) <= 0) {
            s = gqe_fail(GQE_ERR_FORMAT, "%s: token \"%s\" (id %lld) is not written in GPT-2's byte alphabet", path, key, (long long)id);
            break;
        }
        seen[id] = 1;
        t->off[id] = (uint32_t)used;
        t->len[id] = (uint32_t)nb;
        used += (size_t)nb;
        count++;
    }
    if (s == GQE_OK && rc != SQLITE_DONE)
        s = gqe_fail(GQE_ERR_FORMAT, "%s: not valid JSON (%s)", path, sqlite3_errmsg(db));
    if (s == GQE_OK && count != t->vocab)
        s = gqe_fail(GQE_ERR_FORMAT, "%s: %lld entries, expected GPT-2's %lld", path, (long long)count, (long long)t->vocab);
    free(seen);
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(json);
    return s;
}

/* A temporary bytes -> id table for reading the merges. */
typedef struct { int32_t *slot; size_t cap; } id_index;

static int32_t index_find(const gqe_tokenizer *t, const id_index *ix, const char *p, size_t n) {
    for (size_t i = gqe_tok_hash(p, n) & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
        int32_t id = ix->slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->pool + t->off[id], p, n) == 0) return id;
    }
}

static void merge_insert(gqe_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (size_t i = gqe_tok_mix(key) & (t->mcap - 1);; i = (i + 1) & (t->mcap - 1)) {
        if (t->mkey[i] == key) return;   /* a repeated merge keeps its first (lowest) rank */
        if (t->mkey[i] == 0) { t->mkey[i] = key; t->mrank[i] = rank; t->mid[i] = id; return; }
    }
}

int32_t gqe_tok_merge_rank(const gqe_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (size_t i = gqe_tok_mix(key) & (t->mcap - 1);; i = (i + 1) & (t->mcap - 1)) {
        if (t->mkey[i] == key) { *merged = t->mid[i]; return t->mrank[i]; }
        if (t->mkey[i] == 0) return -1;
    }
}

static gqe_status load_merges(gqe_tokenizer *t, const char *path, const int16_t inverse[512]) {
    char *text;
    size_t tlen;
    GQE_TRY(gqe_file_read(path, "the GPT-2 merges (vocab.bpe)", " (run `make data`, which fetches it)", (unsigned char **)&text, &tlen));
    gqe_status s = GQE_OK;
    id_index ix = {NULL, 1 << 17};
    ix.slot = malloc(ix.cap * sizeof *ix.slot);
    t->mcap = 1 << 17;
    t->mkey = calloc(t->mcap, sizeof *t->mkey);
    t->mrank = malloc(t->mcap * sizeof *t->mrank);
    t->mid = malloc(t->mcap * sizeof *t->mid);
    char *scratch = malloc(tlen + 1);
    if (!ix.slot || !t->mkey || !t->mrank || !t->mid || !scratch) { s = gqe_fail(GQE_ERR_NOMEM, "%s: out of memory", path); goto done; }
    memset(ix.slot, 0xff, ix.cap * sizeof *ix.slot);
    for (int32_t id = 0; id < t->vocab; id++) {
        size_t i = gqe_tok_hash(t->pool + t->off[id], t->len[id]) & (ix.cap - 1);
        while (ix.slot[i] >= 0) i = (i + 1) & (ix.cap - 1);
        ix.slot[i] = id;
    }
    int32_t rank = 0;
    long line = 0;
    for (char *p = text, *end = text + tlen; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        line++;
        if (eol > p && eol[-1] == '\r') eol[-1] = 0, eol--;
        *eol = 0;
        if (eol > p && !(line == 1 && strncmp(p, "#version", 8) == 0)) {
            char *sp = strchr(p, ' ');
            long la = -1, lb = -1;
            if (sp) {
                la = unicode_to_bytes(inverse, (const unsigned char *)p, (size_t)(sp - p), scratch);
                lb = unicode_to_bytes(inverse, (const unsigned char *)sp + 1, (size_t)(eol - sp - 1), scratch + (la > 0 ? la : 0));
            }
            if (!sp || la <= 0 || lb <= 0) {
                s = gqe_fail(GQE_ERR_FORMAT, "%s:%ld: expected two tokens in GPT-2's byte alphabet separated by one space", path, line);
                break;
            }
            int32_t a = index_find(t, &ix, scratch, (size_t)la), b = index_find(t, &ix, scratch + la, (size_t)lb);
            int32_t ab = index_find(t, &ix, scratch, (size_t)(la + lb));
            if (a < 0 || b < 0 || ab < 0) {
                s = gqe_fail(GQE_ERR_FORMAT, "%s:%ld: merge \"%s\" names a token missing from encoder.json "
                             "(the two files must come from the same tokenizer)", path, line, p);
                break;
            }
            if ((size_t)rank * 2 >= t->mcap) { s = gqe_fail(GQE_ERR_FORMAT, "%s: more than %zu merges", path, t->mcap / 2); break; }
            merge_insert(t, a, b, rank++, ab);
        }
        p = nl ? nl + 1 : end;
    }
    if (s == GQE_OK && rank == 0) s = gqe_fail(GQE_ERR_FORMAT, "%s: no merges (is this GPT-2's vocab.bpe?)", path);
done:
    free(scratch);
    free(ix.slot);
    free(text);
    return s;
}

/* GPT-2's pre-tokenization pattern, with \s spelled as the Unicode
 * White_Space property that tiktoken's and Python's regex engines use
 * (PCRE2's \s also takes U+180E). Anchored: every position starts a match. */
static const char PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{White_Space}\\p{L}\\p{N}]+"
    "|\\p{White_Space}+(?!\\P{White_Space})|\\p{White_Space}+";

static gqe_status compile_pattern(gqe_tokenizer *t) {
    int err;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &at, NULL);
    t->utf_check = pcre2_compile((PCRE2_SPTR)"", 0, PCRE2_UTF, &err, &at, NULL);
    if (!t->re || !t->utf_check) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return gqe_fail(GQE_ERR_ARG, "tokenizer: PCRE2 rejects the pre-tokenization pattern at %zu: %s", (size_t)at, (char *)msg);
    }
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);   /* the interpreter still works if JIT is unavailable */
    t->md = pcre2_match_data_create(2, NULL);
    return t->md ? GQE_OK : gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory");
}

gqe_status gqe_tok_load(gqe_tokenizer **out, const char *encoder_json, const char *vocab_bpe) {
    *out = NULL;
    if (!encoder_json || !vocab_bpe) return gqe_fail(GQE_ERR_ARG, "tokenizer: both encoder.json and vocab.bpe are needed");
    gqe_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory");
    uint32_t map[256];
    int16_t inverse[512];
    byte_to_unicode(map);
    memset(inverse, 0xff, sizeof inverse);
    for (int b = 0; b < 256; b++) inverse[map[b]] = (int16_t)b;
    gqe_status s = load_encoder(t, encoder_json, inverse);
    if (s == GQE_OK) s = load_merges(t, vocab_bpe, inverse);
    if (s == GQE_OK) s = compile_pattern(t);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (int32_t id = (int32_t)t->vocab - 1; s == GQE_OK && id >= 0; id--)
        if (t->len[id] == 1) t->byte_id[(unsigned char)t->pool[t->off[id]]] = id;
    for (int b = 0; s == GQE_OK && b < 256; b++)
        if (t->byte_id[b] < 0) s = gqe_fail(GQE_ERR_FORMAT, "%s: no token for the byte 0x%02x", encoder_json, b);
    if (s != GQE_OK) { gqe_tok_free(t); return s; }
    *out = t;
    return GQE_OK;
}

void gqe_tok_free(gqe_tokenizer *t) {
    if (!t) return;
    free(t->pool); free(t->off); free(t->len);
    free(t->mkey); free(t->mrank); free(t->mid);
    if (t->re) pcre2_code_free(t->re);
    if (t->utf_check) pcre2_code_free(t->utf_check);
    if (t->md) pcre2_match_data_free(t->md);
    free(t->cache); free(t->ckeys); free(t->cids);
    free(t->work); free(t->work_rank);
    free(t);
}

int64_t gqe_tok_vocab(const gqe_tokenizer *t) { return t->vocab; }
int32_t gqe_tok_eot(const gqe_tokenizer *t) { return GQE_TOK_GPT2_EOT; }
