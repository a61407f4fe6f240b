#include "../checkpoint.h"
#include "../safetensors.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Format 2 added the run identity and the checksum; format 1 files still
 * load (info->verified = 0 says that nothing could be checked). */
#define FORMAT "gqe-checkpoint-2"
#define FORMAT_1 "gqe-checkpoint-1"

/* The checksum of a checkpoint: a 64-bit FNV-1a variant over 8-byte words
 * of every tensor's name, byte count and bytes, tensors in name order (the
 * file's order). It catches flipped bits and truncation, not an attacker who
 * rewrites the checksum too: identity checks (run uid, config hash, step) are
 * the caller's. */
#define FNV_PRIME UINT64_C(0x100000001b3)
static uint64_t fold(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * FNV_PRIME;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

static uint64_t fold_tensor(uint64_t h, const char *name, const void *data, size_t nbytes) {
    uint64_t len = nbytes;
    h = fold(h, name, strlen(name) + 1);
    h = fold(h, &len, sizeof len);
    return fold(h, data, nbytes);
}
#define CHECKSUM_SEED UINT64_C(0xcbf29ce484222325)

typedef struct entries {
    int n, cap;
    char **names;
    const gqe_tensor **tensors;
    gqe_tensor *views;     /* optimizer-state views live here */
    int nviews;
} entries;

static gqe_status push(entries *e, const char *name, const gqe_tensor *t) {
    if (e->n == e->cap) {
        int cap = e->cap ? 2 * e->cap : 64;
        char **nm = realloc(e->names, (size_t)cap * sizeof *nm);
        if (nm) e->names = nm;
        const gqe_tensor **ts = realloc(e->tensors, (size_t)cap * sizeof *ts);
        if (ts) e->tensors = ts;
        if (!nm || !ts) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        e->cap = cap;
    }
    e->names[e->n] = strdup(name);
    if (!e->names[e->n]) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    e->tensors[e->n++] = t;
    return GQE_OK;
}

static void entries_free(entries *e) {
    for (int i = 0; i < e->n; i++) free(e->names[i]);
    free(e->names);
    free(e->tensors);
    free(e->views);
}

/* A view of one parameter's slice of a flat optimizer-state buffer. */
static gqe_tensor state_view(const gqe_tensor *flat, const gqe_param *p) {
    return gqe_tensor_view(flat, p->offset, p->ndim, p->shape);
}

typedef struct named { const char *name; const gqe_tensor *t; } named;
static int by_name(const void *a, const void *b) { return strcmp(((const named *)a)->name, ((const named *)b)->name); }

/* The checksum of what save is about to write (entries in file order). */
static gqe_status entries_checksum(const entries *e, uint64_t *out) {
    named *o = calloc((size_t)e->n + 1, sizeof *o);
    if (!o) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < e->n; i++) o[i] = (named){e->names[i], e->tensors[i]};
    if (e->n > 1) qsort(o, (size_t)e->n, sizeof *o, by_name);
    uint64_t h = CHECKSUM_SEED;
    gqe_status st = GQE_OK;
    for (int i = 0; st == GQE_OK && i < e->n; i++) {
        const gqe_tensor *t = o[i].t;
        if (t->device == GQE_CPU) { h = fold_tensor(h, o[i].name, gqe_tensor_data(t), gqe_tensor_nbytes(t)); continue; }
        gqe_tensor host;
        if ((st = gqe_tensor_to(&host, t, GQE_CPU, t->dtype)) != GQE_OK) break;
        h = fold_tensor(h, o[i].name, gqe_tensor_data(&host), gqe_tensor_nbytes(&host));
        gqe_tensor_free(&host);
    }
    free(o);
    *out = h;
    return st;
}

static gqe_status file_checksum(const gqe_st_file *f, uint64_t *out) {
    uint64_t h = CHECKSUM_SEED;   /* the file's tensors are sorted by name already */
    for (int i = 0; i < f->count; i++)
        h = fold_tensor(h, f->names[i], gqe_tensor_data(&f->tensors[i]), gqe_tensor_nbytes(&f->tensors[i]));
    *out = h;
    return GQE_OK;
}

/* Only what an id or a hash is made of: these strings become metadata that
 * resume compares, and a path component. */
