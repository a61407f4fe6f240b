/* Generation: prefill and step-by-step decoding through each layer's KV
 * cache, and sampling (greedy, temperature, top-k) from Philox. */
#include "lm_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

gqe_status gqe_lm_cache_reset(gqe_lm *lm, int64_t batch) {
    for (int64_t l = 0; l < lm->cfg.layers; l++)
        GQE_TRY(gqe_attn_cache_reset(lm->blocks[l].attn, batch, lm->cfg.max_seq));
    return GQE_OK;
}

gqe_status gqe_lm_forward_cached(gqe_lm *lm, const gqe_tensor *tokens, gqe_tensor *logits_out) {
    int64_t T = gqe_tensor_numel(tokens), d = lm->cfg.dim, V = lm->cfg.vocab;
    GQE_TRY(gqe_lm_check_ids(tokens, "tokens", 1, T));
    if (gqe_tensor_numel(logits_out) != T * V)
        return gqe_fail(GQE_ERR_SHAPE, "forward_cached: logits must hold T*V = %lld values", (long long)(T * V));
    gqe_arena tmp = {0};
    gqe_tensor tok, h, n, y, pre, act, rstd, lg;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) gqe_arena_begin(&tmp, lm->dev); else GQE_TRY(gqe_arena_commit(&tmp));
        tok = gqe_arena_take(&tmp, GQE_I32, T, 0, 0, 0);
        h = gqe_arena_take(&tmp, GQE_F32, T, d, 0, 0);
        n = gqe_arena_take(&tmp, GQE_F32, 1, T, d, 0);
        y = gqe_arena_take(&tmp, GQE_F32, 1, T, d, 0);
        pre = gqe_arena_take(&tmp, GQE_F32, T, lm->pre_width, 0, 0);
        act = gqe_arena_take(&tmp, GQE_F32, T, lm->H, 0, 0);
        rstd = gqe_arena_take(&tmp, GQE_F32, T, 0, 0, 0);
        lg = gqe_arena_take(&tmp, GQE_F32, T, V, 0, 0);
    }
    gqe_status st = GQE_OK;
#define TRY(e) do { if ((st = (e)) != GQE_OK) goto done; } while (0)
    /* attention reads the compute copies, as in training: round them from
     * the master weights an optimizer step may have changed */
    TRY(gqe_paramset_refresh_compute(&lm->ps));
    TRY(gqe_tensor_copy(&tok, tokens));
    TRY(gqe_embedding_forward(&h, &lm->wte, &tok));
    gqe_tensor n2 = lm_rows(&n, T), y2 = lm_rows(&y, T);
    gqe_tensor tok2 = gqe_tensor_view4(&tok, 0, 1, T, 0, 0);
    for (int64_t l = 0; l < lm->cfg.layers; l++) {
        block *b = &lm->blocks[l];
        TRY(gqe_rmsnorm_forward(&n2, &rstd, &h, &b->norm1, lm->cfg.norm_eps));
        TRY(gqe_attn_forward_cached(b->attn, &y, &n, &tok2));
        TRY(gqe_add(&h, &h, &y2));
        TRY(gqe_rmsnorm_forward(&n2, &rstd, &h, &b->norm2, lm->cfg.norm_eps));
        TRY(gqe_matmul(&pre, &n2, &b->fc_in, false, true, 1.0f, 0.0f));
        if (lm->cfg.mlp == GQE_MLP_SWIGLU) TRY(gqe_swiglu_forward(&act, &pre));
        else TRY(gqe_gelu_forward(&act, &pre));
        TRY(gqe_matmul(&y2, &act, &b->fc_out, false, true, 1.0f, 0.0f));
        TRY(gqe_add(&h, &h, &y2));
    }
    TRY(gqe_rmsnorm_forward(&n2, &rstd, &h, &lm->normf, lm->cfg.norm_eps));
    TRY(gqe_matmul(&lg, &n2, &lm->head, false, true, 1.0f, 0.0f));
    TRY(gqe_tensor_copy(logits_out, &lg));
#undef TRY
done:
    gqe_arena_free(&tmp);
    return st;
}

