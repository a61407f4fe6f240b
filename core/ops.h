/* Every numeric op of gqe, forward and backward, as a function over tensors.
 * Each call checks shapes/dtypes/devices, then dispatches to the backend of
 * its tensors (core/cpu, kernels/). All tensors of one call share a device.
 *
 * Conventions:
 *  - "R" is a row count: the product of all but the named trailing dims.
 *  - Backward ops ACCUMULATE (+=) into every gradient they write, except
 *    where a comment says "overwrites"; callers zero gradients first.
 *  - Float tensors are f32 on the CPU; the CUDA backend also takes bf16
 *    activations where its comment says so. Indices are i32.
 */
#ifndef GQE_OPS_H
#define GQE_OPS_H

#include "tensor.h"

/* Router score function (router_topk, router_score_backward). */
typedef enum gqe_score_fn { GQE_SCORE_SOFTMAX = 0, GQE_SCORE_SIGMOID = 1 } gqe_score_fn;

/* gqe_status gqe_<name>(parameters) for every op of the list, documented
 * there. */
#define GQE_OP(name, params) gqe_status gqe_##name params;
#include "op_list.h"

/* Op ids in list order, for asking a backend what it implements. */
typedef enum gqe_op_id {
#define GQE_OP(name, params) GQE_OP_ID_##name,
#include "op_list.h"
    GQE_OP_COUNT
} gqe_op_id;
/* "fill", "matmul", ...: the op's name in the list; NULL out of range. */
const char *gqe_op_name(gqe_op_id op);

#endif
