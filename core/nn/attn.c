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
    a->SH = attn_is_gqe(a) && cfg.variant == GQE_VARIANT_GQE ? 1 : 0;
    /* the call's query heads: k for each KV head, so k for the shared
     * head's too: its query, then k - 1 copies whose output gradient is
     * zero (attention takes a fixed number of query heads per KV head) */
    a->AH = a->SK + a->SH * a->k;
    a->scratch = &a->own_scratch;
    a->S = gqe_attn_slots(&cfg);
    a->has_router = attn_is_gqe(a) && cfg.router != GQE_ROUTER_RANDOM && cfg.router != GQE_ROUTER_HASH;
    size_t GM = (size_t)(a->G * a->M);
    a->stats.host_counts = calloc(GM, sizeof(float));
    a->stats.host_psum = calloc(GM, sizeof(float));
    if (!a->stats.host_counts || !a->stats.host_psum) {
        gqe_attn_destroy(a);
        return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    }

    char name[160];
    gqe_status st = GQE_OK;
#define ADD(suffix, r, c, role, wt) do { if (st == GQE_OK) { \
        int64_t shp[2] = {(r), (c)}; snprintf(name, sizeof name, "%s%s", prefix, suffix); \
        st = gqe_paramset_add(ps, name, 2, shp, role, &(wt)->w, &(wt)->dw, &(wt)->cw); } } while (0)
    attn_params *p = &a->p;
    ADD("q_proj.weight", a->N * a->dh, a->d, GQE_PARAM_WEIGHT, &p->q);
    ADD("k_proj.weight", a->G * a->dh, a->d, GQE_PARAM_WEIGHT, &p->k);
    ADD("v_proj.weight", a->G * a->dh, a->d, GQE_PARAM_WEIGHT, &p->v);
    if (a->has_router) ADD("router.weight", a->G * a->M, a->d, GQE_PARAM_ROUTER, &p->r);
    if (attn_is_gqe(a) && cfg.variant == GQE_VARIANT_GQE) ADD("q_shared.weight", a->dh, a->d, GQE_PARAM_WEIGHT, &p->qs);
    ADD("o_proj.weight", a->d, a->S * a->dh, GQE_PARAM_WEIGHT, &p->o);
#undef ADD
    /* The balanced router's bias: state that checkpoints keep, not trained. */
    if (st == GQE_OK && attn_is_gqe(a) && cfg.router == GQE_ROUTER_BALANCED) {
        snprintf(name, sizeof name, "%srouter_bias", prefix);
        st = gqe_paramset_add_buffer(ps, name, 2, (int64_t[]){a->G, a->M}, &p->bias);
    }
    if (st != GQE_OK) { gqe_attn_destroy(a); return st; }
    *out = a;
    return GQE_OK;
}

void gqe_attn_destroy(gqe_attn *a) {
    if (!a) return;
    gqe_arena_free(&a->arena);
    gqe_arena_free(&a->own_scratch);
    gqe_tensor_free(&a->cache.k);
    gqe_tensor_free(&a->cache.v);
    free(a->stats.host_counts);
    free(a->stats.host_psum);
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
    memset(&a->s.x, 0, sizeof a->s.x);
}

gqe_status gqe_attn_init_weights(gqe_attn *a, uint64_t seed, uint64_t stream, float std, float out_std) {
    attn_params *p = &a->p;
    GQE_TRY(gqe_fill_normal(&p->q.w, seed, stream + 0, std));
    GQE_TRY(gqe_fill_normal(&p->k.w, seed, stream + 1, std));
    GQE_TRY(gqe_fill_normal(&p->v.w, seed, stream + 2, std));
    /* GQE.md: router zero, uniform routing at the start. Not for the
     * balanced router: top-k on equal scores plus one bias per expert sends
     * a whole group to one expert, and the sign rule then flips the whole
     * group each step (with variant hard_concat, where the router learns
     * nothing, for ever). N(0, std), like q/k/v, gives token scores a spread
     * (about 0.16 in softmax probability at d = 128) of many bias steps, so
     * a step moves a fraction of the tokens. Its own stream: the other
     * routers' numbers do not change. */
    if (a->has_router)
        GQE_TRY(a->cfg.router == GQE_ROUTER_BALANCED ? gqe_fill_normal(&p->r.w, seed, stream + 5, std)
                                                     : gqe_fill(&p->r.w, 0.0f));
    if (p->qs.w.storage) GQE_TRY(gqe_fill_normal(&p->qs.w, seed, stream + 3, std));
    GQE_TRY(gqe_fill_normal(&p->o.w, seed, stream + 4, out_std));
    return GQE_OK;
}

/* Views *out over the weights w[0..n-1] as one (rows, d) matrix when the
 * parameter buffers hold them back to back in that order, both the copy
 * matmuls read (cw) and the gradient (dw). gqe_paramset_add keeps
 * declaration order; 16-element padding can separate them in small models,
 * and then *out stays empty. */
static bool bind_block(gqe_attn *a, attn_weight *out, const attn_weight *const *w, int n) {
    memset(out, 0, sizeof *out);
    size_t wnext = w[0]->cw.offset, gnext = w[0]->dw.offset;
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (!w[i]->cw.storage || w[i]->cw.storage != w[0]->cw.storage || w[i]->cw.offset != wnext ||
            w[i]->dw.storage != w[0]->dw.storage || w[i]->dw.offset != gnext)
            return false;
        wnext += (size_t)gqe_tensor_numel(&w[i]->cw);
        gnext += (size_t)gqe_tensor_numel(&w[i]->dw);
        rows += w[i]->cw.shape[0];
    }
    out->cw = gqe_tensor_view(&w[0]->cw, 0, 2, (int64_t[]){rows, a->d});
    out->dw = gqe_tensor_view(&w[0]->dw, 0, 2, (int64_t[]){rows, a->d});
    return true;
}

