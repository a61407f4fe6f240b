#include "params.h"
#include "../size.h"
#include "../ops.h"
#include "../rng.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

void gqe_paramset_init(gqe_paramset *ps) { memset(ps, 0, sizeof *ps); }

static gqe_buffer *find_buffer(gqe_paramset *ps, const char *name) {
    for (int i = 0; i < ps->nbuffers; i++)
        if (strcmp(ps->buffers[i].name, name) == 0) return &ps->buffers[i];
    return NULL;
}

gqe_status gqe_paramset_add(gqe_paramset *ps, const char *name, int ndim, const int64_t *shape,
                            gqe_param_role role, gqe_tensor *value, gqe_tensor *grad, gqe_tensor *compute) {
    if (ps->data.storage) return gqe_fail(GQE_ERR_ARG, "parameter '%s' declared after allocation", name);
    if (strlen(name) >= sizeof ps->items[0].name) return gqe_fail(GQE_ERR_ARG, "parameter name too long: %s", name);
    if (gqe_paramset_find(ps, name) || find_buffer(ps, name))
        return gqe_fail(GQE_ERR_ARG, "parameter '%s' declared twice", name);
    if (ps->count == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 32;
        gqe_param *items = realloc(ps->items, (size_t)cap * sizeof *items);
        if (!items) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        ps->items = items;
        ps->cap = cap;
    }
    if (ndim < 0 || ndim > GQE_MAX_DIMS) return gqe_fail(GQE_ERR_ARG, "parameter '%s': %d dims", name, ndim);
    int64_t numel, total;
    GQE_TRY(gqe_shape_numel(name, ndim, shape, &numel));
    /* Keep every parameter 16-element aligned so vector loads stay aligned. */
    if (!gqe_add_ok((int64_t)ps->numel, (numel + 15) & ~(int64_t)15, &total))
        return gqe_fail(GQE_ERR_ARG, "parameter '%s': the model's parameters total more than 2^48 elements", name);
    gqe_param *p = &ps->items[ps->count++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = (size_t)numel;
    for (int i = 0; i < ndim; i++) p->shape[i] = shape[i];
    p->offset = ps->numel;
    ps->numel = (size_t)total;
    p->role = role;
    p->value = value;
    p->grad = grad;
    p->compute = compute;
    return GQE_OK;
}

gqe_status gqe_paramset_add_buffer(gqe_paramset *ps, const char *name, int ndim, const int64_t *shape,
                                   gqe_tensor *value) {
    if (ps->data.storage) return gqe_fail(GQE_ERR_ARG, "buffer '%s' declared after allocation", name);
    if (strlen(name) >= sizeof ps->buffers[0].name) return gqe_fail(GQE_ERR_ARG, "buffer name too long: %s", name);
    if (gqe_paramset_find(ps, name) || find_buffer(ps, name))
        return gqe_fail(GQE_ERR_ARG, "buffer '%s' declared twice", name);
    if (ps->nbuffers == ps->buffers_cap) {
        int cap = ps->buffers_cap ? ps->buffers_cap * 2 : 8;
        gqe_buffer *items = realloc(ps->buffers, (size_t)cap * sizeof *items);
        if (!items) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        ps->buffers = items;
        ps->buffers_cap = cap;
    }
    gqe_buffer *b = &ps->buffers[ps->nbuffers++];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->ndim = ndim;
    b->numel = 1;
    for (int i = 0; i < ndim; i++) { b->shape[i] = shape[i]; b->numel *= (size_t)shape[i]; }
    b->offset = ps->buffers_numel;
    ps->buffers_numel += (b->numel + 15) & ~(size_t)15;
    b->value = value;
    return GQE_OK;
}

gqe_status gqe_paramset_alloc(gqe_paramset *ps, gqe_device dev) {
    int64_t n = (int64_t)(ps->numel ? ps->numel : 16);
    ps->device = dev;
    GQE_TRY(gqe_tensor_zeros(&ps->data, GQE_F32, dev, 1, &n));
    gqe_status st = gqe_tensor_zeros(&ps->grad, GQE_F32, dev, 1, &n);
    if (st != GQE_OK) { gqe_tensor_free(&ps->data); return st; }
    int64_t nb = (int64_t)(ps->buffers_numel ? ps->buffers_numel : 16);
    if ((st = gqe_tensor_zeros(&ps->buffer_data, GQE_F32, dev, 1, &nb)) != GQE_OK) {
        gqe_tensor_free(&ps->data);
        gqe_tensor_free(&ps->grad);
        return st;
    }
    for (int i = 0; i < ps->nbuffers; i++) {
        gqe_buffer *b = &ps->buffers[i];
        *b->value = gqe_tensor_view(&ps->buffer_data, b->offset, b->ndim, b->shape);
    }
    for (int i = 0; i < ps->count; i++) {
        gqe_param *p = &ps->items[i];
        if (p->value) *p->value = gqe_tensor_view(&ps->data, p->offset, p->ndim, p->shape);
        if (p->grad) *p->grad = gqe_tensor_view(&ps->grad, p->offset, p->ndim, p->shape);
    }
    return gqe_paramset_set_compute_dtype(ps, GQE_F32);
}

gqe_status gqe_paramset_set_compute_dtype(gqe_paramset *ps, gqe_dtype dtype) {
    if (!ps->data.storage) return gqe_fail(GQE_ERR_ARG, "precision: the parameters are not allocated yet");
    if (dtype != GQE_F32 && dtype != GQE_BF16)
        return gqe_fail(GQE_ERR_ARG, "precision: compute dtype must be f32 or bf16, got %s", gqe_dtype_name(dtype));
    if (dtype == GQE_BF16 && !ps->data16.storage) {
        int64_t n = gqe_tensor_numel(&ps->data);
        GQE_TRY(gqe_tensor_zeros(&ps->data16, GQE_BF16, ps->device, 1, &n));
    }
    if (dtype == GQE_F32) gqe_tensor_free(&ps->data16);
    const gqe_tensor *src = dtype == GQE_BF16 ? &ps->data16 : &ps->data;
    for (int i = 0; i < ps->count; i++) {
        gqe_param *p = &ps->items[i];
        if (p->compute) *p->compute = gqe_tensor_view(src, p->offset, p->ndim, p->shape);
    }
    return gqe_paramset_refresh_compute(ps);
}

gqe_dtype gqe_paramset_compute_dtype(const gqe_paramset *ps) { return ps->data16.storage ? GQE_BF16 : GQE_F32; }

gqe_status gqe_paramset_set_precision(gqe_paramset *ps, const char *precision) {
    if (precision && strcmp(precision, "fp32") == 0) return gqe_paramset_set_compute_dtype(ps, GQE_F32);
    if (!precision || strcmp(precision, "bf16") != 0)
        return gqe_fail(GQE_ERR_ARG, "unknown precision '%s' (allowed: fp32, bf16)", precision ? precision : "(null)");
    if (ps->device != GQE_CUDA)
        return gqe_fail(GQE_ERR_ARG, "precision 'bf16' runs on cuda only (the cpu backend computes in f32): use fp32 on cpu");
    return gqe_paramset_set_compute_dtype(ps, GQE_BF16);
}

const char *gqe_paramset_precision(const gqe_paramset *ps) {
    return gqe_paramset_compute_dtype(ps) == GQE_BF16 ? "bf16" : "fp32";
}

gqe_status gqe_paramset_refresh_compute(gqe_paramset *ps) {
    return ps->data16.storage ? gqe_tensor_copy(&ps->data16, &ps->data) : GQE_OK;
}

gqe_param *gqe_paramset_find(gqe_paramset *ps, const char *name) {
    for (int i = 0; i < ps->count; i++)
        if (strcmp(ps->items[i].name, name) == 0) return &ps->items[i];
    return NULL;
}

gqe_status gqe_paramset_zero_grad(gqe_paramset *ps) {
    return ps->grad.storage ? gqe_fill(&ps->grad, 0.0f) : GQE_OK;
}

void gqe_paramset_free(gqe_paramset *ps) {
    gqe_tensor_free(&ps->data);
    gqe_tensor_free(&ps->grad);
    gqe_tensor_free(&ps->data16);
    gqe_tensor_free(&ps->buffer_data);
    free(ps->items);
    free(ps->buffers);
    memset(ps, 0, sizeof *ps);
}

gqe_status gqe_fill_normal(gqe_tensor *t, uint64_t seed, uint64_t stream, float std) {
    int64_t n = gqe_tensor_numel(t);
    float *h = malloc((size_t)n * sizeof *h + 4);
    if (!h) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    for (int64_t i = 0; i < n; i++) h[i] = std * gqe_rng_normal_at(seed, stream, (uint64_t)i);
    gqe_status st = gqe_tensor_write_f32(t, h, (size_t)n);
    free(h);
    return st;
}
