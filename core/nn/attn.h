/* Attention layers: GQE (GQE.md) and the dense baselines gqa / mha / mqa.
 * Parameters use the PyTorch names of GQE.md under the layer's prefix. */
#ifndef GQE_ATTN_H
#define GQE_ATTN_H
#include "params.h"
#include "../rng.h"

typedef enum gqe_attn_kind { GQE_ATTN_GQE = 0, GQE_ATTN_GQA, GQE_ATTN_MHA, GQE_ATTN_MQA } gqe_attn_kind;
typedef enum gqe_variant { GQE_VARIANT_GQE = 0, GQE_VARIANT_HARD_CONCAT, GQE_VARIANT_WEIGHTED_CONCAT } gqe_variant;
typedef enum gqe_router_kind {
    GQE_ROUTER_SOFTMAX = 0, GQE_ROUTER_SIGMOID, GQE_ROUTER_BALANCED, GQE_ROUTER_RANDOM, GQE_ROUTER_HASH
} gqe_router_kind;

typedef struct gqe_attn_config {
    int64_t dim;         /* d */
    int64_t experts;     /* N: query heads (experts for gqe) */
    int64_t groups;      /* G: KV heads */
    int64_t k;           /* experts chosen per group per token (gqe only) */
    int64_t head_dim;    /* dh; 0 means dim / experts */
    gqe_attn_kind kind;
    gqe_variant variant;
    gqe_router_kind router;
    bool rope;
    float rope_theta;
    bool causal;
    float balance_gamma; /* bias step of the balanced router */
    uint64_t seed;       /* random router stream */
} gqe_attn_config;

/* Defaults: kind gqe, variant gqe, router softmax, k 1, rope on, theta 1e4,
 * causal, gamma 1e-3. dim/experts/groups must be set by the caller. */
void gqe_attn_config_default(gqe_attn_config *c);
/* Checks every field; the message names the key and the allowed values. */
gqe_status gqe_attn_config_validate(gqe_attn_config *c);
gqe_status gqe_attn_kind_parse(const char *s, gqe_attn_kind *out);
gqe_status gqe_variant_parse(const char *s, gqe_variant *out);
gqe_status gqe_router_parse(const char *s, gqe_router_kind *out);
const char *gqe_attn_kind_name(gqe_attn_kind k);
const char *gqe_variant_name(gqe_variant v);
const char *gqe_router_name(gqe_router_kind r);
/* Output slots S and active query heads per token for a config. */
int64_t gqe_attn_slots(const gqe_attn_config *c);
int64_t gqe_attn_active_heads(const gqe_attn_config *c);

typedef struct gqe_attn gqe_attn;   /* opaque; see attn.c */

/* Declares parameters into ps under prefix ("" or "blocks.0.attn."). The
 * layer is usable after gqe_paramset_alloc(ps, ...). */
gqe_status gqe_attn_create(gqe_attn **out, const gqe_attn_config *cfg, gqe_paramset *ps, const char *prefix);
void gqe_attn_destroy(gqe_attn *a);
const gqe_attn_config *gqe_attn_get_config(const gqe_attn *a);
/* Initialise weights (N(0, std), o_proj with out_std, router zero). */
gqe_status gqe_attn_init_weights(gqe_attn *a, uint64_t seed, uint64_t stream, float std, float out_std);

/* y (B, T, d) from x (B, T, d). tokens (B, T) i32 is needed by the hash
 * router only (may be NULL otherwise). Saves what backward needs. */
/* For callers that keep the forward input unchanged until backward (the LM
 * keeps its normed activations): forward then holds a view of x instead of
 * a copy. x must then have the layer's compute dtype. */
void gqe_attn_borrow_input(gqe_attn *a, bool on);
/* Backward's temporaries live in `shared` (NULL: the layer's own arena).
 * Layers of one shape that never run backward concurrently may share one. */
struct gqe_arena;
void gqe_attn_share_scratch(gqe_attn *a, struct gqe_arena *shared);
gqe_status gqe_attn_forward(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens);
/* dx (B, T, d) = gradient of sum(y * dy) + aux_coef * aux (overwritten); parameter
 * gradients accumulate into the paramset's grad buffer. */
