/* One contiguous parameter buffer and one gradient buffer per model (llm.c,
 * Torch's getParameters): layers declare their tensors by name, then a single
 * allocation hands each layer its views. Optimizers work on the flat buffers. */
#ifndef GQE_PARAMS_H
#define GQE_PARAMS_H
#include "../tensor.h"

typedef enum gqe_param_role {
    GQE_PARAM_WEIGHT = 0,   /* matrices: decayed by default */
    GQE_PARAM_NORM,         /* RMSNorm gains */
    GQE_PARAM_EMBEDDING,    /* token embedding (and a tied head) */
    GQE_PARAM_ROUTER        /* router weights */
} gqe_param_role;

typedef struct gqe_param {
    char name[128];
    int ndim;
    int64_t shape[GQE_MAX_DIMS];
    size_t offset;          /* element offset in the flat buffers */
    size_t numel;
    gqe_param_role role;
    gqe_tensor *value;      /* the owning layer's fields, filled by alloc */
    gqe_tensor *grad;
    gqe_tensor *compute;    /* the copy matmuls read: value itself, or its bf16
                               copy in mixed precision; NULL if not needed */
} gqe_param;

/* A buffer: model state that is saved, loaded and named like a parameter
 * but never trained (no gradient, no optimizer state), such as the balanced
 * router's bias. Buffers share one f32 allocation of their own. */
typedef struct gqe_buffer {
    char name[128];
    int ndim;
    int64_t shape[GQE_MAX_DIMS];
    size_t offset;          /* element offset in buffer_data */
    size_t numel;
    gqe_tensor *value;      /* the owning layer's field, filled by alloc (zeros) */
} gqe_buffer;

typedef struct gqe_paramset {
    gqe_param *items;
    int count, cap;
    gqe_buffer *buffers;
    int nbuffers, buffers_cap;
    size_t buffers_numel;
    gqe_tensor buffer_data; /* (buffers_numel) f32 */
    size_t numel;
    gqe_device device;
    gqe_tensor data;        /* (numel) f32 */
    gqe_tensor grad;        /* (numel) f32 */
    gqe_tensor data16;      /* (numel) bf16 copy of data in mixed precision, else empty */
} gqe_paramset;

void gqe_paramset_init(gqe_paramset *ps);
/* Declare a parameter; value/grad/compute point at the layer's fields
 * (compute may be NULL for parameters that are only read in f32). */
gqe_status gqe_paramset_add(gqe_paramset *ps, const char *name, int ndim, const int64_t *shape,
                            gqe_param_role role, gqe_tensor *value, gqe_tensor *grad, gqe_tensor *compute);
/* Declare a buffer (see gqe_buffer); names are unique across parameters and
 * buffers. */
gqe_status gqe_paramset_add_buffer(gqe_paramset *ps, const char *name, int ndim, const int64_t *shape,
                                   gqe_tensor *value);
/* Allocate the parameter and gradient buffers on dev (data zero, grads
 * zero) and the buffers' storage (zeros), and set every view. */
gqe_status gqe_paramset_alloc(gqe_paramset *ps, gqe_device dev);
/* Mixed precision (dtype GQE_BF16): matmuls read a bf16 copy of the f32
 * master weights, which stay what the optimizer updates and checkpoints
 * hold. GQE_F32 turns it off. Compute views are rebound either way. */
gqe_status gqe_paramset_set_compute_dtype(gqe_paramset *ps, gqe_dtype dtype);
gqe_dtype gqe_paramset_compute_dtype(const gqe_paramset *ps);
/* The same by name: "fp32" or "bf16" (which needs a cuda paramset). */
gqe_status gqe_paramset_set_precision(gqe_paramset *ps, const char *precision);
const char *gqe_paramset_precision(const gqe_paramset *ps);
/* Rounds the master weights into the bf16 copy (no-op in f32): call after
 * every change to the weights and before the next forward. */
gqe_status gqe_paramset_refresh_compute(gqe_paramset *ps);
gqe_param *gqe_paramset_find(gqe_paramset *ps, const char *name);
gqe_status gqe_paramset_zero_grad(gqe_paramset *ps);
void gqe_paramset_free(gqe_paramset *ps);

/* t = std * N(0, 1) from Philox (seed, stream): the same values on every backend. */
gqe_status gqe_fill_normal(gqe_tensor *t, uint64_t seed, uint64_t stream, float std);

#endif
