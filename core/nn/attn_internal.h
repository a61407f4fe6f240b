/* The attention layer's state, shared by attn.c (the forward pass, used for
 * training and decoding alike, and backward) and attn_cache.c (the KV
 * cache). Not a public header.
 *
 * Sizes: d model width, N query heads (experts), G KV heads (groups),
 * M = N/G experts per group, k experts chosen per group, dh head dim,
 * SK = G*k routed slots (N for dense kinds), S output slots (gqe: SK + 2),
 * SH = 1 where the shared head rides in the routed slots' attention call
 * (variant gqe), else 0: then that call has AH = SK + k query heads over
 * G + 1 KV heads, the shared query (and k - 1 copies) after the slots and
 * the group means of K and V after the groups'; AH = SK without it.
 * R = B*T rows of the last forward. "cdt" is the compute dtype: f32, or
 * bf16 in mixed precision. */
#ifndef GQE_ATTN_INTERNAL_H
#define GQE_ATTN_INTERNAL_H
#include "attn.h"
#include "arena.h"
#include "../ops.h"

#define SLOT_EPS 1e-9f

/* One projection y = x W^T: views into the paramset. */
typedef struct attn_weight {
    gqe_tensor w;    /* f32 master weight, what the optimizer updates */
    gqe_tensor dw;   /* f32 gradient, same shape */
    gqe_tensor cw;   /* what matmuls read: w, or its bf16 copy (cdt) */
} attn_weight;

/* Parameters and buffers, declared into the paramset by gqe_attn_create. */
typedef struct attn_params {
    attn_weight q;    /* (N*dh, d)   q_proj.weight */
    attn_weight k;    /* (G*dh, d)   k_proj.weight */
    attn_weight v;    /* (G*dh, d)   v_proj.weight */
    attn_weight r;    /* (G*M, d)    router.weight; empty unless a learned router */
    attn_weight qs;   /* (dh, d)     q_shared.weight; variant gqe only */
    attn_weight o;    /* (d, S*dh)   o_proj.weight */
    /* (G*M + dh, d): r and qs as one matrix where the buffers hold them back
     * to back (cw and dw only; empty otherwise). Forward runs router and
     * shared query as one matmul, backward as one pair. */
    attn_weight in;
    /* (N*dh + 2*G*dh [+ G*M] [+ dh], d): q, k, v, r, qs as one matrix where
     * the buffers hold them back to back (cw and dw only; empty otherwise).
     * Backward runs every input projection as one pair. */
    attn_weight all;
    gqe_tensor bias;  /* (G, M) f32 router_bias buffer (balanced router), else empty */
} attn_params;

/* Activations of the last forward that backward reads, in the layer's arena. */
typedef struct attn_saved {
    gqe_tensor x;        /* (R, d) cdt: the input (a view of the caller's when borrowed) */
    gqe_tensor q;        /* (R, N*dh) cdt: queries after RoPE (dense). GQE backward reads
                            the slots instead, so there q is a scratch temporary */
    gqe_tensor kk, v;    /* (R, (G+SH)*dh) cdt: keys after RoPE, values; with SH their
                            group means (the shared head's) as the last head */
    gqe_tensor o;        /* (R, AH*dh) cdt: attention output per routed slot or head,
                            then the shared head's */
    gqe_tensor lse;      /* (B, AH, T) f32: its log-sum-exp */
    gqe_tensor tokens;   /* (R) i32: token ids (hash router) */
    /* routing (gqe) */
    gqe_tensor logits;   /* (R, G, M) f32 */
    gqe_tensor probs;    /* (R, G, M) f32: router scores */
    gqe_tensor idx;      /* (R, G, k) i32: chosen experts */
    gqe_tensor topv;     /* (R, G, k) f32: their scores, P of the routed slots */
    gqe_tensor slots;    /* (R, AH*dh) cdt: the chosen queries, gathered, then the
                            shared query, after RoPE */
    /* weighted_concat */
    gqe_tensor scaled;   /* (R, SK*dh) cdt: P-scaled slot outputs, o_proj's input */
    /* variant gqe: slot B (mixture); slot C (shared head) is o's last head */
    gqe_tensor cat;      /* (R, S*dh) cdt: o_proj's input [slots | mix | shared] */
    gqe_tensor w;        /* (R, SK) f32: slot B's mixing weights */
} attn_saved;

/* Temporaries, in *scratch: the layer's own arena or one the LM shares
 * between its layers (only one layer runs backward at a time). Each has one
 * job; nothing is reused under another name. */
