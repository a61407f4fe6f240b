/* The attention layer: GQE (GQE.md, all three variants and five routers) and
 * dense GQA. The forward pass is a sequence of ops from core/ops.h; this file
 * holds no arithmetic beyond a few G*M-sized host loops for the aux loss. */
#include "attn_internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The aux loss trains softmax and sigmoid routers; the others only report it. */
static bool aux_trains(const gqe_attn *a) {
    return attn_is_gqe(a) && (a->cfg.router == GQE_ROUTER_SOFTMAX || a->cfg.router == GQE_ROUTER_SIGMOID);
}

gqe_status gqe_attn_create(gqe_attn **out, const gqe_attn_config *cfg_in, gqe_paramset *ps, const char *prefix) {
    gqe_attn_config cfg = *cfg_in;
    GQE_TRY(gqe_attn_config_validate(&cfg));
    gqe_attn *a = calloc(1, sizeof *a);
    if (!a) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    a->cfg = cfg;
    a->d = cfg.dim; a->N = cfg.experts; a->G = cfg.groups; a->dh = cfg.head_dim;
    a->M = a->N / a->G;
    a->k = attn_is_gqe(a) ? cfg.k : 1;
    a->SK = attn_is_gqe(a) ? a->G * a->k : a->N;
    a->scratch = &a->own_scratch;
    a->S = gqe_attn_slots(&cfg);
    a->has_router = attn_is_gqe(a) && cfg.router != GQE_ROUTER_RANDOM && cfg.router != GQE_ROUTER_HASH;
    a->host_counts = calloc((size_t)(a->G * a->M), sizeof(float));
    a->host_psum = calloc((size_t)(a->G * a->M), sizeof(float));
    if (!a->host_counts || !a->host_psum) { gqe_attn_destroy(a); return gqe_fail(GQE_ERR_NOMEM, "out of host memory"); }

    char name[160];
    gqe_status st = GQE_OK;
#define ADD(suffix, r, c, role, val, grad, comp) do { if (st == GQE_OK) { \
        int64_t shp[2] = {(r), (c)}; snprintf(name, sizeof name, "%s%s", prefix, suffix); \
        st = gqe_paramset_add(ps, name, 2, shp, role, val, grad, comp); } } while (0)
    ADD("q_proj.weight", a->N * a->dh, a->d, GQE_PARAM_WEIGHT, &a->wq, &a->dwq, &a->cwq);
    ADD("k_proj.weight", a->G * a->dh, a->d, GQE_PARAM_WEIGHT, &a->wk, &a->dwk, &a->cwk);
    ADD("v_proj.weight", a->G * a->dh, a->d, GQE_PARAM_WEIGHT, &a->wv, &a->dwv, &a->cwv);
    if (a->has_router) ADD("router.weight", a->G * a->M, a->d, GQE_PARAM_ROUTER, &a->wr, &a->dwr, &a->cwr);
    if (attn_is_gqe(a) && cfg.variant == GQE_VARIANT_GQE)
        ADD("q_shared.weight", a->dh, a->d, GQE_PARAM_WEIGHT, &a->wqs, &a->dwqs, &a->cwqs);
    ADD("o_proj.weight", a->d, a->S * a->dh, GQE_PARAM_WEIGHT, &a->wo, &a->dwo, &a->cwo);
#undef ADD
    if (st != GQE_OK) { gqe_attn_destroy(a); return st; }
    *out = a;
    return GQE_OK;
}

void gqe_attn_destroy(gqe_attn *a) {
    if (!a) return;
    gqe_arena_free(&a->arena);
    gqe_arena_free(&a->own_scratch);
    gqe_tensor_free(&a->bias);
    gqe_tensor_free(&a->kcache);
    gqe_tensor_free(&a->vcache);
    free(a->host_counts);
    free(a->host_psum);
    free(a);
}

const gqe_attn_config *gqe_attn_get_config(const gqe_attn *a) { return &a->cfg; }

void gqe_attn_share_scratch(gqe_attn *a, gqe_arena *shared) {
    a->scratch = shared ? shared : &a->own_scratch;
    a->B = a->T = 0;   /* lay the arenas out again */
}

void gqe_attn_borrow_input(gqe_attn *a, bool on) {
    if (a->borrow_x == on) return;
    a->borrow_x = on;
    a->B = a->T = 0;   /* lay the arena out again */
    memset(&a->x, 0, sizeof a->x);
}