gqe_status gqe_attn_backward(gqe_attn *a, gqe_tensor *dx, const gqe_tensor *dy, float aux_coef);
/* Aux loss of the last forward (0 for dense kinds). The first ask after a
 * forward reads the routing statistics from the device (a sync). */
gqe_status gqe_attn_aux(gqe_attn *a, float *aux);
/* Whether the aux loss trains this layer's router (softmax and sigmoid);
 * balanced, random and hash routers only report it. */
bool gqe_attn_aux_trains(const gqe_attn *a);
/* Whether backward writes dx with one matmul (the input projections are
 * bound as one block) rather than adding several into it. */
bool gqe_attn_writes_dx_once(gqe_attn *a);
/* Routing of the last forward: probs (B, S, G, M) and idx (B, S, G, k), as
 * views valid until the next forward; empty tensors for dense kinds. */
gqe_status gqe_attn_routing(const gqe_attn *a, gqe_tensor *probs, gqe_tensor *idx);
/* Per (group, expert) of the last forward: tokens routed and mean router
 * probability, host arrays of G*M. Returns GQE_ERR_ARG for dense kinds. */
gqe_status gqe_attn_usage(gqe_attn *a, float *counts, float *mean_prob);
/* Data parallel: fn(ctx, t) replaces t, the layer's routing statistics
 * ((G, M) f32 counts, then probability sums, on the layer's device), by
 * their mean over the ranks before anything reads them, so the aux loss,
 * its gradient, head usage and the balanced router's step are those of the
 * global batch. Every rank must then run the same forwards. NULL: off. */
typedef gqe_status (*gqe_stats_reduce_fn)(void *ctx, gqe_tensor *t);
void gqe_attn_set_stats_reduce(gqe_attn *a, gqe_stats_reduce_fn fn, void *ctx);
/* All layers' routing statistics in one read (each read of device memory
 * waits for the device) and, in data parallel, one reduce across ranks.
 * gqe_attn_stats_size: G*M for a GQE layer, else 0. gqe_attn_stats_stage:
 * where the last forward's statistics are not on the host yet, copies them
 * into counts and psum, (stats_size) f32 views of the caller's device
 * buffer; *staged says whether it did. gqe_attn_stats_take: after the
 * caller has read that buffer, hands a staged layer its host copy; where
 * the caller reduced the buffer across ranks (instead of this layer's own
 * reduce), reduced_counts and reduced_psum are its device views, copied
 * back into the layer's (else NULL). */
int64_t gqe_attn_stats_size(const gqe_attn *a);
gqe_status gqe_attn_stats_stage(gqe_attn *a, gqe_tensor *counts, gqe_tensor *psum, bool *staged);
gqe_status gqe_attn_stats_take(gqe_attn *a, const float *counts, const float *psum, const gqe_tensor *reduced_counts,
                               const gqe_tensor *reduced_psum);
/* The balanced router's bias step; call after each optimizer step. */
gqe_status gqe_attn_after_step(gqe_attn *a);
/* The same step from a given load (G*M tokens per expert): the sum over a
 * step's micro-batches when gradients accumulate. */
gqe_status gqe_attn_after_step_load(gqe_attn *a, const float *load);
/* The random router's call counter (its Philox stream): checkpointed so a
 * resumed run draws the same experts. */
uint64_t gqe_attn_route_calls(const gqe_attn *a);
void gqe_attn_set_route_calls(gqe_attn *a, uint64_t n);
/* Balanced router bias (G, M), or NULL: the paramset buffer
 * "<prefix>router_bias", which checkpoints and state()/load() carry. */
gqe_tensor *gqe_attn_router_bias(gqe_attn *a);

/* Decoding with a KV cache (batch 1) of the G KV heads, and for variant gqe
 * their group means (the shared head's K and V), in the compute dtype.
 * Reset after changing the precision. */
gqe_status gqe_attn_cache_reset(gqe_attn *a, int64_t batch, int64_t max_len);
/* Appends T new positions of x (1, T, d) to the cache and writes y: the
 * training forward at positions cache length + t, attending to every cached
 * position. Leaves nothing for backward. */
gqe_status gqe_attn_forward_cached(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens);

#endif