/* p.in: router and shared query, whose forward runs as one matmul (x is
 * read once for both, and neither output is wide enough alone). p.all:
 * every input projection, q, k, v, router, shared query, whose backward runs
 * as one matmul pair over their gradients gathered side by side: the
 * layer's input gradient (f32) is written in one pass instead of being
 * read and written again by each projection, and the narrow router and
 * shared-query matmuls (K = G*M + dh) no longer run on their own. */
static void bind_input_projections(gqe_attn *a) {
    attn_params *p = &a->p;
    memset(&p->in, 0, sizeof p->in);
    if (a->has_router && p->qs.cw.storage) bind_block(a, &p->in, (const attn_weight *[]){&p->r, &p->qs}, 2);
    const attn_weight *w[5] = {&p->q, &p->k, &p->v};
    int n = 3;
    if (a->has_router) w[n++] = &p->r;
    if (p->qs.cw.storage) w[n++] = &p->qs;
    bind_block(a, &p->all, w, n);
}
static bool fused_in(const gqe_attn *a) { return a->p.in.cw.storage != NULL; }
static int64_t in_rows(const gqe_attn *a) { return fused_in(a) ? a->p.in.cw.shape[0] : 0; }
static bool fused_all(const gqe_attn *a) { return a->p.all.cw.storage != NULL; }
/* The router's and shared query's gradients wait in dlogits and dqs for
 * input_backward's fused matmuls instead of running their own. */
static bool deferred_inputs(const gqe_attn *a) { return fused_in(a) || fused_all(a); }
/* GQE under p.all: the attention backward leaves its gradients as they
 * come (slots, K, V, the shared head's), and qkv_grad_pack turns, scatters
 * and spreads them straight into p.all's gradient block in one pass. Its
 * kernels work on pairs of columns: an odd head_dim (possible without
 * RoPE) takes the op-by-op path. */
static bool packs_grads(const gqe_attn *a) { return attn_is_gqe(a) && fused_all(a) && a->dh % 2 == 0; }

/* Lays out (or counts) every buffer of a (B, T) forward and backward. A
 * decoding layout copies its input even where training borrows it. */
static void plan(gqe_attn *a, int64_t B, int64_t T, bool decoding) {
    gqe_arena *ar = &a->arena, *sc = a->scratch;
    attn_saved *s = &a->s;
    attn_scratch *g = &a->g;
    int64_t R = B * T, G = a->G, M = a->M, k = a->k, dh = a->dh, SH = a->SH, AH = a->AH;
    gqe_dtype C = a->cdt;   /* matmul operands and attention tensors */
    if (!a->borrow_x || decoding) s->x = gqe_arena_take(ar, C, R, a->d, 0, 0);
    /* GQE's backward reads the gathered slots, never q: q is a temporary */
    s->q = gqe_arena_take(attn_is_gqe(a) ? sc : ar, C, R, a->N * dh, 0, 0);
    s->kk = gqe_arena_take(ar, C, R, (G + SH) * dh, 0, 0);
    s->v = gqe_arena_take(ar, C, R, (G + SH) * dh, 0, 0);
    s->o = gqe_arena_take(ar, C, R, AH * dh, 0, 0);
    s->lse = gqe_arena_take(ar, GQE_F32, B, AH, T, 0);
    g->dcat = gqe_arena_take(sc, C, R, a->S * dh, 0, 0);
    g->dq = gqe_arena_take(sc, C, R, a->N * dh, 0, 0);
    /* with the shared head the gradient pack reads attention's dkm and
     * dvm directly: dk and dv serve only the op-by-op path */
    bool kv_grads = !(SH && packs_grads(a));
    g->dk = kv_grads ? gqe_arena_take(sc, C, R, G * dh, 0, 0) : (gqe_tensor){0};
    g->dv = kv_grads ? gqe_arena_take(sc, C, R, G * dh, 0, 0) : (gqe_tensor){0};
    /* f32 like the router's own logits; a temporary of the forward */
    if (fused_in(a)) g->y_in = gqe_arena_take(sc, GQE_F32, R, in_rows(a), 0, 0);
    if (fused_all(a)) g->dy_all = gqe_arena_take(sc, C, R, a->p.all.cw.shape[0], 0, 0);
    else if (fused_in(a)) g->dy_in = gqe_arena_take(sc, C, R, in_rows(a), 0, 0);
    s->tokens = gqe_arena_take(ar, GQE_I32, R, 0, 0, 0);
    if (!attn_is_gqe(a)) return;
    s->logits = gqe_arena_take(ar, GQE_F32, R, G, M, 0);
    s->probs = gqe_arena_take(ar, GQE_F32, R, G, M, 0);
    s->idx = gqe_arena_take(ar, GQE_I32, R, G, k, 0);
    s->topv = gqe_arena_take(ar, GQE_F32, R, G, k, 0);
    s->slots = gqe_arena_take(ar, C, R, AH * dh, 0, 0);
    g->dslots = gqe_arena_take(sc, C, R, AH * dh, 0, 0);
    g->dp = gqe_arena_take(sc, GQE_F32, R, a->SK, 0, 0);
    g->dlogits = gqe_arena_take(sc, C, R, G * M, 0, 0);
    a->stats.counts = gqe_arena_take(ar, GQE_F32, G, M, 0, 0);
    a->stats.psum = gqe_arena_take(ar, GQE_F32, G, M, 0, 0);
    if (a->cfg.variant == GQE_VARIANT_WEIGHTED_CONCAT) {
        s->scaled = gqe_arena_take(ar, C, R, a->SK * dh, 0, 0);
        g->d_o = gqe_arena_take(sc, C, R, a->SK * dh, 0, 0);
    }
    if (a->cfg.variant == GQE_VARIANT_GQE) {
        s->cat = gqe_arena_take(ar, C, R, a->S * dh, 0, 0);
        g->d_o = gqe_arena_take(sc, C, R, AH * dh, 0, 0);
        s->w = gqe_arena_take(ar, GQE_F32, R, a->SK, 0, 0);
        g->kp = gqe_arena_take(sc, C, R, G * dh, 0, 0);
        g->vp = gqe_arena_take(sc, C, R, G * dh, 0, 0);
        if (!fused_in(a)) g->qs = gqe_arena_take(sc, C, R, dh, 0, 0);
        g->dkm = gqe_arena_take(sc, C, R, (G + 1) * dh, 0, 0);
        g->dvm = gqe_arena_take(sc, C, R, (G + 1) * dh, 0, 0);
        g->dqs = gqe_arena_take(sc, C, R, dh, 0, 0);
    }
}

