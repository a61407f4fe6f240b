/* Optimizers (AdamW, SGD), gradient clipping and learning-rate schedules over
 * the flat parameter and gradient buffers of a gqe_paramset (core/nn/params.h).
 *
 * The update formulas live in the backend (gqe_adamw_update, gqe_sgd_update in
 * core/ops.h); this module only decides which spans of the flat buffers get
 * which weight decay, keeps the state buffers, and counts steps. State buffers
 * have the layout of the parameter buffer, so a checkpoint can save them as
 * flat tensors next to the parameters and restore them byte for byte. */
#ifndef GQE_OPTIM_H
#define GQE_OPTIM_H

#include "tensor.h"
#include "nn/params.h"

/* ---- configuration ------------------------------------------------------ */

typedef enum gqe_optim_kind { GQE_OPTIM_ADAMW = 0, GQE_OPTIM_SGD = 1 } gqe_optim_kind;

/* Defaults (gqe_optim_config_default), chosen to follow common LM practice:
 *   kind adamw, lr 1e-3, beta1 0.9, beta2 0.95 (PyTorch uses 0.999; 0.95 is
 *   the usual choice for transformer LMs), eps 1e-8, weight_decay 0,
 *   momentum 0, nesterov false (SGD only).
 * Which parameters are decayed, by role (core/nn/params.h):
 *   weight     always;
 *   norm       only when decay_norms (default false: decaying RMSNorm gains
 *              pulls them towards 0, not towards their natural value 1);
 *   embedding  only when decay_embeddings (default false);
 *   router     only when decay_router (default true: router weights are an
 *              ordinary matrix, and decay keeps the routing logits small). */
typedef struct gqe_optim_config {
    gqe_optim_kind kind;
    float lr;
    float beta1, beta2;        /* AdamW */
    float eps;                 /* AdamW */
    float weight_decay;        /* decoupled for AdamW; added to the gradient for SGD */
    float momentum;            /* SGD */
    bool nesterov;             /* SGD, needs momentum > 0 */
    bool decay_norms;
    bool decay_embeddings;
    bool decay_router;
    /* Multiplier of lr (and so of the decoupled decay) for router weights
     * (role router), default 1: the update of a router matrix uses
     * lr * router_lr_scale, every other parameter lr. Finite, >= 0. */
    float router_lr_scale;
} gqe_optim_config;

gqe_optim_config gqe_optim_config_default(void);
/* Checks every field; the message names the key, e.g.
 * "optim.beta2 must be in [0, 1), got 1.5". */
gqe_status gqe_optim_config_validate(const gqe_optim_config *cfg);
/* "adamw" | "sgd"; the error lists the allowed names. */
gqe_status gqe_optim_kind_parse(const char *name, gqe_optim_kind *out);
const char *gqe_optim_kind_name(gqe_optim_kind kind);
/* Whether a parameter of this role is decayed under cfg (weight_decay aside). */
bool gqe_optim_decays_role(const gqe_optim_config *cfg, gqe_param_role role);
/* The factor on lr for a parameter of this role under cfg (router_lr_scale
 * for routers, 1 otherwise). */
float gqe_optim_lr_scale_role(const gqe_optim_config *cfg, gqe_param_role role);

/* ---- optimizer ------------------------------------------------------------ */

typedef struct gqe_optimizer gqe_optimizer;

/* Validates cfg and allocates zeroed state buffers, one flat f32 tensor of
 * ps->numel elements per state on the device of ps->data: AdamW keeps
 * "exp_avg" and "exp_avg_sq", SGD keeps "momentum_buffer" (PyTorch's names).
 * ps must be allocated (gqe_paramset_alloc) and must outlive the optimizer;
 * its parameter list must not change afterwards. On failure *out is NULL. */
gqe_status gqe_optim_create(gqe_optimizer **out, const gqe_optim_config *cfg, gqe_paramset *ps);
void gqe_optim_free(gqe_optimizer *opt);   /* NULL is fine */

/* One update with learning rate lr, which also becomes the optimizer's current
 * lr (gqe_optim_lr). The step count is incremented first, so the first update
 * is step 1 (bias correction and SGD's first-step buffer count from 1).
 * Parameters are grouped into maximal runs of adjacent parameters sharing a
 * weight decay and a learning-rate scale (router_lr_scale), and the backend
 * op is called once per run: a model whose parameters are declared matrices
 * first, gains and embeddings after, takes a handful of calls per step. lr must be finite and >= 0. */
gqe_status gqe_optim_step(gqe_optimizer *opt, float lr);

int64_t gqe_optim_step_count(const gqe_optimizer *opt);
/* For checkpoint restore; count >= 0. */
gqe_status gqe_optim_set_step_count(gqe_optimizer *opt, int64_t count);
float gqe_optim_lr(const gqe_optimizer *opt);
gqe_status gqe_optim_set_lr(gqe_optimizer *opt, float lr);
const gqe_optim_config *gqe_optim_get_config(const gqe_optimizer *opt);
gqe_paramset *gqe_optim_paramset(const gqe_optimizer *opt);
/* GQE_OK when opt was created over ps and ps still has the size it had then;
 * otherwise GQE_ERR_ARG: "<what>: the optimizer belongs to another model". */
