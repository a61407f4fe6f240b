/* The language model: a stack of pre-norm blocks over one parameter buffer.
 * Activations for backward live in one arena per (B, T). */
#include "lm_internal.h"
#include "../size.h"
#include "../interrupt.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mlp_names[] = {"gelu", "swiglu"};

gqe_status gqe_mlp_parse(const char *s, gqe_mlp_kind *out) {
    for (int i = 0; s && i < 2; i++)
        if (strcmp(s, mlp_names[i]) == 0) { *out = (gqe_mlp_kind)i; return GQE_OK; }
    return gqe_fail(GQE_ERR_ARG, "unknown mlp '%s' (allowed: gelu, swiglu)", s ? s : "(null)");
}
const char *gqe_mlp_name(gqe_mlp_kind k) { return (unsigned)k < sizeof mlp_names / sizeof *mlp_names ? mlp_names[k] : "?"; }

void gqe_lm_config_default(gqe_lm_config *c) {
    memset(c, 0, sizeof *c);
    gqe_attn_config_default(&c->attn);
    c->vocab = 256;
    c->dim = 128;
    c->layers = 4;
    c->max_seq = 1024;
    c->attn.experts = 8;
    c->attn.groups = 4;
    c->mlp = GQE_MLP_GELU;
    c->tied = true;
    c->norm_eps = 1e-5f;
    c->init_std = 0.02f;
}

gqe_status gqe_lm_config_validate(gqe_lm_config *c) {
    if (c->vocab <= 0) return gqe_fail(GQE_ERR_ARG, "vocab must be a positive integer, got %lld", (long long)c->vocab);
    if (c->vocab > (1LL << 30)) return gqe_fail(GQE_ERR_ARG, "vocab %lld is too large", (long long)c->vocab);
    if (c->dim <= 0) return gqe_fail(GQE_ERR_ARG, "dim must be a positive integer, got %lld", (long long)c->dim);
    if (c->layers <= 0 || c->layers > 4096)
        return gqe_fail(GQE_ERR_ARG, "layers must be an integer in 1..4096, got %lld", (long long)c->layers);
    if (c->max_seq <= 0) return gqe_fail(GQE_ERR_ARG, "max_seq must be a positive integer, got %lld", (long long)c->max_seq);
    if (c->mlp_hidden < 0) return gqe_fail(GQE_ERR_ARG, "mlp_hidden must be >= 0 (0 means 4*dim), got %lld", (long long)c->mlp_hidden);
    if (strcmp(gqe_mlp_name(c->mlp), "?") == 0) return gqe_fail(GQE_ERR_ARG, "unknown mlp %d", (int)c->mlp);
    if (!(c->norm_eps > 0)) return gqe_fail(GQE_ERR_ARG, "norm_eps must be positive, got %g", (double)c->norm_eps);
    if (!(c->init_std > 0)) return gqe_fail(GQE_ERR_ARG, "init_std must be positive, got %g", (double)c->init_std);
    /* Sizes from the config, checked before anything is allocated: the
     * largest weights and the activations of one sequence. */
    if (c->mlp_hidden == 0 && !gqe_mul_ok(4, c->dim, &c->mlp_hidden))
        return gqe_fail(GQE_ERR_ARG, "dim %lld is too large (the MLP would be 4 x dim wide)", (long long)c->dim);
    int64_t n;
    const int64_t emb[] = {c->vocab, c->dim}, mlp[] = {c->mlp == GQE_MLP_SWIGLU ? 2 : 1, c->mlp_hidden, c->dim};
    const int64_t seq[] = {c->max_seq, c->dim}, heads[] = {c->attn.experts, c->attn.head_dim, c->dim};
    GQE_TRY(gqe_size_product("vocab x dim (the embedding)", 2, emb, &n));
    GQE_TRY(gqe_size_product("mlp_hidden x dim (an MLP weight)", 3, mlp, &n));
    GQE_TRY(gqe_size_product("max_seq x dim (one sequence's activations)", 2, seq, &n));
    GQE_TRY(gqe_size_product("experts x head_dim x dim (the query projection)", 3, heads, &n));
    c->attn.dim = c->dim;
    return gqe_attn_config_validate(&c->attn);
}

/* Documented in the README: N(0, std) everywhere, residual output
 * projections scaled by 1/sqrt(2L), router zero (balanced router: N(0, std),
 * see gqe_attn_init_weights), norms one. Streams 100 + 16 l .. + 7 per layer. */
