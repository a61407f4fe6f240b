#include "tensor.h"
#include "backend.h"
#include "size.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t gqe_dtype_size(gqe_dtype t) { return t == GQE_BF16 ? 2 : 4; }
const char *gqe_dtype_name(gqe_dtype t) {
    return t == GQE_F32 ? "f32" : t == GQE_BF16 ? "bf16" : t == GQE_I32 ? "i32" : "?";
}
const char *gqe_device_name(gqe_device d) { return d == GQE_CUDA ? "cuda" : "cpu"; }

gqe_status gqe_device_parse(const char *name, gqe_device *out) {
    if (name && strcmp(name, "cpu") == 0) { *out = GQE_CPU; return GQE_OK; }
    if (name && strcmp(name, "cuda") == 0) {
        if (!gqe_cuda_available())
            return gqe_fail(GQE_ERR_DEVICE, "device 'cuda' requested but %s",
#ifdef GQE_HAVE_CUDA
                            "no CUDA device is visible"
#else
                            "gqe was built without CUDA (nvcc not found at build time)"
#endif
            );
        *out = GQE_CUDA;
        return GQE_OK;
    }
    return gqe_fail(GQE_ERR_ARG, "unknown device '%s' (allowed: cpu, cuda)", name ? name : "(null)");
}

