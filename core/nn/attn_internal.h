/* The attention layer's state, shared by attn.c (training passes) and
 * attn_cache.c (decoding with the KV cache). Not a public header. */
#ifndef GQE_ATTN_INTERNAL_H
#define GQE_ATTN_INTERNAL_H
#include "attn.h"
#include "arena.h"
#include "../ops.h"

#define SLOT_EPS 1e-9f

struct gqe_attn {
    gqe_attn_config cfg;
    int64_t d, N, G, M, k, dh, S, SK;   /* SK = G*k routed slots */
    bool has_router;                    /* router.weight exists */
    gqe_tensor wq, wk, wv, wr, wqs, wo;
    gqe_tensor dwq, dwk, dwv, dwr, dwqs, dwo;
    /* what the matmuls read: the weights, or their bf16 copies in mixed
     * precision; activations then take the same dtype (cdt) */
    gqe_tensor cwq, cwk, cwv, cwr, cwqs, cwo;
    gqe_dtype cdt;
    bool borrow_x;                      /* forward keeps a view of its input, no copy */
    gqe_tensor bias;                    /* balanced router, (G, M) */
    uint64_t route_calls;               /* stream of the random router */

    /* activations of the last forward, laid out per (B, T) */
    gqe_arena arena;
    int64_t B, T;
    bool have_forward;
    gqe_tensor x, q, kk, v, logits, probs, idx, topv, slots, o, lse, w, mix,
        qs, kbar, vbar, os, lse_s, scaled, cat, tokens;
    /* backward scratch: *scratch, the layer's own arena or one the LM shares
     * between its layers (only one layer runs backward at a time) */
    gqe_arena own_scratch, *scratch;
    /* The router and shared-query weights sit back to back in the parameter
     * buffers: forward runs them as one matmul into y_in = [logits | qs] and
     * backward as one pair over dy_in = [dlogits | dqs] (attn.c). */
    gqe_tensor w_in, dw_in, y_in, dy_in;
    int64_t in_rows;
    gqe_tensor dcat, d_o, dslots, dq, dk, dv, dp, dprobs, dlogits, dqs, dkbar, dvbar;
    gqe_tensor counts, psum, coef;      /* (G, M) */
    float *host_counts, *host_psum;
    float aux;
    gqe_stats_reduce_fn stats_reduce;   /* data parallel: mean over ranks (or NULL) */
    void *stats_reduce_ctx;
    bool stats_on_host;                 /* host_counts, host_psum, aux match the last forward */

    /* KV cache for decoding: (1, max_len, G, dh) */
    gqe_tensor kcache, vcache;
    int64_t cache_len, cache_max;
};

static inline gqe_tensor view2(const gqe_tensor *t, int64_t r, int64_t c) { return gqe_tensor_view4(t, 0, r, c, 0, 0); }
static inline gqe_tensor view3(const gqe_tensor *t, int64_t a, int64_t b, int64_t c) { return gqe_tensor_view4(t, 0, a, b, c, 0); }
static inline gqe_tensor view4(const gqe_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) { return gqe_tensor_view4(t, 0, a, b, c, d); }
static inline bool attn_is_gqe(const gqe_attn *a) { return a->cfg.kind == GQE_ATTN_GQE; }

/* y = x W^T */
gqe_status gqe_attn_linear(gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *w);
/* Routing of R rows of x: logits, probs, idx, topv (tokens for the hash router). */
gqe_status gqe_attn_route(gqe_attn *a, int64_t R, const gqe_tensor *x, gqe_tensor *logits, gqe_tensor *probs,
                          gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens);
#endif