gqe_status gqe_attn_init_weights(gqe_attn *a, uint64_t seed, uint64_t stream, float std, float out_std) {
    GQE_TRY(gqe_fill_normal(&a->wq, seed, stream + 0, std));
    GQE_TRY(gqe_fill_normal(&a->wk, seed, stream + 1, std));
    GQE_TRY(gqe_fill_normal(&a->wv, seed, stream + 2, std));
    if (a->has_router) GQE_TRY(gqe_fill(&a->wr, 0.0f)); /* uniform routing at start */
    if (a->wqs.storage) GQE_TRY(gqe_fill_normal(&a->wqs, seed, stream + 3, std));
    GQE_TRY(gqe_fill_normal(&a->wo, seed, stream + 4, out_std));
    return GQE_OK;
}

/* Views w_in and dw_in over the router and shared-query projections when
 * the parameter buffers hold them back to back (gqe_paramset_add keeps
 * declaration order; 16-element padding can separate them in small models):
 * their backward then runs as one matmul pair instead of two with a narrow
 * output each. q, k and v keep their own matmuls: those are wide enough, and
 * gathering their gradients into one buffer cost more in copies than the
 * fused matmul saved. */
static bool bind_input_projections(gqe_attn *a) {
    if (!a->has_router || !a->cwqs.storage) return false;
    const gqe_tensor *w[2] = {&a->cwr, &a->cwqs};
    const gqe_tensor *g[2] = {&a->dwr, &a->dwqs};
    size_t wnext = a->cwr.offset, gnext = a->dwr.offset;
    int64_t rows = 0;
    for (int i = 0; i < 2; i++) {
        if (w[i]->storage != a->cwr.storage || w[i]->offset != wnext || g[i]->storage != a->dwr.storage ||
            g[i]->offset != gnext)
            return false;
        wnext += (size_t)gqe_tensor_numel(w[i]);
        gnext += (size_t)gqe_tensor_numel(g[i]);
        rows += w[i]->shape[0];
    }
    a->in_rows = rows;
    a->w_in = gqe_tensor_view(&a->cwr, 0, 2, (int64_t[]){rows, a->d});
    a->dw_in = gqe_tensor_view(&a->dwr, 0, 2, (int64_t[]){rows, a->d});
    return true;
}

/* Lays out (or counts) every buffer of a (B, T) forward and backward. */
static void plan(gqe_attn *a, int64_t B, int64_t T) {
    gqe_arena *ar = &a->arena, *sc = a->scratch;
    int64_t R = B * T, G = a->G, M = a->M, k = a->k, dh = a->dh;
    gqe_dtype C = a->cdt;   /* matmul operands and attention tensors */
    if (!a->borrow_x) a->x = gqe_arena_take(ar, C, R, a->d, 0, 0);
    /* GQE's backward reads the gathered slots, never q: q is a temporary */
    a->q = gqe_arena_take(attn_is_gqe(a) ? sc : ar, C, R, a->N * dh, 0, 0);
    a->kk = gqe_arena_take(ar, C, R, G * dh, 0, 0);
    a->v = gqe_arena_take(ar, C, R, G * dh, 0, 0);
    a->o = gqe_arena_take(ar, C, R, a->SK * dh, 0, 0);
    a->lse = gqe_arena_take(ar, GQE_F32, B, a->SK, T, 0);
    a->dcat = gqe_arena_take(sc, C, R, a->S * dh, 0, 0);
    a->dq = gqe_arena_take(sc, C, R, a->N * dh, 0, 0);
    a->dk = gqe_arena_take(sc, C, R, G * dh, 0, 0);
    a->dv = gqe_arena_take(sc, C, R, G * dh, 0, 0);
    if (a->in_rows) {
        /* f32 like the router's own logits; a temporary of the forward */
        a->y_in = gqe_arena_take(sc, GQE_F32, R, a->in_rows, 0, 0);
        a->dy_in = gqe_arena_take(sc, C, R, a->in_rows, 0, 0);
    }
    a->tokens = gqe_arena_take(ar, GQE_I32, R, 0, 0, 0);
    if (!attn_is_gqe(a)) return;
    a->logits = gqe_arena_take(ar, GQE_F32, R, G, M, 0);
    a->probs = gqe_arena_take(ar, GQE_F32, R, G, M, 0);
    a->idx = gqe_arena_take(ar, GQE_I32, R, G, k, 0);
    a->topv = gqe_arena_take(ar, GQE_F32, R, G, k, 0);
    a->slots = gqe_arena_take(ar, C, R, a->SK * dh, 0, 0);
    a->dslots = gqe_arena_take(sc, C, R, a->SK * dh, 0, 0);
    a->dp = gqe_arena_take(sc, GQE_F32, R, a->SK, 0, 0);
    a->dprobs = gqe_arena_take(sc, GQE_F32, R, G, M, 0);
    a->dlogits = gqe_arena_take(sc, C, R, G * M, 0, 0);
    a->counts = gqe_arena_take(ar, GQE_F32, G, M, 0, 0);
    a->psum = gqe_arena_take(ar, GQE_F32, G, M, 0, 0);
    a->coef = gqe_arena_take(ar, GQE_F32, G, M, 0, 0);
    if (a->cfg.variant == GQE_VARIANT_WEIGHTED_CONCAT) {
        a->scaled = gqe_arena_take(ar, C, R, a->SK * dh, 0, 0);
        a->d_o = gqe_arena_take(sc, C, R, a->SK * dh, 0, 0);
    }
    if (a->cfg.variant == GQE_VARIANT_GQE) {
        a->cat = gqe_arena_take(ar, C, R, a->S * dh, 0, 0);
        a->d_o = gqe_arena_take(sc, C, R, a->SK * dh, 0, 0);
        a->w = gqe_arena_take(ar, GQE_F32, R, a->SK, 0, 0);
        a->mix = gqe_arena_take(ar, C, R, dh, 0, 0);
        a->qs = gqe_arena_take(ar, C, R, dh, 0, 0);
        a->kbar = gqe_arena_take(ar, C, R, dh, 0, 0);
        a->vbar = gqe_arena_take(ar, C, R, dh, 0, 0);
        a->os = gqe_arena_take(ar, C, R, dh, 0, 0);
        a->lse_s = gqe_arena_take(ar, GQE_F32, B, 1, T, 0);
        a->dqs = gqe_arena_take(sc, C, R, dh, 0, 0);
        a->dkbar = gqe_arena_take(sc, C, R, dh, 0, 0);
        a->dvbar = gqe_arena_take(sc, C, R, dh, 0, 0);
    }
}

