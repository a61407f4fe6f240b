/* Names, defaults and validation of attention configurations. Messages name
 * the key and the allowed values, since users meet them as config errors. */
#include "attn.h"
#include "../size.h"
#include <string.h>

static const char *const kind_names[] = {"gqe", "gqa", "mha", "mqa"};
static const char *const variant_names[] = {"gqe", "hard_concat", "weighted_concat"};
static const char *const router_names[] = {"softmax", "sigmoid", "balanced", "random", "hash"};
#define COUNT(a) (int)(sizeof a / sizeof *a)

static gqe_status parse(const char *s, const char *const *names, int n, const char *key, int *out) {
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0) { *out = i; return GQE_OK; }
    char allowed[128] = "";
    for (int i = 0; i < n; i++) {
        if (i) strcat(allowed, ", ");
        strcat(allowed, names[i]);
    }
    return gqe_fail(GQE_ERR_ARG, "unknown %s '%s' (allowed: %s)", key, s ? s : "(null)", allowed);
}

gqe_status gqe_attn_kind_parse(const char *s, gqe_attn_kind *out) {
    int v; GQE_TRY(parse(s, kind_names, COUNT(kind_names), "attention", &v)); *out = (gqe_attn_kind)v; return GQE_OK;
}
gqe_status gqe_variant_parse(const char *s, gqe_variant *out) {
    int v; GQE_TRY(parse(s, variant_names, COUNT(variant_names), "variant", &v)); *out = (gqe_variant)v; return GQE_OK;
}
gqe_status gqe_router_parse(const char *s, gqe_router_kind *out) {
    int v; GQE_TRY(parse(s, router_names, COUNT(router_names), "router", &v)); *out = (gqe_router_kind)v; return GQE_OK;
}
const char *gqe_attn_kind_name(gqe_attn_kind k) { return (unsigned)k < (unsigned)COUNT(kind_names) ? kind_names[k] : "?"; }
const char *gqe_variant_name(gqe_variant v) { return (unsigned)v < (unsigned)COUNT(variant_names) ? variant_names[v] : "?"; }
const char *gqe_router_name(gqe_router_kind r) { return (unsigned)r < (unsigned)COUNT(router_names) ? router_names[r] : "?"; }

void gqe_attn_config_default(gqe_attn_config *c) {
    memset(c, 0, sizeof *c);
    c->kind = GQE_ATTN_GQE;
    c->variant = GQE_VARIANT_GQE;
    c->router = GQE_ROUTER_SOFTMAX;
    c->k = 1;
    c->rope = true;
    c->rope_theta = 10000.0f;
    c->causal = true;
    c->balance_gamma = 1e-3f;
}

gqe_status gqe_attn_config_validate(gqe_attn_config *c) {
    if (c->dim <= 0) return gqe_fail(GQE_ERR_ARG, "dim must be a positive integer, got %lld", (long long)c->dim);
    if (c->experts <= 0) return gqe_fail(GQE_ERR_ARG, "experts must be a positive integer, got %lld", (long long)c->experts);
    /* mha and mqa are gqa with the group count implied. */
    if (c->kind == GQE_ATTN_MHA) {
        if (c->groups && c->groups != c->experts)
            return gqe_fail(GQE_ERR_ARG, "groups must equal experts (%lld) for attention 'mha', got %lld", (long long)c->experts, (long long)c->groups);
        c->groups = c->experts;
    }
    if (c->kind == GQE_ATTN_MQA) {
        if (c->groups && c->groups != 1)
            return gqe_fail(GQE_ERR_ARG, "groups must be 1 for attention 'mqa', got %lld", (long long)c->groups);
        c->groups = 1;
    }
    if (c->groups <= 0) return gqe_fail(GQE_ERR_ARG, "groups must be a positive integer, got %lld", (long long)c->groups);
    if (c->experts % c->groups != 0)
        return gqe_fail(GQE_ERR_ARG, "experts (%lld) must be divisible by groups (%lld)", (long long)c->experts, (long long)c->groups);
    if (c->head_dim == 0) {
        if (c->dim % c->experts != 0)
            return gqe_fail(GQE_ERR_ARG, "head_dim is unset and dim (%lld) is not divisible by experts (%lld); set head_dim", (long long)c->dim, (long long)c->experts);
        c->head_dim = c->dim / c->experts;
    }
    if (c->head_dim <= 0) return gqe_fail(GQE_ERR_ARG, "head_dim must be a positive integer, got %lld", (long long)c->head_dim);
    if (c->rope && c->head_dim % 2 != 0)
        return gqe_fail(GQE_ERR_ARG, "head_dim must be even when rope is on, got %lld", (long long)c->head_dim);
    if (c->rope && !(c->rope_theta > 0))
        return gqe_fail(GQE_ERR_ARG, "rope_theta must be positive, got %g", (double)c->rope_theta);
    if ((unsigned)c->kind >= (unsigned)COUNT(kind_names)) return gqe_fail(GQE_ERR_ARG, "unknown attention kind %d", (int)c->kind);
    if ((unsigned)c->variant >= (unsigned)COUNT(variant_names)) return gqe_fail(GQE_ERR_ARG, "unknown variant %d", (int)c->variant);
    if ((unsigned)c->router >= (unsigned)COUNT(router_names)) return gqe_fail(GQE_ERR_ARG, "unknown router %d", (int)c->router);
    if (c->kind == GQE_ATTN_GQE) {
        int64_t m = c->experts / c->groups;
        if (c->k < 1 || c->k > m)
            return gqe_fail(GQE_ERR_ARG, "k must be in 1..%lld (experts per group = experts/groups = %lld/%lld), got %lld",
                            (long long)m, (long long)c->experts, (long long)c->groups, (long long)c->k);
        if (c->router == GQE_ROUTER_BALANCED && !(c->balance_gamma >= 0))
            return gqe_fail(GQE_ERR_ARG, "balance_gamma must be >= 0, got %g", (double)c->balance_gamma);
    }
    /* The largest projection's size, checked before anything multiplies it. */
    int64_t n;
    const int64_t q[] = {c->experts, c->head_dim, c->dim};
    return gqe_size_product("experts x head_dim x dim (the query projection)", 3, q, &n);
}

int64_t gqe_attn_slots(const gqe_attn_config *c) {
    if (c->kind != GQE_ATTN_GQE) return c->experts;
    return c->groups * c->k + (c->variant == GQE_VARIANT_GQE ? 2 : 0);
}

int64_t gqe_attn_active_heads(const gqe_attn_config *c) {
    if (c->kind != GQE_ATTN_GQE) return c->experts;
    return c->groups * c->k + (c->variant == GQE_VARIANT_GQE ? 1 : 0);
}
