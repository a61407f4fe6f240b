/* What a data set kind implements, and the token-stream sampler that the
 * text and shard kinds share. Private to core/data/. */
#ifndef GQE_DATA_KINDS_H
#define GQE_DATA_KINDS_H

#include "data.h"

typedef struct gqe_data_kind {
    const char *name;
    gqe_status (*open)(gqe_dataset *ds, const gqe_data_config *cfg);
    gqe_status (*batch)(gqe_dataset *ds, gqe_split split, int64_t index, int64_t B, int64_t T,
                        int32_t *tokens, int32_t *targets);
    int64_t (*tokens)(const gqe_dataset *ds, gqe_split split);
    void (*free)(gqe_dataset *ds);
    /* The split's token streams; NULL for generated kinds. */
    const struct gqe_token_split *(*stream)(const gqe_dataset *ds, gqe_split split);
} gqe_data_kind;

struct gqe_dataset {
    const gqe_data_kind *kind;
    uint64_t seed;
    int64_t vocab;
    void *impl;
};

extern const gqe_data_kind gqe_data_text, gqe_data_shards, gqe_data_recall;

/* A split as contiguous runs of tokens (one per file); rows never cross
 * from one segment into the next. Tokens are 1 (bytes) or 2 (uint16) wide. */
typedef struct gqe_token_segment { const void *data; int64_t n; } gqe_token_segment;
typedef struct gqe_token_split {
    gqe_token_segment *segs;
    int nseg;
    int width;
    int64_t total;
    char *label;   /* names the source in messages: "FILE (N bytes)", a glob pattern */
} gqe_token_split;

/* Error unless the split holds one batch: B*(T+1) tokens in all and one
 * segment of at least T+1. `split_name` is "train" or "val". */
gqe_status gqe_token_split_check(const gqe_token_split *s, const char *split_name, int64_t B, int64_t T);
gqe_status gqe_token_split_batch(const gqe_token_split *s, uint64_t seed, gqe_split split, int64_t index,
                                 int64_t B, int64_t T, int32_t *tokens, int32_t *targets);
void gqe_token_split_free(gqe_token_split *s);

#endif