static gqe_status ensure_shape(gqe_attn *a, int64_t B, int64_t T) {
    gqe_device dev = a->wq.device;
    gqe_dtype cdt = a->cwq.storage ? a->cwq.dtype : GQE_F32;
    if (a->arena.buf.storage && a->B == B && a->T == T && a->arena.device == dev && a->cdt == cdt) return GQE_OK;
    a->cdt = cdt;
    if (!bind_input_projections(a)) a->in_rows = 0;
    gqe_arena_begin(&a->arena, dev);
    gqe_arena_begin(a->scratch, dev);
    plan(a, B, T);
    GQE_TRY(gqe_arena_commit(&a->arena));
    GQE_TRY(gqe_arena_commit(a->scratch));
    plan(a, B, T);
    a->B = B;
    a->T = T;
    return GQE_OK;
}

gqe_status gqe_attn_linear(gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *w) {
    return gqe_matmul(y, x, w, false, true, 1.0f, 0.0f);
}
/* dW += dy^T x and dx (=|+=) dy W for y = x W^T. *dx_beta is 0 until the
 * first projection writes dx, so the layer's input gradient needs no fill. */
static gqe_status linear_backward(gqe_tensor *dx, float *dx_beta, gqe_tensor *dw, const gqe_tensor *dy,
                                  const gqe_tensor *x, const gqe_tensor *w) {
    GQE_TRY(gqe_matmul(dw, dy, x, true, false, 1.0f, 1.0f));
    GQE_TRY(gqe_matmul(dx, dy, w, false, false, 1.0f, *dx_beta));
    *dx_beta = 1.0f;
    return GQE_OK;
}

/* Routing of the rows x into idx, topv, probs; x NULL: logits already hold
 * the router's output. */
gqe_status gqe_attn_route(gqe_attn *a, int64_t R, const gqe_tensor *x, gqe_tensor *logits, gqe_tensor *probs,
                          gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens) {
    int64_t G = a->G, M = a->M;
    switch (a->cfg.router) {
    case GQE_ROUTER_SOFTMAX:
    case GQE_ROUTER_SIGMOID:
    case GQE_ROUTER_BALANCED: {
        gqe_tensor lg = view2(logits, R, G * M);
        if (x) GQE_TRY(gqe_attn_linear(&lg, x, &a->cwr));
        gqe_score_fn fn = a->cfg.router == GQE_ROUTER_SIGMOID ? GQE_SCORE_SIGMOID : GQE_SCORE_SOFTMAX;
        const gqe_tensor *bias = NULL;
        if (a->cfg.router == GQE_ROUTER_BALANCED) {
            if (!a->bias.storage) GQE_TRY(gqe_tensor_zeros(&a->bias, GQE_F32, a->wq.device, 2, (int64_t[]){G, M}));
            bias = &a->bias;
        }
        return gqe_router_topk(probs, idx, topv, logits, fn, bias);
    }
    case GQE_ROUTER_RANDOM:
        GQE_TRY(gqe_fill(probs, 1.0f / (float)M));
        return gqe_router_random(idx, topv, M, a->cfg.seed, a->route_calls++);
    case GQE_ROUTER_HASH:
        if (!tokens || !tokens->storage)
            return gqe_fail(GQE_ERR_ARG, "router 'hash' needs the token ids: pass tokens to forward");
        GQE_TRY(gqe_fill(probs, 1.0f / (float)M));
        return gqe_router_hash(idx, topv, tokens, M);
    }
    return gqe_fail(GQE_ERR_ARG, "unknown router");
}