static gqe_status ensure_shape(gqe_attn *a, int64_t B, int64_t T, bool decoding) {
    gqe_device dev = a->p.q.w.device;
    gqe_dtype cdt = attn_compute_dtype(a);
    if (a->arena.buf.storage && a->B == B && a->T == T && a->planned_decoding == decoding && a->arena.device == dev &&
        a->cdt == cdt)
        return GQE_OK;
    a->cdt = cdt;
    bind_input_projections(a);
    gqe_arena_begin(&a->arena, dev);
    gqe_arena_begin(a->scratch, dev);
    plan(a, B, T, decoding);
    GQE_TRY(gqe_arena_commit(&a->arena));
    GQE_TRY(gqe_arena_commit(a->scratch));
    plan(a, B, T, decoding);
    a->B = B;
    a->T = T;
    a->planned_decoding = decoding;
    return GQE_OK;
}

static gqe_status linear(gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *w) {
    return gqe_matmul(y, x, w, false, true, 1.0f, 0.0f);
}

/* Routing of the R rows of x into probs, idx, topv; x NULL: logits already
 * hold the router's output. */
static gqe_status route(gqe_attn *a, int64_t R, const gqe_tensor *x) {
    attn_saved *s = &a->s;
    int64_t G = a->G, M = a->M;
    switch (a->cfg.router) {
    case GQE_ROUTER_SOFTMAX:
    case GQE_ROUTER_SIGMOID:
    case GQE_ROUTER_BALANCED: {
        gqe_tensor lg = view2(&s->logits, R, G * M);
        if (x) GQE_TRY(linear(&lg, x, &a->p.r.cw));
        gqe_score_fn fn = a->cfg.router == GQE_ROUTER_SIGMOID ? GQE_SCORE_SIGMOID : GQE_SCORE_SOFTMAX;
        const gqe_tensor *bias = a->cfg.router == GQE_ROUTER_BALANCED ? &a->p.bias : NULL;
        return gqe_router_topk(&s->probs, &s->idx, &s->topv, &s->logits, fn, bias);
    }
    case GQE_ROUTER_RANDOM:
        GQE_TRY(gqe_fill(&s->probs, 1.0f / (float)M));
        return gqe_router_random(&s->idx, &s->topv, M, a->cfg.seed, a->route_calls++);
    case GQE_ROUTER_HASH:
        if (!a->tokens_given)
            return gqe_fail(GQE_ERR_ARG, "router 'hash' needs the token ids: pass tokens to forward");
        GQE_TRY(gqe_fill(&s->probs, 1.0f / (float)M));
        return gqe_router_hash(&s->idx, &s->topv, &s->tokens, M);
    }
    return gqe_fail(GQE_ERR_ARG, "unknown router");
}

/* Load statistics and the aux loss of the last routing (GQE.md). Forward
 * only launches the statistics; the host reads them when something asks
 * (aux loss, usage, balancing), so a forward never waits on the device. The
 * LM reads all its layers' at once (gqe_attn_stats_stage and _take): each
 * read waits for the device. */
static bool stats_pending(const gqe_attn *a) { return attn_is_gqe(a) && a->have_forward && !a->stats.on_host; }

/* Data parallel: the ranks' mean, once per forward, before any read. */
static gqe_status stats_reduce(gqe_attn *a) {
    attn_stats *st = &a->stats;
    if (!st->reduce || st->reduced) return GQE_OK;
    GQE_TRY(st->reduce(st->reduce_ctx, &st->counts));
    GQE_TRY(st->reduce(st->reduce_ctx, &st->psum));
    st->reduced = true;
    return GQE_OK;
}

/* The aux loss from the host arrays, which now match the last forward. */
static void stats_on_host(gqe_attn *a) {
    attn_stats *st = &a->stats;
    int64_t GM = a->G * a->M, R = a->B * a->T;
    double aux = 0;
    for (int64_t i = 0; i < GM; i++) aux += (double)st->host_counts[i] / R * ((double)st->host_psum[i] / R);
    st->aux = (float)(aux * (double)a->M / (double)a->G);
    st->on_host = true;
}

static gqe_status pull_stats(gqe_attn *a) {
    if (!stats_pending(a)) return GQE_OK;
    attn_stats *st = &a->stats;
    size_t GM = (size_t)(a->G * a->M);
    GQE_TRY(stats_reduce(a));
    GQE_TRY(gqe_tensor_read_f32(&st->counts, st->host_counts, GM));
    GQE_TRY(gqe_tensor_read_f32(&st->psum, st->host_psum, GM));
    stats_on_host(a);
    return GQE_OK;
}

int64_t gqe_attn_stats_size(const gqe_attn *a) { return attn_is_gqe(a) ? a->G * a->M : 0; }

gqe_status gqe_attn_stats_stage(gqe_attn *a, gqe_tensor *counts, gqe_tensor *psum, bool *staged) {
    *staged = false;
    if (!stats_pending(a)) return GQE_OK;
    GQE_TRY(gqe_tensor_copy(counts, &a->stats.counts));
    GQE_TRY(gqe_tensor_copy(psum, &a->stats.psum));
    *staged = true;
    return GQE_OK;
}

