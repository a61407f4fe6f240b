/* Decoding with a KV cache that holds only the G dense KV heads: the shared
 * head's K and V are means of the cached ones, recomputed per call. */
#include "attn_internal.h"
#include <math.h>
#include <string.h>

gqe_status gqe_attn_cache_reset(gqe_attn *a, int64_t batch, int64_t max_len) {
    if (batch != 1) return gqe_fail(GQE_ERR_ARG, "the KV cache decodes one sequence at a time (batch 1), got %lld", (long long)batch);
    if (max_len <= 0) return gqe_fail(GQE_ERR_ARG, "cache length must be positive");
    if (a->cache_max != max_len || !a->kcache.storage) {
        gqe_tensor_free(&a->kcache);
        gqe_tensor_free(&a->vcache);
        GQE_TRY(gqe_tensor_zeros(&a->kcache, GQE_F32, a->wq.device, 4, (int64_t[]){1, max_len, a->G, a->dh}));
        GQE_TRY(gqe_tensor_zeros(&a->vcache, GQE_F32, a->wq.device, 4, (int64_t[]){1, max_len, a->G, a->dh}));
    }
    a->cache_max = max_len;
    a->cache_len = 0;
    return GQE_OK;
}

/* Decoding step: new positions attend to everything cached. Temporaries are
 * allocated per call: decoding is not the training hot path. */
gqe_status gqe_attn_forward_cached(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens) {
    if (!a->kcache.storage) return gqe_fail(GQE_ERR_ARG, "forward_cached: call cache_reset first");
    if (x->ndim != 3 || x->shape[0] != 1 || x->shape[2] != a->d)
        return gqe_fail(GQE_ERR_SHAPE, "forward_cached: x must be (1, T, %lld)", (long long)a->d);
    int64_t T = x->shape[1], P = a->cache_len + T, G = a->G, dh = a->dh, M = a->M;
    if (P > a->cache_max)
        return gqe_fail(GQE_ERR_ARG, "KV cache full: %lld + %lld positions exceed its length %lld",
                        (long long)a->cache_len, (long long)T, (long long)a->cache_max);
    gqe_device dev = a->wq.device;
    float scale = 1.0f / sqrtf((float)dh);
    gqe_arena tmp = {0};
    gqe_tensor xq, q, kn, vn, o, lse, logits, probs, idx, topv, slots, cat = {0}, w, mix, qs, kb, vb, os, lse_s, tok;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) gqe_arena_begin(&tmp, dev); else GQE_TRY(gqe_arena_commit(&tmp));
        xq = gqe_arena_take(&tmp, GQE_F32, T, a->d, 0, 0);
        q = gqe_arena_take(&tmp, GQE_F32, T, a->N * dh, 0, 0);
        kn = gqe_arena_take(&tmp, GQE_F32, T, G * dh, 0, 0);
        vn = gqe_arena_take(&tmp, GQE_F32, T, G * dh, 0, 0);
        o = gqe_arena_take(&tmp, GQE_F32, T, a->SK * dh, 0, 0);
        lse = gqe_arena_take(&tmp, GQE_F32, 1, a->SK, T, 0);
        logits = gqe_arena_take(&tmp, GQE_F32, T, G, M, 0);
        probs = gqe_arena_take(&tmp, GQE_F32, T, G, M, 0);
        idx = gqe_arena_take(&tmp, GQE_I32, T, G, a->k, 0);
        topv = gqe_arena_take(&tmp, GQE_F32, T, G, a->k, 0);
        slots = gqe_arena_take(&tmp, GQE_F32, T, a->SK * dh, 0, 0);
        cat = gqe_arena_take(&tmp, GQE_F32, T, a->S * dh, 0, 0);
        w = gqe_arena_take(&tmp, GQE_F32, T, a->SK, 0, 0);
        mix = gqe_arena_take(&tmp, GQE_F32, T, dh, 0, 0);
        qs = gqe_arena_take(&tmp, GQE_F32, T, dh, 0, 0);
        kb = gqe_arena_take(&tmp, GQE_F32, P, dh, 0, 0);
        vb = gqe_arena_take(&tmp, GQE_F32, P, dh, 0, 0);
        os = gqe_arena_take(&tmp, GQE_F32, T, dh, 0, 0);
        lse_s = gqe_arena_take(&tmp, GQE_F32, 1, 1, T, 0);
        tok = gqe_arena_take(&tmp, GQE_I32, T, 0, 0, 0);
    }
    gqe_status st = GQE_OK;