/* Load statistics and the aux loss of the last routing (GQE.md). Forward
 * only launches the statistics; the host reads them when something asks
 * (aux loss, usage, backward, balancing), so a forward never waits on the
 * device. */
static gqe_status pull_stats(gqe_attn *a) {
    if (a->stats_on_host || !attn_is_gqe(a) || !a->have_forward) return GQE_OK;
    int64_t GM = a->G * a->M, R = a->B * a->T;
    if (a->stats_reduce) {
        GQE_TRY(a->stats_reduce(a->stats_reduce_ctx, &a->counts));
        GQE_TRY(a->stats_reduce(a->stats_reduce_ctx, &a->psum));
    }
    GQE_TRY(gqe_tensor_read_f32(&a->counts, a->host_counts, (size_t)GM));
    GQE_TRY(gqe_tensor_read_f32(&a->psum, a->host_psum, (size_t)GM));
    double aux = 0;
    for (int64_t i = 0; i < GM; i++) aux += (double)a->host_counts[i] / R * ((double)a->host_psum[i] / R);
    a->aux = (float)(aux * (double)a->M / (double)a->G);
    a->stats_on_host = true;
    return GQE_OK;
}

gqe_status gqe_attn_forward(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens) {
    char s1[64], s2[64];
    if (x->ndim != 3 || x->shape[2] != a->d)
        return gqe_fail(GQE_ERR_SHAPE, "attention forward: x must be (B, S, %lld), got %s", (long long)a->d, gqe_tensor_shape_str(x, s1, 64));
    if (!gqe_tensor_same_shape(x, y))
        return gqe_fail(GQE_ERR_SHAPE, "attention forward: y %s must match x %s", gqe_tensor_shape_str(y, s1, 64), gqe_tensor_shape_str(x, s2, 64));
    int64_t B = x->shape[0], T = x->shape[1], R = B * T, G = a->G, dh = a->dh;
    if (B < 1 || T < 1) return gqe_fail(GQE_ERR_SHAPE, "attention forward: x must have B, S >= 1, got %s", gqe_tensor_shape_str(x, s1, 64));
    GQE_TRY(ensure_shape(a, B, T));
    a->have_forward = false;
    if (a->borrow_x) {
        if (x->dtype != a->cdt)
            return gqe_fail(GQE_ERR_ARG, "attention forward: a borrowed input must be %s, got %s",
                            gqe_dtype_name(a->cdt), gqe_dtype_name(x->dtype));
        a->x = view2(x, R, a->d);
    } else {
        GQE_TRY(gqe_tensor_copy(&a->x, x));
    }
    if (tokens && tokens->storage) {
        if (gqe_tensor_numel(tokens) != R)
            return gqe_fail(GQE_ERR_SHAPE, "attention forward: tokens must have B*S = %lld elements", (long long)R);
        GQE_TRY(gqe_tensor_copy(&a->tokens, tokens));
    }
    float scale = 1.0f / sqrtf((float)dh);
    gqe_tensor y2 = view2(y, R, a->d);
    GQE_TRY(gqe_attn_linear(&a->q, &a->x, &a->cwq));
    GQE_TRY(gqe_attn_linear(&a->kk, &a->x, &a->cwk));
    GQE_TRY(gqe_attn_linear(&a->v, &a->x, &a->cwv));
    gqe_tensor q4 = view4(&a->q, B, T, a->N, dh), k4 = view4(&a->kk, B, T, G, dh), v4 = view4(&a->v, B, T, G, dh);

    /* RoPE rotates by position only, so GQE rotates its slots as it gathers
     * them rather than all N query heads: fewer rows, same values. */
    if (a->cfg.rope) {
        if (!attn_is_gqe(a)) GQE_TRY(gqe_rope_forward(&q4, a->cfg.rope_theta, 0));
        GQE_TRY(gqe_rope_forward(&k4, a->cfg.rope_theta, 0));
    }
    if (!attn_is_gqe(a)) {
        gqe_tensor o4 = view4(&a->o, B, T, a->N, dh);
        GQE_TRY(gqe_attention_forward(&o4, &a->lse, &q4, &k4, &v4, a->cfg.causal, scale));
        GQE_TRY(gqe_attn_linear(&y2, &a->o, &a->cwo));
        a->aux = 0;
        a->have_forward = true;
        return GQE_OK;
    }
    const gqe_tensor *route_x = &a->x;
    if (a->in_rows) {
        /* router and shared query in one matmul: x is read once for both */
        GQE_TRY(gqe_attn_linear(&a->y_in, &a->x, &a->w_in));
        int64_t wl = G * a->M;
        gqe_tensor lg2 = view2(&a->logits, R, wl);
        GQE_TRY(gqe_copy_cols(&lg2, 0, &a->y_in, 0, wl, false));
        GQE_TRY(gqe_copy_cols(&a->qs, 0, &a->y_in, wl, dh, false));
        route_x = NULL;
    }
    GQE_TRY(gqe_attn_route(a, R, route_x, &a->logits, &a->probs, &a->idx, &a->topv, &a->tokens));
    gqe_tensor q3 = view3(&a->q, R, a->N, dh), slots3 = view3(&a->slots, R, a->SK, dh);
    gqe_tensor slots4 = view4(&a->slots, B, T, a->SK, dh), o4 = view4(&a->o, B, T, a->SK, dh);
    if (a->cfg.rope) GQE_TRY(gqe_gather_slots_rope(&slots4, &q3, &a->idx, a->cfg.rope_theta, 0));
    else GQE_TRY(gqe_gather_slots(&slots3, &q3, &a->idx));
    GQE_TRY(gqe_attention_forward(&o4, &a->lse, &slots4, &k4, &v4, a->cfg.causal, scale));
    gqe_tensor o3 = view3(&a->o, R, a->SK, dh), p2 = view2(&a->topv, R, a->SK);
    switch (a->cfg.variant) {
    case GQE_VARIANT_HARD_CONCAT:
        GQE_TRY(gqe_attn_linear(&y2, &a->o, &a->cwo));
        break;
    case GQE_VARIANT_WEIGHTED_CONCAT: {
        gqe_tensor sc3 = view3(&a->scaled, R, a->SK, dh);
        GQE_TRY(gqe_slot_scale_forward(&sc3, &o3, &p2));
        GQE_TRY(gqe_attn_linear(&y2, &a->scaled, &a->cwo));
        break;
    }
    case GQE_VARIANT_GQE: {
        int64_t w_a = a->SK * dh;
        GQE_TRY(gqe_copy_cols(&a->cat, 0, &a->o, 0, w_a, false));
        GQE_TRY(gqe_slot_mix_forward(&a->mix, &a->w, &o3, &p2, SLOT_EPS));
        GQE_TRY(gqe_copy_cols(&a->cat, w_a, &a->mix, 0, dh, false));
        /* Shared head: one query over the group means of K and V (after RoPE). */
        if (!a->in_rows) GQE_TRY(gqe_attn_linear(&a->qs, &a->x, &a->cwqs));
        gqe_tensor qs4 = view4(&a->qs, B, T, 1, dh), kb4 = view4(&a->kbar, B, T, 1, dh), vb4 = view4(&a->vbar, B, T, 1, dh);
        if (a->cfg.rope) GQE_TRY(gqe_rope_forward(&qs4, a->cfg.rope_theta, 0));
        gqe_tensor k3 = view3(&a->kk, R, G, dh), v3 = view3(&a->v, R, G, dh);
        gqe_tensor kb3 = view3(&a->kbar, R, 1, dh), vb3 = view3(&a->vbar, R, 1, dh);
        GQE_TRY(gqe_group_mean_forward(&kb3, &k3));
        GQE_TRY(gqe_group_mean_forward(&vb3, &v3));
        gqe_tensor os4 = view4(&a->os, B, T, 1, dh);
        GQE_TRY(gqe_attention_forward(&os4, &a->lse_s, &qs4, &kb4, &vb4, a->cfg.causal, scale));
        GQE_TRY(gqe_copy_cols(&a->cat, w_a + dh, &a->os, 0, dh, false));
        GQE_TRY(gqe_attn_linear(&y2, &a->cat, &a->cwo));
        break;
    }
    }
    GQE_TRY(gqe_router_stats(&a->counts, &a->psum, &a->idx, &a->probs, a->cfg.router == GQE_ROUTER_SIGMOID));
    a->stats_on_host = false;
    a->have_forward = true;
    return GQE_OK;
}