static gqe_status init_weights(gqe_lm *lm) {
    const gqe_lm_config *c = &lm->cfg;
    float std = c->init_std, out_std = std / sqrtf(2.0f * (float)c->layers);
    uint64_t seed = c->seed;
    GQE_TRY(gqe_fill_normal(&lm->wte, seed, 1, std));
    GQE_TRY(gqe_fill(&lm->normf, 1.0f));
    if (!c->tied) GQE_TRY(gqe_fill_normal(&lm->head, seed, 2, std));
    for (int64_t l = 0; l < c->layers; l++) {
        block *b = &lm->blocks[l];
        uint64_t s = 100 + 16 * (uint64_t)l;
        GQE_TRY(gqe_fill(&b->norm1, 1.0f));
        GQE_TRY(gqe_fill(&b->norm2, 1.0f));
        GQE_TRY(gqe_fill_normal(&b->fc_in, seed, s, std));
        GQE_TRY(gqe_fill_normal(&b->fc_out, seed, s + 1, out_std));
        GQE_TRY(gqe_attn_init_weights(b->attn, seed, s + 2, std, out_std));
    }
    return GQE_OK;
}

gqe_status gqe_lm_create(gqe_lm **out, const gqe_lm_config *cfg_in, gqe_device dev) {
    gqe_lm_config cfg = *cfg_in;
    GQE_TRY(gqe_lm_config_validate(&cfg));
    gqe_lm *lm = calloc(1, sizeof *lm);
    if (!lm) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    lm->cfg = cfg;
    lm->dev = dev;
    lm->H = cfg.mlp_hidden;
    lm->pre_width = cfg.mlp == GQE_MLP_SWIGLU ? 2 * lm->H : lm->H;
    gqe_paramset_init(&lm->ps);
    lm->blocks = calloc((size_t)cfg.layers, sizeof *lm->blocks);
    lm->h = calloc((size_t)cfg.layers + 1, sizeof *lm->h);
    if (!lm->blocks || !lm->h) { gqe_lm_destroy(lm); return gqe_fail(GQE_ERR_NOMEM, "out of host memory"); }
    gqe_status st = GQE_OK;
    char name[128];
    int64_t d = cfg.dim;
#define ADD(nm, role, v, g, c, ...) do { if (st == GQE_OK) { int64_t shp[] = {__VA_ARGS__}; \
        st = gqe_paramset_add(&lm->ps, nm, (int)(sizeof shp / sizeof *shp), shp, role, v, g, c); } } while (0)
    ADD("tok_emb.weight", GQE_PARAM_EMBEDDING, &lm->wte, &lm->dwte, &lm->cwte, cfg.vocab, d);
    for (int64_t l = 0; l < cfg.layers && st == GQE_OK; l++) {
        block *b = &lm->blocks[l];
        snprintf(name, sizeof name, "blocks.%lld.attn_norm.weight", (long long)l);
        ADD(name, GQE_PARAM_NORM, &b->norm1, &b->dnorm1, NULL, d);
        snprintf(name, sizeof name, "blocks.%lld.attn.", (long long)l);
        if (st == GQE_OK) st = gqe_attn_create(&b->attn, &cfg.attn, &lm->ps, name);
        if (st == GQE_OK) {
            gqe_attn_borrow_input(b->attn, true);   /* n1 lives until backward */
            gqe_attn_share_scratch(b->attn, &lm->attn_scratch);
        }
        snprintf(name, sizeof name, "blocks.%lld.mlp_norm.weight", (long long)l);
        ADD(name, GQE_PARAM_NORM, &b->norm2, &b->dnorm2, NULL, d);
        snprintf(name, sizeof name, cfg.mlp == GQE_MLP_SWIGLU ? "blocks.%lld.mlp.gate_up.weight" : "blocks.%lld.mlp.fc_in.weight", (long long)l);
        ADD(name, GQE_PARAM_WEIGHT, &b->fc_in, &b->dfc_in, &b->cfc_in, lm->pre_width, d);
        snprintf(name, sizeof name, "blocks.%lld.mlp.fc_out.weight", (long long)l);
        ADD(name, GQE_PARAM_WEIGHT, &b->fc_out, &b->dfc_out, &b->cfc_out, d, lm->H);
    }
    ADD("norm.weight", GQE_PARAM_NORM, &lm->normf, &lm->dnormf, NULL, d);
    if (!cfg.tied) ADD("lm_head.weight", GQE_PARAM_WEIGHT, &lm->head, &lm->dhead, &lm->chead, cfg.vocab, d);
