/* Data sets behind one interface. A batch is a pure function of (seed,
 * split, index): resuming a run, evaluating twice or comparing two models
 * sees exactly the same tokens, with no iterator state to save.
 *
 * Kinds:
 *   text    byte-level (vocab 256) from any file; the last val_frac of the
 *           bytes is the validation split.
 *   shards  llm.c token shards: a 256 x int32 header (magic 20240520,
 *           version 1, token count) then uint16 tokens. `path` is a glob(3)
 *           pattern for training shards, `val_path` one for validation.
 *   recall  synthetic multi-query associative recall (MQAR, Arora et al.,
 *           "Zoology", 2023): key-value pairs, then queries of some keys;
 *           targets are the queried key's value, -1 (ignored) elsewhere.
 *
 * For text and shards, row b of batch `index` starts at an offset drawn by
 * Philox(seed, stream = split, counter = index*B + b), uniform over the
 * starts that fit T+1 tokens; targets are the tokens shifted by one. */
#ifndef GQE_DATA_H
#define GQE_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

typedef enum gqe_split { GQE_SPLIT_TRAIN = 0, GQE_SPLIT_VAL = 1 } gqe_split;

#define GQE_SHARD_MAGIC 20240520
#define GQE_SHARD_VERSION 1
#define GQE_SHARD_HEADER_INTS 256

typedef struct gqe_data_config {
    const char *kind;      /* "text" | "shards" | "recall" */
    const char *path;      /* text: the file; shards: glob of training shards */
    const char *val_path;  /* shards: glob or path of validation shards */
    double val_frac;       /* text: trailing fraction held out (0.1) */
    uint64_t seed;         /* names the batches (0) */
    int64_t vocab;         /* 0: kind default (text 256, shards 50257, recall 256) */
    /* Optional batch shape: when both are > 0, open checks that each split
     * holds enough tokens for one batch, so a bad file fails early. */
    int64_t batch, seq;
    /* recall */
    int64_t num_pairs;     /* key-value pairs per sequence (8) */
    int64_t num_queries;   /* queried keys per sequence, <= num_pairs (0: num_pairs) */
} gqe_data_config;

typedef struct gqe_dataset gqe_dataset;

void gqe_data_config_default(gqe_data_config *cfg);
gqe_status gqe_dataset_open(gqe_dataset **out, const gqe_data_config *cfg);
/* Fills tokens and targets, each B*T int32 in row-major (B, T) order.
 * Targets of -1 mark positions the loss ignores. */
gqe_status gqe_dataset_batch(gqe_dataset *ds, gqe_split split, int64_t index, int64_t B, int64_t T,
                             int32_t *tokens, int32_t *targets);
int64_t gqe_dataset_vocab(const gqe_dataset *ds);
/* Tokens in a split; -1 for generated data sets, which are unbounded. */
int64_t gqe_dataset_tokens(const gqe_dataset *ds, gqe_split split);
/* counts (vocab entries, overwritten) = how often each token id occurs in
 * the whole split (bits per byte over token shards weighs each token's
 * byte length by it). An error for generated data sets. */
gqe_status gqe_dataset_token_counts(const gqe_dataset *ds, gqe_split split, int64_t *counts);
const char *gqe_dataset_kind(const gqe_dataset *ds);
void gqe_dataset_free(gqe_dataset *ds);

/* "train" / "val" (and "validation") to a split; error lists the choices. */
gqe_status gqe_split_parse(const char *name, gqe_split *out);

/* Checks one shard image in memory (`label` names it in messages) and points
 * *tokens at its tokens. Used by the shard reader and the fuzz target. */
gqe_status gqe_shard_parse(const void *buf, size_t len, const char *label, int64_t vocab,
                           const uint16_t **tokens, int64_t *ntokens);
/* Writes a shard file (for tests and preparation scripts). */
gqe_status gqe_shard_write(const char *path, const uint16_t *tokens, int64_t n);

#endif
