/* Byte-level text: any file, vocab 256, the last val_frac of the bytes held
 * out for validation. The file is read whole; corpora for a byte model on a
 * small machine are megabytes, not gigabytes. */
#include "kinds.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct text_impl {
    unsigned char *bytes;
    gqe_token_segment seg[2];
    gqe_token_split split[2];
} text_impl;

static gqe_status read_whole(const char *path, unsigned char **out, int64_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        const char *base = strrchr(path, '/');
        int brown = strcmp(base ? base + 1 : path, "brown.txt") == 0;  /* the prepared corpus */
        return gqe_fail(GQE_ERR_IO, "%s: cannot open text data: %s%s", path, strerror(errno),
                        brown && errno == ENOENT ? " (run `make data` to prepare it)" : "");
    }
    gqe_status s = GQE_OK;
    long size = -1;
    /* fopen succeeds on a directory, and ftell then reports LONG_MAX. */
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        s = gqe_fail(GQE_ERR_IO, "%s: not a regular file (a directory?)", path);
    if (s == GQE_OK && (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0))
        s = gqe_fail(GQE_ERR_IO, "%s: cannot determine the size: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    if (s == GQE_OK && !(buf = malloc((size_t)size + 1))) s = gqe_fail(GQE_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
    if (s == GQE_OK && fread(buf, 1, (size_t)size, f) != (size_t)size)
        s = gqe_fail(GQE_ERR_IO, "%s: read failed: %s", path, ferror(f) ? strerror(errno) : "file shrank while reading");
    fclose(f);
    if (s != GQE_OK) { free(buf); return s; }
    *out = buf;
    *len = size;
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

const gqe_data_kind gqe_data_text = {"text", text_open, text_batch, text_tokens, text_free};