#undef ADD
    if (st == GQE_OK) st = gqe_paramset_alloc(&lm->ps, dev);
    if (st == GQE_OK && cfg.tied) { lm->head = lm->wte; lm->dhead = lm->dwte; }
    if (st == GQE_OK) st = init_weights(lm);
    if (st != GQE_OK) { gqe_lm_destroy(lm); return st; }
    *out = lm;
    return GQE_OK;
}

void gqe_lm_destroy(gqe_lm *lm) {
    if (!lm) return;
    if (lm->blocks)
        for (int64_t l = 0; l < lm->cfg.layers; l++) gqe_attn_destroy(lm->blocks[l].attn);
    free(lm->blocks);
    free(lm->h);
    free(lm->host_targets);
    free(lm->host_stats);
    free(lm->staged);
    free(lm->block_span);
    gqe_arena_free(&lm->arena);
    gqe_arena_free(&lm->attn_scratch);
    gqe_paramset_free(&lm->ps);
    free(lm);
}

gqe_status gqe_lm_set_precision(gqe_lm *lm, const char *precision) { return gqe_paramset_set_precision(&lm->ps, precision); }
const char *gqe_lm_precision(const gqe_lm *lm) { return gqe_paramset_precision(&lm->ps); }

const gqe_lm_config *gqe_lm_get_config(const gqe_lm *lm) { return &lm->cfg; }
gqe_paramset *gqe_lm_params(gqe_lm *lm) { return &lm->ps; }
int64_t gqe_lm_num_params(const gqe_lm *lm) {
    int64_t n = 0;
    for (int i = 0; i < lm->ps.count; i++) n += (int64_t)lm->ps.items[i].numel;
    return n;
}
int64_t gqe_lm_layers(const gqe_lm *lm) { return lm->cfg.layers; }
gqe_attn *gqe_lm_attn(gqe_lm *lm, int64_t layer) {
    return layer >= 0 && layer < lm->cfg.layers ? lm->blocks[layer].attn : NULL;
}
/* After a forward with targets the buffer holds the logits' gradient. */
gqe_tensor *gqe_lm_logits(gqe_lm *lm) { return lm->have_forward && !lm->have_targets ? &lm->logits : NULL; }
float gqe_lm_ce_loss(const gqe_lm *lm) { return lm->ce; }
const gqe_tensor *gqe_lm_token_losses(const gqe_lm *lm) { return &lm->losses; }

gqe_status gqe_lm_accuracy(gqe_lm *lm, int64_t *correct, int64_t *counted) {
    if (!lm->have_forward || !lm->have_targets)
        return gqe_fail(GQE_ERR_ARG, "accuracy needs a forward pass with targets first, before backward");
    /* hits came with the loss (gqe_cross_entropy_fused) */
    double sum = 0;
    GQE_TRY(gqe_sum(&lm->hits, &sum));
    *correct = (int64_t)llround(sum);
    *counted = lm->n_valid;
    return GQE_OK;
}

/* Counts and probability sums of every GQE layer, side by side. */
static int64_t stats_numel(const gqe_lm *lm) {
    int64_t n = 0;
    for (int64_t l = 0; l < lm->cfg.layers; l++) n += 2 * gqe_attn_stats_size(lm->blocks[l].attn);
    return n;
}
/* Layer l's counts and sums in lm->stats (n values each, from *off, which
 * moves past them); n = 0 for a layer without routing. */
static int64_t stats_views(gqe_lm *lm, int64_t l, int64_t *off, gqe_tensor *counts, gqe_tensor *psum) {
    int64_t n = gqe_attn_stats_size(lm->blocks[l].attn);
    if (n) {
        *counts = gqe_tensor_view(&lm->stats, (size_t)*off, 1, &n);
        *psum = gqe_tensor_view(&lm->stats, (size_t)(*off + n), 1, &n);
    }
    *off += 2 * n;
    return n;
}