gqe_status gqe_attn_stats_take(gqe_attn *a, const float *counts, const float *psum, const gqe_tensor *reduced_counts,
                               const gqe_tensor *reduced_psum) {
    if (!stats_pending(a)) return gqe_fail(GQE_ERR_ARG, "routing statistics: nothing staged to take");
    attn_stats *st = &a->stats;
    if (reduced_counts) {   /* the device copies too, which the aux loss's backward reads */
        GQE_TRY(gqe_tensor_copy(&st->counts, reduced_counts));
        GQE_TRY(gqe_tensor_copy(&st->psum, reduced_psum));
        st->reduced = true;
    }
    size_t GM = (size_t)(a->G * a->M);
    memcpy(st->host_counts, counts, GM * sizeof(float));
    memcpy(st->host_psum, psum, GM * sizeof(float));
    stats_on_host(a);
    return GQE_OK;
}

/* Where attention reads keys and values: this call's rows (training), or
 * the cache after this call's rows are appended to it at pos (decoding).
 * rows holds T rows of `heads` heads; *out is the (B, P, heads, dh) view
 * attention reads, P = T or pos + T. */
static gqe_status kv_source(gqe_attn *a, gqe_tensor *out, const gqe_tensor *rows, gqe_tensor *cached, int64_t heads,
                            int64_t B, int64_t T, int64_t pos) {
    int64_t dh = a->dh;
    if (!cached) {
        *out = view4(rows, B, T, heads, dh);
        return GQE_OK;
    }
    int64_t width = heads * dh;
    gqe_tensor dst = view2(cached, 1, a->cache.max * width), src = view2(rows, 1, T * width);
    GQE_TRY(gqe_copy_cols(&dst, pos * width, &src, 0, T * width, false));
    *out = view4(cached, 1, pos + T, heads, dh);
    return GQE_OK;
}

gqe_status gqe_attn_forward(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens) {
    return gqe_attn_forward_at(a, y, x, tokens, NULL);
}