gqe_status gqe_attn_backward(gqe_attn *a, gqe_tensor *dx, const gqe_tensor *dy, float aux_coef) {
    if (!a->have_forward) return gqe_fail(GQE_ERR_ARG, "attention backward called before forward");
    int64_t B = a->B, T = a->T, R = B * T, G = a->G, dh = a->dh;
    char s1[64];
    if (gqe_tensor_numel(dy) != R * a->d || gqe_tensor_numel(dx) != R * a->d)
        return gqe_fail(GQE_ERR_SHAPE, "attention backward: dy and dx must be (%lld, %lld, %lld), got dy %s",
                        (long long)B, (long long)T, (long long)a->d, gqe_tensor_shape_str(dy, s1, 64));
    float scale = 1.0f / sqrtf((float)dh), dx_beta = 0.0f;
    gqe_tensor dy2 = view2(dy, R, a->d), dx2 = view2(dx, R, a->d);
    gqe_tensor k4 = view4(&a->kk, B, T, G, dh), v4 = view4(&a->v, B, T, G, dh);
    gqe_tensor dk4 = view4(&a->dk, B, T, G, dh), dv4 = view4(&a->dv, B, T, G, dh);
    gqe_tensor dcat = view2(&a->dcat, R, a->S * dh);
    /* dk and dv are first written by an attention backward that overwrites
     * them; dq is only overwritten on the dense path (GQE scatters into it). */
    if (!attn_is_gqe(a)) {
        GQE_TRY(gqe_matmul(&dcat, &dy2, &a->cwo, false, false, 1.0f, 0.0f));
        GQE_TRY(gqe_matmul(&a->dwo, &dy2, &a->o, true, false, 1.0f, 1.0f));
        gqe_tensor q4 = view4(&a->q, B, T, a->N, dh), o4 = view4(&a->o, B, T, a->N, dh);
        gqe_tensor dq4 = view4(&a->dq, B, T, a->N, dh), do4 = view4(&a->dcat, B, T, a->N, dh);
        GQE_TRY(gqe_attention_backward(&dq4, &dk4, &dv4, &do4, &q4, &k4, &v4, &o4, &a->lse, a->cfg.causal, scale,
                                       false));
    } else {
        GQE_TRY(gqe_fill(&a->dq, 0.0f));
        const gqe_tensor *cat_in = a->cfg.variant == GQE_VARIANT_GQE ? &a->cat
                                 : a->cfg.variant == GQE_VARIANT_WEIGHTED_CONCAT ? &a->scaled : &a->o;
        GQE_TRY(gqe_matmul(&dcat, &dy2, &a->cwo, false, false, 1.0f, 0.0f));
        GQE_TRY(gqe_matmul(&a->dwo, &dy2, cat_in, true, false, 1.0f, 1.0f));
        gqe_tensor o3 = view3(&a->o, R, a->SK, dh), p2 = view2(&a->topv, R, a->SK);
        gqe_tensor dp2 = view2(&a->dp, R, a->SK);
        GQE_TRY(gqe_fill(&a->dp, 0.0f));
        const gqe_tensor *d_o = &a->dcat;   /* gradient of the routed slots' outputs */
        if (a->cfg.variant == GQE_VARIANT_WEIGHTED_CONCAT) {
            gqe_tensor do3 = view3(&a->d_o, R, a->SK, dh), dsc3 = view3(&a->dcat, R, a->SK, dh);
            GQE_TRY(gqe_fill(&a->d_o, 0.0f));
            GQE_TRY(gqe_slot_scale_backward(&do3, &dp2, &dsc3, &o3, &p2));
            d_o = &a->d_o;
        } else if (a->cfg.variant == GQE_VARIANT_GQE) {
            int64_t w_a = a->SK * dh;
            gqe_tensor do3 = view3(&a->d_o, R, a->SK, dh);
            GQE_TRY(gqe_copy_cols(&a->d_o, 0, &dcat, 0, w_a, false));
            /* slot B: dmix lives in dcat's next dh columns; reuse dqs as its buffer */
            GQE_TRY(gqe_copy_cols(&a->dqs, 0, &dcat, w_a, dh, false));
            GQE_TRY(gqe_slot_mix_backward(&do3, &dp2, &a->dqs, &o3, &p2, &a->mix, &a->w, SLOT_EPS));
            d_o = &a->d_o;
        }
        /* the routed slots first: their backward overwrites dk, dv, dslots */
        gqe_tensor slots4 = view4(&a->slots, B, T, a->SK, dh), o4 = view4(&a->o, B, T, a->SK, dh);
        gqe_tensor ds4 = view4(&a->dslots, B, T, a->SK, dh), do4 = view4(d_o, B, T, a->SK, dh);
        GQE_TRY(gqe_attention_backward(&ds4, &dk4, &dv4, &do4, &slots4, &k4, &v4, &o4, &a->lse, a->cfg.causal, scale,
                                       false));
        if (a->cfg.rope) GQE_TRY(gqe_rope_backward(&ds4, a->cfg.rope_theta, 0));
        gqe_tensor dq3 = view3(&a->dq, R, a->N, dh), ds3 = view3(&a->dslots, R, a->SK, dh);
        GQE_TRY(gqe_scatter_slots(&dq3, &ds3, &a->idx));
        if (a->cfg.variant == GQE_VARIANT_GQE) {
            /* slot C: the shared head, whose K and V are group means: its
             * dk and dv spread back over the groups (added to the slots') */
            int64_t w_a = a->SK * dh;
            gqe_tensor dos = a->mix; /* mix is no longer needed: hold dos there */
            GQE_TRY(gqe_copy_cols(&dos, 0, &dcat, w_a + dh, dh, false));
            gqe_tensor qs4 = view4(&a->qs, B, T, 1, dh), kb4 = view4(&a->kbar, B, T, 1, dh), vb4 = view4(&a->vbar, B, T, 1, dh);
            gqe_tensor os4 = view4(&a->os, B, T, 1, dh), dos4 = view4(&dos, B, T, 1, dh);
            gqe_tensor dqs4 = view4(&a->dqs, B, T, 1, dh), dkb4 = view4(&a->dkbar, B, T, 1, dh), dvb4 = view4(&a->dvbar, B, T, 1, dh);
            GQE_TRY(gqe_attention_backward(&dqs4, &dkb4, &dvb4, &dos4, &qs4, &kb4, &vb4, &os4, &a->lse_s, a->cfg.causal,
                                           scale, false));
            if (a->cfg.rope) GQE_TRY(gqe_rope_backward(&dqs4, a->cfg.rope_theta, 0));
            if (!a->in_rows) GQE_TRY(linear_backward(&dx2, &dx_beta, &a->dwqs, &a->dqs, &a->x, &a->cwqs));
            gqe_tensor dk3 = view3(&a->dk, R, G, dh), dv3 = view3(&a->dv, R, G, dh);
            gqe_tensor dkb3 = view3(&a->dkbar, R, 1, dh), dvb3 = view3(&a->dvbar, R, 1, dh);
            GQE_TRY(gqe_group_mean_backward(&dk3, &dkb3));
            GQE_TRY(gqe_group_mean_backward(&dv3, &dvb3));
        }

        /* Router: through slot B or the scaling, plus the aux loss. */
        bool through_p = a->cfg.variant != GQE_VARIANT_HARD_CONCAT;
        bool through_aux = aux_trains(a) && aux_coef != 0.0f;
        if (a->has_router && (through_p || through_aux)) {
            GQE_TRY(gqe_fill(&a->dprobs, 0.0f));
            if (through_p) {
                gqe_tensor dp3 = view3(&a->dp, R, G, a->k);
                GQE_TRY(gqe_router_scatter_probs(&a->dprobs, &dp3, &a->idx));
            }
            if (through_aux) {
                GQE_TRY(pull_stats(a));
                int64_t GM = G * a->M;
                float *coef = a->host_psum; /* psum's host copy is spent: reuse it */
                float c = aux_coef * (float)a->M / ((float)G * (float)R);
                for (int64_t i = 0; i < GM; i++) coef[i] = c * a->host_counts[i] / (float)R;
                GQE_TRY(gqe_tensor_write_f32(&a->coef, coef, (size_t)GM));
                GQE_TRY(gqe_router_aux_backward(&a->dprobs, &a->probs, &a->coef, a->cfg.router == GQE_ROUTER_SIGMOID));
            }
            gqe_tensor dl3 = view3(&a->dlogits, R, G, a->M);
            GQE_TRY(gqe_fill(&a->dlogits, 0.0f));
            gqe_score_fn fn = a->cfg.router == GQE_ROUTER_SIGMOID ? GQE_SCORE_SIGMOID : GQE_SCORE_SOFTMAX;
            GQE_TRY(gqe_router_score_backward(&dl3, &a->probs, &a->dprobs, fn));
            if (!a->in_rows) GQE_TRY(linear_backward(&dx2, &dx_beta, &a->dwr, &a->dlogits, &a->x, &a->cwr));
        } else if (a->has_router && a->in_rows) {
            GQE_TRY(gqe_fill(&a->dlogits, 0.0f));   /* no gradient reaches the router */
        }
    }
    if (a->cfg.rope) {
        gqe_tensor dq4 = view4(&a->dq, B, T, a->N, dh);
        if (!attn_is_gqe(a)) GQE_TRY(gqe_rope_backward(&dq4, a->cfg.rope_theta, 0));
        GQE_TRY(gqe_rope_backward(&dk4, a->cfg.rope_theta, 0));
    }
    GQE_TRY(linear_backward(&dx2, &dx_beta, &a->dwq, &a->dq, &a->x, &a->cwq));
    GQE_TRY(linear_backward(&dx2, &dx_beta, &a->dwk, &a->dk, &a->x, &a->cwk));
    GQE_TRY(linear_backward(&dx2, &dx_beta, &a->dwv, &a->dv, &a->x, &a->cwv));
    if (!a->in_rows) return GQE_OK;
    /* router and shared query: one matmul pair over [dlogits | dqs] */
    int64_t wl = G * a->M;
    GQE_TRY(gqe_copy_cols(&a->dy_in, 0, &a->dlogits, 0, wl, false));
    GQE_TRY(gqe_copy_cols(&a->dy_in, wl, &a->dqs, 0, dh, false));
    return linear_backward(&dx2, &dx_beta, &a->dw_in, &a->dy_in, &a->x, &a->w_in);
}

