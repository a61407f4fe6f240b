/* llm.c token shards (the format of its fineweb/tinyshakespeare scripts):
 * 256 little-endian int32 (magic 20240520, version 1, token count, rest 0),
 * then `count` uint16 tokens. Each file is read whole and checked fully at
 * open, so a bad shard fails the run before the first step, not hours in. */
#include "kinds.h"
#include "file.h"
#include "../interrupt.h"
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES (GQE_SHARD_HEADER_INTS * 4)

typedef struct shard_impl {
    unsigned char **bufs;   /* one whole file per shard, both splits */
    int nbufs;
    gqe_token_split split[2];
} shard_impl;

gqe_status gqe_shard_parse(const void *buf, size_t len, const char *label, int64_t vocab,
                           const uint16_t **tokens, int64_t *ntokens) {
    if (len == 0) return gqe_fail(GQE_ERR_FORMAT, "%s: empty file (expected an llm.c token shard)", label);
    if (len < HEADER_BYTES)
        return gqe_fail(GQE_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte shard header", label, len, HEADER_BYTES);
    int32_t h[3];
    memcpy(h, buf, sizeof h);
    if (h[0] != GQE_SHARD_MAGIC)
        return gqe_fail(GQE_ERR_FORMAT, "%s: magic number %d, expected %d (not an llm.c token shard)",
                        label, h[0], GQE_SHARD_MAGIC);
    if (h[1] != GQE_SHARD_VERSION)
        return gqe_fail(GQE_ERR_FORMAT, "%s: shard version %d, expected %d (uint16 tokens)", label, h[1], GQE_SHARD_VERSION);
    if (h[2] < 0) return gqe_fail(GQE_ERR_FORMAT, "%s: negative token count %d in the header", label, h[2]);
    uint64_t have = (len - HEADER_BYTES) / 2, want = (uint64_t)h[2];
    if (have < want)
        return gqe_fail(GQE_ERR_FORMAT, "%s: truncated: the header says %llu tokens but the file holds %llu",
                        label, (unsigned long long)want, (unsigned long long)have);
    if (len != HEADER_BYTES + 2 * want)
        return gqe_fail(GQE_ERR_FORMAT, "%s: %llu trailing bytes after the %llu tokens the header announces",
                        label, (unsigned long long)(len - HEADER_BYTES - 2 * want), (unsigned long long)want);
    const uint16_t *tok = (const uint16_t *)((const unsigned char *)buf + HEADER_BYTES);
    for (uint64_t i = 0; i < want; i++) {
        uint16_t t;
        memcpy(&t, tok + i, 2);  /* buf need not be aligned */
        if (t >= vocab)
            return gqe_fail(GQE_ERR_FORMAT, "%s: token %u at position %llu is outside the vocabulary (vocab %lld)",
                            label, t, (unsigned long long)i, (long long)vocab);
    }
    *tokens = tok;
    *ntokens = (int64_t)want;
    return GQE_OK;
}

gqe_status gqe_shard_write(const char *path, const uint16_t *tokens, int64_t n) {
    if (n < 0 || n > INT32_MAX) return gqe_fail(GQE_ERR_ARG, "%s: a shard holds 0..%d tokens, got %lld", path, INT32_MAX, (long long)n);
    int32_t h[GQE_SHARD_HEADER_INTS] = {GQE_SHARD_MAGIC, GQE_SHARD_VERSION, (int32_t)n};
    FILE *f = fopen(path, "wb");
    if (!f) return gqe_fail(GQE_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(h, sizeof h, 1, f) == 1 && (n == 0 || fwrite(tokens, 2, (size_t)n, f) == (size_t)n);
    if (fclose(f) != 0) ok = 0;
    return ok ? GQE_OK : gqe_fail(GQE_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}


static gqe_status open_split(shard_impl *si, gqe_token_split *sp, const char *pattern, int64_t vocab) {
    glob_t g;
    int rc = glob(pattern, GLOB_ERR, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        globfree(&g);
        if (!strpbrk(pattern, "*?["))
            return gqe_fail(GQE_ERR_IO, "%s: shard file not found", pattern);
        return gqe_fail(GQE_ERR_IO, "no shard files match '%s'", pattern);
    }
    if (rc != 0) { globfree(&g); return gqe_fail(GQE_ERR_IO, "cannot expand '%s': %s", pattern, strerror(errno)); }
    gqe_status s = GQE_OK;
    sp->width = 2;
    sp->label = strdup(pattern);
    sp->segs = calloc(g.gl_pathc, sizeof *sp->segs);
    unsigned char **bufs = realloc(si->bufs, sizeof *bufs * (si->nbufs + g.gl_pathc));
    if (bufs) si->bufs = bufs;
    if (!sp->label || !sp->segs || !bufs) s = gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    for (size_t i = 0; s == GQE_OK && i < g.gl_pathc; i++) {   /* glob sorts the names */
        size_t len = 0;
        unsigned char *buf = NULL;
        /* Many shards take long to read: a signal stops between two. */
        if (gqe_interrupt_pending()) {
            s = gqe_fail(GQE_ERR_INTERRUPTED, "%s: interrupted by signal %d while reading shards", pattern,
                         gqe_interrupt_pending());
            break;
        }
        s = gqe_file_read(g.gl_pathv[i], "shard", "", &buf, &len);
        if (s != GQE_OK) break;
        si->bufs[si->nbufs++] = buf;
        const uint16_t *tok;
        int64_t n;
        s = gqe_shard_parse(buf, len, g.gl_pathv[i], vocab, &tok, &n);
        if (s != GQE_OK) break;
        sp->segs[sp->nseg++] = (gqe_token_segment){tok, n};
        sp->total += n;
    }
    globfree(&g);
    return s;
}

static gqe_status shards_open(gqe_dataset *ds, const gqe_data_config *cfg) {
    if (!cfg->path || !cfg->path[0])
        return gqe_fail(GQE_ERR_ARG, "data.path (a glob of training shards) is required for kind=shards");
    ds->vocab = cfg->vocab ? cfg->vocab : 50257;
    if (ds->vocab > 65536)
        return gqe_fail(GQE_ERR_ARG, "kind=shards stores uint16 tokens: data.vocab must be <= 65536, got %lld",
                        (long long)ds->vocab);
    shard_impl *si = calloc(1, sizeof *si);
    if (!si) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    ds->impl = si;
    GQE_TRY(open_split(si, &si->split[0], cfg->path, ds->vocab));
    if (cfg->val_path && cfg->val_path[0]) GQE_TRY(open_split(si, &si->split[1], cfg->val_path, ds->vocab));
    if (cfg->batch > 0 && cfg->seq > 0) {
        GQE_TRY(gqe_token_split_check(&si->split[0], "train", cfg->batch, cfg->seq));
        if (si->split[1].label) GQE_TRY(gqe_token_split_check(&si->split[1], "val", cfg->batch, cfg->seq));
    }
    return GQE_OK;
}

static gqe_status shards_batch(gqe_dataset *ds, gqe_split split, int64_t index, int64_t B, int64_t T,
                               int32_t *tokens, int32_t *targets) {
    shard_impl *si = ds->impl;
    if (!si->split[split].label)
        return gqe_fail(GQE_ERR_ARG, "kind=shards: no validation shards were given (set data.val_path)");
    return gqe_token_split_batch(&si->split[split], ds->seed, split, index, B, T, tokens, targets);
}

static int64_t shards_tokens(const gqe_dataset *ds, gqe_split split) {
    return ((const shard_impl *)ds->impl)->split[split].total;
}

static void shards_free(gqe_dataset *ds) {
    shard_impl *si = ds->impl;
    if (!si) return;
    for (int i = 0; i < si->nbufs; i++) free(si->bufs[i]);
    free(si->bufs);
    gqe_token_split_free(&si->split[0]);
    gqe_token_split_free(&si->split[1]);
    free(si);
}

static const gqe_token_split *shards_stream(const gqe_dataset *ds, gqe_split split) {
    return &((const shard_impl *)ds->impl)->split[split];
}

const gqe_data_kind gqe_data_shards = {"shards", shards_open, shards_batch, shards_tokens, shards_free, shards_stream};