gqe_status gqe_attn_forward_at(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens,
                               attn_cache *cache) {
    char s1[64], s2[64];
    if (x->ndim != 3 || x->shape[2] != a->d)
        return gqe_fail(GQE_ERR_SHAPE, "attention forward: x must be (B, S, %lld), got %s", (long long)a->d, gqe_tensor_shape_str(x, s1, 64));
    if (!gqe_tensor_same_shape(x, y))
        return gqe_fail(GQE_ERR_SHAPE, "attention forward: y %s must match x %s", gqe_tensor_shape_str(y, s1, 64), gqe_tensor_shape_str(x, s2, 64));
    int64_t B = x->shape[0], T = x->shape[1], R = B * T, G = a->G, dh = a->dh;
    if (B < 1 || T < 1) return gqe_fail(GQE_ERR_SHAPE, "attention forward: x must have B, S >= 1, got %s", gqe_tensor_shape_str(x, s1, 64));
    bool decoding = cache != NULL;
    int64_t pos = decoding ? cache->len : 0;   /* position of the first row */
    GQE_TRY(ensure_shape(a, B, T, decoding));
    attn_saved *s = &a->s;
    const attn_params *p = &a->p;
    a->have_forward = false;
    if (a->borrow_x && !decoding) {
        if (x->dtype != a->cdt)
            return gqe_fail(GQE_ERR_ARG, "attention forward: a borrowed input must be %s, got %s",
                            gqe_dtype_name(a->cdt), gqe_dtype_name(x->dtype));
        s->x = view2(x, R, a->d);
    } else {
        GQE_TRY(gqe_tensor_copy(&s->x, x));
    }
    a->tokens_given = tokens && tokens->storage;
    if (a->tokens_given) {
        if (gqe_tensor_numel(tokens) != R)
            return gqe_fail(GQE_ERR_SHAPE, "attention forward: tokens must have B*S = %lld elements", (long long)R);
        GQE_TRY(gqe_tensor_copy(&s->tokens, tokens));
    }
    float scale = 1.0f / sqrtf((float)dh);
    bool causal = a->cfg.causal;
    gqe_tensor y2 = view2(y, R, a->d);
    int64_t SH = a->SH, AG = G + SH, AH = a->AH;
    float theta = a->cfg.rope_theta;
    GQE_TRY(linear(&s->q, &s->x, &p->q.cw));
    /* With the shared head, the groups' K and V are projected apart and
     * joined by their group means (the shared head's K and V, after RoPE)
     * as one more head: one attention call serves the routed slots and the
     * shared head, instead of a second call of one head, which at the
     * training shapes took a quarter of the routed call's time for an
     * eighth of its work (kernels/NOTES.md). */
    gqe_tensor *kproj = SH ? &a->g.kp : &s->kk, *vproj = SH ? &a->g.vp : &s->v;
    GQE_TRY(linear(kproj, &s->x, &p->k.cw));
    GQE_TRY(linear(vproj, &s->x, &p->v.cw));
    gqe_tensor q4 = view4(&s->q, B, T, a->N, dh), k4 = view4(kproj, B, T, G, dh);
    if (SH) {
        gqe_tensor v4 = view4(vproj, B, T, G, dh);
        gqe_tensor km4 = view4(&s->kk, B, T, AG, dh), vm4 = view4(&s->v, B, T, AG, dh);
        GQE_TRY(gqe_group_mean_append(&km4, &k4, a->cfg.rope, theta, pos));
        GQE_TRY(gqe_group_mean_append(&vm4, &v4, false, theta, 0));
    }
    /* RoPE rotates by position only, so GQE rotates its slots as it gathers
     * them rather than all N query heads: fewer rows, same values. */
    if (a->cfg.rope) {
        if (!attn_is_gqe(a)) GQE_TRY(gqe_rope_forward(&q4, theta, pos));
        if (!SH) GQE_TRY(gqe_rope_forward(&k4, theta, pos));
    }
    gqe_tensor K, V;
    GQE_TRY(kv_source(a, &K, &s->kk, decoding ? &cache->k : NULL, AG, B, T, pos));
    GQE_TRY(kv_source(a, &V, &s->v, decoding ? &cache->v : NULL, AG, B, T, pos));
    if (!attn_is_gqe(a)) {
        gqe_tensor o4 = view4(&s->o, B, T, a->N, dh);
        GQE_TRY(gqe_attention_forward(&o4, &s->lse, &q4, &K, &V, causal, scale));
        GQE_TRY(linear(&y2, &s->o, &p->o.cw));
        a->stats.aux = 0;
        a->have_forward = !decoding;
        return GQE_OK;
    }
    /* The shared query goes after the slots unturned: the gather below
     * turns every head of the buffer. */
    const gqe_tensor *route_x = &s->x;
    int64_t w_a = a->SK * dh;
    gqe_tensor slots2 = view2(&s->slots, R, AH * dh);
    if (fused_in(a)) {
        /* router and shared query in one matmul: x is read once for both */
        GQE_TRY(linear(&a->g.y_in, &s->x, &p->in.cw));
        int64_t wl = G * a->M;
        gqe_tensor lg2 = view2(&s->logits, R, wl);
        GQE_TRY(gqe_copy_cols(&lg2, 0, &a->g.y_in, 0, wl, false));
        for (int64_t j = 0; j < a->k; j++) GQE_TRY(gqe_copy_cols(&slots2, w_a + j * dh, &a->g.y_in, wl, dh, false));
        route_x = NULL;
    } else if (SH) {
        GQE_TRY(linear(&a->g.qs, &s->x, &p->qs.cw));
        for (int64_t j = 0; j < a->k; j++) GQE_TRY(gqe_copy_cols(&slots2, w_a + j * dh, &a->g.qs, 0, dh, false));
    }
    GQE_TRY(route(a, R, route_x));
    gqe_tensor q3 = view3(&s->q, R, a->N, dh), slots3 = view3(&s->slots, R, AH, dh);
    gqe_tensor slots4 = view4(&s->slots, B, T, AH, dh), o4 = view4(&s->o, B, T, AH, dh);
    if (a->cfg.rope) GQE_TRY(gqe_gather_slots_rope(&slots4, &q3, &s->idx, theta, pos));
    else GQE_TRY(gqe_gather_slots(&slots3, &q3, &s->idx));
    GQE_TRY(gqe_attention_forward(&o4, &s->lse, &slots4, &K, &V, causal, scale));
    gqe_tensor o3 = view3(&s->o, R, AH, dh), p2 = view2(&s->topv, R, a->SK);
    switch (a->cfg.variant) {
    case GQE_VARIANT_HARD_CONCAT:
        GQE_TRY(linear(&y2, &s->o, &p->o.cw));
        break;
    case GQE_VARIANT_WEIGHTED_CONCAT: {
        gqe_tensor sc3 = view3(&s->scaled, R, a->SK, dh);
        GQE_TRY(gqe_slot_scale_forward(&sc3, &o3, &p2));
        GQE_TRY(linear(&y2, &s->scaled, &p->o.cw));
        break;
    }
    case GQE_VARIANT_GQE: {
        /* o_proj reads [slots | mix | shared]; o holds [slots | shared] */
        gqe_tensor cat3 = view3(&s->cat, R, a->S, dh);
        GQE_TRY(gqe_slot_mix_forward(&cat3, &s->w, &o3, &p2, SLOT_EPS));
        GQE_TRY(linear(&y2, &s->cat, &p->o.cw));
        break;
    }
    }
    if (decoding) return GQE_OK;   /* decoding trains nothing: no statistics */
    GQE_TRY(gqe_router_stats(&a->stats.counts, &a->stats.psum, &s->idx, &s->probs, a->cfg.router == GQE_ROUTER_SIGMOID));
    a->stats.on_host = false;
    a->stats.reduced = false;
    a->have_forward = true;
    return GQE_OK;
}

/* ---- backward ----------------------------------------------------------------
 * In the reverse order of forward: o_proj; the output slots of the variant
 * (one function each), giving the gradient of the routed slots' outputs and
 * of their scores P; the routed attention (the shared head's with it,
 * variant gqe); the shared head's gradients spread back to its query, K
 * and V; the router; RoPE and the input projections. Each step reads the saved
 * activations (a->s) and writes its own scratch gradients (a->g). */

/* The layer's input gradient, which every projection adds into; the first
 * writes it (beta 0), so it needs no fill. */
typedef struct dx_acc { gqe_tensor dx; float beta; } dx_acc;

/* dW += dy^T x and dx (=|+=) dy W for y = x W^T. */
static gqe_status linear_backward(gqe_attn *a, dx_acc *acc, attn_weight *w, const gqe_tensor *dy) {
    GQE_TRY(gqe_matmul(&w->dw, dy, &a->s.x, true, false, 1.0f, 1.0f));
    GQE_TRY(gqe_matmul(&acc->dx, dy, &w->cw, false, false, 1.0f, acc->beta));
    acc->beta = 1.0f;
    return GQE_OK;
}

/* dcat = dy Wo (overwrites); dWo += dy^T (o_proj's input). */
static gqe_status out_proj_backward(gqe_attn *a, const gqe_tensor *dy2, const gqe_tensor *o_in) {
    gqe_tensor dcat = view2(&a->g.dcat, a->B * a->T, a->S * a->dh);
    GQE_TRY(gqe_matmul(&dcat, dy2, &a->p.o.cw, false, false, 1.0f, 0.0f));
    return gqe_matmul(&a->p.o.dw, dy2, o_in, true, false, 1.0f, 1.0f);
}

