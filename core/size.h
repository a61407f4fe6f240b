/* Checked size arithmetic. Every element count or byte count computed from
 * user input (tensor shapes, views, ranges, generation lengths, model
 * configs) goes through these before anything is allocated or indexed, so an
 * absurd size is refused with a message naming it, never wrapped into a small
 * number and then written past. Messages print the operands, not the
 * overflowed product. */
#ifndef GQE_SIZE_H
#define GQE_SIZE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"

/* The largest element count gqe accepts for one tensor or buffer: 2^48
 * elements (1 PiB of f32) is beyond any machine, and leaves room to multiply
 * by an element size or add offsets without overflowing 64 bits. */
#define GQE_MAX_NUMEL (INT64_C(1) << 48)

/* *out = a * b when both are in [0, GQE_MAX_NUMEL] and so is the product;
 * false (and *out untouched) otherwise. */
bool gqe_mul_ok(int64_t a, int64_t b, int64_t *out);
/* *out = a + b under the same bounds. */
bool gqe_add_ok(int64_t a, int64_t b, int64_t *out);
/* The product of n factors. On failure: GQE_ERR_ARG, "<what>: 3 x 4 x ...
 * is too large (more than 2^48 elements)", or names the negative factor. */
gqe_status gqe_size_product(const char *what, int n, const int64_t *factors, int64_t *out);
/* Element count of a shape; the message shows the shape. */
gqe_status gqe_shape_numel(const char *what, int ndim, const int64_t *shape, int64_t *numel);
/* numel * elem_size as a size_t, for numel already bounded by the above. */
gqe_status gqe_size_bytes(const char *what, int64_t numel, size_t elem_size, size_t *bytes);

#endif
