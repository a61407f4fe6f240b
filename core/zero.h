/* ZeRO-1 (Rajbhandari et al., 2020): the optimizer state is sharded over
 * the ranks of a data-parallel job. Each rank reduce-scatters the gradient
 * sums, updates its 1/W of the f32 master weights with its 1/W of the
 * AdamW (or SGD) state, and all-gathers the weights back; the matmuls'
 * bf16 copies are rounded from them before the next forward. Optimizer
 * memory per rank falls as 1/W; the update is the unsharded optimizer's.
 *
 * The flat buffers of N elements split into W shards of S = N / W
 * elements; the N - S*W < W elements left over are updated on every rank
 * from a small state of their own. Checkpoints keep the unsharded format:
 * gather into, and scatter from, an ordinary gqe_optimizer. */
#ifndef GQE_ZERO_H
#define GQE_ZERO_H

#include "dist.h"
#include "optim.h"

typedef struct gqe_zero gqe_zero;

/* The sharded twin of an optimizer of config cfg over ps (ps's device must
 * be the communicator's). */
gqe_status gqe_zero_create(gqe_zero **out, const gqe_optim_config *cfg, gqe_paramset *ps, gqe_comm *comm);
void gqe_zero_free(gqe_zero *z);
/* After backward: reduce-scatters the ranks' gradient sums into this rank's
 * shard, multiplied by grad_scale (1 / (ranks x micro-batches) for the
 * mean), and computes the global gradient norm (returned) and the clip
 * coefficient for max_norm (<= 0: no clip) the next step applies. */
gqe_status gqe_zero_reduce(gqe_zero *z, float grad_scale, float max_norm, float *norm_out);
/* Updates this rank's shard with learning rate lr, then all-gathers the
 * weights. Needs gqe_zero_reduce first. */
gqe_status gqe_zero_step(gqe_zero *z, float lr);
/* Bytes of optimizer state this rank holds. */
size_t gqe_zero_state_bytes(const gqe_zero *z);
/* Checkpoints (collective: every rank calls them): the whole state, step
 * count and lr into full (an optimizer of the same config over the same
 * paramset), and back. */
gqe_status gqe_zero_gather(gqe_zero *z, gqe_optimizer *full);
gqe_status gqe_zero_scatter(gqe_zero *z, gqe_optimizer *full);

#endif