/* Dense kinds: every head attends; dq, dk, dv are overwritten. */
static gqe_status dense_backward(gqe_attn *a) {
    int64_t B = a->B, T = a->T, G = a->G, dh = a->dh, N = a->N;
    attn_saved *s = &a->s;
    attn_scratch *g = &a->g;
    gqe_tensor q4 = view4(&s->q, B, T, N, dh), k4 = view4(&s->kk, B, T, G, dh), v4 = view4(&s->v, B, T, G, dh);
    gqe_tensor o4 = view4(&s->o, B, T, N, dh), do4 = view4(&g->dcat, B, T, N, dh);
    gqe_tensor dq4 = view4(&g->dq, B, T, N, dh), dk4 = view4(&g->dk, B, T, G, dh), dv4 = view4(&g->dv, B, T, G, dh);
    return gqe_attention_backward(&dq4, &dk4, &dv4, &do4, &q4, &k4, &v4, &o4, &s->lse, a->cfg.causal,
                                  1.0f / sqrtf((float)dh), false);
}

/* Output slots, one function per variant: each sets *d_o to the gradient of
 * o (the routed slots' outputs) and gives g->dp the gradient of their
 * scores P. */

/* hard_concat: o feeds o_proj as it is; P gets no gradient. */
static gqe_status hard_concat_backward(gqe_attn *a, const gqe_tensor **d_o) {
    *d_o = &a->g.dcat;
    return GQE_OK;
}

/* weighted_concat: o_proj reads P * o. */
static gqe_status weighted_concat_backward(gqe_attn *a, const gqe_tensor **d_o) {
    int64_t R = a->B * a->T, SK = a->SK, dh = a->dh;
    attn_scratch *g = &a->g;
    gqe_tensor o3 = view3(&a->s.o, R, SK, dh), p2 = view2(&a->s.topv, R, SK), dp2 = view2(&g->dp, R, SK);
    gqe_tensor do3 = view3(&g->d_o, R, SK, dh), dsc3 = view3(&g->dcat, R, SK, dh);
    GQE_TRY(gqe_fill(&g->d_o, 0.0f));   /* the scaling adds into both */
    GQE_TRY(gqe_fill(&g->dp, 0.0f));
    GQE_TRY(gqe_slot_scale_backward(&do3, &dp2, &dsc3, &o3, &p2));
    *d_o = &g->d_o;
    return GQE_OK;
}

/* gqe: o_proj reads [slots | mix | shared]; o is [slots | shared]. One
 * op sends dmix into d_o and dp and moves the slots' and the shared head's
 * parts of dcat into d_o. */
static gqe_status gqe_slots_backward(gqe_attn *a, const gqe_tensor **d_o) {
    int64_t R = a->B * a->T, SK = a->SK, AH = a->AH, dh = a->dh;
    attn_saved *s = &a->s;
    attn_scratch *g = &a->g;
    gqe_tensor dcat3 = view3(&g->dcat, R, a->S, dh), cat3 = view3(&s->cat, R, a->S, dh);
    gqe_tensor o3 = view3(&s->o, R, AH, dh), p2 = view2(&s->topv, R, SK), dp2 = view2(&g->dp, R, SK);
    gqe_tensor do3 = view3(&g->d_o, R, AH, dh);
    GQE_TRY(gqe_slot_mix_backward(&do3, &dp2, &dcat3, &o3, &p2, &cat3, &s->w, SLOT_EPS));
    *d_o = &g->d_o;
    return GQE_OK;
}

/* The routed slots' attention (with the shared head where it rides along):
 * overwrites dk, dv (dkm, dvm with the shared head) and dslots. Unless the
 * gradient pack does it, takes RoPE off dslots and scatters them into dq
 * (zeroed) at the chosen experts. */
static gqe_status routed_attention_backward(gqe_attn *a, const gqe_tensor *d_o) {
    int64_t B = a->B, T = a->T, R = B * T, dh = a->dh, AG = a->G + a->SH, AH = a->AH;
    attn_saved *s = &a->s;
    attn_scratch *g = &a->g;
    gqe_tensor k4 = view4(&s->kk, B, T, AG, dh), v4 = view4(&s->v, B, T, AG, dh);
    gqe_tensor dk4 = view4(a->SH ? &g->dkm : &g->dk, B, T, AG, dh), dv4 = view4(a->SH ? &g->dvm : &g->dv, B, T, AG, dh);
    gqe_tensor slots4 = view4(&s->slots, B, T, AH, dh), o4 = view4(&s->o, B, T, AH, dh);
    gqe_tensor ds4 = view4(&g->dslots, B, T, AH, dh), do4 = view4(d_o, B, T, AH, dh);
    GQE_TRY(gqe_attention_backward(&ds4, &dk4, &dv4, &do4, &slots4, &k4, &v4, &o4, &s->lse, a->cfg.causal,
                                   1.0f / sqrtf((float)dh), false));
    if (packs_grads(a)) return GQE_OK;
    if (a->cfg.rope) GQE_TRY(gqe_rope_backward(&ds4, a->cfg.rope_theta, 0));
    gqe_tensor dq3 = view3(&g->dq, R, a->N, dh), ds3 = view3(&g->dslots, R, AH, dh);
    return gqe_scatter_slots(&dq3, &ds3, &s->idx);
}

/* Slot C, the shared head, unless the gradient pack does this: its query's
 * gradient is dslots' last head (already turned back with the slots), and
 * the gradients of its K and V, the group means, spread over the groups'.
 * Without the fused input projection, q_shared's backward runs here. */