static void plan(gqe_lm *lm, int64_t B, int64_t T) {
    gqe_arena *a = &lm->arena;
    int64_t R = B * T, d = lm->cfg.dim;
    /* Matmul operands take the compute dtype; the residual stream, norms'
     * statistics and the gradients that accumulate stay f32. */
    gqe_dtype C = lm->cdt;
    lm->tokens = gqe_arena_take(a, GQE_I32, B, T, 0, 0);
    lm->targets = gqe_arena_take(a, GQE_I32, B, T, 0, 0);
    for (int64_t l = 0; l <= lm->cfg.layers; l++) lm->h[l] = gqe_arena_take(a, GQE_F32, B, T, d, 0);
    for (int64_t l = 0; l < lm->cfg.layers; l++) {
        block *b = &lm->blocks[l];
        b->n1 = gqe_arena_take(a, C, B, T, d, 0);
        b->rstd1 = gqe_arena_take(a, GQE_F32, R, 0, 0, 0);
        b->h_mid = gqe_arena_take(a, GQE_F32, R, d, 0, 0);
        b->n2 = gqe_arena_take(a, C, R, d, 0, 0);
        b->rstd2 = gqe_arena_take(a, GQE_F32, R, 0, 0, 0);
        b->pre = gqe_arena_take(a, C, R, lm->pre_width, 0, 0);
    }
    /* y (a branch's output, forward) and dn (a norm's output gradient,
     * backward) are each written by one matmul and read once by the norm
     * that follows: they take the compute dtype, as autocast's linear
     * outputs do, which halves their bytes in both ops in mixed precision.
     * dn stays f32 where an attention layer would add several matmuls
     * into it (bf16 would round between the additions). */
    gqe_dtype DN = C;
    for (int64_t l = 0; l < lm->cfg.layers; l++)
        if (!gqe_attn_writes_dx_once(lm->blocks[l].attn)) DN = GQE_F32;
    lm->y = gqe_arena_take(a, C, B, T, d, 0);
    lm->nf = gqe_arena_take(a, C, R, d, 0, 0);
    lm->rstd_f = gqe_arena_take(a, GQE_F32, R, 0, 0, 0);
    lm->logits = gqe_arena_take(a, C, B, T, lm->cfg.vocab, 0);
    lm->losses = gqe_arena_take(a, GQE_F32, R, 0, 0, 0);
    lm->hits = gqe_arena_take(a, GQE_F32, R, 0, 0, 0);
    lm->dh = gqe_arena_take(a, GQE_F32, B, T, d, 0);
    lm->dn = gqe_arena_take(a, DN, B, T, d, 0);
    lm->act = gqe_arena_take(a, C, R, lm->H, 0, 0);
    lm->dact = gqe_arena_take(a, C, R, lm->H, 0, 0);
    lm->dpre = gqe_arena_take(a, C, R, lm->pre_width, 0, 0);
    if (C != GQE_F32) lm->dh16 = gqe_arena_take(a, C, B, T, d, 0);
    int64_t ns = stats_numel(lm);
    if (ns) lm->stats = gqe_arena_take(a, GQE_F32, ns, 0, 0, 0);
}

static gqe_status ensure_shape(gqe_lm *lm, int64_t B, int64_t T) {
    gqe_dtype cdt = gqe_paramset_compute_dtype(&lm->ps);
    if (lm->arena.buf.storage && lm->B == B && lm->T == T && lm->cdt == cdt) return GQE_OK;
    lm->cdt = cdt;
    gqe_arena_begin(&lm->arena, lm->dev);
    plan(lm, B, T);
    GQE_TRY(gqe_arena_commit(&lm->arena));
    plan(lm, B, T);
    int32_t *ht = realloc(lm->host_targets, (size_t)(B * T) * sizeof *ht);
    if (!ht) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    lm->host_targets = ht;
    if (!lm->staged) {
        lm->staged = calloc((size_t)lm->cfg.layers, sizeof *lm->staged);
        lm->host_stats = malloc((size_t)(stats_numel(lm) + 1) * sizeof *lm->host_stats);
        if (!lm->staged || !lm->host_stats) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    }
    lm->B = B;
    lm->T = T;
    return GQE_OK;
}


/* act = gelu(pre) or swiglu(pre). Only pre is kept per layer: recomputing
 * act in backward costs one elementwise pass and saves R x H per layer. */
static gqe_status mlp_activation(gqe_lm *lm, block *b) {
    if (lm->cfg.mlp == GQE_MLP_SWIGLU) return gqe_swiglu_forward(&lm->act, &b->pre);
    return gqe_gelu_forward(&lm->act, &b->pre);
}

static gqe_status mlp_forward(gqe_lm *lm, block *b, gqe_tensor *out, int64_t R) {
    gqe_tensor out2 = lm_rows(out, R);
    GQE_TRY(gqe_matmul(&b->pre, &b->n2, &b->cfc_in, false, true, 1.0f, 0.0f));
    GQE_TRY(mlp_activation(lm, b));
    return gqe_matmul(&out2, &lm->act, &b->cfc_out, false, true, 1.0f, 0.0f);
}