gqe_status gqe_attn_aux(gqe_attn *a, float *aux) {
    *aux = 0.0f;
    if (!a->have_forward || !attn_is_gqe(a)) return GQE_OK;
    GQE_TRY(pull_stats(a));
    *aux = a->aux;
    return GQE_OK;
}

bool gqe_attn_aux_trains(const gqe_attn *a) { return aux_trains(a); }

gqe_status gqe_attn_routing(const gqe_attn *a, gqe_tensor *probs, gqe_tensor *idx) {
    memset(probs, 0, sizeof *probs);
    memset(idx, 0, sizeof *idx);
    if (!attn_is_gqe(a) || !a->have_forward) return GQE_OK;
    *probs = view4(&a->probs, a->B, a->T, a->G, a->M);
    *idx = view4(&a->idx, a->B, a->T, a->G, a->k);
    return GQE_OK;
}

gqe_status gqe_attn_usage(gqe_attn *a, float *counts, float *mean_prob) {
    if (!attn_is_gqe(a)) return gqe_fail(GQE_ERR_ARG, "head usage exists only for attention 'gqe'");
    if (!a->have_forward) return gqe_fail(GQE_ERR_ARG, "head usage: no forward pass yet");
    GQE_TRY(pull_stats(a));
    int64_t GM = a->G * a->M, R = a->B * a->T;
    /* host_psum is reused by backward; recompute the mean from the device copy */
    float *psum = malloc((size_t)GM * sizeof *psum);
    if (!psum) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    gqe_status st = gqe_tensor_read_f32(&a->psum, psum, (size_t)GM);
    for (int64_t i = 0; st == GQE_OK && i < GM; i++) {
        counts[i] = a->host_counts[i];
        mean_prob[i] = psum[i] / (float)R;
    }
    free(psum);
    return st;
}