static int plain_token(const char *s) {
    if (!s || !*s || strlen(s) > 60) return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

gqe_status gqe_checkpoint_save(const char *path, gqe_lm *lm, gqe_optimizer *opt, const gqe_checkpoint_info *info) {
    gqe_paramset *ps = gqe_lm_params(lm);
    if (opt) GQE_TRY(gqe_optim_check_owner(opt, ps, path));
    if (info->step < 0 || info->data_index < 0)
        return gqe_fail(GQE_ERR_ARG, "%s: checkpoint step and data_index must be >= 0", path);
    if ((info->run_uid && !plain_token(info->run_uid)) || (info->config_hash && !plain_token(info->config_hash)))
        return gqe_fail(GQE_ERR_ARG, "%s: run_uid and config_hash must be 1-60 letters, digits, '-' or '_'", path);
    entries e = {0};
    int nstate = opt ? gqe_optim_state_count(opt) : 0;
    e.views = calloc((size_t)(nstate * ps->count + 1), sizeof *e.views);
    gqe_status st = e.views ? GQE_OK : gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    char name[256];
    for (int i = 0; st == GQE_OK && i < ps->count; i++) st = push(&e, ps->items[i].name, ps->items[i].value);
    for (int s = 0; st == GQE_OK && s < nstate; s++) {
        gqe_tensor *flat = gqe_optim_state_tensor(opt, s);
        for (int i = 0; st == GQE_OK && i < ps->count; i++) {
            e.views[e.nviews] = state_view(flat, &ps->items[i]);
            snprintf(name, sizeof name, "optim.%s.%s", gqe_optim_state_name(opt, s), ps->items[i].name);
            st = push(&e, name, &e.views[e.nviews++]);
        }
    }
    /* metadata: strings only */
    enum { MAXMETA = 512 };
    char *keys[MAXMETA], *vals[MAXMETA];
    int nm = 0;
#define META(k, ...) do { if (nm < MAXMETA) { keys[nm] = strdup(k); char _b[64]; snprintf(_b, sizeof _b, __VA_ARGS__); vals[nm++] = strdup(_b); } } while (0)
    META("format", "%s", FORMAT);
    META("step", "%" PRId64, info->step);
    META("data_index", "%" PRId64, info->data_index);
    META("optim_step", "%" PRId64, opt ? gqe_optim_step_count(opt) : 0);
    for (int64_t l = 0; st == GQE_OK && l < gqe_lm_layers(lm); l++) {
        gqe_attn *a = gqe_lm_attn(lm, l);
        snprintf(name, sizeof name, "route_calls.%" PRId64, l);
        META(name, "%" PRIu64, gqe_attn_route_calls(a));
    }
    /* buffers (the balanced routers' biases), by the names they registered */
    for (int i = 0; st == GQE_OK && i < ps->nbuffers; i++) st = push(&e, ps->buffers[i].name, ps->buffers[i].value);
    if (info->run_uid) META("run_uid", "%s", info->run_uid);
    if (info->config_hash) META("config_hash", "%s", info->config_hash);
    uint64_t sum = 0;
    if (st == GQE_OK) st = entries_checksum(&e, &sum);
    META("checksum", "%016" PRIx64, sum);
#undef META
    if (info->config_json && nm < MAXMETA) { keys[nm] = strdup("config"); vals[nm++] = strdup(info->config_json); }
    for (int i = 0; i < nm; i++) if (!keys[i] || !vals[i]) st = gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    if (st == GQE_OK)
        st = gqe_safetensors_write(path, e.n, (const char *const *)e.names, e.tensors, nm,
                                   (const char *const *)keys, (const char *const *)vals);
    for (int i = 0; i < nm; i++) { free(keys[i]); free(vals[i]); }
    entries_free(&e);
    return st;
}

static gqe_status restore(const gqe_st_file *f, const char *path, const char *name, gqe_tensor *dst) {
    const gqe_tensor *src = gqe_st_get(f, name);
    if (!src) return gqe_fail(GQE_ERR_FORMAT, "%s: checkpoint lacks tensor '%s'", path, name);
    char a[64], b[64];
    if (src->dtype != GQE_F32)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s' has dtype %s, the model expects f32", path, name,
                        gqe_dtype_name(src->dtype));
    if (!gqe_tensor_same_shape(src, dst))
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s' has shape %s, the model expects %s", path, name,
                        gqe_tensor_shape_str(src, a, 64), gqe_tensor_shape_str(dst, b, 64));
    return gqe_tensor_copy(dst, src);
}

static gqe_status meta_int(const gqe_st_file *f, const char *path, const char *key, int64_t *out) {
    const char *v = gqe_st_meta(f, key);
    char *end;
    if (!v) return gqe_fail(GQE_ERR_FORMAT, "%s: checkpoint metadata lacks '%s'", path, key);
    long long x = strtoll(v, &end, 10);
    if (*end || end == v) return gqe_fail(GQE_ERR_FORMAT, "%s: checkpoint metadata '%s' is not an integer: %s", path, key, v);
    *out = x;
    return GQE_OK;
}

static char *meta_dup(const gqe_st_file *f, const char *key) {
    const char *v = gqe_st_meta(f, key);
    return v ? strdup(v) : NULL;
}

void gqe_checkpoint_info_free(gqe_checkpoint_info *info) {
    free(info->config_json);
    free(info->run_uid);
    free(info->config_hash);
    info->config_json = info->run_uid = info->config_hash = NULL;
}

/* The checksum, checked before anything is restored: a damaged file leaves
 * the model and optimizer as they were. */