/* Temperature 0 is greedy; top_k keeps the k largest logits. */
static int32_t sample(const float *logits, int64_t V, const gqe_sample_opts *o, uint64_t step, float *work) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    if (!(o->temperature > 0)) return (int32_t)best;
    float cut = -INFINITY;
    if (o->top_k > 0 && o->top_k < V) {
        /* the k-th largest logit, by repeated selection (V is small next to a step) */
        memcpy(work, logits, (size_t)V * sizeof *work);
        for (int64_t j = 0; j < o->top_k; j++) {
            int64_t m = 0;
            for (int64_t i = 1; i < V; i++) if (work[i] > work[m]) m = i;
            cut = work[m];
            work[m] = -INFINITY;
        }
    }
    double total = 0;
    for (int64_t i = 0; i < V; i++) {
        work[i] = logits[i] >= cut ? expf((logits[i] - logits[best]) / o->temperature) : 0.0f;
        total += work[i];
    }
    double u = gqe_rng_uniform_at(o->seed, 0x5A3D1E, step) * total;
    for (int64_t i = 0; i < V; i++) {
        u -= work[i];
        if (u < 0) return (int32_t)i;
    }
    return (int32_t)best;
}

gqe_status gqe_sample_opts_validate(const gqe_sample_opts *o) {
    if (!(o->temperature >= 0) || isinf(o->temperature))
        return gqe_fail(GQE_ERR_ARG, "generate: temperature must be finite and >= 0 (0 is greedy), got %g",
                        (double)o->temperature);
    if (o->top_k < 0)
        return gqe_fail(GQE_ERR_ARG, "generate: top_k must be >= 0 (0 keeps every token), got %lld", (long long)o->top_k);
    return GQE_OK;
}

gqe_status gqe_lm_generate(gqe_lm *lm, const int32_t *prompt, int64_t P, int64_t n,
                           const gqe_sample_opts *opts, int32_t *out) {
    int64_t V = lm->cfg.vocab;
    if (P < 1) return gqe_fail(GQE_ERR_ARG, "generate: the prompt needs at least one token");
    /* Compared without adding, so a huge n cannot wrap around the bound. */
    if (n < 0) return gqe_fail(GQE_ERR_ARG, "generate: number of new tokens must be >= 0, got %lld", (long long)n);
    if (P > lm->cfg.max_seq || n > lm->cfg.max_seq - P)
        return gqe_fail(GQE_ERR_ARG, "generate: prompt (%lld) + new tokens (%lld) exceed model.max_seq %lld",
                        (long long)P, (long long)n, (long long)lm->cfg.max_seq);
    GQE_TRY(gqe_sample_opts_validate(opts));
    for (int64_t i = 0; i < P; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return gqe_fail(GQE_ERR_ARG, "generate: prompt token %d is outside the vocabulary [0, %lld)", prompt[i], (long long)V);
    GQE_TRY(gqe_lm_cache_reset(lm, 1));
    float *logits = malloc((size_t)(P * V) * sizeof *logits), *work = malloc((size_t)V * sizeof *work);
    if (!logits || !work) { free(logits); free(work); return gqe_fail(GQE_ERR_NOMEM, "out of host memory"); }
    memcpy(out, prompt, (size_t)P * sizeof *out);
    gqe_status st = GQE_OK;
    int64_t fed = 0, len = P;
    for (int64_t step = 0; step < n && st == GQE_OK; step++) {
        int64_t T = len - fed;
        gqe_tensor tok = {.dtype = GQE_I32, .device = GQE_CPU, .ndim = 2, .shape = {1, T, 1, 1},
                          .storage = &(gqe_storage){out + fed, (size_t)T * 4, GQE_CPU, 1, false}};
        gqe_tensor lg = {.dtype = GQE_F32, .device = GQE_CPU, .ndim = 2, .shape = {T, V, 1, 1},
                         .storage = &(gqe_storage){logits, (size_t)(T * V) * 4, GQE_CPU, 1, false}};
        st = gqe_lm_forward_cached(lm, &tok, &lg);
        if (st != GQE_OK) break;
        fed = len;
        out[len++] = sample(logits + (T - 1) * V, V, opts, (uint64_t)step, work);
        if (opts->on_token && opts->on_token(opts->on_token_ctx, out[len - 1]) != 0)
            st = gqe_fail(GQE_ERR_INTERRUPTED, "generate: stopped by the token callback after %lld tokens", (long long)step + 1);
    }
    free(logits);
    free(work);
    return st;
}