gqe_status gqe_optim_check_owner(const gqe_optimizer *opt, const gqe_paramset *ps, const char *what);
/* Number of decay runs gqe_optim_step issues per step (one op call each). */
int gqe_optim_run_count(const gqe_optimizer *opt);

/* State buffers: index i in [0, gqe_optim_state_count) in a fixed order, or
 * by name. The tensors belong to the optimizer (take a gqe_tensor_ref to keep
 * one longer); write into them with gqe_tensor_copy to restore a checkpoint. */
int gqe_optim_state_count(const gqe_optimizer *opt);
const char *gqe_optim_state_name(const gqe_optimizer *opt, int i);
gqe_tensor *gqe_optim_state_tensor(gqe_optimizer *opt, int i);
/* Unknown names fail with a message listing this optimizer's state names. */
gqe_status gqe_optim_state_find(gqe_optimizer *opt, const char *name, gqe_tensor **out);

/* ---- gradient clipping ------------------------------------------------------ */

/* The global L2 norm of ps->grad, as PyTorch's clip_grad_norm_: when
 * max_norm > 0 and coef = max_norm / (norm + 1e-6) is below 1, every gradient
 * is multiplied by coef. *norm_out (may be NULL) receives the norm before
 * clipping. A NaN or Inf norm is returned as is and nothing is scaled: the
 * caller decides (skip the step, mark the run diverged). max_norm <= 0 only
 * measures. */
gqe_status gqe_clip_grad_norm(gqe_paramset *ps, float max_norm, float *norm_out);
/* The measuring half of the above: *coef_out receives the factor it would
 * scale by, or 1 where it would not scale. */
gqe_status gqe_clip_coefficient(gqe_paramset *ps, float max_norm, float *norm_out, float *coef_out);
/* The same clip for the optimizer's paramset, folded into its next step: the
 * norm and coefficient are computed as above, but the gradients are left as
 * they are and the next gqe_optim_step reads them times coef (one pass over
 * the gradients fewer). The updated parameters are the same as after
 * gqe_clip_grad_norm then gqe_optim_step. gqe_optim_zero_grad drops a
 * pending coefficient. */
gqe_status gqe_optim_clip(gqe_optimizer *opt, float max_norm, float *norm_out);
/* Zeroes the paramset's gradients and drops a pending clip coefficient. */
gqe_status gqe_optim_zero_grad(gqe_optimizer *opt);

/* ---- learning-rate schedules ---------------------------------------------- */

typedef enum gqe_schedule_kind {
    GQE_SCHEDULE_CONSTANT = 0,
    GQE_SCHEDULE_COSINE = 1,
    GQE_SCHEDULE_WSD = 2
} gqe_schedule_kind;

/* The lr of step s (s counts from 0; a negative s is taken as 0), for base
 * lr B, W = warmup, T = total, f = min_lr (a fraction of B):
 *   warmup (all kinds)  s < W:  B * (s + 1) / W  (reaches B at s = W - 1)
 *   constant            s >= W: B
 *   cosine              s >= W: B * (f + (1 - f) * (1 + cos(pi * p)) / 2),
 *                       p = min(1, (s - W) / (T - W)); B*f from s = T on
 *   wsd (warmup-stable-decay), D = round(decay_frac * T) decay steps that
 *                       start at s0 = T - D:
 *                       W <= s < s0: B;
 *                       s >= s0: B * (1 - (1 - f) * min(1, (s - s0) / D)),
 *                       linear down to B*f at s = T and B*f after.
 * Defaults: constant, warmup 0, total 0, min_lr 0.1, decay_frac 0.2. */
typedef struct gqe_schedule_config {
    gqe_schedule_kind kind;
    int64_t warmup;
    int64_t total;
    float min_lr;       /* fraction of the base lr, in [0, 1] */
    float decay_frac;   /* wsd: fraction of total spent decaying, in (0, 1] */
} gqe_schedule_config;

gqe_schedule_config gqe_schedule_config_default(void);
/* Messages name the key ("schedule.total must be > schedule.warmup (4) for
 * cosine, got 2"). cosine and wsd need total > warmup; wsd also needs the
 * decay to start no earlier than the end of warmup. */
gqe_status gqe_schedule_config_validate(const gqe_schedule_config *cfg);
/* "constant" | "cosine" | "wsd"; the error lists the allowed names. */
gqe_status gqe_schedule_kind_parse(const char *name, gqe_schedule_kind *out);
const char *gqe_schedule_kind_name(gqe_schedule_kind kind);
/* Assumes a validated config. */
float gqe_schedule_lr(const gqe_schedule_config *cfg, float base_lr, int64_t step);

#endif
