/* Byte-level text: any file, vocab 256, the last val_frac of the bytes held
 * out for validation. The file is read whole; corpora for a byte model on a
 * small machine are megabytes, not gigabytes. */
#include "kinds.h"
#include "file.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct text_impl {
    unsigned char *bytes;
    gqe_token_segment seg[2];
    gqe_token_split split[2];
} text_impl;

static gqe_status read_whole(const char *path, unsigned char **out, int64_t *len) {
    const char *base = strrchr(path, '/');
    int brown = strcmp(base ? base + 1 : path, "brown.txt") == 0;  /* the prepared corpus */
    int missing = brown && access(path, F_OK) != 0;
    size_t n = 0;
    GQE_TRY(gqe_file_read(path, "text data", missing ? " (run `make data` to prepare it)" : "", out, &n));
    *len = (int64_t)n;
    return GQE_OK;
}

static char *label_for(const char *path, const char *which, int64_t n, int64_t size) {
    char *l = malloc(strlen(path) + 128);
    if (l) sprintf(l, "%s (%lld bytes; %s split %lld bytes)", path, (long long)size, which, (long long)n);
    return l;
}

static gqe_status text_open(gqe_dataset *ds, const gqe_data_config *cfg) {
    if (!cfg->path || !cfg->path[0]) return gqe_fail(GQE_ERR_ARG, "data.path is required for kind=text");
    if (cfg->vocab != 0 && cfg->vocab != 256)
        return gqe_fail(GQE_ERR_ARG, "kind=text is byte-level: data.vocab must be 256 (or unset), got %lld",
                        (long long)cfg->vocab);
    if (!(cfg->val_frac >= 0.0 && cfg->val_frac < 1.0))
        return gqe_fail(GQE_ERR_ARG, "data.val_frac must be in [0, 1), got %g", cfg->val_frac);
    text_impl *ti = calloc(1, sizeof *ti);
    if (!ti) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    ds->impl = ti;
    ds->vocab = 256;
    int64_t size = 0;
    GQE_TRY(read_whole(cfg->path, &ti->bytes, &size));
    if (size == 0) return gqe_fail(GQE_ERR_FORMAT, "%s: the text file is empty", cfg->path);
    int64_t nval = (int64_t)((double)size * cfg->val_frac);
    int64_t n[2] = {size - nval, nval};
    for (int k = 0; k < 2; k++) {
        ti->seg[k].data = ti->bytes + (k ? n[0] : 0);
        ti->seg[k].n = n[k];
        ti->split[k] = (gqe_token_split){.segs = &ti->seg[k], .nseg = 1, .width = 1, .total = n[k],
                                         .label = label_for(cfg->path, k ? "val" : "train", n[k], size)};
        if (!ti->split[k].label) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    }
    if (cfg->batch > 0 && cfg->seq > 0) {
        GQE_TRY(gqe_token_split_check(&ti->split[0], "train", cfg->batch, cfg->seq));
        if (nval > 0) GQE_TRY(gqe_token_split_check(&ti->split[1], "val", cfg->batch, cfg->seq));
    }
    return GQE_OK;
}

static gqe_status text_batch(gqe_dataset *ds, gqe_split split, int64_t index, int64_t B, int64_t T,
                             int32_t *tokens, int32_t *targets) {
    text_impl *ti = ds->impl;
    return gqe_token_split_batch(&ti->split[split], ds->seed, split, index, B, T, tokens, targets);
}

static int64_t text_tokens(const gqe_dataset *ds, gqe_split split) {
    return ((const text_impl *)ds->impl)->split[split].total;
}

static void text_free(gqe_dataset *ds) {
    text_impl *ti = ds->impl;
    if (!ti) return;
    free(ti->bytes);
    free(ti->split[0].label);
    free(ti->split[1].label);
    free(ti);
}

static const gqe_token_split *text_stream(const gqe_dataset *ds, gqe_split split) {
    return &((const text_impl *)ds->impl)->split[split];
}

const gqe_data_kind gqe_data_text = {"text", text_open, text_batch, text_tokens, text_free, text_stream};
