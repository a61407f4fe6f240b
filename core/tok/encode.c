/* Encoding and decoding. Pieces come from the pattern (core/tok/load.c);
 * each piece is merged by rank, and its ids are cached by its bytes, since
 * natural text repeats a small set of words (the cache is what makes
 * encoding fast: PCRE2's JIT matcher and one hash lookup per piece). */
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_KEY 64          /* longer pieces are rare: merged every time */
#define LONG_PIECE 256            /* above this, merging by heap (bpe_long) beats the plain scan */
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

/* The same merges for a long piece in O(n log n): the symbols as a linked
 * list, candidate pairs in a min-heap ordered by (rank, position), so the
 * lowest rank and, among equals, the leftmost pair comes first as in bpe();
 * entries made stale by an earlier merge are skipped when popped. */
typedef struct { int32_t rank; int32_t pos; int32_t left, right; } heap_item;

static int item_less(heap_item a, heap_item b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(heap_item *h, size_t *n, heap_item x) {
    size_t i = (*n)++;
    while (i > 0 && item_less(x, h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n) {
    heap_item top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && item_less(h[c + 1], h[c])) c++;
        if (!item_less(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = x;
    return top;
}

static gqe_status bpe_long(gqe_tokenizer *t, const unsigned char *p, size_t n, gqe_tok_ids *out) {
    int32_t *sym = malloc(n * sizeof *sym), *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    heap_item *heap = malloc(3 * n * sizeof *heap);   /* n - 1 pairs at first, at most 2 more per merge */
    gqe_status st = GQE_OK;
    if (!sym || !next || !prev || !heap) { st = gqe_fail(GQE_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte piece", n); goto done; }
    size_t hn = 0;
    int32_t merged;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[p[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = gqe_tok_merge_rank(t, sym[i], sym[i + 1], &merged);
        if (r >= 0) heap_push(heap, &hn, (heap_item){r, (int32_t)i, sym[i], sym[i + 1]});
    }
    while (hn > 0) {
        heap_item it = heap_pop(heap, &hn);
        int32_t i = it.pos, j = next[i];
        /* stale: i was merged away (its prev link is cut), or a side changed */
        if (j < 0 || sym[i] != it.left || sym[j] != it.right || (i > 0 && prev[i] == -2)) continue;
        gqe_tok_merge_rank(t, sym[i], sym[j], &sym[i]);
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        prev[j] = -2;
        next[j] = -1;
        if (prev[i] >= 0) {
            int32_t a = prev[i], r = gqe_tok_merge_rank(t, sym[a], sym[i], &merged);
            if (r >= 0) heap_push(heap, &hn, (heap_item){r, a, sym[a], sym[i]});
        }
        if (next[i] >= 0) {
            int32_t r = gqe_tok_merge_rank(t, sym[i], sym[next[i]], &merged);
            if (r >= 0) heap_push(heap, &hn, (heap_item){r, i, sym[i], sym[next[i]]});
        }
    }
    int64_t count = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) count++;
    st = ids_reserve(out, count);
    if (st == GQE_OK)
        for (int32_t i = 0; i >= 0; i = next[i]) out->ids[out->n++] = sym[i];
done:
    free(sym); free(next); free(prev); free(heap);
    return st;
}

static void cache_clear(gqe_tokenizer *t) {
    if (t->cache) memset(t->cache, 0, t->cache_cap * sizeof *t->cache);
    t->cache_used = t->ckeys_len = t->cids_len = 0;
}

static gqe_status encode_piece(gqe_tokenizer *t, const unsigned char *p, size_t n, gqe_tok_ids *out) {
    if (n > CACHE_MAX_KEY) return n > LONG_PIECE ? bpe_long(t, p, n, out) : bpe(t, p, n, out);
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
