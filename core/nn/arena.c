#include "arena.h"
#include <string.h>

void gqe_arena_begin(gqe_arena *a, gqe_device dev) {
    if (a->buf.storage && a->device != dev) gqe_arena_free(a);
    a->device = dev;
    a->used = 0;
    a->counting = true;
}

gqe_status gqe_arena_commit(gqe_arena *a) {
    size_t need = a->used;
    a->counting = false;
    a->used = 0;
    if (a->buf.storage && a->cap >= need) return GQE_OK;
    gqe_tensor_free(&a->buf);
    int64_t n = (int64_t)(need ? need : 64);
    GQE_TRY(gqe_tensor_zeros(&a->buf, GQE_F32, a->device, 1, &n));
    a->cap = (size_t)n;
    return GQE_OK;
}

gqe_tensor gqe_arena_take(gqe_arena *a, gqe_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    int nd = d3 ? 4 : d2 ? 3 : d1 ? 2 : 1;
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    /* The buffer counts 4-byte units: bf16 blocks take half as many. */
    size_t units = gqe_dtype_size(dtype) == 2 ? (n + 1) / 2 : n;
    size_t off = a->used;
    a->used += (units + 63) & ~(size_t)63;
    gqe_tensor t;
    memset(&t, 0, sizeof t);
    if (a->counting) return t;
    t = gqe_tensor_view(&a->buf, off, nd, shape);
    t.dtype = dtype;
    if (gqe_dtype_size(dtype) == 2) t.offset *= 2;   /* offsets count elements */
    return t;
}

void gqe_arena_free(gqe_arena *a) {
    gqe_tensor_free(&a->buf);
    a->cap = a->used = 0;
}
