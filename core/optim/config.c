/* Optimizer configuration: defaults, validation, names. */
#include "optim.h"
#include <math.h>
#include <string.h>

gqe_optim_config gqe_optim_config_default(void) {
    return (gqe_optim_config){
        .kind = GQE_OPTIM_ADAMW,
        .lr = 1e-3f,
        .beta1 = 0.9f,
        .beta2 = 0.95f,
        .eps = 1e-8f,
        .weight_decay = 0.0f,
        .momentum = 0.0f,
        .nesterov = false,
        .decay_norms = false,
        .decay_embeddings = false,
        .decay_router = true,
        .router_lr_scale = 1.0f,
    };
}

static const char *const kind_names[] = {"adamw", "sgd"};

const char *gqe_optim_kind_name(gqe_optim_kind kind) {
    return (unsigned)kind < sizeof kind_names / sizeof *kind_names ? kind_names[kind] : "?";
}

gqe_status gqe_optim_kind_parse(const char *name, gqe_optim_kind *out) {
    for (unsigned i = 0; i < sizeof kind_names / sizeof *kind_names; i++)
        if (name && strcmp(name, kind_names[i]) == 0) { *out = (gqe_optim_kind)i; return GQE_OK; }
    return gqe_fail(GQE_ERR_ARG, "unknown optim.kind '%s' (allowed: adamw, sgd)", name ? name : "(null)");
}

/* Rejects NaN as well: every comparison with NaN is false. */
static bool in_unit_open(float x) { return x >= 0.0f && x < 1.0f; }

gqe_status gqe_optim_config_validate(const gqe_optim_config *c) {
    if (c->kind != GQE_OPTIM_ADAMW && c->kind != GQE_OPTIM_SGD)
        return gqe_fail(GQE_ERR_ARG, "optim.kind must be one of adamw, sgd, got %d", (int)c->kind);
    if (!(c->lr >= 0.0f) || isinf(c->lr))
        return gqe_fail(GQE_ERR_ARG, "optim.lr must be finite and >= 0, got %g", (double)c->lr);
    if (!(c->weight_decay >= 0.0f) || isinf(c->weight_decay))
        return gqe_fail(GQE_ERR_ARG, "optim.weight_decay must be finite and >= 0, got %g", (double)c->weight_decay);
    if (!(c->router_lr_scale >= 0.0f) || isinf(c->router_lr_scale))
        return gqe_fail(GQE_ERR_ARG, "optim.router_lr_scale must be finite and >= 0, got %g",
                        (double)c->router_lr_scale);
    if (c->kind == GQE_OPTIM_ADAMW) {
        if (!in_unit_open(c->beta1))
            return gqe_fail(GQE_ERR_ARG, "optim.beta1 must be in [0, 1), got %g", (double)c->beta1);
        if (!in_unit_open(c->beta2))
            return gqe_fail(GQE_ERR_ARG, "optim.beta2 must be in [0, 1), got %g", (double)c->beta2);
        if (!(c->eps > 0.0f) || isinf(c->eps))
            return gqe_fail(GQE_ERR_ARG, "optim.eps must be finite and > 0, got %g", (double)c->eps);
    } else {
        if (!(c->momentum >= 0.0f) || isinf(c->momentum))
            return gqe_fail(GQE_ERR_ARG, "optim.momentum must be finite and >= 0, got %g", (double)c->momentum);
        if (c->nesterov && c->momentum == 0.0f)
            return gqe_fail(GQE_ERR_ARG, "optim.nesterov needs optim.momentum > 0, got momentum 0");
    }
    return GQE_OK;
}

bool gqe_optim_decays_role(const gqe_optim_config *cfg, gqe_param_role role) {
    switch (role) {
    case GQE_PARAM_NORM: return cfg->decay_norms;
    case GQE_PARAM_EMBEDDING: return cfg->decay_embeddings;
    case GQE_PARAM_ROUTER: return cfg->decay_router;
    case GQE_PARAM_WEIGHT: default: return true;
    }
}

float gqe_optim_lr_scale_role(const gqe_optim_config *cfg, gqe_param_role role) {
    return role == GQE_PARAM_ROUTER ? cfg->router_lr_scale : 1.0f;
}
