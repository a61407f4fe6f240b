/* AdamW and SGD over the flat buffers of a paramset: state allocation, decay
 * runs, step counting. The arithmetic is the backend's (core/ops.h). */
#include "optim.h"
#include "ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STATES 2

/* A span of the flat buffers updated by one op call. */
typedef struct decay_run {
    size_t offset, numel;
    float weight_decay;
    float lr_scale;
} decay_run;

struct gqe_optimizer {
    gqe_optim_config cfg;
    gqe_paramset *ps;
    size_t numel;              /* ps->numel at creation, checked every step */
    float lr;
    float grad_scale;          /* a pending clip coefficient, 1 when none */
    int64_t step;
    int nstates;
    const char *state_names[MAX_STATES];
    gqe_tensor states[MAX_STATES];
    decay_run *runs;
    int nruns;
};

static int by_offset(const void *a, const void *b) {
    const gqe_param *x = *(gqe_param *const *)a, *y = *(gqe_param *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Sorts parameters by offset and merges neighbours that share a decay. A run
 * also spans the alignment padding between its parameters (params.c keeps
 * each parameter 16-element aligned): nothing reads padding, its gradient
 * stays zero so its optimizer state stays zero, and from zero data both
 * updates keep it zero. Covering it keeps a model to a few op calls instead
 * of one per tensor. */
static gqe_status build_runs(gqe_optimizer *opt) {
    gqe_paramset *ps = opt->ps;
    if (ps->count == 0) return GQE_OK;
    gqe_param **order = malloc((size_t)ps->count * sizeof *order);
    opt->runs = malloc((size_t)ps->count * sizeof *opt->runs);
    if (!order || !opt->runs) { free(order); return gqe_fail(GQE_ERR_NOMEM, "out of host memory for optimizer runs"); }
    for (int i = 0; i < ps->count; i++) order[i] = &ps->items[i];
    qsort(order, (size_t)ps->count, sizeof *order, by_offset);
    for (int i = 0; i < ps->count; i++) {
        const gqe_param *p = order[i];
        if (p->offset + p->numel > ps->numel) {
            free(order);
            return gqe_fail(GQE_ERR_ARG, "parameter '%s' spans [%zu, %zu) beyond the buffer of %zu elements",
                            p->name, p->offset, p->offset + p->numel, ps->numel);
        }
        if (p->numel == 0) continue;
        float wd = gqe_optim_decays_role(&opt->cfg, p->role) ? opt->cfg.weight_decay : 0.0f;
        float ls = gqe_optim_lr_scale_role(&opt->cfg, p->role);
        decay_run *last = opt->nruns ? &opt->runs[opt->nruns - 1] : NULL;
        if (last && last->offset + last->numel > p->offset) {
            free(order);
            return gqe_fail(GQE_ERR_ARG, "parameter '%s' at offset %zu overlaps the previous parameter",
                            p->name, p->offset);
        }
        if (last && last->weight_decay == wd && last->lr_scale == ls)
            last->numel = p->offset + p->numel - last->offset;
        else
            opt->runs[opt->nruns++] = (decay_run){p->offset, p->numel, wd, ls};
    }
    free(order);
    return GQE_OK;
}

gqe_status gqe_optim_create(gqe_optimizer **out, const gqe_optim_config *cfg, gqe_paramset *ps) {
    *out = NULL;
    GQE_TRY(gqe_optim_config_validate(cfg));
    if (gqe_tensor_is_empty(&ps->data) || gqe_tensor_is_empty(&ps->grad))
        return gqe_fail(GQE_ERR_ARG, "optimizer needs an allocated paramset (call gqe_paramset_alloc first)");
    if (ps->data.dtype != GQE_F32 || ps->grad.dtype != GQE_F32)
        return gqe_fail(GQE_ERR_SHAPE, "optimizer needs f32 parameter and gradient buffers, got %s and %s",
                        gqe_dtype_name(ps->data.dtype), gqe_dtype_name(ps->grad.dtype));
    gqe_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return gqe_fail(GQE_ERR_NOMEM, "out of host memory for the optimizer");
    opt->cfg = *cfg;
    opt->ps = ps;
    opt->numel = ps->numel;
    opt->lr = cfg->lr;
    opt->grad_scale = 1.0f;
    if (cfg->kind == GQE_OPTIM_ADAMW) {
        opt->nstates = 2;
        opt->state_names[0] = "exp_avg";
        opt->state_names[1] = "exp_avg_sq";
    } else {
        /* Kept even with momentum 0: the op's contract takes a buffer, and
         * momentum 0 reduces to plain SGD through it. */
        opt->nstates = 1;
        opt->state_names[0] = "momentum_buffer";
    }
    gqe_status st = build_runs(opt);
    int64_t shape[1] = {(int64_t)ps->numel};
    for (int i = 0; st == GQE_OK && i < opt->nstates; i++)
        st = gqe_tensor_zeros(&opt->states[i], GQE_F32, ps->data.device, 1, shape);
    if (st != GQE_OK) { gqe_optim_free(opt); return st; }
    *out = opt;
    return GQE_OK;
}

void gqe_optim_free(gqe_optimizer *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->nstates; i++) gqe_tensor_free(&opt->states[i]);
    free(opt->runs);
    free(opt);
}

static gqe_tensor span(const gqe_tensor *t, const decay_run *r) {
    int64_t n = (int64_t)r->numel;
    return gqe_tensor_view(t, r->offset, 1, &n);
}

gqe_status gqe_optim_step(gqe_optimizer *opt, float lr) {
    GQE_TRY(gqe_optim_set_lr(opt, lr));
    gqe_paramset *ps = opt->ps;
    if (ps->numel != opt->numel || gqe_tensor_is_empty(&ps->data))
        return gqe_fail(GQE_ERR_ARG, "paramset changed after the optimizer was created (%zu elements, was %zu)",
                        ps->numel, opt->numel);
    const gqe_optim_config *c = &opt->cfg;
    int64_t step = ++opt->step;
    float gs = opt->grad_scale;
    opt->grad_scale = 1.0f;
    for (int i = 0; i < opt->nruns; i++) {
        const decay_run *r = &opt->runs[i];
        gqe_tensor p = span(&ps->data, r), g = span(&ps->grad, r);
        gqe_tensor s0 = span(&opt->states[0], r);
        float rlr = lr * r->lr_scale;   /* exact for the other parameters' scale 1 */
        gqe_status st;
        if (c->kind == GQE_OPTIM_ADAMW) {
            gqe_tensor s1 = span(&opt->states[1], r);
            st = gqe_adamw_update(&p, &g, &s0, &s1, rlr, c->beta1, c->beta2, c->eps, r->weight_decay, step, gs);
        } else {
            st = gqe_sgd_update(&p, &g, &s0, rlr, c->momentum, r->weight_decay, c->nesterov, step, gs);
        }
        /* A failed op leaves earlier runs updated; the step still counts so
         * bias correction stays consistent with what was applied. */
        if (st != GQE_OK) return st;
    }
    return GQE_OK;
}

gqe_status gqe_optim_clip(gqe_optimizer *opt, float max_norm, float *norm_out) {
    float coef;
    GQE_TRY(gqe_clip_coefficient(opt->ps, max_norm, norm_out, &coef));
    opt->grad_scale = coef;
    return GQE_OK;
}

gqe_status gqe_optim_zero_grad(gqe_optimizer *opt) {
    opt->grad_scale = 1.0f;
    return gqe_paramset_zero_grad(opt->ps);
}

int64_t gqe_optim_step_count(const gqe_optimizer *opt) { return opt->step; }

gqe_status gqe_optim_set_step_count(gqe_optimizer *opt, int64_t count) {
    if (count < 0) return gqe_fail(GQE_ERR_ARG, "optimizer step count must be >= 0, got %lld", (long long)count);
    opt->step = count;
    return GQE_OK;
}

float gqe_optim_lr(const gqe_optimizer *opt) { return opt->lr; }

gqe_status gqe_optim_set_lr(gqe_optimizer *opt, float lr) {
    if (!(lr >= 0.0f) || isinf(lr))
        return gqe_fail(GQE_ERR_ARG, "optim.lr must be finite and >= 0, got %g", (double)lr);
    opt->lr = lr;
    return GQE_OK;
}

const gqe_optim_config *gqe_optim_get_config(const gqe_optimizer *opt) { return &opt->cfg; }
gqe_paramset *gqe_optim_paramset(const gqe_optimizer *opt) { return opt->ps; }
gqe_status gqe_optim_check_owner(const gqe_optimizer *opt, const gqe_paramset *ps, const char *what) {
    if (opt->ps != ps)
        return gqe_fail(GQE_ERR_ARG, "%s: the optimizer belongs to another model (its parameters are not this "
                        "model's; create it over this model)", what);
    if (ps->numel != opt->numel)
        return gqe_fail(GQE_ERR_ARG, "%s: the model's parameters changed after its optimizer was created "
                        "(%zu elements, was %zu)", what, ps->numel, opt->numel);
    return GQE_OK;
}

int gqe_optim_run_count(const gqe_optimizer *opt) { return opt->nruns; }
int gqe_optim_state_count(const gqe_optimizer *opt) { return opt->nstates; }

const char *gqe_optim_state_name(const gqe_optimizer *opt, int i) {
    return i >= 0 && i < opt->nstates ? opt->state_names[i] : NULL;
}

gqe_tensor *gqe_optim_state_tensor(gqe_optimizer *opt, int i) {
    return i >= 0 && i < opt->nstates ? &opt->states[i] : NULL;
}

gqe_status gqe_optim_state_find(gqe_optimizer *opt, const char *name, gqe_tensor **out) {
    for (int i = 0; i < opt->nstates; i++)
        if (name && strcmp(name, opt->state_names[i]) == 0) { *out = &opt->states[i]; return GQE_OK; }
    *out = NULL;
    return gqe_fail(GQE_ERR_ARG, "unknown %s state '%s' (allowed: %s%s%s)", gqe_optim_kind_name(opt->cfg.kind),
                    name ? name : "(null)", opt->state_names[0], opt->nstates > 1 ? ", " : "",
                    opt->nstates > 1 ? opt->state_names[1] : "");
}
