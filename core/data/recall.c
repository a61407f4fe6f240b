/* Multi-query associative recall (MQAR; Arora et al., "Zoology", 2023).
 * A row is num_pairs key-value pairs k1 v1 k2 v2 ..., then a query region
 * of filler (token 0) where num_queries of the keys reappear at random
 * positions. The target at a query is the value paired with that key; every
 * other target is -1, ignored by the loss. Keys come from tokens
 * 1..K and values from K+1..vocab-1 (K = (vocab-1)/2), so the two never mix.
 * Row r of a split uses its own Philox stream, so batches are reproducible
 * one at a time. (Zoology spaces queries by a power law; we place them
 * uniformly, which keeps the task's difficulty set by num_pairs alone.) */
#include "kinds.h"
#include "rng.h"
#include <stdlib.h>
#include <string.h>

typedef struct recall_impl { int64_t pairs, queries, nkeys, nvalues; } recall_impl;

static gqe_status recall_open(gqe_dataset *ds, const gqe_data_config *cfg) {
    recall_impl *ri = calloc(1, sizeof *ri);
    if (!ri) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    ds->impl = ri;
    ds->vocab = cfg->vocab ? cfg->vocab : 256;
    ri->pairs = cfg->num_pairs;
    ri->queries = cfg->num_queries ? cfg->num_queries : cfg->num_pairs;
    ri->nkeys = (ds->vocab - 1) / 2;
    ri->nvalues = ds->vocab - 1 - ri->nkeys;
    if (ds->vocab > (1 << 24))
        return gqe_fail(GQE_ERR_ARG, "kind=recall: data.vocab must be <= %d, got %lld", 1 << 24, (long long)ds->vocab);
    if (ri->pairs < 1)
        return gqe_fail(GQE_ERR_ARG, "kind=recall: data.num_pairs must be >= 1, got %lld", (long long)ri->pairs);
    if (ri->queries < 1 || ri->queries > ri->pairs)
        return gqe_fail(GQE_ERR_ARG, "kind=recall: data.num_queries must be in 1..num_pairs=%lld, got %lld",
                        (long long)ri->pairs, (long long)ri->queries);
    if (ri->nkeys < ri->pairs)
        return gqe_fail(GQE_ERR_ARG, "kind=recall: vocab %lld gives %lld distinct keys, fewer than num_pairs=%lld "
                        "(need vocab >= %lld)", (long long)ds->vocab, (long long)ri->nkeys, (long long)ri->pairs,
                        (long long)(2 * ri->pairs + 1));
    if (cfg->seq > 0 && cfg->seq < 2 * ri->pairs + ri->queries)
        return gqe_fail(GQE_ERR_ARG, "kind=recall: seq %lld is shorter than 2*num_pairs + num_queries = %lld",
                        (long long)cfg->seq, (long long)(2 * ri->pairs + ri->queries));
    return GQE_OK;
}

/* Draw j of a row's stream, uniform in [0, n) (n < 2^32). */
static int64_t below(uint64_t seed, uint64_t stream, uint64_t *j, int64_t n) {
    uint64_t u = gqe_rng_u32_at(seed, stream, (*j)++);
    return (int64_t)((u * (uint64_t)n) >> 32);
}

/* First k entries of perm[0..n) become a uniform sample without repetition. */
static void partial_shuffle(int32_t *perm, int64_t n, int64_t k, uint64_t seed, uint64_t stream, uint64_t *j) {
    for (int64_t i = 0; i < n; i++) perm[i] = (int32_t)i;
    for (int64_t i = 0; i < k; i++) {
        int64_t m = i + below(seed, stream, j, n - i);
        int32_t t = perm[i]; perm[i] = perm[m]; perm[m] = t;
    }
}

static gqe_status recall_batch(gqe_dataset *ds, gqe_split split, int64_t index, int64_t B, int64_t T,
                               int32_t *tokens, int32_t *targets) {
    recall_impl *ri = ds->impl;
    int64_t P = ri->pairs, Q = ri->queries, region = T - 2 * P;
    if (region < Q)
        return gqe_fail(GQE_ERR_ARG, "kind=recall: T=%lld is shorter than 2*num_pairs + num_queries = %lld",
                        (long long)T, (long long)(2 * P + Q));
    int64_t scratch = ri->nkeys > region ? ri->nkeys : region;
    int32_t *perm = malloc(sizeof *perm * (size_t)scratch), *keys = malloc(sizeof *keys * (size_t)P),
            *vals = malloc(sizeof *vals * (size_t)P);
    if (!perm || !keys || !vals) { free(perm); free(keys); free(vals); return gqe_fail(GQE_ERR_NOMEM, "out of host memory"); }
    for (int64_t b = 0; b < B; b++) {
        /* Streams 4r+2 (train) and 4r+3 (val): disjoint for every row r. */
        uint64_t stream = 4 * (uint64_t)(index * B + b) + 2 + (uint64_t)split, j = 0;
        int32_t *tk = tokens + b * T, *tg = targets + b * T;
        partial_shuffle(perm, ri->nkeys, P, ds->seed, stream, &j);
        for (int64_t i = 0; i < P; i++) {
            keys[i] = 1 + perm[i];
            vals[i] = (int32_t)(1 + ri->nkeys + below(ds->seed, stream, &j, ri->nvalues));
            tk[2 * i] = keys[i];
            tk[2 * i + 1] = vals[i];
        }
        for (int64_t t = 0; t < T; t++) tg[t] = -1;
        for (int64_t t = 2 * P; t < T; t++) tk[t] = 0;
        /* Which pairs are asked (a sample of P), and where (a sample of the region). */
        int32_t *asked = perm;  /* reuse: the key sample was copied out above */
        partial_shuffle(asked, P, Q, ds->seed, stream, &j);
        int32_t first[64], *which = Q <= 64 ? first : malloc(sizeof *which * (size_t)Q);
        if (!which) { free(perm); free(keys); free(vals); return gqe_fail(GQE_ERR_NOMEM, "out of host memory"); }
        memcpy(which, asked, sizeof *which * (size_t)Q);
        partial_shuffle(perm, region, Q, ds->seed, stream, &j);
        for (int64_t q = 0; q < Q; q++) {
            int64_t pos = 2 * P + perm[q];
            tk[pos] = keys[which[q]];
            tg[pos] = vals[which[q]];
        }
        if (which != first) free(which);
    }
    free(perm); free(keys); free(vals);
    return GQE_OK;
}

static int64_t recall_tokens(const gqe_dataset *ds, gqe_split split) { return -1; }
static void recall_free(gqe_dataset *ds) { free(ds->impl); }

const gqe_data_kind gqe_data_recall = {"recall", recall_open, recall_batch, recall_tokens, recall_free, NULL};
