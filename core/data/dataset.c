/* The data set front door: configuration defaults, kind lookup, and the
 * argument checks every kind shares. */
#include "kinds.h"
#include <stdlib.h>
#include <string.h>

static const gqe_data_kind *const kinds[] = {&gqe_data_text, &gqe_data_shards, &gqe_data_recall};
#define KIND_LIST "text, shards, recall"

void gqe_data_config_default(gqe_data_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = "text";
    cfg->val_frac = 0.1;
    cfg->num_pairs = 8;
}

gqe_status gqe_split_parse(const char *name, gqe_split *out) {
    if (name && strcmp(name, "train") == 0) { *out = GQE_SPLIT_TRAIN; return GQE_OK; }
    if (name && (strcmp(name, "val") == 0 || strcmp(name, "validation") == 0)) { *out = GQE_SPLIT_VAL; return GQE_OK; }
    return gqe_fail(GQE_ERR_ARG, "unknown split '%s' (allowed: train, val)", name ? name : "(null)");
}

gqe_status gqe_dataset_open(gqe_dataset **out, const gqe_data_config *cfg) {
    *out = NULL;
    const gqe_data_kind *kind = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (cfg->kind && strcmp(cfg->kind, kinds[i]->name) == 0) kind = kinds[i];
    if (!kind)
        return gqe_fail(GQE_ERR_ARG, "unknown data kind '%s' (allowed: " KIND_LIST ")",
                        cfg->kind ? cfg->kind : "(null)");
    if (cfg->vocab < 0)
        return gqe_fail(GQE_ERR_ARG, "data.vocab must be positive, got %lld", (long long)cfg->vocab);
    if (cfg->batch < 0 || cfg->seq < 0)
        return gqe_fail(GQE_ERR_ARG, "data.batch and data.seq must be >= 0, got %lld and %lld",
                        (long long)cfg->batch, (long long)cfg->seq);
    gqe_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    ds->kind = kind;
    ds->seed = cfg->seed;
    gqe_status s = kind->open(ds, cfg);
    if (s != GQE_OK) { gqe_dataset_free(ds); return s; }
    *out = ds;
    return GQE_OK;
}

gqe_status gqe_dataset_batch(gqe_dataset *ds, gqe_split split, int64_t index, int64_t B, int64_t T,
                             int32_t *tokens, int32_t *targets) {
    if (split != GQE_SPLIT_TRAIN && split != GQE_SPLIT_VAL)
        return gqe_fail(GQE_ERR_ARG, "unknown split %d (allowed: train, val)", (int)split);
    if (index < 0 || B < 1 || T < 1)
        return gqe_fail(GQE_ERR_ARG, "batch: need index >= 0, B >= 1, T >= 1 (got %lld, %lld, %lld)",
                        (long long)index, (long long)B, (long long)T);
    if (B > (INT64_MAX / 4) / T || index > INT64_MAX / B)
        return gqe_fail(GQE_ERR_ARG, "batch: index %lld with B=%lld, T=%lld is too large",
                        (long long)index, (long long)B, (long long)T);
    if (!tokens || !targets) return gqe_fail(GQE_ERR_ARG, "batch: NULL output arrays");
    return ds->kind->batch(ds, split, index, B, T, tokens, targets);
}

int64_t gqe_dataset_vocab(const gqe_dataset *ds) { return ds->vocab; }
const char *gqe_dataset_kind(const gqe_dataset *ds) { return ds->kind->name; }
int64_t gqe_dataset_tokens(const gqe_dataset *ds, gqe_split split) { return ds->kind->tokens(ds, split); }

gqe_status gqe_dataset_token_counts(const gqe_dataset *ds, gqe_split split, int64_t *counts) {
    if (split != GQE_SPLIT_TRAIN && split != GQE_SPLIT_VAL)
        return gqe_fail(GQE_ERR_ARG, "unknown split %d (allowed: train, val)", (int)split);
    if (!ds->kind->stream)
        return gqe_fail(GQE_ERR_ARG, "token_counts: data kind '%s' is generated and has no fixed split to count",
                        ds->kind->name);
    const gqe_token_split *s = ds->kind->stream(ds, split);
    memset(counts, 0, sizeof *counts * (size_t)ds->vocab);
    for (int i = 0; i < s->nseg; i++) {
        const gqe_token_segment *g = &s->segs[i];
        if (s->width == 1) {
            const uint8_t *p = g->data;
            for (int64_t j = 0; j < g->n; j++) counts[p[j]]++;
        } else {
            /* uint16 in the file, possibly unaligned (after the shard header it is not) */
            const unsigned char *p = g->data;
            for (int64_t j = 0; j < g->n; j++) {
                uint16_t t;
                memcpy(&t, p + 2 * j, 2);
                counts[t]++;
            }
        }
    }
    return GQE_OK;
}

void gqe_dataset_free(gqe_dataset *ds) {
    if (!ds) return;
    if (ds->kind && ds->kind->free) ds->kind->free(ds);
    free(ds);
}
