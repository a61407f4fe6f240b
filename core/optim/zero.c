/* ZeRO-1: see core/zero.h. */
#include "zero.h"
#include "ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct gqe_zero {
    gqe_optim_config cfg;
    gqe_paramset *ps;
    gqe_comm *comm;
    int rank, world, nstates;
    size_t N, S, tail;          /* shard size; elements past S * world */
    gqe_tensor g;               /* (S) this rank's reduced gradients */
    gqe_tensor state[2];        /* (S) exp_avg, exp_avg_sq (AdamW) or momentum_buffer (SGD) */
    gqe_tensor tail_state[2];   /* (tail) the same for the left-over elements, on every rank */
    int64_t step;
    float lr, scale;            /* scale: grad_scale x clip coefficient, for the next step */
    bool reduced;
};

static gqe_tensor flat(const gqe_tensor *t, size_t off, size_t n) {
    int64_t len = (int64_t)n;
    return gqe_tensor_view(t, off, 1, &len);
}

void gqe_zero_free(gqe_zero *z) {
    if (!z) return;
    gqe_tensor_free(&z->g);
    for (int i = 0; i < 2; i++) { gqe_tensor_free(&z->state[i]); gqe_tensor_free(&z->tail_state[i]); }
    free(z);
}

gqe_status gqe_zero_create(gqe_zero **out, const gqe_optim_config *cfg, gqe_paramset *ps, gqe_comm *comm) {
    *out = NULL;
    GQE_TRY(gqe_optim_config_validate(cfg));
    if (gqe_tensor_is_empty(&ps->data)) return gqe_fail(GQE_ERR_ARG, "ZeRO: the paramset is not allocated");
    if (ps->device != gqe_comm_device(comm))
        return gqe_fail(GQE_ERR_ARG, "ZeRO: parameters on %s but the %s communicator serves %s",
                        gqe_device_name(ps->device), gqe_comm_backend(comm), gqe_device_name(gqe_comm_device(comm)));
    gqe_zero *z = calloc(1, sizeof *z);
    if (!z) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    z->cfg = *cfg;
    z->ps = ps;
    z->comm = comm;
    z->rank = gqe_comm_rank(comm);
    z->world = gqe_comm_world(comm);
    z->nstates = cfg->kind == GQE_OPTIM_ADAMW ? 2 : 1;
    z->N = ps->numel;
    z->S = z->N / (size_t)z->world;
    z->tail = z->N - z->S * (size_t)z->world;
    z->scale = 1.0f;
    z->lr = cfg->lr;
    gqe_status st = gqe_tensor_zeros(&z->g, GQE_F32, ps->device, 1, (int64_t[]){(int64_t)(z->S ? z->S : 1)});
    for (int i = 0; st == GQE_OK && i < z->nstates; i++) {
        st = gqe_tensor_zeros(&z->state[i], GQE_F32, ps->device, 1, (int64_t[]){(int64_t)(z->S ? z->S : 1)});
        if (st == GQE_OK && z->tail)
            st = gqe_tensor_zeros(&z->tail_state[i], GQE_F32, ps->device, 1, (int64_t[]){(int64_t)z->tail});
    }
    if (st != GQE_OK) { gqe_zero_free(z); return st; }
    *out = z;
    return GQE_OK;
}

size_t gqe_zero_state_bytes(const gqe_zero *z) {
    return (size_t)z->nstates * (z->S + z->tail) * sizeof(float) + z->S * sizeof(float);
}

gqe_status gqe_zero_reduce(gqe_zero *z, float grad_scale, float max_norm, float *norm_out) {
    gqe_paramset *ps = z->ps;
    size_t body = z->S * (size_t)z->world;
    double sumsq = 0, part = 0;
    if (z->S) {
        gqe_tensor all = flat(&ps->grad, 0, body), mine = flat(&z->g, 0, z->S);
        GQE_TRY(gqe_comm_reduce_scatter(z->comm, &mine, &all, GQE_REDUCE_SUM));
        if (grad_scale != 1.0f) GQE_TRY(gqe_scale(&mine, grad_scale));
        GQE_TRY(gqe_sumsq(&mine, &part));
        sumsq += part;
    }
    if (z->tail) {
        gqe_tensor t = flat(&ps->grad, body, z->tail);
        GQE_TRY(gqe_comm_all_reduce(z->comm, &t, GQE_REDUCE_SUM));
        if (grad_scale != 1.0f) GQE_TRY(gqe_scale(&t, grad_scale));
        if (z->rank == 0) { GQE_TRY(gqe_sumsq(&t, &part)); sumsq += part; }   /* counted once */
    }
    GQE_TRY(gqe_comm_all_reduce_host(z->comm, &sumsq, 1, GQE_REDUCE_SUM));
    /* The clip of gqe_clip_coefficient, on the global norm. */
    double norm = sqrt(sumsq);
    if (norm_out) *norm_out = (float)norm;
    z->scale = 1.0f;
    if (isfinite(norm) && max_norm > 0.0f) {
        float coef = max_norm / ((float)norm + 1e-6f);
        if (coef < 1.0f) z->scale = coef;
    }
    z->reduced = true;
    return GQE_OK;
}