/* Tied heads read the embedding's compute copy, which precision changes rebind. */
static const gqe_tensor *head_compute(const gqe_lm *lm) { return lm->cfg.tied ? &lm->cwte : &lm->chead; }

gqe_status gqe_lm_check_ids(const gqe_tensor *t, const char *what, int64_t B, int64_t T) {
    char s[64];
    if (t->dtype != GQE_I32 || gqe_tensor_numel(t) != B * T)
        return gqe_fail(GQE_ERR_SHAPE, "%s must be i32 with B*T = %lld elements, got %s %s", what,
                        (long long)(B * T), gqe_dtype_name(t->dtype), gqe_tensor_shape_str(t, s, 64));
    return GQE_OK;
}

/* Between layers: a pending interrupt abandons the pass. The random
 * routers' counters go back to where this forward found them, so the step
 * can be run again from a checkpoint with the same routing. */
static gqe_status check_interrupt(gqe_lm *lm) {
    int sig = gqe_interrupt_pending();
    /* Data-parallel ranks stop together after a step: one abandoning its
     * pass would leave the others waiting in a collective. */
    if (!sig || lm->collective) return GQE_OK;
    for (int64_t l = 0; l < lm->cfg.layers; l++) gqe_attn_set_route_calls(lm->blocks[l].attn, lm->blocks[l].route_mark);
    lm->have_forward = false;
    return gqe_fail(GQE_ERR_INTERRUPTED, "interrupted by signal %d: the pass was abandoned", sig);
}