static gqe_status shared_head_backward(gqe_attn *a, dx_acc *acc) {
    if (!a->SH || packs_grads(a)) return GQE_OK;
    int64_t B = a->B, T = a->T, G = a->G, dh = a->dh;
    attn_scratch *g = &a->g;
    GQE_TRY(gqe_copy_cols(&g->dqs, 0, &g->dslots, a->SK * dh, dh, false));
    gqe_tensor dk4 = view4(&g->dk, B, T, G, dh), dv4 = view4(&g->dv, B, T, G, dh);
    gqe_tensor dkm4 = view4(&g->dkm, B, T, G + 1, dh), dvm4 = view4(&g->dvm, B, T, G + 1, dh);
    GQE_TRY(gqe_group_mean_append_backward(&dk4, &dkm4, a->cfg.rope, a->cfg.rope_theta));
    GQE_TRY(gqe_group_mean_append_backward(&dv4, &dvm4, false, a->cfg.rope_theta));
    return deferred_inputs(a) ? GQE_OK : linear_backward(a, acc, &a->p.qs, &g->dqs);
}

/* The router learns through P (slot B or the scaling) and the aux loss
 * (softmax and sigmoid routers); dlogits is zero where neither reaches it. */
static gqe_status router_backward(gqe_attn *a, float aux_coef, dx_acc *acc) {
    if (!a->has_router) return GQE_OK;
    int64_t R = a->B * a->T, G = a->G, M = a->M;
    attn_saved *s = &a->s;
    attn_scratch *g = &a->g;
    bool through_p = a->cfg.variant != GQE_VARIANT_HARD_CONCAT;
    bool through_aux = aux_trains(a) && aux_coef != 0.0f;
    if (!through_p && !through_aux) return deferred_inputs(a) ? gqe_fill(&g->dlogits, 0.0f) : GQE_OK;
    const gqe_tensor *counts = NULL;
    float coef_scale = 0.0f;
    if (through_aux) {
        /* coef = c * counts / R from the device's counts (reduced across
         * ranks): a write from the host would wait for the device. */
        GQE_TRY(stats_reduce(a));
        float c = aux_coef * (float)M / ((float)G * (float)R);
        counts = &a->stats.counts;
        coef_scale = c / (float)R;
    }
    gqe_tensor dp3 = view3(&g->dp, R, G, a->k), dl3 = view3(&g->dlogits, R, G, M);
    bool sigmoid = a->cfg.router == GQE_ROUTER_SIGMOID;
    GQE_TRY(gqe_router_backward(&dl3, through_p ? &dp3 : NULL, &s->idx, &s->probs, counts, coef_scale,
                                sigmoid ? GQE_SCORE_SIGMOID : GQE_SCORE_SOFTMAX, sigmoid));
    return deferred_inputs(a) ? GQE_OK : linear_backward(a, acc, &a->p.r, &g->dlogits);
}

/* RoPE off dq (dense; GQE took it off its slots) and dk, then the q, k, v
 * projections, then router and shared query as one pair over [dlogits | dqs]. */
static gqe_status input_backward(gqe_attn *a, dx_acc *acc) {
    int64_t B = a->B, T = a->T, dh = a->dh;
    attn_scratch *g = &a->g;
    if (packs_grads(a)) {
        int64_t R = B * T, G = a->G, AG = G + a->SH, AH = a->AH;
        gqe_tensor ds4 = view4(&g->dslots, B, T, AH, dh), idx3 = view3(&a->s.idx, R, G, a->k);
        gqe_tensor dk4 = view4(a->SH ? &g->dkm : &g->dk, B, T, AG, dh);
        gqe_tensor dv4 = view4(a->SH ? &g->dvm : &g->dv, B, T, AG, dh);
        gqe_tensor dl2 = view2(&g->dlogits, R, G * a->M);
        GQE_TRY(gqe_qkv_grad_pack(&g->dy_all, &ds4, &idx3, &dk4, &dv4, a->has_router ? &dl2 : NULL, a->SH != 0, a->M,
                                  a->cfg.rope, a->cfg.rope_theta));
        return linear_backward(a, acc, &a->p.all, &g->dy_all);
    }
    /* RoPE off dq (dense kinds) and dk; with the shared head, its backward
     * took it off dk already, with the group means' share */
    if (a->cfg.rope) {
        gqe_tensor dq4 = view4(&g->dq, B, T, a->N, dh), dk4 = view4(&g->dk, B, T, a->G, dh);
        if (!attn_is_gqe(a)) GQE_TRY(gqe_rope_backward(&dq4, a->cfg.rope_theta, 0));
        if (!a->SH) GQE_TRY(gqe_rope_backward(&dk4, a->cfg.rope_theta, 0));
    }
    if (fused_all(a)) {   /* [dq | dk | dv | dlogits | dqs], then one matmul pair */
        int64_t R = B * T, col = 0;
        const gqe_tensor *parts[5] = {&g->dq, &g->dk, &g->dv};
        int n = 3;
        gqe_tensor dl2;
        if (a->has_router) { dl2 = view2(&g->dlogits, R, a->G * a->M); parts[n++] = &dl2; }
        if (a->p.qs.cw.storage) parts[n++] = &g->dqs;
        for (int i = 0; i < n; i++) {
            int64_t cols = gqe_tensor_numel(parts[i]) / R;
            gqe_tensor src = view2(parts[i], R, cols);
            GQE_TRY(gqe_copy_cols(&g->dy_all, col, &src, 0, cols, false));
            col += cols;
        }
        return linear_backward(a, acc, &a->p.all, &g->dy_all);
    }
    GQE_TRY(linear_backward(a, acc, &a->p.q, &g->dq));
    GQE_TRY(linear_backward(a, acc, &a->p.k, &g->dk));
    GQE_TRY(linear_backward(a, acc, &a->p.v, &g->dv));
    if (!fused_in(a)) return GQE_OK;
    int64_t wl = a->G * a->M;
    GQE_TRY(gqe_copy_cols(&g->dy_in, 0, &g->dlogits, 0, wl, false));
    GQE_TRY(gqe_copy_cols(&g->dy_in, wl, &g->dqs, 0, dh, false));
    return linear_backward(a, acc, &a->p.in, &g->dy_in);
}