void gqe_attn_set_stats_reduce(gqe_attn *a, gqe_stats_reduce_fn fn, void *ctx) {
    a->stats_reduce = fn;
    a->stats_reduce_ctx = ctx;
}

gqe_status gqe_attn_after_step(gqe_attn *a) { return gqe_attn_after_step_load(a, NULL); }

gqe_status gqe_attn_after_step_load(gqe_attn *a, const float *load) {
    if (!attn_is_gqe(a) || a->cfg.router != GQE_ROUTER_BALANCED || !a->have_forward || !a->bias.storage) return GQE_OK;
    GQE_TRY(pull_stats(a));
    if (!load) load = a->host_counts;
    /* b[g,m] += gamma * sign(mean load - load[g,m]), per group (auxiliary-loss-free balancing) */
    int64_t G = a->G, M = a->M;
    float *b = malloc((size_t)(G * M) * sizeof *b);
    if (!b) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    gqe_status st = gqe_tensor_read_f32(&a->bias, b, (size_t)(G * M));
    for (int64_t g = 0; st == GQE_OK && g < G; g++) {
        double mean = 0;
        for (int64_t m = 0; m < M; m++) mean += load[g * M + m];
        mean /= (double)M;
        for (int64_t m = 0; m < M; m++) {
            double diff = mean - load[g * M + m];
            b[g * M + m] += a->cfg.balance_gamma * (float)((diff > 0) - (diff < 0));
        }
    }
    if (st == GQE_OK) st = gqe_tensor_write_f32(&a->bias, b, (size_t)(G * M));
    free(b);
    return st;
}

uint64_t gqe_attn_route_calls(const gqe_attn *a) { return a->route_calls; }
void gqe_attn_set_route_calls(gqe_attn *a, uint64_t n) { a->route_calls = n; }

gqe_tensor *gqe_attn_router_bias(gqe_attn *a) {
    if (!attn_is_gqe(a) || a->cfg.router != GQE_ROUTER_BALANCED) return NULL;
    if (!a->bias.storage && gqe_tensor_zeros(&a->bias, GQE_F32, a->wq.device, 2, (int64_t[]){a->G, a->M}) != GQE_OK) return NULL;
    return &a->bias;
}
