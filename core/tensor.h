/* gqe_tensor: a typed, contiguous view into reference-counted storage on one
 * device. Views share storage and differ only by element offset and shape. */
#ifndef GQE_TENSOR_H
#define GQE_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "error.h"

#define GQE_MAX_DIMS 4

typedef enum gqe_dtype { GQE_F32 = 0, GQE_BF16 = 1, GQE_I32 = 2 } gqe_dtype;
typedef enum gqe_device { GQE_CPU = 0, GQE_CUDA = 1 } gqe_device;
#define GQE_NUM_DEVICES 2

typedef struct gqe_storage {
    void *data;
    size_t nbytes;
    gqe_device device;
    int refcount;
    bool owned;            /* false: borrowed memory, never freed by us */
} gqe_storage;

typedef struct gqe_tensor {
    gqe_dtype dtype;
    gqe_device device;
    int ndim;
    int64_t shape[GQE_MAX_DIMS];
    size_t offset;         /* in elements, into storage */
    gqe_storage *storage;  /* NULL for an empty tensor */
} gqe_tensor;

size_t gqe_dtype_size(gqe_dtype t);
const char *gqe_dtype_name(gqe_dtype t);
const char *gqe_device_name(gqe_device d);
gqe_status gqe_device_parse(const char *name, gqe_device *out);

/* Allocate new storage (uninitialised). shape has ndim entries. */
gqe_status gqe_tensor_new(gqe_tensor *t, gqe_dtype dtype, gqe_device dev,
                          int ndim, const int64_t *shape);
gqe_status gqe_tensor_zeros(gqe_tensor *t, gqe_dtype dtype, gqe_device dev,
                            int ndim, const int64_t *shape);
/* Convenience: up to 4 dims, unused trailing dims passed as 0. */
gqe_status gqe_tensor_new4(gqe_tensor *t, gqe_dtype dtype, gqe_device dev,
                           int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* Drop this view's reference; frees storage at zero. Safe on empty tensors. */
void gqe_tensor_free(gqe_tensor *t);
/* A new reference to the same storage (caller frees it). */
gqe_tensor gqe_tensor_ref(const gqe_tensor *t);
/* A view of numel elements at element offset `off` of t, with a new shape.
 * Does not take a reference: valid while t lives. */
gqe_tensor gqe_tensor_view(const gqe_tensor *t, size_t off, int ndim, const int64_t *shape);
gqe_tensor gqe_tensor_view4(const gqe_tensor *t, size_t off, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
gqe_tensor gqe_tensor_reshape(const gqe_tensor *t, int ndim, const int64_t *shape);

int64_t gqe_tensor_numel(const gqe_tensor *t);
size_t gqe_tensor_nbytes(const gqe_tensor *t);
bool gqe_tensor_is_empty(const gqe_tensor *t);
/* Raw pointer to the first element (host or device address). */
void *gqe_tensor_data(const gqe_tensor *t);
static inline float *gqe_f32(const gqe_tensor *t) { return (float *)gqe_tensor_data(t); }
static inline int32_t *gqe_i32(const gqe_tensor *t) { return (int32_t *)gqe_tensor_data(t); }
bool gqe_tensor_same_shape(const gqe_tensor *a, const gqe_tensor *b);
/* "(2, 3, 4)" into buf */
const char *gqe_tensor_shape_str(const gqe_tensor *t, char *buf, size_t n);

/* Copy between devices and dtypes (f32 <-> bf16 conversion, i32 as is).
 * Shapes must have equal numel. */
gqe_status gqe_tensor_copy(gqe_tensor *dst, const gqe_tensor *src);
/* New tensor on another device/dtype holding the same values. */
gqe_status gqe_tensor_to(gqe_tensor *out, const gqe_tensor *src, gqe_device dev, gqe_dtype dtype);
/* Host copies of elements, converting to f32 / i32. */
gqe_status gqe_tensor_read_f32(const gqe_tensor *t, float *dst, size_t n);
gqe_status gqe_tensor_write_f32(gqe_tensor *t, const float *src, size_t n);

/* bf16 helpers (round to nearest even). */
uint16_t gqe_f32_to_bf16(float f);
float gqe_bf16_to_f32(uint16_t b);

#endif