static gqe_status verify(const gqe_st_file *f, const char *path, int *verified) {
    const char *fmt = gqe_st_meta(f, "format");
    *verified = 0;
    if (fmt && strcmp(fmt, FORMAT_1) == 0) return GQE_OK;
    if (!fmt || strcmp(fmt, FORMAT) != 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: not a gqe checkpoint (metadata format is %s, expected %s)", path,
                        fmt ? fmt : "missing", FORMAT);
    const char *want = gqe_st_meta(f, "checksum");
    uint64_t got;
    GQE_TRY(file_checksum(f, &got));
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, got);
    if (!want) return gqe_fail(GQE_ERR_FORMAT, "%s: checkpoint metadata lacks its checksum", path);
    if (strcmp(want, hex) != 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: checksum mismatch (the file says %.20s, its tensors give %s): "
                        "the checkpoint is damaged", path, want, hex);
    *verified = 1;
    return GQE_OK;
}

/* The identity the caller expects, compared before anything is restored. */
static gqe_status check_identity(const gqe_st_file *f, const char *path, const gqe_checkpoint_info *expect) {
    if (!expect) return GQE_OK;
    const char *uid = gqe_st_meta(f, "run_uid"), *hash = gqe_st_meta(f, "config_hash");
    if (expect->run_uid && !uid)
        return gqe_fail(GQE_ERR_FORMAT, "%s: it carries no run identity (written by an older gqe)", path);
    if (expect->run_uid && strcmp(uid, expect->run_uid) != 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: it belongs to another run (uid %.60s, this run's is %s)", path, uid,
                        expect->run_uid);
    if (expect->config_hash && (!hash || strcmp(hash, expect->config_hash) != 0))
        return gqe_fail(GQE_ERR_FORMAT, "%s: its config hash %.60s differs from the run's %s", path,
                        hash ? hash : "(none)", expect->config_hash);
    int64_t step;
    if (expect->step >= 0) {
        GQE_TRY(meta_int(f, path, "step", &step));
        if (step != expect->step)
            return gqe_fail(GQE_ERR_FORMAT, "%s: it holds step %lld, the run log registered it as step %lld", path,
                            (long long)step, (long long)expect->step);
    }
    return GQE_OK;
}

gqe_status gqe_checkpoint_load(const char *path, gqe_lm *lm, gqe_optimizer *opt, gqe_checkpoint_info *info) {
    return gqe_checkpoint_load_expecting(path, lm, opt, NULL, info);
}

gqe_status gqe_checkpoint_load_expecting(const char *path, gqe_lm *lm, gqe_optimizer *opt,
                                         const gqe_checkpoint_info *expect, gqe_checkpoint_info *info) {
    memset(info, 0, sizeof *info);
    gqe_paramset *ps = gqe_lm_params(lm);
    if (opt) GQE_TRY(gqe_optim_check_owner(opt, ps, path));
    gqe_st_file f = {0};
    GQE_TRY(gqe_safetensors_read(path, &f));
    gqe_status st = verify(&f, path, &info->verified);
    if (st == GQE_OK) st = check_identity(&f, path, expect);
    char name[256];
    for (int i = 0; st == GQE_OK && i < ps->count; i++) st = restore(&f, path, ps->items[i].name, ps->items[i].value);
    for (int s = 0; st == GQE_OK && opt && s < gqe_optim_state_count(opt); s++) {
        gqe_tensor *flat = gqe_optim_state_tensor(opt, s);
        for (int i = 0; st == GQE_OK && i < ps->count; i++) {
            gqe_tensor v = state_view(flat, &ps->items[i]);
            snprintf(name, sizeof name, "optim.%s.%s", gqe_optim_state_name(opt, s), ps->items[i].name);
            st = restore(&f, path, name, &v);
        }
    }
    int64_t x = 0;
    for (int64_t l = 0; st == GQE_OK && l < gqe_lm_layers(lm); l++) {
        gqe_attn *a = gqe_lm_attn(lm, l);
        snprintf(name, sizeof name, "route_calls.%" PRId64, l);
        if ((st = meta_int(&f, path, name, &x)) == GQE_OK) gqe_attn_set_route_calls(a, (uint64_t)x);
    }
    for (int i = 0; st == GQE_OK && i < ps->nbuffers; i++) st = restore(&f, path, ps->buffers[i].name, ps->buffers[i].value);
    if (st == GQE_OK) st = meta_int(&f, path, "step", &info->step);
    if (st == GQE_OK) st = meta_int(&f, path, "data_index", &info->data_index);
    if (st == GQE_OK && opt && (st = meta_int(&f, path, "optim_step", &x)) == GQE_OK) st = gqe_optim_set_step_count(opt, x);
    if (st == GQE_OK) {
        info->config_json = meta_dup(&f, "config");
        info->run_uid = meta_dup(&f, "run_uid");
        info->config_hash = meta_dup(&f, "config_hash");
    }
    if (st != GQE_OK) gqe_checkpoint_info_free(info);
    gqe_st_file_free(&f);
    return st;
}
