#include "../checkpoint.h"
#include "../safetensors.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT "gqe-checkpoint-1"

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

gqe_status gqe_checkpoint_save(const char *path, gqe_lm *lm, gqe_optimizer *opt, const gqe_checkpoint_info *info) {
    gqe_paramset *ps = gqe_lm_params(lm);
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

gqe_status gqe_checkpoint_load(const char *path, gqe_lm *lm, gqe_optimizer *opt, gqe_checkpoint_info *info) {
    gqe_st_file f = {0};
    GQE_TRY(gqe_safetensors_read(path, &f));
    gqe_status st = GQE_OK;
    const char *fmt = gqe_st_meta(&f, "format");
    if (!fmt || strcmp(fmt, FORMAT) != 0)
        st = gqe_fail(GQE_ERR_FORMAT, "%s: not a gqe checkpoint (metadata format is %s, expected %s)", path, fmt ? fmt : "missing", FORMAT);
    gqe_paramset *ps = gqe_lm_params(lm);
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
        const char *cfg = gqe_st_meta(&f, "config");
        info->config_json = cfg ? strdup(cfg) : NULL;
    }
    gqe_st_file_free(&f);
    return st;
}
