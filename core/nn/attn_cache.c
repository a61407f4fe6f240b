/* The KV cache of decoding. Decoding runs the training forward
 * (gqe_attn_forward_at in attn.c) with positions offset by the cache length
 * and the cache as the source of K and V, so sampling computes exactly what
 * training computes: the same compute copies of the weights, the same fused
 * router/shared-query matmul. */
#include "attn_internal.h"

gqe_status gqe_attn_cache_reset(gqe_attn *a, int64_t batch, int64_t max_len) {
    if (batch != 1) return gqe_fail(GQE_ERR_ARG, "the KV cache decodes one sequence at a time (batch 1), got %lld", (long long)batch);
    if (max_len <= 0) return gqe_fail(GQE_ERR_ARG, "cache length must be positive");
    attn_cache *c = &a->cache;
    gqe_dtype dt = attn_compute_dtype(a);
    gqe_device dev = a->p.q.w.device;
    if (c->max != max_len || !c->k.storage || c->k.dtype != dt || c->k.device != dev) {
        gqe_tensor_free(&c->k);
        gqe_tensor_free(&c->v);
        /* with the shared head, its K and V (group means of the rows) as
         * the last head: attention reads them in the routed slots' call */
        int64_t heads = a->G + a->SH;
        GQE_TRY(gqe_tensor_zeros(&c->k, dt, dev, 4, (int64_t[]){1, max_len, heads, a->dh}));
        GQE_TRY(gqe_tensor_zeros(&c->v, dt, dev, 4, (int64_t[]){1, max_len, heads, a->dh}));
    }
    c->max = max_len;
    c->len = 0;
    return GQE_OK;
}

gqe_status gqe_attn_forward_cached(gqe_attn *a, gqe_tensor *y, const gqe_tensor *x, const gqe_tensor *tokens) {
    attn_cache *c = &a->cache;
    if (!c->k.storage) return gqe_fail(GQE_ERR_ARG, "forward_cached: call cache_reset first");
    if (c->k.dtype != attn_compute_dtype(a))
        return gqe_fail(GQE_ERR_ARG, "forward_cached: the precision changed since cache_reset: reset the cache");
    if (x->ndim != 3 || x->shape[0] != 1 || x->shape[2] != a->d)
        return gqe_fail(GQE_ERR_SHAPE, "forward_cached: x must be (1, T, %lld)", (long long)a->d);
    int64_t T = x->shape[1];
    if (c->len + T > c->max)
        return gqe_fail(GQE_ERR_ARG, "KV cache full: %lld + %lld positions exceed its length %lld",
                        (long long)c->len, (long long)T, (long long)c->max);
    GQE_TRY(gqe_attn_forward_at(a, y, x, tokens, c));
    c->len += T;
    return GQE_OK;
}