gqe_status gqe_lm_forward(gqe_lm *lm, const gqe_tensor *tokens, const gqe_tensor *targets,
                          float aux_coef, float *loss, float *aux) {
    char s[64];
    if (tokens->ndim != 2) return gqe_fail(GQE_ERR_SHAPE, "tokens must be (B, T), got %s", gqe_tensor_shape_str(tokens, s, 64));
    int64_t B = tokens->shape[0], T = tokens->shape[1], R = B * T, V = lm->cfg.vocab;
    if (B < 1 || T < 1) return gqe_fail(GQE_ERR_SHAPE, "tokens must be (B, T) with B, T >= 1, got %s", gqe_tensor_shape_str(tokens, s, 64));
    if (T > lm->cfg.max_seq)
        return gqe_fail(GQE_ERR_ARG, "sequence length %lld exceeds model.max_seq %lld", (long long)T, (long long)lm->cfg.max_seq);
    GQE_TRY(gqe_lm_check_ids(tokens, "tokens", B, T));
    if (targets) GQE_TRY(gqe_lm_check_ids(targets, "targets", B, T));
    GQE_TRY(ensure_shape(lm, B, T));
    lm->have_forward = false;
    /* Every forward: the optimizer, a load or a user's parameter view may
     * have changed the weights, and no flag could see all of them. */
    GQE_TRY(gqe_paramset_refresh_compute(&lm->ps));
    GQE_TRY(gqe_tensor_copy(&lm->tokens, tokens));
    /* Range-check the ids on the host: an out-of-range id would read outside the table. */
    GQE_TRY(gqe_tensor_copy(&(gqe_tensor){.dtype = GQE_I32, .device = GQE_CPU, .ndim = 1, .shape = {R, 1, 1, 1},
                                          .storage = &(gqe_storage){lm->host_targets, (size_t)R * 4, GQE_CPU, 1, false}},
                            tokens));
    for (int64_t i = 0; i < R; i++)
        if (lm->host_targets[i] < 0 || lm->host_targets[i] >= V)
            return gqe_fail(GQE_ERR_ARG, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                            lm->host_targets[i], (long long)i, (long long)V);
    lm->have_targets = targets != NULL;
    lm->n_valid = 0;
    if (targets) {
        GQE_TRY(gqe_tensor_copy(&lm->targets, targets));
        GQE_TRY(gqe_tensor_copy(&(gqe_tensor){.dtype = GQE_I32, .device = GQE_CPU, .ndim = 1, .shape = {R, 1, 1, 1},
                                              .storage = &(gqe_storage){lm->host_targets, (size_t)R * 4, GQE_CPU, 1, false}},
                                targets));
        for (int64_t i = 0; i < R; i++) {
            if (lm->host_targets[i] >= V)
                return gqe_fail(GQE_ERR_ARG, "target id %d at position %lld is outside the vocabulary [0, %lld)",
                                lm->host_targets[i], (long long)i, (long long)V);
            lm->n_valid += lm->host_targets[i] >= 0;
        }
    }
    gqe_tensor tok1 = gqe_tensor_view4(&lm->tokens, 0, R, 0, 0, 0);
    gqe_tensor h0 = lm_rows(&lm->h[0], R);
    GQE_TRY(gqe_embedding_forward(&h0, &lm->wte, &tok1));
    float aux_sum = 0, aux_train = 0;
    float eps = lm->cfg.norm_eps;
    int64_t L = lm->cfg.layers;
    /* Each residual add runs fused with the norm that reads its sum: the
     * block's second norm, the next block's first, or the final norm. */
    if (L > 0) {
        gqe_tensor n1 = lm_rows(&lm->blocks[0].n1, R);
        GQE_TRY(gqe_rmsnorm_forward(&n1, &lm->blocks[0].rstd1, &h0, &lm->blocks[0].norm1, eps));
    } else {
        GQE_TRY(gqe_rmsnorm_forward(&lm->nf, &lm->rstd_f, &h0, &lm->normf, eps));
    }
    for (int64_t l = 0; l < L; l++) lm->blocks[l].route_mark = gqe_attn_route_calls(lm->blocks[l].attn);
    for (int64_t l = 0; l < L; l++) {
        block *b = &lm->blocks[l];
        GQE_TRY(check_interrupt(lm));
        gqe_tensor hl = lm_rows(&lm->h[l], R), y = lm_rows(&lm->y, R);
        GQE_TRY(gqe_attn_forward(b->attn, &lm->y, &b->n1, &lm->tokens));
        GQE_TRY(gqe_add_rmsnorm_forward(&b->h_mid, &b->n2, &b->rstd2, &hl, &y, &b->norm2, eps));
        GQE_TRY(mlp_forward(lm, b, &lm->y, R));
        gqe_tensor hn = lm_rows(&lm->h[l + 1], R);
        if (l + 1 < L) {
            block *nb = &lm->blocks[l + 1];
            gqe_tensor n1 = lm_rows(&nb->n1, R);
            GQE_TRY(gqe_add_rmsnorm_forward(&hn, &n1, &nb->rstd1, &b->h_mid, &y, &nb->norm1, eps));
        } else {
            GQE_TRY(gqe_add_rmsnorm_forward(&hn, &lm->nf, &lm->rstd_f, &b->h_mid, &y, &lm->normf, eps));
        }
    }
    /* The layers' routing statistics into one buffer, queued behind the
     * forward: one read after the loss serves every layer. */
    for (int64_t l = 0, off = 0; l < lm->cfg.layers; l++) {
        gqe_tensor c, p;
        lm->staged[l] = false;
        if (stats_views(lm, l, &off, &c, &p)) GQE_TRY(gqe_attn_stats_stage(lm->blocks[l].attn, &c, &p, &lm->staged[l]));
    }
    gqe_tensor lg = lm_rows(&lm->logits, R);
    GQE_TRY(gqe_matmul(&lg, &lm->nf, head_compute(lm), false, true, 1.0f, 0.0f));
    lm->aux_coef = aux_coef;
    lm->ce = NAN;
    lm->loss = NAN;
    if (targets) {
        /* Loss, top-1 hits and the logits' gradient (written over them) in
         * one read of the logits; backward starts from the gradient. */
        gqe_tensor tg1 = gqe_tensor_view4(&lm->targets, 0, R, 0, 0, 0);
        float scale = lm->n_valid ? 1.0f / (float)lm->n_valid : 0.0f;
        GQE_TRY(gqe_cross_entropy_fused(&lg, &lm->losses, &lm->hits, &lg, &tg1, scale));
        double sum = 0;
        GQE_TRY(gqe_sum(&lm->losses, &sum));
        lm->ce = lm->n_valid ? (float)(sum / (double)lm->n_valid) : 0.0f;
    }
    /* Read after the loss: that read has already waited for the device, so
     * the layers' statistics cost no stall of their own. */
    bool any = false;
    for (int64_t l = 0; l < L; l++) any |= lm->staged[l];
    if (any) {
        /* data parallel: one collective for every layer, not two per layer */
        if (lm->stats_reduce) GQE_TRY(lm->stats_reduce(lm->stats_reduce_ctx, &lm->stats));
        GQE_TRY(gqe_tensor_read_f32(&lm->stats, lm->host_stats, (size_t)gqe_tensor_numel(&lm->stats)));
        const bool red = lm->stats_reduce != NULL;
        for (int64_t l = 0, off = 0; l < L; l++) {
            gqe_tensor c, p;
            const float *h = lm->host_stats + off;
            int64_t n = stats_views(lm, l, &off, &c, &p);
            if (lm->staged[l])
                GQE_TRY(gqe_attn_stats_take(lm->blocks[l].attn, h, h + n, red ? &c : NULL, red ? &p : NULL));
        }
    }
    for (int64_t l = 0; l < L; l++) {
        float la;
        GQE_TRY(gqe_attn_aux(lm->blocks[l].attn, &la));
        aux_sum += la;
        if (gqe_attn_aux_trains(lm->blocks[l].attn)) aux_train += la;
    }
    lm->aux = aux_sum;
    if (targets) lm->loss = lm->ce + aux_coef * aux_train;
    if (loss) *loss = lm->loss;
    if (aux) *aux = aux_sum;
    lm->have_forward = true;
    return GQE_OK;
}