gqe_status gqe_attn_backward(gqe_attn *a, gqe_tensor *dx, const gqe_tensor *dy, float aux_coef) {
    if (!a->have_forward) return gqe_fail(GQE_ERR_ARG, "attention backward called before forward");
    int64_t B = a->B, T = a->T, R = B * T;
    char s1[64];
    if (gqe_tensor_numel(dy) != R * a->d || gqe_tensor_numel(dx) != R * a->d)
        return gqe_fail(GQE_ERR_SHAPE, "attention backward: dy and dx must be (%lld, %lld, %lld), got dy %s",
                        (long long)B, (long long)T, (long long)a->d, gqe_tensor_shape_str(dy, s1, 64));
    gqe_tensor dy2 = view2(dy, R, a->d);
    dx_acc acc = {view2(dx, R, a->d), 0.0f};
    if (!attn_is_gqe(a)) {
        GQE_TRY(out_proj_backward(a, &dy2, &a->s.o));
        GQE_TRY(dense_backward(a));
        return input_backward(a, &acc);
    }
    /* o_proj's input and the output slots' backward, per variant */
    const gqe_tensor *o_in = &a->s.o, *d_o = NULL;
    if (a->cfg.variant == GQE_VARIANT_WEIGHTED_CONCAT) o_in = &a->s.scaled;
    if (a->cfg.variant == GQE_VARIANT_GQE) o_in = &a->s.cat;
    if (!packs_grads(a)) GQE_TRY(gqe_fill(&a->g.dq, 0.0f));   /* the slots scatter into it */
    GQE_TRY(out_proj_backward(a, &dy2, o_in));
    switch (a->cfg.variant) {
    case GQE_VARIANT_HARD_CONCAT: GQE_TRY(hard_concat_backward(a, &d_o)); break;
    case GQE_VARIANT_WEIGHTED_CONCAT: GQE_TRY(weighted_concat_backward(a, &d_o)); break;
    case GQE_VARIANT_GQE: GQE_TRY(gqe_slots_backward(a, &d_o)); break;
    }
    GQE_TRY(routed_attention_backward(a, d_o));
    if (a->cfg.variant == GQE_VARIANT_GQE) GQE_TRY(shared_head_backward(a, &acc));
    GQE_TRY(router_backward(a, aux_coef, &acc));
    return input_backward(a, &acc);
}

gqe_status gqe_attn_aux(gqe_attn *a, float *aux) {
    *aux = 0.0f;
    if (!a->have_forward || !attn_is_gqe(a)) return GQE_OK;
    GQE_TRY(pull_stats(a));
    *aux = a->stats.aux;
    return GQE_OK;
}

bool gqe_attn_aux_trains(const gqe_attn *a) { return aux_trains(a); }
/* Binds the blocks now: a caller may ask before the first forward. */
bool gqe_attn_writes_dx_once(gqe_attn *a) {
    bind_input_projections(a);
    return fused_all(a);
}

gqe_status gqe_attn_routing(const gqe_attn *a, gqe_tensor *probs, gqe_tensor *idx) {
    memset(probs, 0, sizeof *probs);
    memset(idx, 0, sizeof *idx);
    if (!attn_is_gqe(a) || !a->have_forward) return GQE_OK;
    *probs = view4(&a->s.probs, a->B, a->T, a->G, a->M);
    *idx = view4(&a->s.idx, a->B, a->T, a->G, a->k);
    return GQE_OK;
}

gqe_status gqe_attn_usage(gqe_attn *a, float *counts, float *mean_prob) {
    if (!attn_is_gqe(a)) return gqe_fail(GQE_ERR_ARG, "head usage exists only for attention 'gqe'");
    if (!a->have_forward) return gqe_fail(GQE_ERR_ARG, "head usage: no forward pass yet");
    GQE_TRY(pull_stats(a));
    int64_t GM = a->G * a->M, R = a->B * a->T;
    for (int64_t i = 0; i < GM; i++) {
        counts[i] = a->stats.host_counts[i];
        mean_prob[i] = a->stats.host_psum[i] / (float)R;
    }
    return GQE_OK;
}

void gqe_attn_set_stats_reduce(gqe_attn *a, gqe_stats_reduce_fn fn, void *ctx) {
    a->stats.reduce = fn;
    a->stats.reduce_ctx = ctx;
}

gqe_status gqe_attn_after_step(gqe_attn *a) { return gqe_attn_after_step_load(a, NULL); }

gqe_status gqe_attn_after_step_load(gqe_attn *a, const float *load) {
    if (!attn_is_gqe(a) || a->cfg.router != GQE_ROUTER_BALANCED || !a->have_forward) return GQE_OK;
    GQE_TRY(pull_stats(a));
    if (!load) load = a->stats.host_counts;
    /* b[g,m] += gamma * sign(mean load - load[g,m]), per group (auxiliary-loss-free balancing) */
    int64_t G = a->G, M = a->M;
    float *b = malloc((size_t)(G * M) * sizeof *b);
    if (!b) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    gqe_status st = gqe_tensor_read_f32(&a->p.bias, b, (size_t)(G * M));
    for (int64_t g = 0; st == GQE_OK && g < G; g++) {
        double mean = 0;
        for (int64_t m = 0; m < M; m++) mean += load[g * M + m];
        mean /= (double)M;
        for (int64_t m = 0; m < M; m++) {
            double diff = mean - load[g * M + m];
            b[g * M + m] += a->cfg.balance_gamma * (float)((diff > 0) - (diff < 0));
        }
    }
    if (st == GQE_OK) st = gqe_tensor_write_f32(&a->p.bias, b, (size_t)(G * M));
    free(b);
    return st;
}

uint64_t gqe_attn_route_calls(const gqe_attn *a) { return a->route_calls; }
void gqe_attn_set_route_calls(gqe_attn *a, uint64_t n) { a->route_calls = n; }

gqe_tensor *gqe_attn_router_bias(gqe_attn *a) { return a->p.bias.storage ? &a->p.bias : NULL; }
