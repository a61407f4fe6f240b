/* The language model's state, shared by lm.c (training passes) and
 * lm_decode.c (generation with the KV cache). Not a public header. */
#ifndef GQE_LM_INTERNAL_H
#define GQE_LM_INTERNAL_H
#include "lm.h"
#include "arena.h"
#include "../ops.h"

typedef struct block {
    gqe_attn *attn;
    gqe_tensor norm1, dnorm1, norm2, dnorm2, fc_in, dfc_in, fc_out, dfc_out;
    gqe_tensor cfc_in, cfc_out;     /* what the matmuls read (params.h) */
    /* saved activations */
    gqe_tensor n1, rstd1, h_mid, n2, rstd2, pre;
    uint64_t route_mark;            /* the router's counter when the last forward began */
} block;

struct gqe_lm {
    gqe_lm_config cfg;
    gqe_device dev;
    gqe_paramset ps;
    gqe_tensor wte, dwte, normf, dnormf, head, dhead;
    gqe_tensor cwte, chead;         /* what the matmuls read (params.h); chead only when untied */
    gqe_dtype cdt;                  /* dtype of matmul operands: f32, or bf16 in mixed precision */
    block *blocks;
    int64_t H;            /* MLP hidden width */
    int64_t pre_width;    /* H (gelu) or 2H (swiglu) */

    gqe_arena arena;
    gqe_arena attn_scratch;         /* backward temporaries, shared by every layer's attention */
    int64_t B, T;
    gqe_tensor tokens, targets, *h, y, nf, rstd_f, logits, losses;
    gqe_tensor hits;                /* (R) f32: gqe_lm_accuracy's per-position 1/0 */
    gqe_tensor dh, dn, dact, dpre;
    gqe_tensor act;                 /* MLP activation, one buffer: backward recomputes it from pre */
    gqe_tensor dh16;                /* dh rounded for the matmuls (mixed precision only) */
    int32_t *host_targets;
    gqe_tensor stats;               /* every GQE layer's routing counts and probability sums, read at once */
    float *host_stats;
    bool *staged;                   /* per layer: its statistics are in stats */
    gqe_stats_reduce_fn stats_reduce; /* data parallel: stats made the ranks' mean, all layers at once */
    void *stats_reduce_ctx;
    int64_t n_valid;
    float loss, ce, aux, aux_coef;
    bool have_forward, have_targets;
    gqe_grad_ready_fn grad_ready;   /* data parallel: spans of final gradients (or NULL) */
    void *grad_ready_ctx;
    bool collective;                /* data parallel: passes are never abandoned midway */
    size_t *block_span;             /* per block: first and one-past-last element of its parameters */
};

/* A 2-D (R, numel / R) view of t. */
static inline gqe_tensor lm_rows(const gqe_tensor *t, int64_t R) { return gqe_tensor_view4(t, 0, R, gqe_tensor_numel(t) / R, 0, 0); }
/* Checks an i32 id tensor of B*T elements. */
gqe_status gqe_lm_check_ids(const gqe_tensor *t, const char *what, int64_t B, int64_t T);
#endif