/* The spans outside the blocks: the embedding before them, the final norm
 * and an untied head after them. */
static gqe_status rest_ready(gqe_lm *lm) {
    size_t first = lm->block_span[0], last = lm->block_span[2 * lm->cfg.layers - 1];
    if (first > 0) GQE_TRY(lm->grad_ready(lm->grad_ready_ctx, 0, first));
    if (last < lm->ps.numel) GQE_TRY(lm->grad_ready(lm->grad_ready_ctx, last, lm->ps.numel - last));
    return GQE_OK;
}

gqe_status gqe_lm_backward(gqe_lm *lm) {
    if (!lm->have_forward || !lm->have_targets)
        return gqe_fail(GQE_ERR_ARG, "backward needs a forward pass with targets first");
    int64_t B = lm->B, T = lm->T, R = B * T;
    gqe_tensor lg = lm_rows(&lm->logits, R);   /* dlogits: the forward's loss pass wrote them */
    gqe_tensor dh = lm_rows(&lm->dh, R), dn = lm_rows(&lm->dn, R);
    lm->have_forward = false;
    GQE_TRY(gqe_matmul(&dn, &lg, head_compute(lm), false, false, 1.0f, 0.0f));
    GQE_TRY(gqe_matmul(&lm->dhead, &lg, &lm->nf, true, false, 1.0f, 1.0f));
    GQE_TRY(gqe_fill(&dh, 0.0f));
    /* The residual gradient dh accumulates in f32; in mixed precision the
     * matmuls read one bf16 copy of it per branch, which each norm's
     * backward writes as it finishes dh. */
    bool mixed = lm->cdt != GQE_F32;
    gqe_tensor dy = mixed ? lm_rows(&lm->dh16, R) : dh;
    gqe_tensor *dy_copy = mixed ? &dy : NULL;
    gqe_tensor hL = lm_rows(&lm->h[lm->cfg.layers], R);
    GQE_TRY(gqe_rmsnorm_backward(&dh, &lm->dnormf, &dn, &hL, &lm->normf, &lm->rstd_f, dy_copy));
    for (int64_t l = lm->cfg.layers - 1; l >= 0; l--) {
        block *b = &lm->blocks[l];
        GQE_TRY(check_interrupt(lm));
        /* MLP branch: dh is the gradient of its output (residual). */
        GQE_TRY(gqe_matmul(&lm->dact, &dy, &b->cfc_out, false, false, 1.0f, 0.0f));
        /* GELU's backward recomputes act in the same pass (see mlp_activation) */
        if (lm->cfg.mlp == GQE_MLP_SWIGLU) {
            GQE_TRY(mlp_activation(lm, b));
            GQE_TRY(gqe_swiglu_backward(&lm->dpre, &b->pre, &lm->dact));
        } else {
            GQE_TRY(gqe_gelu_backward(&lm->dpre, &b->pre, &lm->dact, &lm->act));
        }
        GQE_TRY(gqe_matmul(&b->dfc_out, &dy, &lm->act, true, false, 1.0f, 1.0f));
        GQE_TRY(gqe_matmul(&b->dfc_in, &lm->dpre, &b->n2, true, false, 1.0f, 1.0f));
        GQE_TRY(gqe_matmul(&dn, &lm->dpre, &b->cfc_in, false, false, 1.0f, 0.0f));
        GQE_TRY(gqe_rmsnorm_backward(&dh, &b->dnorm2, &dn, &b->h_mid, &b->norm2, &b->rstd2, dy_copy));
        /* Attention branch. */
        GQE_TRY(gqe_attn_backward(b->attn, &lm->dn, mixed ? &lm->dh16 : &lm->dh, lm->aux_coef));
        gqe_tensor hl = lm_rows(&lm->h[l], R);
        /* the embedding's backward reads dh itself: no copy after layer 0 */
        GQE_TRY(gqe_rmsnorm_backward(&dh, &b->dnorm1, &dn, &hl, &b->norm1, &b->rstd1, l > 0 ? dy_copy : NULL));
        if (lm->grad_ready)
            GQE_TRY(lm->grad_ready(lm->grad_ready_ctx, lm->block_span[2 * l], lm->block_span[2 * l + 1] - lm->block_span[2 * l]));
    }
    gqe_tensor tok1 = gqe_tensor_view4(&lm->tokens, 0, R, 0, 0, 0);
    GQE_TRY(gqe_embedding_backward(&lm->dwte, &dh, &tok1));
    return lm->grad_ready ? rest_ready(lm) : GQE_OK;
}