typedef struct attn_scratch {
    gqe_tensor y_in;     /* (R, G*M + dh) f32: fused router/shared-query output (forward) */
    gqe_tensor dy_in;    /* (R, G*M + dh) cdt: [dlogits | dqs] for the fused backward (without p.all) */
    gqe_tensor dy_all;   /* (R, rows of p.all) cdt: [dq | dk | dv | dlogits | dqs] for p.all's backward */
    gqe_tensor dcat;     /* (R, S*dh) cdt: gradient of o_proj's input */
    gqe_tensor kp, vp;   /* (R, G*dh) cdt: k and v projections before the group means
                            join them (SH; forward) */
    gqe_tensor qs;       /* (R, dh) cdt: the shared query's projection, unfused (forward) */
    gqe_tensor dq;       /* (R, N*dh) cdt */
    gqe_tensor dk, dv;   /* (R, G*dh) cdt: gradients of the k and v projections (empty
                            with SH where the gradient pack reads dkm, dvm) */
    gqe_tensor dkm, dvm; /* (R, (G+1)*dh) cdt: attention's, with the group means' (SH) */
    gqe_tensor d_o;      /* (R, AH*dh) cdt: gradient of o (weighted_concat, gqe) */
    gqe_tensor dslots;   /* (R, AH*dh) cdt */
    gqe_tensor dp;       /* (R, SK) f32: gradient of topv */
    gqe_tensor dlogits;  /* (R, G*M) cdt */
    gqe_tensor dqs;      /* (R, dh) cdt: the shared query's, unpacked */
} attn_scratch;

/* Routing statistics of the last forward (gqe): launched by forward, read
 * to the host only when something asks (aux loss, usage, balancing). */
typedef struct attn_stats {
    gqe_tensor counts;   /* (G, M) f32: tokens routed to each expert */
    gqe_tensor psum;     /* (G, M) f32: summed router probability */
    float *host_counts, *host_psum;  /* G*M each */
    float aux;
    bool on_host;        /* host arrays and aux match the last forward */
    bool reduced;        /* counts and psum are the ranks' mean (data parallel) */
    gqe_stats_reduce_fn reduce;   /* data parallel: counts and psum made the ranks' mean (or NULL) */
    void *reduce_ctx;
} attn_stats;

/* KV cache for decoding (batch 1): every position decoded so far, in cdt. */
typedef struct attn_cache {
    gqe_tensor k, v;         /* (1, max, G+SH, dh): keys after RoPE, values, and
                                their group means (SH) */
    int64_t len, max;
} attn_cache;

struct gqe_attn {
    gqe_attn_config cfg;
    int64_t d, N, G, M, k, dh, S, SK, SH, AH;
    bool has_router;                    /* router.weight exists */
    attn_params p;
    gqe_dtype cdt;
    bool borrow_x;                      /* forward keeps a view of its input, no copy */
    uint64_t route_calls;               /* stream of the random router */
    bool tokens_given;                  /* the last forward had token ids (s.tokens) */

    /* layout of the arenas: for (B, T), and whether for decoding */
    int64_t B, T;
    bool planned_decoding;
    gqe_arena arena;                    /* holds s and the device side of stats */
    gqe_arena own_scratch, *scratch;    /* holds g */
    attn_saved s;
    attn_scratch g;
    attn_stats stats;
    bool have_forward;                  /* s holds a training forward backward may use */
    attn_cache cache;
};

static inline gqe_tensor view2(const gqe_tensor *t, int64_t r, int64_t c) { return gqe_tensor_view4(t, 0, r, c, 0, 0); }
static inline gqe_tensor view3(const gqe_tensor *t, int64_t a, int64_t b, int64_t c) { return gqe_tensor_view4(t, 0, a, b, c, 0); }
static inline gqe_tensor view4(const gqe_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) { return gqe_tensor_view4(t, 0, a, b, c, d); }
static inline bool attn_is_gqe(const gqe_attn *a) { return a->cfg.kind == GQE_ATTN_GQE; }
/* The dtype activations take: that of the compute copies. */
static inline gqe_dtype attn_compute_dtype(const gqe_attn *a) { return a->p.q.cw.storage ? a->p.q.cw.dtype : GQE_F32; }

/* The forward pass. cache NULL: training, K and V of these positions only.
 * With a cache (batch 1): positions start at cache->len, this call's K and
 * V are appended to it and attention reads every cached position. */
gqe_status gqe_attn_forward_at(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens,
                               attn_cache *cache);
#endif
