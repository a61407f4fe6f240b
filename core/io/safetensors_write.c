/* safetensors writer. Names are sorted so the same tensors always give the
 * same bytes; the header is padded with spaces so the data section starts at
 * a multiple of 8 (as the reference writer does); the file is written beside
 * its destination and renamed, so a crash never leaves half a checkpoint. */
#include "safetensors.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct sbuf { char *p; size_t len, cap; int failed; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->failed = 1; return; }
        b->p = np; b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8 included) pass through. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_str(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') { esc[0] = '\\'; esc[1] = (char)*c; sb_put(b, esc, 2); }
        else if (*c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *c); sb_str(b, esc); }
        else sb_put(b, (const char *)c, 1);
    }
    sb_str(b, "\"");
}

static const char *st_name_of(gqe_dtype t) {
    return t == GQE_F32 ? "F32" : t == GQE_BF16 ? "BF16" : "I32";
}

typedef struct order { const char *name; const gqe_tensor *t; } order;
static int by_name(const void *a, const void *b) {
    return strcmp(((const order *)a)->name, ((const order *)b)->name);
}

static gqe_status build_header(sbuf *h, const char *path, const order *o, int n, int meta_n,
                               const char *const *mk, const char *const *mv) {
    sb_str(h, "{");
    if (meta_n > 0) {
        sb_str(h, "\"__metadata__\":{");
        for (int i = 0; i < meta_n; i++) {
            if (!mk[i] || !mv[i])
                return gqe_fail(GQE_ERR_ARG, "%s: metadata entry %d has a NULL key or value", path, i);
            if (i) sb_str(h, ",");
            sb_json_string(h, mk[i]);
            sb_str(h, ":");
            sb_json_string(h, mv[i]);
        }
        sb_str(h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const gqe_tensor *t = o[i].t;
        if (meta_n > 0 || i) sb_str(h, ",");
        sb_json_string(h, o[i].name);
        char tmp[96];
        snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", st_name_of(t->dtype));
        sb_str(h, tmp);
        for (int d = 0; d < t->ndim; d++) {
            snprintf(tmp, sizeof tmp, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            sb_str(h, tmp);
        }
        uint64_t nb = gqe_tensor_nbytes(t);
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nb));
        sb_str(h, tmp);
        off += nb;
    }
    sb_str(h, "}");
    while ((8 + h->len) % 8) sb_str(h, " ");
    if (h->failed) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    return GQE_OK;
}

static gqe_status check_inputs(const char *path, order *o, int n) {
    for (int i = 0; i < n; i++) {
        if (!o[i].name || !o[i].t)
            return gqe_fail(GQE_ERR_ARG, "%s: tensor %d has a NULL name or tensor", path, i);
        if (!o[i].name[0] || strcmp(o[i].name, "__metadata__") == 0)
            return gqe_fail(GQE_ERR_ARG, "%s: '%s' cannot be a tensor name", path, o[i].name);
        if (gqe_tensor_is_empty(o[i].t) && gqe_tensor_numel(o[i].t) != 0)
            return gqe_fail(GQE_ERR_ARG, "%s: tensor '%s' has no storage", path, o[i].name);
        if (o[i].t->dtype != GQE_F32 && o[i].t->dtype != GQE_BF16 && o[i].t->dtype != GQE_I32)
            return gqe_fail(GQE_ERR_ARG, "%s: tensor '%s' has dtype %s (allowed: f32, bf16, i32)", path,
                            o[i].name, gqe_dtype_name(o[i].t->dtype));
    }
    qsort(o, (size_t)n, sizeof *o, by_name);
    for (int i = 1; i < n; i++)
        if (strcmp(o[i].name, o[i - 1].name) == 0)
            return gqe_fail(GQE_ERR_ARG, "%s: tensor name '%s' given twice", path, o[i].name);
    return GQE_OK;
}

static gqe_status write_all(FILE *f, const char *tmp, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, f) != n)
        return gqe_fail(GQE_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return GQE_OK;
}

static gqe_status write_tensor(FILE *f, const char *tmp, const gqe_tensor *t) {
    size_t nb = gqe_tensor_nbytes(t);
    if (nb == 0) return GQE_OK;
    if (t->device == GQE_CPU) return write_all(f, tmp, gqe_tensor_data(t), nb);
    gqe_tensor host;
    GQE_TRY(gqe_tensor_to(&host, t, GQE_CPU, t->dtype));
    gqe_status s = write_all(f, tmp, gqe_tensor_data(&host), nb);
    gqe_tensor_free(&host);
    return s;
}

/* The rename is only durable once the directory entry is on disk too. */
static void sync_parent_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { (void)fsync(fd); close(fd); }
    free(copy);
}

gqe_status gqe_safetensors_write(const char *path, int n, const char *const *names,
                                 const gqe_tensor *const *tensors, int meta_n,
                                 const char *const *meta_keys, const char *const *meta_values) {
    if (!path || n < 0 || meta_n < 0 || (n && (!names || !tensors)) || (meta_n && (!meta_keys || !meta_values)))
        return gqe_fail(GQE_ERR_ARG, "safetensors write: bad arguments (path %s, %d tensors, %d metadata)",
                        path ? path : "NULL", n, meta_n);
    order *o = calloc((size_t)n + 1, sizeof *o);
    if (!o) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < n; i++) { o[i].name = names[i]; o[i].t = tensors[i]; }
    sbuf h = {0};
    gqe_status s = check_inputs(path, o, n);
    if (s == GQE_OK) s = build_header(&h, path, o, n, meta_n, meta_keys, meta_values);

    /* The temporary file is created exclusively (mkstemp: O_CREAT|O_EXCL, so
     * a planted file or symlink is never opened) under an unpredictable name
     * in the target's directory, so the rename stays on one file system. */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 12);
    if (s == GQE_OK && !tmp) s = gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    FILE *f = NULL;
    if (s == GQE_OK) {
        memcpy(tmp, path, plen);
        memcpy(tmp + plen, ".tmpXXXXXX", 11);
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) s = gqe_fail(GQE_ERR_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        else {
            /* mkstemp makes the file 0600; give it what a plain create would. */
            mode_t mask = umask(0);
            umask(mask);
            (void)fchmod(fd, 0666 & ~mask);
            f = fdopen(fd, "wb");
            if (!f) { s = gqe_fail(GQE_ERR_IO, "%s: %s", tmp, strerror(errno)); close(fd); unlink(tmp); }
        }
    }
    if (s == GQE_OK) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
        s = write_all(f, tmp, len8, 8);
    }
    if (s == GQE_OK) s = write_all(f, tmp, h.p, h.len);
    for (int i = 0; s == GQE_OK && i < n; i++) s = write_tensor(f, tmp, o[i].t);
    if (s == GQE_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        s = gqe_fail(GQE_ERR_IO, "%s: flush failed: %s", tmp, strerror(errno));
    if (f && fclose(f) != 0 && s == GQE_OK)
        s = gqe_fail(GQE_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (s == GQE_OK && rename(tmp, path) != 0)
        s = gqe_fail(GQE_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (s == GQE_OK) sync_parent_dir(path);
    else if (f) unlink(tmp);
    free(tmp);
    free(h.p);
    free(o);
    return s;
}
