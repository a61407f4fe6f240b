/* Encoding and decoding. Pieces come from the pattern (core/tok/load.c);
 * each piece is merged by rank, and its ids are cached by its bytes, since
 * natural text repeats a small set of words (the cache is what makes
 * encoding fast: PCRE2's JIT matcher and one hash lookup per piece). */
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_KEY 64          /* longer pieces are rare: merged every time */
#define CACHE_MAX_BYTES (16u << 20)
#define CACHE_MAX_ENTRIES (1u << 20)   /* then the cache starts again: about 50 MB at most */

uint64_t gqe_tok_mix(uint64_t h) {   /* splitmix64's finalizer: every bit reaches the low ones */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

uint64_t gqe_tok_hash(const void *p, size_t n) {   /* FNV-1a, then the mix */
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return gqe_tok_mix(h);
}

void gqe_tok_ids_free(gqe_tok_ids *v) { free(v->ids); v->ids = NULL; v->n = v->cap = 0; }

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *nb = realloc(*buf, c * elem);
    if (!nb) return 0;
    *buf = nb;
    *cap = c;
    return 1;
}

static gqe_status ids_reserve(gqe_tok_ids *v, int64_t more) {
    size_t cap = (size_t)v->cap;
    if (!grow((void **)&v->ids, &cap, (size_t)(v->n + more), sizeof *v->ids))
        return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory for %lld ids", (long long)(v->n + more));
    v->cap = (int64_t)cap;
    return GQE_OK;
}

gqe_status gqe_tok_ids_push(gqe_tok_ids *v, int32_t id) {
    GQE_TRY(ids_reserve(v, 1));
    v->ids[v->n++] = id;
    return GQE_OK;
}

/* Byte-pair merging of one piece: repeatedly merge the adjacent pair of
 * lowest rank (the leftmost if it occurs twice), as GPT-2's bpe() does. */
static gqe_status bpe(gqe_tokenizer *t, const unsigned char *p, size_t n, gqe_tok_ids *out) {
    if (!grow((void **)&t->work, &t->work_cap, n, sizeof *t->work)) return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory");
    size_t cap2 = t->work_cap;
    int32_t *rank = realloc(t->work_rank, cap2 * sizeof *rank);
    if (!rank) return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory");
    t->work_rank = rank;
    int32_t *sym = t->work, merged;
    size_t m = n;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[p[i]];
    /* rank[i]: the rank of merging sym[i] with sym[i+1], -1 if none */
    for (size_t i = 0; i + 1 < m; i++) rank[i] = gqe_tok_merge_rank(t, sym[i], sym[i + 1], &merged);
    while (m > 1) {
        size_t best = m;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] >= 0 && (best == m || rank[i] < rank[best])) best = i;
        if (best == m) break;
        gqe_tok_merge_rank(t, sym[best], sym[best + 1], &sym[best]);
        memmove(sym + best + 1, sym + best + 2, (m - best - 2) * sizeof *sym);
        memmove(rank + best + 1, rank + best + 2, (m - best - 2) * sizeof *rank);
        m--;
        if (best + 1 < m) rank[best] = gqe_tok_merge_rank(t, sym[best], sym[best + 1], &merged);
        if (best > 0) rank[best - 1] = gqe_tok_merge_rank(t, sym[best - 1], sym[best], &merged);
    }
    GQE_TRY(ids_reserve(out, (int64_t)m));
    memcpy(out->ids + out->n, sym, m * sizeof *sym);
    out->n += (int64_t)m;
    return GQE_OK;
}

static void cache_clear(gqe_tokenizer *t) {
    if (t->cache) memset(t->cache, 0, t->cache_cap * sizeof *t->cache);
    t->cache_used = t->ckeys_len = t->cids_len = 0;
}