int64_t gqe_tensor_numel(const gqe_tensor *t) {
    if (t->ndim == 0) return 1; /* a scalar */
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
size_t gqe_tensor_nbytes(const gqe_tensor *t) { return (size_t)gqe_tensor_numel(t) * gqe_dtype_size(t->dtype); }
bool gqe_tensor_is_empty(const gqe_tensor *t) { return t->storage == NULL; }

void *gqe_tensor_data(const gqe_tensor *t) {
    if (!t->storage) return NULL;
    return (char *)t->storage->data + t->offset * gqe_dtype_size(t->dtype);
}

static gqe_status set_shape(gqe_tensor *t, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > GQE_MAX_DIMS)
        return gqe_fail(GQE_ERR_SHAPE, "tensors have 0 to %d dims, got %d", GQE_MAX_DIMS, ndim);
    t->ndim = ndim;
    for (int i = 0; i < GQE_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    int64_t numel;
    return gqe_shape_numel("tensor", ndim, shape, &numel);
}

gqe_status gqe_tensor_new(gqe_tensor *t, gqe_dtype dtype, gqe_device dev, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->device = dev;
    GQE_TRY(set_shape(t, ndim, shape));
    gqe_storage *s = calloc(1, sizeof *s);
    if (!s) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    size_t nbytes = gqe_tensor_nbytes(t);
    s->nbytes = nbytes;
    s->device = dev;
    s->refcount = 1;
    s->owned = true;
    gqe_status st = gqe_backend_for(dev)->alloc(&s->data, nbytes ? nbytes : 1);
    if (st != GQE_OK) { free(s); return st; }
    t->storage = s;
    return GQE_OK;
}

gqe_status gqe_tensor_zeros(gqe_tensor *t, gqe_dtype dtype, gqe_device dev, int ndim, const int64_t *shape) {
    GQE_TRY(gqe_tensor_new(t, dtype, dev, ndim, shape));
    if (dtype == GQE_F32) return gqe_fill(t, 0.0f);
    /* bf16 and i32 zero are all-zero bytes too: fill through a f32 view. */
    size_t n = gqe_tensor_nbytes(t);
    gqe_tensor raw = *t;
    raw.dtype = GQE_F32; raw.ndim = 1; raw.shape[0] = (int64_t)(n / 4);
    if (raw.shape[0]) GQE_TRY(gqe_fill(&raw, 0.0f));
    if (n % 4) { /* odd bf16 count: clear the last element on the host path */
        uint16_t z = 0;
        GQE_TRY(gqe_backend_for(dev)->upload((char *)gqe_tensor_data(t) + n - 2, &z, 2));
    }
    return GQE_OK;
}

gqe_status gqe_tensor_new4(gqe_tensor *t, gqe_dtype dtype, gqe_device dev, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    int nd = d3 ? 4 : d2 ? 3 : d1 ? 2 : 1;
    return gqe_tensor_new(t, dtype, dev, nd, shape);
}

void gqe_tensor_free(gqe_tensor *t) {
    if (!t || !t->storage) return;
    gqe_storage *s = t->storage;
    if (--s->refcount == 0) {
        if (s->owned) gqe_backend_for(s->device)->release(s->data);
        free(s);
    }
    t->storage = NULL;
}

gqe_tensor gqe_tensor_ref(const gqe_tensor *t) {
    gqe_tensor r = *t;
    if (r.storage) r.storage->refcount++;
    return r;
}

gqe_tensor gqe_tensor_view(const gqe_tensor *t, size_t off, int ndim, const int64_t *shape) {
    gqe_tensor v = *t;
    v.offset = t->offset + off;
    set_shape(&v, ndim, shape);
    return v;
}

gqe_tensor gqe_tensor_view4(const gqe_tensor *t, size_t off, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    int nd = d3 ? 4 : d2 ? 3 : d1 ? 2 : 1;
    return gqe_tensor_view(t, off, nd, shape);
}

gqe_tensor gqe_tensor_reshape(const gqe_tensor *t, int ndim, const int64_t *shape) {
    return gqe_tensor_view(t, 0, ndim, shape);
}

bool gqe_tensor_same_shape(const gqe_tensor *a, const gqe_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++) if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *gqe_tensor_shape_str(const gqe_tensor *t, char *buf, size_t n) {
    size_t len = 0;
    len += snprintf(buf + len, n - len, "(");
    for (int i = 0; i < t->ndim && len < n; i++)
        len += snprintf(buf + len, n - len, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (len < n) snprintf(buf + len, n - len, ")");
    return buf;
}

uint16_t gqe_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float gqe_bf16_to_f32(uint16_t b) {
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static void host_convert(void *dst, gqe_dtype dt, const void *src, gqe_dtype st, size_t n) {
    if (dt == st) { memcpy(dst, src, n * gqe_dtype_size(dt)); return; }
    for (size_t i = 0; i < n; i++) {
        float v = st == GQE_F32 ? ((const float *)src)[i]
                : st == GQE_BF16 ? gqe_bf16_to_f32(((const uint16_t *)src)[i])
                : (float)((const int32_t *)src)[i];
        if (dt == GQE_F32) ((float *)dst)[i] = v;
        else if (dt == GQE_BF16) ((uint16_t *)dst)[i] = gqe_f32_to_bf16(v);
        else ((int32_t *)dst)[i] = (int32_t)v;
    }
}

gqe_status gqe_tensor_copy(gqe_tensor *dst, const gqe_tensor *src) {
    int64_t n = gqe_tensor_numel(src);
    if (gqe_tensor_numel(dst) != n) {
        char a[64], b[64];
        return gqe_fail(GQE_ERR_SHAPE, "copy: %s into %s: element counts differ",
                        gqe_tensor_shape_str(src, a, 64), gqe_tensor_shape_str(dst, b, 64));
    }
    if (n == 0) return GQE_OK;
    if ((dst->dtype == GQE_I32) != (src->dtype == GQE_I32))
        return gqe_fail(GQE_ERR_SHAPE, "copy: cannot convert %s to %s", gqe_dtype_name(src->dtype), gqe_dtype_name(dst->dtype));
    const gqe_backend *db = gqe_backend_for(dst->device);
    const gqe_backend *sb = gqe_backend_for(src->device);
    if (dst->device == src->device) {
        if (dst->dtype == src->dtype) return db->copy(gqe_tensor_data(dst), gqe_tensor_data(src), gqe_tensor_nbytes(src));
        return db->convert(dst, src);
    }
    /* Across devices: move the bytes in the source dtype, convert on the host if needed. */
    if (dst->dtype == src->dtype) {
        if (dst->device == GQE_CPU) return sb->download(gqe_tensor_data(dst), gqe_tensor_data(src), gqe_tensor_nbytes(src));
        return db->upload(gqe_tensor_data(dst), gqe_tensor_data(src), gqe_tensor_nbytes(src));
    }
    void *tmp = malloc(gqe_tensor_nbytes(src) + gqe_tensor_nbytes(dst));
    if (!tmp) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    void *tmp2 = (char *)tmp + gqe_tensor_nbytes(src);
    gqe_status st = GQE_OK;
    if (src->device == GQE_CPU) {
        host_convert(tmp2, dst->dtype, gqe_tensor_data(src), src->dtype, (size_t)n);
        st = db->upload(gqe_tensor_data(dst), tmp2, gqe_tensor_nbytes(dst));
    } else {
        st = sb->download(tmp, gqe_tensor_data(src), gqe_tensor_nbytes(src));
        if (st == GQE_OK) host_convert(gqe_tensor_data(dst), dst->dtype, tmp, src->dtype, (size_t)n);
    }
    free(tmp);
    return st;
}

gqe_status gqe_tensor_to(gqe_tensor *out, const gqe_tensor *src, gqe_device dev, gqe_dtype dtype) {
    GQE_TRY(gqe_tensor_new(out, dtype, dev, src->ndim, src->shape));
    gqe_status st = gqe_tensor_copy(out, src);
    if (st != GQE_OK) gqe_tensor_free(out);
    return st;
}

gqe_status gqe_tensor_read_f32(const gqe_tensor *t, float *dst, size_t n) {
    if ((size_t)gqe_tensor_numel(t) != n) return gqe_fail(GQE_ERR_SHAPE, "read: expected %zu elements, tensor has %lld", n, (long long)gqe_tensor_numel(t));
    gqe_tensor host = {0};
    host.dtype = GQE_F32; host.device = GQE_CPU; host.ndim = 1; host.shape[0] = (int64_t)n;
    gqe_storage s = {dst, n * 4, GQE_CPU, 1, false};
    host.storage = &s;
    if (t->dtype == GQE_I32) {
        int32_t *tmp = malloc(n * 4 + 1);
        if (!tmp) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        gqe_status st = gqe_backend_for(t->device)->download(tmp, gqe_tensor_data(t), n * 4);
        for (size_t i = 0; st == GQE_OK && i < n; i++) dst[i] = (float)tmp[i];
        free(tmp);
        return st;
    }
    return gqe_tensor_copy(&host, t);
}

gqe_status gqe_tensor_write_f32(gqe_tensor *t, const float *src, size_t n) {
    if ((size_t)gqe_tensor_numel(t) != n) return gqe_fail(GQE_ERR_SHAPE, "write: expected %lld elements, got %zu", (long long)gqe_tensor_numel(t), n);
    gqe_tensor host = {0};
    host.dtype = GQE_F32; host.device = GQE_CPU; host.ndim = 1; host.shape[0] = (int64_t)n;
    gqe_storage s = {(void *)src, n * 4, GQE_CPU, 1, false};
    host.storage = &s;
    if (t->dtype == GQE_I32) {
        int32_t *tmp = malloc(n * 4 + 1);
        if (!tmp) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        for (size_t i = 0; i < n; i++) tmp[i] = (int32_t)src[i];
        gqe_status st = gqe_backend_for(t->device)->upload(gqe_tensor_data(t), tmp, n * 4);
        free(tmp);
        return st;
    }
    return gqe_tensor_copy(t, &host);
}
