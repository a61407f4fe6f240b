#include "tok/shards.h"
#include "data.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gqe_shard_writer {
    char *prefix;
    int64_t shard_tokens, total;
    uint16_t *buf;
    int64_t n, cap;
    int files;
};

gqe_status gqe_shard_writer_open(gqe_shard_writer **out, const char *prefix, int64_t shard_tokens) {
    *out = NULL;
    if (shard_tokens < 1 || shard_tokens > INT32_MAX)
        return gqe_fail(GQE_ERR_ARG, "shard tokens must be in 1..%d (the header's count is an int32), got %lld",
                        INT32_MAX, (long long)shard_tokens);
    gqe_shard_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->prefix = strdup(prefix))) { free(w); return gqe_fail(GQE_ERR_NOMEM, "shard writer: out of memory"); }
    w->shard_tokens = shard_tokens;
    *out = w;
    return GQE_OK;
}

static gqe_status flush(gqe_shard_writer *w) {
    size_t plen = strlen(w->prefix) + 32;
    char *path = malloc(plen), *tmp = malloc(plen + 8);
    if (!path || !tmp) { free(path); free(tmp); return gqe_fail(GQE_ERR_NOMEM, "shard writer: out of memory"); }
    snprintf(path, plen, "%s_%06d.bin", w->prefix, w->files);
    snprintf(tmp, plen + 8, "%s.tmp", path);
    gqe_status s = gqe_shard_write(tmp, w->buf, w->n);
    if (s == GQE_OK && rename(tmp, path) != 0) s = gqe_fail(GQE_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (s != GQE_OK) remove(tmp);
    free(path);
    free(tmp);
    if (s != GQE_OK) return s;
    w->files++;
    w->n = 0;
    return GQE_OK;
}

gqe_status gqe_shard_writer_add(gqe_shard_writer *w, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] > UINT16_MAX)
            return gqe_fail(GQE_ERR_ARG, "shard writer: token %d does not fit the uint16 shard format", ids[i]);
        if (w->n == w->cap) {
            int64_t cap = w->cap ? w->cap * 2 : 1 << 16;
            if (cap > w->shard_tokens) cap = w->shard_tokens;
            uint16_t *nb = realloc(w->buf, (size_t)cap * sizeof *nb);
            if (!nb) return gqe_fail(GQE_ERR_NOMEM, "shard writer: out of memory");
            w->buf = nb;
            w->cap = cap;
        }
        w->buf[w->n++] = (uint16_t)ids[i];
        w->total++;
        if (w->n == w->shard_tokens) GQE_TRY(flush(w));
    }
    return GQE_OK;
}

gqe_status gqe_shard_writer_finish(gqe_shard_writer *w, int64_t *tokens, int *files) {
    gqe_status s = w->n > 0 || w->files == 0 ? flush(w) : GQE_OK;
    *tokens = w->total;
    *files = w->files;
    gqe_shard_writer_free(w);
    return s;
}

void gqe_shard_writer_free(gqe_shard_writer *w) {
    if (!w) return;
    free(w->prefix);
    free(w->buf);
    free(w);
}
