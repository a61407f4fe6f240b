/* The tokenizer's tables, shared by core/tok/. */
#ifndef GQE_TOK_INTERNAL_H
#define GQE_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "tok.h"

/* Cached pieces: bytes -> ids, open addressing on a 64-bit hash. */
typedef struct tok_cache_slot { uint64_t hash; uint32_t key_off, key_len, ids_off, nids; } tok_cache_slot;

struct gqe_tokenizer {
    int64_t vocab;
    char *pool;              /* every token's bytes, back to back */
    uint32_t *off, *len;     /* id -> its bytes in pool */
    int32_t byte_id[256];    /* the single-byte tokens */
    /* merges: (left id, right id) -> rank and merged id; key 0 marks a free slot */
    uint64_t *mkey;
    int32_t *mrank, *mid;
    size_t mcap;             /* a power of two */
    pcre2_code *re;
    pcre2_code *utf_check;   /* the empty pattern: matching it validates UTF-8 */
    pcre2_match_data *md;
    tok_cache_slot *cache;
    size_t cache_cap, cache_used;
    char *ckeys; size_t ckeys_len, ckeys_cap;
    int32_t *cids; size_t cids_len, cids_cap;
    int32_t *work; int32_t *work_rank; size_t work_cap;  /* BPE scratch */
};

uint64_t gqe_tok_hash(const void *p, size_t n);
uint64_t gqe_tok_mix(uint64_t h);
/* Looks up the merge of (a, b); returns its rank (and *merged) or -1. */
int32_t gqe_tok_merge_rank(const gqe_tokenizer *t, int32_t a, int32_t b, int32_t *merged);

#endif