gqe_status gqe_lm_set_grad_ready(gqe_lm *lm, gqe_grad_ready_fn fn, void *ctx) {
    if (fn && !lm->block_span) {
        int64_t L = lm->cfg.layers;
        size_t *span = malloc((size_t)(2 * L) * sizeof *span);
        if (!span) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        for (int64_t l = 0; l < L; l++) { span[2 * l] = SIZE_MAX; span[2 * l + 1] = 0; }
        /* parameters are packed in declaration order: a block's are one span */
        for (int i = 0; i < lm->ps.count; i++) {
            const gqe_param *p = &lm->ps.items[i];
            long long l;
            if (sscanf(p->name, "blocks.%lld.", &l) != 1 || l < 0 || l >= L) continue;
            if (p->offset < span[2 * l]) span[2 * l] = p->offset;
            if (p->offset + p->numel > span[2 * l + 1]) span[2 * l + 1] = p->offset + p->numel;
        }
        lm->block_span = span;
    }
    lm->grad_ready = fn;
    lm->grad_ready_ctx = ctx;
    return GQE_OK;
}

void gqe_lm_set_stats_reduce(gqe_lm *lm, gqe_stats_reduce_fn fn, void *ctx) {
    lm->collective = fn != NULL;
    lm->stats_reduce = fn;
    lm->stats_reduce_ctx = ctx;
    /* the layers keep it for statistics read outside the LM's forward */
    for (int64_t l = 0; l < lm->cfg.layers; l++) gqe_attn_set_stats_reduce(lm->blocks[l].attn, fn, ctx);
}

gqe_status gqe_lm_after_step(gqe_lm *lm) { return gqe_lm_after_step_loads(lm, NULL); }

gqe_status gqe_lm_after_step_loads(gqe_lm *lm, const float *loads) {
    const gqe_attn_config *a = gqe_attn_get_config(lm->blocks[0].attn);
    int64_t GM = a->groups * (a->experts / a->groups);
    for (int64_t l = 0; l < lm->cfg.layers; l++)
        GQE_TRY(gqe_attn_after_step_load(lm->blocks[l].attn, loads ? loads + l * GM : NULL));
    return GQE_OK;
}

double gqe_lm_flops_per_token(const gqe_lm *lm, int64_t seq) {
    /* Matmul FLOPs as computed (every expert's query projection included),
     * attention over an average causal context of (seq + 1) / 2, times 3
     * for forward plus backward. */
    const gqe_attn_config *a = gqe_attn_get_config(lm->blocks[0].attn);
    double d = (double)lm->cfg.dim, dh = (double)a->head_dim;
    double S = (double)gqe_attn_slots(a), N = (double)a->experts, G = (double)a->groups;
    double proj = d * (N * dh + 2 * G * dh + S * dh);
    if (a->kind == GQE_ATTN_GQE) proj += d * N + (a->variant == GQE_VARIANT_GQE ? d * dh : 0);
    double mlp = d * (double)lm->pre_width + d * (double)lm->H;
    double per_layer = 2 * (proj + mlp);
    double ctx = a->causal ? ((double)seq + 1) / 2 : (double)seq;
    per_layer += 4 * dh * ctx * (double)gqe_attn_active_heads(a);
    double head = 2 * d * (double)lm->cfg.vocab;
    return 3 * ((double)lm->cfg.layers * per_layer + head);
}