static gqe_status encode_piece(gqe_tokenizer *t, const unsigned char *p, size_t n, gqe_tok_ids *out) {
    if (n > CACHE_MAX_KEY) return bpe(t, p, n, out);
    if (!t->cache) {
        t->cache_cap = 1 << 16;
        if (!(t->cache = calloc(t->cache_cap, sizeof *t->cache))) return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory");
    }
    uint64_t h = gqe_tok_hash(p, n) | 1;   /* hash 0 marks a free slot */
    size_t i = h & (t->cache_cap - 1);
    for (; t->cache[i].hash; i = (i + 1) & (t->cache_cap - 1)) {
        tok_cache_slot *c = &t->cache[i];
        if (c->hash == h && c->key_len == n && memcmp(t->ckeys + c->key_off, p, n) == 0) {
            GQE_TRY(ids_reserve(out, c->nids));
            memcpy(out->ids + out->n, t->cids + c->ids_off, c->nids * sizeof *t->cids);
            out->n += c->nids;
            return GQE_OK;
        }
    }
    int64_t first = out->n;
    GQE_TRY(bpe(t, p, n, out));
    size_t nids = (size_t)(out->n - first);
    if (t->ckeys_len + n > CACHE_MAX_BYTES || t->cache_used >= CACHE_MAX_ENTRIES) { cache_clear(t); return GQE_OK; }
    if ((t->cache_used + 1) * 2 > t->cache_cap) {   /* keep the table at most half full */
        size_t ncap = t->cache_cap * 2;
        tok_cache_slot *nc = calloc(ncap, sizeof *nc);
        if (!nc) return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory");
        for (size_t j = 0; j < t->cache_cap; j++) {
            if (!t->cache[j].hash) continue;
            size_t k = t->cache[j].hash & (ncap - 1);
            while (nc[k].hash) k = (k + 1) & (ncap - 1);
            nc[k] = t->cache[j];
        }
        free(t->cache);
        t->cache = nc;
        t->cache_cap = ncap;
        for (i = h & (ncap - 1); t->cache[i].hash; i = (i + 1) & (ncap - 1)) {}
    }
    if (!grow((void **)&t->ckeys, &t->ckeys_cap, t->ckeys_len + n, 1) ||
        !grow((void **)&t->cids, &t->cids_cap, t->cids_len + nids, sizeof *t->cids))
        return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory");
    t->cache[i] = (tok_cache_slot){h, (uint32_t)t->ckeys_len, (uint32_t)n, (uint32_t)t->cids_len, (uint32_t)nids};
    memcpy(t->ckeys + t->ckeys_len, p, n);
    memcpy(t->cids + t->cids_len, out->ids + first, nids * sizeof *t->cids);
    t->ckeys_len += n;
    t->cids_len += nids;
    t->cache_used++;
    return GQE_OK;
}

/* Cuts valid UTF-8 text s[0..n) into pieces and encodes each; src maps a
 * position of s back to the caller's bytes (NULL: s is the caller's text). */
static gqe_status encode_valid(gqe_tokenizer *t, const unsigned char *s, size_t n, const unsigned char *orig,
                               const size_t *src, gqe_tok_ids *out) {
    size_t pos = 0;
    while (pos < n) {
        int rc = pcre2_match(t->re, s, n, pos, PCRE2_NO_UTF_CHECK, t->md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        if (rc < 0 || ov[1] <= pos) return gqe_fail(GQE_ERR_ARG, "tokenizer: no piece matches at byte %zu (PCRE2 code %d)", pos, rc);
        if (src) GQE_TRY(encode_piece(t, orig + src[pos], src[ov[1]] - src[pos], out));
        else GQE_TRY(encode_piece(t, s + pos, ov[1] - pos, out));
        pos = ov[1];
    }
    return GQE_OK;
}

/* Offset of the first invalid UTF-8 sequence in s[0..n), or n. */
static size_t first_invalid(gqe_tokenizer *t, const unsigned char *s, size_t n) {
    int rc = pcre2_match(t->utf_check, s, n, 0, 0, t->md, NULL);
    if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) return n;
    return pcre2_get_startchar(t->md);   /* where a UTF error puts the bad offset */
}

gqe_status gqe_tok_encode(gqe_tokenizer *t, const char *text, size_t len, gqe_tok_ids *out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t bad = first_invalid(t, s, len);
    if (bad == len) return encode_valid(t, s, len, NULL, NULL, out);
    /* Each invalid byte becomes a private-use character (U+F700 + byte,
     * general category Co: no letter, number or space, like the surrogate
     * Python's surrogateescape makes of it); pieces are then cut from this
     * copy and mapped back to the original bytes. */
    unsigned char *copy = malloc(3 * len + 1);
    size_t *src = malloc((3 * len + 1) * sizeof *src);
    if (!copy || !src) { free(copy); free(src); return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory"); }
    size_t n = 0, i = 0;
    while (i < len) {
        size_t ok = i + first_invalid(t, s + i, len - i);
        for (; i < ok; i++) { src[n] = i; copy[n++] = s[i]; }
        if (i == len) break;
        uint32_t cp = 0xF700u + s[i];
        src[n] = i; copy[n++] = (unsigned char)(0xE0 | (cp >> 12));
        src[n] = i; copy[n++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        src[n] = i; copy[n++] = (unsigned char)(0x80 | (cp & 0x3F));
        i++;
    }
    src[n] = len;
    gqe_status st = encode_valid(t, copy, n, s, src, out);
    free(copy);
    free(src);
    return st;
}

const char *gqe_tok_token(const gqe_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab) return NULL;
    *len = t->len[id];
    return t->pool + t->off[id];
}

gqe_status gqe_tok_decode(const gqe_tokenizer *t, const int32_t *ids, int64_t n, char **out, size_t *len) {
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return gqe_fail(GQE_ERR_ARG, "tokenizer: id %d at position %lld is outside the vocabulary [0, %lld)",
                            ids[i], (long long)i, (long long)t->vocab);
        total += t->len[ids[i]];
    }
    char *buf = malloc(total + 1);
    if (!buf) return gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory for %zu bytes", total);
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) { memcpy(buf + k, t->pool + t->off[ids[i]], t->len[ids[i]]); k += t->len[ids[i]]; }
    buf[k] = 0;
    *out = buf;
    *len = k;
    return GQE_OK;
}