/* One update of the elements [lo, hi) of the flat buffers; element i's
 * gradient is g[i - gbase], its state states[.][i - sbase]. */
static gqe_status update_span(gqe_zero *z, size_t lo, size_t hi, const gqe_tensor *g, size_t gbase,
                              gqe_tensor *states, size_t sbase) {
    const gqe_optim_config *c = &z->cfg;
    for (int i = 0; i < z->ps->count; i++) {
        const gqe_param *p = &z->ps->items[i];
        size_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->numel < hi ? p->offset + p->numel : hi;
        if (a >= b) continue;
        float wd = gqe_optim_decays_role(c, p->role) ? c->weight_decay : 0.0f;
        float lr = z->lr * gqe_optim_lr_scale_role(c, p->role);
        gqe_tensor pv = flat(&z->ps->data, a, b - a), gv = flat(g, a - gbase, b - a);
        gqe_tensor s0 = flat(&states[0], a - sbase, b - a);
        if (c->kind == GQE_OPTIM_ADAMW) {
            gqe_tensor s1 = flat(&states[1], a - sbase, b - a);
            GQE_TRY(gqe_adamw_update(&pv, &gv, &s0, &s1, lr, c->beta1, c->beta2, c->eps, wd, z->step, z->scale));
        } else {
            GQE_TRY(gqe_sgd_update(&pv, &gv, &s0, lr, c->momentum, wd, c->nesterov, z->step, z->scale));
        }
    }
    return GQE_OK;
}

gqe_status gqe_zero_step(gqe_zero *z, float lr) {
    if (!z->reduced) return gqe_fail(GQE_ERR_ARG, "ZeRO: step without reduced gradients (call gqe_zero_reduce after backward)");
    if (!(lr >= 0.0f) || !isfinite(lr)) return gqe_fail(GQE_ERR_ARG, "lr must be finite and >= 0, got %g", (double)lr);
    z->reduced = false;
    z->lr = lr;
    z->step++;
    size_t lo = (size_t)z->rank * z->S, body = z->S * (size_t)z->world;
    if (z->S) GQE_TRY(update_span(z, lo, lo + z->S, &z->g, lo, z->state, lo));
    if (z->tail) GQE_TRY(update_span(z, body, z->N, &z->ps->grad, 0, z->tail_state, body));
    z->scale = 1.0f;
    if (!z->S) return GQE_OK;
    gqe_tensor all = flat(&z->ps->data, 0, body), mine = flat(&z->ps->data, lo, z->S);
    return gqe_comm_all_gather(z->comm, &all, &mine);   /* in place: mine lies in all at this rank's block */
}

static gqe_status check_full(gqe_zero *z, gqe_optimizer *full) {
    if (gqe_optim_paramset(full) != z->ps || gqe_optim_state_count(full) != z->nstates)
        return gqe_fail(GQE_ERR_ARG, "ZeRO: the checkpoint optimizer must be of the same kind over the same model");
    return GQE_OK;
}

gqe_status gqe_zero_gather(gqe_zero *z, gqe_optimizer *full) {
    GQE_TRY(check_full(z, full));
    size_t lo = (size_t)z->rank * z->S, body = z->S * (size_t)z->world;
    for (int i = 0; i < z->nstates; i++) {
        gqe_tensor *s = gqe_optim_state_tensor(full, i);
        if (z->S) {
            gqe_tensor all = flat(s, 0, body), mine = flat(s, lo, z->S), shard = flat(&z->state[i], 0, z->S);
            GQE_TRY(gqe_tensor_copy(&mine, &shard));
            GQE_TRY(gqe_comm_all_gather(z->comm, &all, &mine));
        }
        if (z->tail) {
            gqe_tensor t = flat(s, body, z->tail);
            GQE_TRY(gqe_tensor_copy(&t, &z->tail_state[i]));
        }
    }
    GQE_TRY(gqe_optim_set_step_count(full, z->step));
    return gqe_optim_set_lr(full, z->lr);
}

gqe_status gqe_zero_scatter(gqe_zero *z, gqe_optimizer *full) {
    GQE_TRY(check_full(z, full));
    size_t lo = (size_t)z->rank * z->S, body = z->S * (size_t)z->world;
    for (int i = 0; i < z->nstates; i++) {
        gqe_tensor *s = gqe_optim_state_tensor(full, i);
        if (z->S) {
            gqe_tensor mine = flat(s, lo, z->S), shard = flat(&z->state[i], 0, z->S);
            GQE_TRY(gqe_tensor_copy(&shard, &mine));
        }
        if (z->tail) {
            gqe_tensor t = flat(s, body, z->tail);
            GQE_TRY(gqe_tensor_copy(&z->tail_state[i], &t));
        }
    }
    z->step = gqe_optim_step_count(full);
    z->lr = gqe_optim_lr(full);
    return GQE_OK;
}