#define TRY(e) do { if ((st = (e)) != GQE_OK) goto done; } while (0)
    TRY(gqe_tensor_copy(&xq, x));
    if (tokens && tokens->storage) TRY(gqe_tensor_copy(&tok, tokens));
    TRY(gqe_attn_linear(&q, &xq, &a->wq));
    TRY(gqe_attn_linear(&kn, &xq, &a->wk));
    TRY(gqe_attn_linear(&vn, &xq, &a->wv));
    gqe_tensor q4 = view4(&q, 1, T, a->N, dh), kn4 = view4(&kn, 1, T, G, dh);
    /* GQE rotates only the slots it gathers, as the forward pass does */
    if (a->cfg.rope) {
        if (!attn_is_gqe(a)) TRY(gqe_rope_forward(&q4, a->cfg.rope_theta, a->cache_len));
        TRY(gqe_rope_forward(&kn4, a->cfg.rope_theta, a->cache_len));
    }
    gqe_tensor kc2 = view2(&a->kcache, 1, a->cache_max * G * dh), vc2 = view2(&a->vcache, 1, a->cache_max * G * dh);
    gqe_tensor kn2 = view2(&kn, 1, T * G * dh), vn2 = view2(&vn, 1, T * G * dh);
    TRY(gqe_copy_cols(&kc2, a->cache_len * G * dh, &kn2, 0, T * G * dh, false));
    TRY(gqe_copy_cols(&vc2, a->cache_len * G * dh, &vn2, 0, T * G * dh, false));
    gqe_tensor kc4 = view4(&a->kcache, 1, P, G, dh), vc4 = view4(&a->vcache, 1, P, G, dh);
    gqe_tensor y2 = view2(y, T, a->d);
    if (!attn_is_gqe(a)) {
        gqe_tensor o4 = view4(&o, 1, T, a->N, dh);
        TRY(gqe_attention_forward(&o4, &lse, &q4, &kc4, &vc4, a->cfg.causal, scale));
        TRY(gqe_attn_linear(&y2, &o, &a->wo));
        goto done;
    }
    TRY(gqe_attn_route(a, T, &xq, &logits, &probs, &idx, &topv, &tok));
    gqe_tensor q3 = view3(&q, T, a->N, dh), s3 = view3(&slots, T, a->SK, dh);
    gqe_tensor s4 = view4(&slots, 1, T, a->SK, dh), o4 = view4(&o, 1, T, a->SK, dh);
    if (a->cfg.rope) TRY(gqe_gather_slots_rope(&s4, &q3, &idx, a->cfg.rope_theta, a->cache_len));
    else TRY(gqe_gather_slots(&s3, &q3, &idx));
    TRY(gqe_attention_forward(&o4, &lse, &s4, &kc4, &vc4, a->cfg.causal, scale));
    gqe_tensor o3 = view3(&o, T, a->SK, dh), p2 = view2(&topv, T, a->SK);
    if (a->cfg.variant == GQE_VARIANT_HARD_CONCAT) {
        TRY(gqe_attn_linear(&y2, &o, &a->wo));
    } else if (a->cfg.variant == GQE_VARIANT_WEIGHTED_CONCAT) {
        gqe_tensor sc3 = view3(&slots, T, a->SK, dh); /* slots are spent: reuse */
        TRY(gqe_slot_scale_forward(&sc3, &o3, &p2));
        TRY(gqe_attn_linear(&y2, &slots, &a->wo));
    } else {
        int64_t w_a = a->SK * dh;
        TRY(gqe_copy_cols(&cat, 0, &o, 0, w_a, false));
        TRY(gqe_slot_mix_forward(&mix, &w, &o3, &p2, SLOT_EPS));
        TRY(gqe_copy_cols(&cat, w_a, &mix, 0, dh, false));
        TRY(gqe_attn_linear(&qs, &xq, &a->wqs));
        gqe_tensor qs4 = view4(&qs, 1, T, 1, dh);
        if (a->cfg.rope) TRY(gqe_rope_forward(&qs4, a->cfg.rope_theta, a->cache_len));
        gqe_tensor kc3 = view3(&a->kcache, P, G, dh), vc3 = view3(&a->vcache, P, G, dh);
        gqe_tensor kb3 = view3(&kb, P, 1, dh), vb3 = view3(&vb, P, 1, dh);
        TRY(gqe_group_mean_forward(&kb3, &kc3));
        TRY(gqe_group_mean_forward(&vb3, &vc3));
        gqe_tensor kb4 = view4(&kb, 1, P, 1, dh), vb4 = view4(&vb, 1, P, 1, dh), os4 = view4(&os, 1, T, 1, dh);
        TRY(gqe_attention_forward(&os4, &lse_s, &qs4, &kb4, &vb4, a->cfg.causal, scale));
        TRY(gqe_copy_cols(&cat, w_a + dh, &os, 0, dh, false));
        TRY(gqe_attn_linear(&y2, &cat, &a->wo));
    }
#undef TRY
done:
    if (st == GQE_OK) a->cache_len = P;
    gqe_arena_free(&tmp);
    return st;
}
