/* Writing llm.c token shards from token ids: <prefix>_000000.bin, ...,
 * each at most shard_tokens tokens (the last one what remains). Each file
 * is written to a temporary name and renamed, so a shard is whole or absent. */
#ifndef GQE_TOK_SHARDS_H
#define GQE_TOK_SHARDS_H

#include <stdint.h>
#include "error.h"

typedef struct gqe_shard_writer gqe_shard_writer;

gqe_status gqe_shard_writer_open(gqe_shard_writer **out, const char *prefix, int64_t shard_tokens);
/* Ids must fit uint16 (the llm.c version-1 format). */
gqe_status gqe_shard_writer_add(gqe_shard_writer *w, const int32_t *ids, int64_t n);
/* Writes the last shard and frees the writer. */
gqe_status gqe_shard_writer_finish(gqe_shard_writer *w, int64_t *tokens, int *files);
void gqe_shard_writer_free(gqe_shard_writer *w);

#endif
