/* The language model: embedding, L pre-norm blocks (RMSNorm, attention,
 * residual; RMSNorm, MLP, residual), final RMSNorm, tied or untied head.
 * Loss = mean cross-entropy + aux_coef * sum of the layers' aux losses. */
#ifndef GQE_LM_H
#define GQE_LM_H
#include "attn.h"

typedef enum gqe_mlp_kind { GQE_MLP_GELU = 0, GQE_MLP_SWIGLU } gqe_mlp_kind;

typedef struct gqe_lm_config {
    int64_t vocab;
    int64_t dim;
    int64_t layers;
    int64_t max_seq;        /* longest sequence (and KV cache) */
    gqe_attn_config attn;   /* dim is copied from the LM's dim */
    gqe_mlp_kind mlp;
    int64_t mlp_hidden;     /* 0 means 4 * dim */
    bool tied;              /* lm head shares tok_emb.weight */
    float norm_eps;
    float init_std;
    uint64_t seed;
} gqe_lm_config;

void gqe_lm_config_default(gqe_lm_config *c);
gqe_status gqe_lm_config_validate(gqe_lm_config *c);
gqe_status gqe_mlp_parse(const char *s, gqe_mlp_kind *out);
const char *gqe_mlp_name(gqe_mlp_kind k);

typedef struct gqe_lm gqe_lm;

/* Builds the model on dev with its parameters initialised from cfg->seed. */
gqe_status gqe_lm_create(gqe_lm **out, const gqe_lm_config *cfg, gqe_device dev);
void gqe_lm_destroy(gqe_lm *lm);
const gqe_lm_config *gqe_lm_get_config(const gqe_lm *lm);
/* "fp32" (default) or "bf16": mixed precision keeps the f32 master weights,
 * gradients and optimizer state, and runs matmuls and attention on bf16
 * copies of the weights and bf16 activations (cuda only). */
gqe_status gqe_lm_set_precision(gqe_lm *lm, const char *precision);
const char *gqe_lm_precision(const gqe_lm *lm);
gqe_paramset *gqe_lm_params(gqe_lm *lm);
int64_t gqe_lm_num_params(const gqe_lm *lm);

/* tokens, targets (B, T) i32 on the model's device or the host (copied).
 * targets may be NULL (logits only); a negative target is ignored. On return
 * *loss is the mean cross-entropy plus aux_coef * sum aux (NaN without
 * targets), *aux the sum of the layers' aux losses. */
gqe_status gqe_lm_forward(gqe_lm *lm, const gqe_tensor *tokens, const gqe_tensor *targets,
                          float aux_coef, float *loss, float *aux);
/* Gradients of the last forward's loss, accumulated into the grad buffer. */
gqe_status gqe_lm_backward(gqe_lm *lm);
/* Logits (B, T, V) of the last forward without targets (valid until the
 * next forward); NULL after a forward with targets, whose loss pass
 * overwrites them with their gradient for backward. */
gqe_tensor *gqe_lm_logits(gqe_lm *lm);
float gqe_lm_ce_loss(const gqe_lm *lm);   /* cross-entropy part of the last loss */
/* Per-position cross-entropy (B*T) of the last forward with targets (0 where ignored). */
const gqe_tensor *gqe_lm_token_losses(const gqe_lm *lm);
/* Top-1 accuracy of the last forward with targets, before its backward:
 * *correct = positions whose argmax logit (first maximum on ties) is the
 * target, *counted = positions with a target >= 0. The forward's loss pass
 * (gqe_cross_entropy_fused) marked the hits on the model's device: only R
 * floats are summed there and one number comes back, never the logits. */
gqe_status gqe_lm_accuracy(gqe_lm *lm, int64_t *correct, int64_t *counted);
int64_t gqe_lm_layers(const gqe_lm *lm);
gqe_attn *gqe_lm_attn(gqe_lm *lm, int64_t layer);
/* Data parallel: every layer's routing statistics go through fn (see
 * gqe_attn_set_stats_reduce); the LM's forward calls it once, on all
 * layers' statistics side by side. While fn is set a pending interrupt no
 * longer abandons a pass (the ranks stop together after a step). */
void gqe_lm_set_stats_reduce(gqe_lm *lm, gqe_stats_reduce_fn fn, void *ctx);
/* Data parallel: backward calls fn(ctx, offset, count) on each span of the
 * flat gradient buffer as soon as that span is final (each block's
 * parameters, last block first, then the embedding, final norm and head),
 * so their reduction can overlap the rest of backward. NULL: off. */
typedef gqe_status (*gqe_grad_ready_fn)(void *ctx, size_t offset, size_t count);
gqe_status gqe_lm_set_grad_ready(gqe_lm *lm, gqe_grad_ready_fn fn, void *ctx);
/* After each optimizer step (balanced-router biases). */
gqe_status gqe_lm_after_step(gqe_lm *lm);
/* The same from given loads, layer after layer (L x G x M): a step's
 * micro-batches summed (gqe_attn_after_step_load). */
gqe_status gqe_lm_after_step_loads(gqe_lm *lm, const float *loads);

/* Forward and backward FLOPs per token for throughput and MFU reports. */
double gqe_lm_flops_per_token(const gqe_lm *lm, int64_t seq);

typedef struct gqe_sample_opts {
    float temperature; int64_t top_k; uint64_t seed;
    /* Optional: called with each new token as it is sampled (streaming);
     * a non-zero return stops generation with GQE_ERR_INTERRUPTED. */
    int (*on_token)(void *ctx, int32_t id);
    void *on_token_ctx;
} gqe_sample_opts;
/* temperature finite and >= 0, top_k >= 0; messages name the option. */
gqe_status gqe_sample_opts_validate(const gqe_sample_opts *o);
/* Decodes n tokens after prompt (B=1, length P) with the KV cache; out has
 * room for P + n tokens and receives prompt then generated tokens. */
gqe_status gqe_lm_generate(gqe_lm *lm, const int32_t *prompt, int64_t P, int64_t n,
                           const gqe_sample_opts *opts, int32_t *out);
/* Logits of the last position after feeding tokens through the cache (for tests). */
gqe_status gqe_lm_cache_reset(gqe_lm *lm, int64_t batch);
gqe_status gqe_lm_forward_cached(gqe_lm *lm, const gqe_tensor *tokens, gqe_tensor *logits_out);

#endif
