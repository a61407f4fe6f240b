/* gqe.nn: GQEAttention (one attention layer that owns its parameters) and LM.
 * State and gradients go out as host copies by PyTorch name, so Lua code can
 * keep them across steps without pinning the model's buffers. state() and
 * load() also carry the paramset's buffers (the balanced router's bias),
 * which are model state but not trained: grads() has none. */
#include "bind.h"
#include "ops.h"
#include "nn/lm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTN_MT "gqe.nn.GQEAttention"
#define LM_MT "gqe.nn.LM"

typedef struct l_attn {
    gqe_attn *a;
    gqe_paramset ps;
    gqe_device device;
    float init_std;
    gqe_tensor x, tokens;   /* inputs of the last forward: the layer may point at them */
    bool has_forward;
} l_attn;

typedef struct l_lm {
    gqe_lm *lm;
    gqe_tensor tokens, targets;
    bool has_loss;
} l_lm;

/* ---- shared helpers ---------------------------------------------------- */

/* A tensor with x's values as f32 on dev: a new reference to x, or a copy. */
static gqe_status to_device(gqe_tensor *out, const gqe_tensor *x, gqe_device dev, gqe_dtype dt) {
    if (x->device == dev && x->dtype == dt) { *out = gqe_tensor_ref(x); return GQE_OK; }
    return gqe_tensor_to(out, x, dev, dt);
}

static void push_host_copy(lua_State *L, const gqe_tensor *t, const char *what) {
    gqe_tensor c;
    GQE_LUA_CHECK(L, what, gqe_tensor_to(&c, t, GQE_CPU, t->dtype == GQE_I32 ? GQE_I32 : GQE_F32));
    gqe_lua_push_tensor(L, c);
}

/* name -> host copy of each parameter's value and each buffer, or of each
 * parameter's gradient. */
static void push_params(lua_State *L, gqe_paramset *ps, bool grads, const char *what) {
    lua_createtable(L, 0, ps->count);
    for (int i = 0; i < ps->count; i++) {
        gqe_param *p = &ps->items[i];
        push_host_copy(L, grads ? p->grad : p->value, what);
        lua_setfield(L, -2, p->name);
    }
    for (int i = 0; !grads && i < ps->nbuffers; i++) {
        push_host_copy(L, ps->buffers[i].value, what);
        lua_setfield(L, -2, ps->buffers[i].name);
    }
}

/* Copies tbl[prefix .. name] into the parameter with a shape check. A missing
 * required name is an error; keys of tbl the model lacks are ignored. */
static void load_one(lua_State *L, int tbl, const char *prefix, const char *name,
                     gqe_tensor *dst, bool required, const char *what) {
    lua_pushfstring(L, "%s%s", prefix, name);
    const char *full = lua_tostring(L, -1);   /* stays on the stack below the value */
    lua_pushvalue(L, -1);
    lua_gettable(L, tbl);
    if (lua_isnil(L, -1)) {
        if (required) luaL_error(L, "%s: missing parameter '%s'", what, full);
        lua_pop(L, 2);
        return;
    }
    gqe_tensor *src = gqe_lua_test_tensor(L, -1);
    if (!src) luaL_error(L, "%s: '%s' is a %s, not a gqe.Tensor", what, full, luaL_typename(L, -1));
    gqe_lua_check_tensor(L, -1);
    if (!gqe_tensor_same_shape(src, dst)) {
        char a[96], b[96];
        luaL_error(L, "%s: '%s' has shape %s, the model expects %s", what, full,
                   gqe_tensor_shape_str(src, a, sizeof a), gqe_tensor_shape_str(dst, b, sizeof b));
    }
    if (gqe_tensor_copy(dst, src) != GQE_OK) gqe_lua_fail(L, what);
    lua_pop(L, 2);
}

/* Every parameter (required) and buffer (restored when present). */
static void load_params(lua_State *L, gqe_paramset *ps, int tbl, const char *prefix, const char *what) {
    for (int i = 0; i < ps->count; i++)
        load_one(L, tbl, prefix, ps->items[i].name, ps->items[i].value, true, what);
    for (int i = 0; i < ps->nbuffers; i++)
        load_one(L, tbl, prefix, ps->buffers[i].name, ps->buffers[i].value, false, what);
}

static void push_floats(lua_State *L, const float *v, int64_t n) {
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) { lua_pushnumber(L, v[i]); lua_seti(L, -2, i + 1); }
}

/* counts, mean_prob tables of G*M for one attention layer. */
static int push_usage(lua_State *L, gqe_attn *a, const char *what) {
    const gqe_attn_config *c = gqe_attn_get_config(a);
    int64_t n = c->experts;   /* G * M */
    float *buf = lua_newuserdatauv(L, 2 * (size_t)n * sizeof(float) + 1, 0);
    GQE_LUA_CHECK(L, what, gqe_attn_usage(a, buf, buf + n));
    push_floats(L, buf, n);
    push_floats(L, buf + n, n);
    return 2;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) { lua_pushinteger(L, v); lua_setfield(L, -2, k); }
static void set_num(lua_State *L, const char *k, lua_Number v) { lua_pushnumber(L, v); lua_setfield(L, -2, k); }
static void set_str(lua_State *L, const char *k, const char *v) { lua_pushstring(L, v); lua_setfield(L, -2, k); }
static void set_bool(lua_State *L, const char *k, int v) { lua_pushboolean(L, v); lua_setfield(L, -2, k); }

/* Attention fields of the config table into c. The kind is `attention`;
 * `kind`, its former name on GQEAttention, is read with a deprecation
 * warning. */
static void read_attn_fields(lua_State *L, int idx, const char *what, gqe_attn_config *c) {
    char key[64];
    const char *kind_key = "attention";
    lua_getfield(L, idx, "kind");
    bool has_kind = !lua_isnil(L, -1);
    lua_getfield(L, idx, "attention");
    bool has_attention = !lua_isnil(L, -1);
    lua_pop(L, 2);
    if (has_kind && has_attention) luaL_error(L, "%s: give attention only ('kind' is its deprecated name)", what);
    if (has_kind) {
        gqe_lua_deprecated(L, what, "kind", "attention");
        kind_key = "kind";
    }
    const char *s = gqe_lua_opt_str(L, idx, what, kind_key, gqe_attn_kind_name(c->kind));
    snprintf(key, sizeof key, "%s.%s", what, kind_key);
    GQE_LUA_CHECK(L, key, gqe_attn_kind_parse(s, &c->kind));
    s = gqe_lua_opt_str(L, idx, what, "variant", gqe_variant_name(c->variant));
    snprintf(key, sizeof key, "%s.variant", what);
    GQE_LUA_CHECK(L, key, gqe_variant_parse(s, &c->variant));
    s = gqe_lua_opt_str(L, idx, what, "router", gqe_router_name(c->router));
    snprintf(key, sizeof key, "%s.router", what);
    GQE_LUA_CHECK(L, key, gqe_router_parse(s, &c->router));

    lua_getfield(L, idx, "experts");
    bool has_experts = !lua_isnil(L, -1);
    lua_getfield(L, idx, "groups");
    bool has_groups = !lua_isnil(L, -1);
    lua_pop(L, 2);
    if (!has_experts) luaL_error(L, "%s.experts is required (number of query heads / experts)", what);
    c->experts = gqe_lua_opt_int(L, idx, what, "experts", 0);
    /* mha and mqa fix the group count; every other kind needs it given. */
    if (!has_groups && c->kind == GQE_ATTN_MHA) c->groups = c->experts;
    else if (!has_groups && c->kind == GQE_ATTN_MQA) c->groups = 1;
    else if (!has_groups) luaL_error(L, "%s.groups is required (number of KV heads)", what);
    else c->groups = gqe_lua_opt_int(L, idx, what, "groups", 0);
    c->k = gqe_lua_opt_int(L, idx, what, "k", c->k);
    c->head_dim = gqe_lua_opt_int(L, idx, what, "head_dim", c->head_dim);
    c->rope = gqe_lua_opt_bool(L, idx, what, "rope", c->rope);
    c->rope_theta = (float)gqe_lua_opt_num(L, idx, what, "rope_theta", c->rope_theta);
    c->balance_gamma = (float)gqe_lua_opt_num(L, idx, what, "balance_gamma", c->balance_gamma);
    c->seed = (uint64_t)gqe_lua_opt_int(L, idx, what, "seed", (lua_Integer)c->seed);
}

static void push_attn_config(lua_State *L, const gqe_attn_config *c) {
    set_int(L, "experts", c->experts);
    set_int(L, "groups", c->groups);
    set_int(L, "k", c->k);
    set_int(L, "head_dim", c->head_dim);
    set_str(L, "attention", gqe_attn_kind_name(c->kind));
    set_str(L, "variant", gqe_variant_name(c->variant));
    set_str(L, "router", gqe_router_name(c->router));
    set_bool(L, "rope", c->rope);
    set_num(L, "rope_theta", c->rope_theta);
    set_num(L, "balance_gamma", c->balance_gamma);
}

static gqe_device read_device(lua_State *L, int idx, const char *what) {
    gqe_device dev;
    char key[64];
    snprintf(key, sizeof key, "%s.device", what);
    GQE_LUA_CHECK(L, key, gqe_device_parse(gqe_lua_opt_str(L, idx, what, "device", "cpu"), &dev));
    return dev;
}

static void push_params_views(lua_State *L, gqe_paramset *ps) {
    gqe_lua_push_tensor(L, gqe_tensor_ref(&ps->data));
    gqe_lua_push_tensor(L, gqe_tensor_ref(&ps->grad));
}

/* ---- GQEAttention -------------------------------------------------------- */

static const char *const ATTN_KEYS[] = {
    "attention", "balance_gamma", "causal", "device", "dim", "experts", "groups", "head_dim", "init_std",
    "k", "kind", "precision", "rope", "rope_theta", "router", "seed", "variant", NULL};

static l_attn *check_attn(lua_State *L, int idx) {
    l_attn *u = luaL_checkudata(L, idx, ATTN_MT);
    if (!u->a) luaL_error(L, "GQEAttention: layer is closed");
    return u;
}

static int attn_new(lua_State *L) {
    const char *what = "GQEAttention";
    luaL_checktype(L, 1, LUA_TTABLE);
    gqe_lua_check_keys(L, 1, what, ATTN_KEYS);
    gqe_attn_config c;
    gqe_attn_config_default(&c);
    lua_getfield(L, 1, "dim");
    if (lua_isnil(L, -1)) luaL_error(L, "GQEAttention.dim is required (model width)");
    lua_pop(L, 1);
    c.dim = gqe_lua_opt_int(L, 1, what, "dim", 0);
    read_attn_fields(L, 1, what, &c);
    c.causal = gqe_lua_opt_bool(L, 1, what, "causal", c.causal);
    float std = (float)gqe_lua_opt_num(L, 1, what, "init_std", 0.02);
    gqe_device dev = read_device(L, 1, what);
    const char *precision = gqe_lua_opt_str(L, 1, what, "precision", "fp32");
    GQE_LUA_CHECK(L, what, gqe_attn_config_validate(&c));

    l_attn *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    gqe_paramset_init(&u->ps);
    luaL_setmetatable(L, ATTN_MT);
    u->device = dev;
    u->init_std = std;
    GQE_LUA_CHECK(L, what, gqe_attn_create(&u->a, &c, &u->ps, ""));
    /* u->x holds the input until the next forward: the layer reads it there */
    gqe_attn_borrow_input(u->a, true);
    GQE_LUA_CHECK(L, what, gqe_paramset_alloc(&u->ps, dev));
    GQE_LUA_CHECK(L, what, gqe_attn_init_weights(u->a, c.seed, 0, std, std));
    GQE_LUA_CHECK(L, "GQEAttention.precision", gqe_paramset_set_precision(&u->ps, precision));
    return 1;
}

static int attn_gc(lua_State *L) {
    l_attn *u = luaL_checkudata(L, 1, ATTN_MT);
    gqe_tensor_free(&u->x);
    gqe_tensor_free(&u->tokens);
    if (u->a) gqe_attn_destroy(u->a);
    u->a = NULL;
    gqe_paramset_free(&u->ps);
    gqe_paramset_init(&u->ps);
    return 0;
}

static int attn_forward(lua_State *L) {
    l_attn *u = check_attn(L, 1);
    gqe_tensor *x = gqe_lua_check_tensor(L, 2);
    const gqe_attn_config *c = gqe_attn_get_config(u->a);
    if (x->ndim != 3 || x->shape[2] != c->dim || x->shape[0] < 1 || x->shape[1] < 1) {
        char b[96];
        return luaL_error(L, "GQEAttention:forward: x must be (B, T, %d) with B, T >= 1, got %s", (int)c->dim,
                          gqe_tensor_shape_str(x, b, sizeof b));
    }
    gqe_tensor xin, tok = {0};
    /* In mixed precision the layer reads bf16 activations and weights. */
    GQE_LUA_CHECK(L, "GQEAttention:forward", gqe_paramset_refresh_compute(&u->ps));
    GQE_LUA_CHECK(L, "GQEAttention:forward", to_device(&xin, x, u->device, gqe_paramset_compute_dtype(&u->ps)));
    gqe_tensor_free(&u->x);
    u->x = xin;
    gqe_tensor_free(&u->tokens);
    u->has_forward = false;
    if (!lua_isnoneornil(L, 3)) {
        gqe_tensor *t = gqe_lua_check_ids(L, 3, "GQEAttention:forward tokens");
        GQE_LUA_CHECK(L, "GQEAttention:forward", to_device(&tok, t, u->device, GQE_I32));
        u->tokens = tok;
    }
    gqe_tensor y;
    /* the compute dtype: bf16 output under mixed precision */
    GQE_LUA_CHECK(L, "GQEAttention:forward", gqe_tensor_new(&y, gqe_paramset_compute_dtype(&u->ps), u->device, 3, x->shape));
    gqe_lua_push_tensor(L, y);
    gqe_tensor *yp = lua_touserdata(L, -1);
    GQE_LUA_CHECK(L, "GQEAttention:forward",
                gqe_attn_forward(u->a, yp, &u->x, gqe_tensor_is_empty(&u->tokens) ? NULL : &u->tokens));
    u->has_forward = true;
    return 1;
}

static int attn_backward(lua_State *L) {
    l_attn *u = check_attn(L, 1);
    gqe_tensor *dy = gqe_lua_check_tensor(L, 2);
    float aux = (float)luaL_optnumber(L, 3, 0.0);
    if (!u->has_forward) return luaL_error(L, "GQEAttention:backward: no forward to differentiate");
    gqe_tensor d;
    GQE_LUA_CHECK(L, "GQEAttention:backward", to_device(&d, dy, u->device, GQE_F32));
    gqe_lua_push_tensor(L, d);
    gqe_tensor *dp = lua_touserdata(L, -1);
    gqe_tensor dx;
    GQE_LUA_CHECK(L, "GQEAttention:backward", gqe_tensor_zeros(&dx, GQE_F32, u->device, u->x.ndim, u->x.shape));
    gqe_lua_push_tensor(L, dx);
    GQE_LUA_CHECK(L, "GQEAttention:backward", gqe_attn_backward(u->a, lua_touserdata(L, -1), dp, aux));
    return 1;
}

static int attn_state(lua_State *L) {
    l_attn *u = check_attn(L, 1);
    push_params(L, &u->ps, false, "GQEAttention:state");
    return 1;
}
static int attn_grads(lua_State *L) {
    push_params(L, &check_attn(L, 1)->ps, true, "GQEAttention:grads");
    return 1;
}
static int attn_load(lua_State *L) {
    l_attn *u = check_attn(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *prefix = luaL_optstring(L, 3, "");
    load_params(L, &u->ps, 2, prefix, "GQEAttention:load");
    lua_settop(L, 1);
    return 1;
}
static int attn_zero_grad(lua_State *L) {
    GQE_LUA_CHECK(L, "GQEAttention:zero_grad", gqe_paramset_zero_grad(&check_attn(L, 1)->ps));
    return 0;
}
static int attn_aux_loss(lua_State *L) {
    float aux;
    GQE_LUA_CHECK(L, "GQEAttention:aux_loss", gqe_attn_aux(check_attn(L, 1)->a, &aux));
    lua_pushnumber(L, aux);
    return 1;
}
static int attn_after_step(lua_State *L) {
    GQE_LUA_CHECK(L, "GQEAttention:after_step", gqe_attn_after_step(check_attn(L, 1)->a));
    return 0;
}

/* Host copies: the core's views are only valid until the next forward. */
static int attn_routing(lua_State *L) {
    l_attn *u = check_attn(L, 1);
    if (!u->has_forward) return luaL_error(L, "GQEAttention:routing: no forward yet");
    gqe_tensor p, idx;
    GQE_LUA_CHECK(L, "GQEAttention:routing", gqe_attn_routing(u->a, &p, &idx));
    if (gqe_tensor_is_empty(&p)) { lua_pushnil(L); lua_pushnil(L); return 2; }
    push_host_copy(L, &p, "GQEAttention:routing");
    push_host_copy(L, &idx, "GQEAttention:routing");
    return 2;
}
static int attn_usage(lua_State *L) { return push_usage(L, check_attn(L, 1)->a, "GQEAttention:usage"); }

static int attn_config(lua_State *L) {
    l_attn *u = check_attn(L, 1);
    const gqe_attn_config *c = gqe_attn_get_config(u->a);
    lua_newtable(L);
    set_int(L, "dim", c->dim);
    push_attn_config(L, c);
    set_bool(L, "causal", c->causal);
    set_int(L, "seed", (lua_Integer)c->seed);
    set_num(L, "init_std", u->init_std);
    set_str(L, "device", gqe_device_name(u->device));
    set_str(L, "precision", gqe_paramset_precision(&u->ps));
    return 1;
}
static int attn_parameters(lua_State *L) { push_params_views(L, &check_attn(L, 1)->ps); return 2; }
static int attn_num_params(lua_State *L) { lua_pushinteger(L, (lua_Integer)check_attn(L, 1)->ps.numel); return 1; }
static int attn_device(lua_State *L) { lua_pushstring(L, gqe_device_name(check_attn(L, 1)->device)); return 1; }
static int attn_tostring(lua_State *L) {
    l_attn *u = luaL_checkudata(L, 1, ATTN_MT);
    if (!u->a) { lua_pushstring(L, "gqe.nn.GQEAttention (closed)"); return 1; }
    const gqe_attn_config *c = gqe_attn_get_config(u->a);
    lua_pushfstring(L, "gqe.nn.GQEAttention{attention=%s, variant=%s, router=%s, dim=%d, experts=%d, groups=%d, k=%d} %s",
                    gqe_attn_kind_name(c->kind), gqe_variant_name(c->variant), gqe_router_name(c->router),
                    (int)c->dim, (int)c->experts, (int)c->groups, (int)c->k, gqe_device_name(u->device));
    return 1;
}
/* For gqe.optim: the paramset pointer, or nil once the layer is closed. */
static int attn_paramset(lua_State *L) {
    l_attn *u = luaL_checkudata(L, 1, ATTN_MT);
    if (u->a) lua_pushlightuserdata(L, &u->ps); else lua_pushnil(L);
    return 1;
}

static const luaL_Reg attn_methods[] = {
    {"forward", attn_forward}, {"backward", attn_backward}, {"state", attn_state},
    {"grads", attn_grads}, {"load", attn_load}, {"zero_grad", attn_zero_grad},
    {"aux_loss", attn_aux_loss}, {"after_step", attn_after_step}, {"routing", attn_routing},
    {"usage", attn_usage}, {"config", attn_config}, {"parameters", attn_parameters},
    {"num_params", attn_num_params}, {"device", attn_device}, {NULL, NULL}};

/* ---- LM ----------------------------------------------------------------- */

static const char *const LM_KEYS[] = {
    "attention", "balance_gamma", "device", "dim", "experts", "groups", "head_dim", "init_std",
    "k", "layers", "max_seq", "mlp", "mlp_hidden", "norm_eps", "precision", "rope", "rope_theta", "router",
    "seed", "tied", "variant", "vocab", NULL};

static l_lm *check_lm(lua_State *L, int idx) {
    l_lm *u = luaL_checkudata(L, idx, LM_MT);
    if (!u->lm) luaL_error(L, "LM: model is closed");
    return u;
}

gqe_lm *gqe_lua_check_lm(lua_State *L, int idx) { return check_lm(L, idx)->lm; }

static int64_t required_int(lua_State *L, int idx, const char *what, const char *key, const char *meaning) {
    lua_getfield(L, idx, key);
    bool missing = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (missing) luaL_error(L, "%s.%s is required (%s)", what, key, meaning);
    return gqe_lua_opt_int(L, idx, what, key, 0);
}

/* The LM options table at idx into c, validated by the core (derived sizes
 * filled in); device and precision are returned separately. */
static void read_lm_config(lua_State *L, int idx, const char *what, gqe_lm_config *cfg, gqe_device *dev,
                           const char **precision) {
    gqe_lm_config c;
    luaL_checktype(L, idx, LUA_TTABLE);
    gqe_lua_check_keys(L, idx, what, LM_KEYS);
    gqe_lm_config_default(&c);
    c.vocab = required_int(L, idx, what, "vocab", "vocabulary size");
    c.dim = required_int(L, idx, what, "dim", "model width");
    c.layers = required_int(L, idx, what, "layers", "number of blocks");
    c.max_seq = gqe_lua_opt_int(L, idx, what, "max_seq", c.max_seq);
    read_attn_fields(L, idx, what, &c.attn);
    c.attn.dim = c.dim;
    char key[64];
    snprintf(key, sizeof key, "%s.mlp", what);
    GQE_LUA_CHECK(L, key, gqe_mlp_parse(gqe_lua_opt_str(L, idx, what, "mlp", gqe_mlp_name(c.mlp)), &c.mlp));
    c.mlp_hidden = gqe_lua_opt_int(L, idx, what, "mlp_hidden", c.mlp_hidden);
    c.tied = gqe_lua_opt_bool(L, idx, what, "tied", c.tied);
    c.norm_eps = (float)gqe_lua_opt_num(L, idx, what, "norm_eps", c.norm_eps);
    c.init_std = (float)gqe_lua_opt_num(L, idx, what, "init_std", c.init_std);
    c.seed = (uint64_t)gqe_lua_opt_int(L, idx, what, "seed", (lua_Integer)c.seed);
    *dev = read_device(L, idx, what);
    *precision = gqe_lua_opt_str(L, idx, what, "precision", "fp32");
    GQE_LUA_CHECK(L, what, gqe_lm_config_validate(&c));
    *cfg = c;
}

static void push_lm_config(lua_State *L, const gqe_lm_config *c) {
    lua_newtable(L);
    set_int(L, "vocab", c->vocab);
    set_int(L, "dim", c->dim);
    set_int(L, "layers", c->layers);
    set_int(L, "max_seq", c->max_seq);
    push_attn_config(L, &c->attn);
    set_str(L, "mlp", gqe_mlp_name(c->mlp));
    set_int(L, "mlp_hidden", c->mlp_hidden);
    set_bool(L, "tied", c->tied);
    set_num(L, "norm_eps", c->norm_eps);
    set_num(L, "init_std", c->init_std);
    set_int(L, "seed", (lua_Integer)c->seed);
}

/* gqe.nn.check_lm(options) -> the config LM(options) would build (derived
 * sizes filled in), or the error LM(options) would raise (named
 * gqe.nn.check_lm instead of LM); allocates nothing. */
static int lm_check(lua_State *L) {
    gqe_lm_config c;
    gqe_device dev;
    const char *precision;
    read_lm_config(L, 1, "gqe.nn.check_lm", &c, &dev, &precision);
    push_lm_config(L, &c);
    return 1;
}

/* gqe.nn.active_heads{attention=, experts=, groups=, k=, variant=} -> the
 * query heads a token uses (the core's count; GQE.md): G*k (+1 shared head
 * in variant gqe), all N for the dense kinds. */
static int lm_active_heads(lua_State *L) {
    const char *what = "gqe.nn.active_heads";
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"attention", "experts", "groups", "k", "variant", NULL};
    gqe_lua_check_keys(L, 1, what, keys);
    gqe_attn_config c;
    gqe_attn_config_default(&c);
    char key[64];
    snprintf(key, sizeof key, "%s.attention", what);
    GQE_LUA_CHECK(L, key, gqe_attn_kind_parse(gqe_lua_opt_str(L, 1, what, "attention", "gqe"), &c.kind));
    snprintf(key, sizeof key, "%s.variant", what);
    GQE_LUA_CHECK(L, key, gqe_variant_parse(gqe_lua_opt_str(L, 1, what, "variant", "gqe"), &c.variant));
    c.experts = gqe_lua_opt_int(L, 1, what, "experts", 0);
    c.groups = gqe_lua_opt_int(L, 1, what, "groups", 0);
    c.k = gqe_lua_opt_int(L, 1, what, "k", c.k);
    lua_pushinteger(L, gqe_attn_active_heads(&c));
    return 1;
}

static int lm_new(lua_State *L) {
    const char *what = "LM";
    gqe_lm_config c;
    gqe_device dev;
    const char *precision;
    read_lm_config(L, 1, what, &c, &dev, &precision);

    l_lm *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, LM_MT);
    GQE_LUA_CHECK(L, what, gqe_lm_create(&u->lm, &c, dev));
    GQE_LUA_CHECK(L, "LM.precision", gqe_lm_set_precision(u->lm, precision));
    return 1;
}

static int lm_gc(lua_State *L) {
    l_lm *u = luaL_checkudata(L, 1, LM_MT);
    gqe_tensor_free(&u->tokens);
    gqe_tensor_free(&u->targets);
    if (u->lm) gqe_lm_destroy(u->lm);
    u->lm = NULL;
    return 0;
}

static gqe_device lm_dev(l_lm *u) { return gqe_lm_params(u->lm)->device; }

/* Keeps the batch in the userdata: the model may refer to it until backward. */
static void take_ids(lua_State *L, l_lm *u, int idx, gqe_tensor *slot, const char *what) {
    gqe_tensor *t = gqe_lua_check_ids(L, idx, what);
    if (t->dtype != GQE_I32) luaL_error(L, "%s must be i32, got %s", what, gqe_dtype_name(t->dtype));
    gqe_tensor r;
    if (t->ndim == 1) {   /* one sequence: B = 1 */
        int64_t shape[2] = {1, t->shape[0]};
        gqe_tensor ref = gqe_tensor_ref(t);
        r = gqe_tensor_reshape(&ref, 2, shape);
    } else {
        r = gqe_tensor_ref(t);
    }
    /* Empty batches are refused here: the core sizes buffers by B*T. */
    if (r.ndim != 2 || r.shape[0] < 1 || r.shape[1] < 1) {
        char b[96];
        gqe_tensor_free(&r);
        luaL_error(L, "%s must be (B, T) with B, T >= 1, got %s", what, gqe_tensor_shape_str(t, b, sizeof b));
    }
    gqe_tensor_free(slot);
    *slot = r;
    (void)u;
}

static int lm_loss(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    u->has_loss = false;
    take_ids(L, u, 2, &u->tokens, "LM:loss tokens");
    take_ids(L, u, 3, &u->targets, "LM:loss targets");
    float coef = (float)luaL_optnumber(L, 4, 0.01);
    float loss = 0, aux = 0;
    GQE_LUA_CHECK(L, "LM:loss", gqe_lm_forward(u->lm, &u->tokens, &u->targets, coef, &loss, &aux));
    u->has_loss = true;
    lua_pushnumber(L, loss);
    lua_pushnumber(L, gqe_lm_ce_loss(u->lm));
    lua_pushnumber(L, aux);
    return 3;
}

/* lm:accuracy() -> correct, counted: top-1 accuracy of the last lm:loss
 * (before lm:backward, which reuses its logits), counted on the model's
 * device; counted is the number of targets >= 0. */
static int lm_accuracy(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    if (!u->has_loss) return luaL_error(L, "LM:accuracy: call lm:loss(tokens, targets) first (and before lm:backward)");
    int64_t correct = 0, counted = 0;
    GQE_LUA_CHECK(L, "LM:accuracy", gqe_lm_accuracy(u->lm, &correct, &counted));
    lua_pushinteger(L, (lua_Integer)correct);
    lua_pushinteger(L, (lua_Integer)counted);
    return 2;
}

static int lm_forward(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    u->has_loss = false;
    take_ids(L, u, 2, &u->tokens, "LM:forward tokens");
    float loss = 0, aux = 0;
    GQE_LUA_CHECK(L, "LM:forward", gqe_lm_forward(u->lm, &u->tokens, NULL, 0, &loss, &aux));
    gqe_tensor out, *lg = gqe_lm_logits(u->lm);
    GQE_LUA_CHECK(L, "LM:forward", gqe_tensor_to(&out, lg, lg->device, GQE_F32));
    gqe_lua_push_tensor(L, out);
    return 1;
}

static int lm_backward(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    if (!u->has_loss) return luaL_error(L, "LM:backward: call lm:loss(tokens, targets) first");
    GQE_LUA_CHECK(L, "LM:backward", gqe_lm_backward(u->lm));
    u->has_loss = false;   /* backward reuses the logits buffer */
    return 0;
}

static int lm_state(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    gqe_paramset *ps = gqe_lm_params(u->lm);
    push_params(L, ps, false, "LM:state");
    return 1;
}
static int lm_grads(lua_State *L) { push_params(L, gqe_lm_params(check_lm(L, 1)->lm), true, "LM:grads"); return 1; }
/* Appends name to the list table at idx. */
static void list_add(lua_State *L, int idx, const char *name) {
    lua_pushstring(L, name);
    lua_seti(L, idx, (lua_Integer)luaL_len(L, idx) + 1);
}

/* "'a', 'b', 'c' and 7 more" from the list table at idx. */
static const char *list_text(lua_State *L, int idx) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Integer n = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= n && i <= 5; i++) {
        if (i > 1) luaL_addstring(&b, ", ");
        lua_geti(L, idx, i);
        luaL_addchar(&b, '\'');
        luaL_addvalue(&b);
        luaL_addchar(&b, '\'');
    }
    if (n > 5) {
        lua_pushfstring(L, " and %d more", (int)(n - 5));
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* lm:load(tensors [, prefix] [, {strict = true}]) -> lm, missing, unexpected.
 * Every parameter must be present and every key under the prefix must name
 * a parameter (or a balanced router's bias, which older files lack); with
 * strict = false the missing ones keep their values and both lists are
 * returned instead of raising. */
static int lm_load(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int opts = 4;
    const char *prefix = "";
    if (lua_istable(L, 3)) opts = 3;
    else prefix = luaL_optstring(L, 3, "");
    static const char *const LOAD_OPTS[] = {"strict", NULL};
    gqe_lua_check_keys(L, opts, "LM:load", LOAD_OPTS);
    bool strict = lua_isnoneornil(L, opts) ? true : gqe_lua_opt_bool(L, opts, "LM:load", "strict", 1);
    gqe_paramset *ps = gqe_lm_params(u->lm);
    lua_newtable(L);
    int missing = lua_gettop(L);
    lua_newtable(L);
    int unexpected = lua_gettop(L);
    lua_newtable(L);   /* names the model knows (full, with prefix) */
    int known = lua_gettop(L);
    for (int i = 0; i < ps->count; i++) {
        lua_pushfstring(L, "%s%s", prefix, ps->items[i].name);
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_rawset(L, known);
        if (lua_rawget(L, 2) == LUA_TNIL) list_add(L, missing, ps->items[i].name);
        lua_pop(L, 1);
    }
    /* buffers (the balanced router's bias) are known but optional: older
     * files lack them */
    for (int i = 0; i < ps->nbuffers; i++) {
        lua_pushfstring(L, "%s%s", prefix, ps->buffers[i].name);
        lua_pushboolean(L, 1);
        lua_rawset(L, known);
    }
    size_t plen = strlen(prefix);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            list_add(L, unexpected, luaL_tolstring(L, -1, NULL));
            lua_pop(L, 1);
            continue;
        }
        const char *k = lua_tostring(L, -1);
        if (strncmp(k, prefix, plen) != 0) continue;
        lua_pushvalue(L, -1);
        if (lua_rawget(L, known) == LUA_TNIL) list_add(L, unexpected, k);
        lua_pop(L, 1);
    }
    lua_Integer nm = luaL_len(L, missing), nu = luaL_len(L, unexpected);
    if (strict && (nm > 0 || nu > 0)) {
        /* the unexpected keys are sorted so the message is stable */
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, unexpected);
        lua_call(L, 1, 0);
        lua_pop(L, 1);
        const char *m = nm > 0 ? list_text(L, missing) : "";
        const char *x = nu > 0 ? list_text(L, unexpected) : "";
        return luaL_error(L, "LM:load: %s%s%s%s%s (the model has %d layers; {strict = false} loads what matches)",
                          nm > 0 ? "missing " : "", m, nm > 0 && nu > 0 ? "; " : "", nu > 0 ? "unexpected " : "", x,
                          (int)gqe_lm_layers(u->lm));
    }
    for (int i = 0; i < ps->count; i++)
        load_one(L, 2, prefix, ps->items[i].name, ps->items[i].value, false, "LM:load");
    for (int i = 0; i < ps->nbuffers; i++)
        load_one(L, 2, prefix, ps->buffers[i].name, ps->buffers[i].value, false, "LM:load");
    lua_pushvalue(L, 1);
    lua_pushvalue(L, missing);
    lua_pushvalue(L, unexpected);
    return 3;
}
static int lm_zero_grad(lua_State *L) {
    GQE_LUA_CHECK(L, "LM:zero_grad", gqe_paramset_zero_grad(gqe_lm_params(check_lm(L, 1)->lm)));
    return 0;
}
static int lm_num_params(lua_State *L) { lua_pushinteger(L, gqe_lm_num_params(check_lm(L, 1)->lm)); return 1; }
/* after_step([loads]): loads, a flat table of L x G x M token counts, replaces
 * the last forward's (gradient accumulation sums its micro-batches') */
static int lm_after_step(lua_State *L) {
    gqe_lm *lm = check_lm(L, 1)->lm;
    if (lua_isnoneornil(L, 2)) {
        GQE_LUA_CHECK(L, "LM:after_step", gqe_lm_after_step(lm));
        return 0;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    const gqe_attn_config *a = gqe_attn_get_config(gqe_lm_attn(lm, 0));
    lua_Integer n = gqe_lm_layers(lm) * a->groups * (a->experts / a->groups);
    if (luaL_len(L, 2) != n) return luaL_error(L, "LM:after_step: loads must hold %d numbers (layers x experts)", (int)n);
    float *loads = lua_newuserdatauv(L, (size_t)n * sizeof *loads, 0);
    for (lua_Integer i = 0; i < n; i++) { lua_geti(L, 2, i + 1); loads[i] = (float)luaL_checknumber(L, -1); lua_pop(L, 1); }
    GQE_LUA_CHECK(L, "LM:after_step", gqe_lm_after_step_loads(lm, loads));
    return 0;
}
static int lm_flops(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    lua_Integer seq = luaL_optinteger(L, 2, gqe_lm_get_config(u->lm)->max_seq);
    lua_pushnumber(L, gqe_lm_flops_per_token(u->lm, seq));
    return 1;
}
static int lm_device(lua_State *L) { lua_pushstring(L, gqe_device_name(lm_dev(check_lm(L, 1)))); return 1; }
static int lm_parameters(lua_State *L) { push_params_views(L, gqe_lm_params(check_lm(L, 1)->lm)); return 2; }

static gqe_attn *lm_layer(lua_State *L, l_lm *u, int idx) {
    lua_Integer l = luaL_checkinteger(L, idx);
    int64_t n = gqe_lm_layers(u->lm);
    if (l < 1 || l > n) luaL_argerror(L, idx, lua_pushfstring(L, "layer %d out of range 1..%d", (int)l, (int)n));
    return gqe_lm_attn(u->lm, l - 1);
}
static int lm_usage(lua_State *L) { l_lm *u = check_lm(L, 1); return push_usage(L, lm_layer(L, u, 2), "LM:usage"); }
static int lm_aux_losses(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    int64_t n = gqe_lm_layers(u->lm);
    lua_createtable(L, (int)n, 0);
    for (int64_t l = 0; l < n; l++) {
        float aux;
        GQE_LUA_CHECK(L, "LM:aux_losses", gqe_attn_aux(gqe_lm_attn(u->lm, l), &aux));
        lua_pushnumber(L, aux);
        lua_seti(L, -2, l + 1);
    }
    return 1;
}
static int lm_routing(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    gqe_attn *a = lm_layer(L, u, 2);
    gqe_tensor p, idx;
    GQE_LUA_CHECK(L, "LM:routing", gqe_attn_routing(a, &p, &idx));
    if (gqe_tensor_is_empty(&p)) { lua_pushnil(L); lua_pushnil(L); return 2; }
    push_host_copy(L, &p, "LM:routing");
    push_host_copy(L, &idx, "LM:routing");
    return 2;
}

static const char *const GEN_KEYS[] = {"seed", "temperature", "top_k", "on_token", NULL};

/* on_token: the Lua function at stack index ctx->fn, called with each new
 * id; an error in it stops generation and is raised after. */
typedef struct gen_cb { lua_State *L; int fn; int failed; } gen_cb;
static int gen_on_token(void *ctx, int32_t id) {
    gen_cb *cb = ctx;
    lua_pushvalue(cb->L, cb->fn);
    lua_pushinteger(cb->L, id);
    if (lua_pcall(cb->L, 1, 0, 0) != LUA_OK) { cb->failed = 1; return 1; }
    return 0;
}

static int lm_generate(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0, 3, "number of new tokens must be >= 0");
    gqe_lua_check_keys(L, 4, "LM:generate", GEN_KEYS);
    gqe_sample_opts o;
    o.temperature = (float)gqe_lua_opt_num(L, 4, "LM:generate", "temperature", 1.0);
    o.top_k = gqe_lua_opt_int(L, 4, "LM:generate", "top_k", 0);
    o.seed = (uint64_t)gqe_lua_opt_int(L, 4, "LM:generate", "seed", 0);
    o.on_token = NULL;
    o.on_token_ctx = NULL;
    gen_cb cb = {L, 0, 0};
    if (lua_istable(L, 4) && lua_getfield(L, 4, "on_token") != LUA_TNIL) {
        luaL_argcheck(L, lua_isfunction(L, -1), 4, "LM:generate: on_token must be a function");
        cb.fn = lua_gettop(L);
        o.on_token = gen_on_token;
        o.on_token_ctx = &cb;
    } else if (lua_istable(L, 4)) {
        lua_pop(L, 1);
    }
    lua_Integer P = luaL_len(L, 2);
    luaL_argcheck(L, P >= 1, 2, "prompt must hold at least one token id");
    /* Validated before the buffer of P + n tokens is sized from them. */
    GQE_LUA_CHECK(L, NULL, gqe_sample_opts_validate(&o));
    int64_t max_seq = gqe_lm_get_config(u->lm)->max_seq;
    if (P > max_seq || n > max_seq - P)
        return luaL_error(L, "LM:generate: prompt (%I tokens) + new tokens (%I) exceed model.max_seq %I",
                          (LUAI_UACINT)P, (LUAI_UACINT)n, (LUAI_UACINT)max_seq);
    int32_t *buf = lua_newuserdatauv(L, (size_t)(P + n) * sizeof(int32_t), 0);
    for (lua_Integer i = 0; i < P; i++) {
        lua_geti(L, 2, i + 1);
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_argerror(L, 2, lua_pushfstring(L, "prompt[%d] is not an integer", (int)(i + 1)));
        buf[i] = (int32_t)v;
        lua_pop(L, 1);
    }
    if (gqe_lm_generate(u->lm, buf, P, n, &o, buf) != GQE_OK) {
        if (cb.failed) return lua_error(L);   /* the callback's own error, left on the stack by lua_pcall */
        return gqe_lua_fail(L, "LM:generate");
    }
    lua_createtable(L, (int)(P + n), 0);
    for (lua_Integer i = 0; i < P + n; i++) { lua_pushinteger(L, buf[i]); lua_seti(L, -2, i + 1); }
    return 1;
}

static int lm_config(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    push_lm_config(L, gqe_lm_get_config(u->lm));
    set_str(L, "device", gqe_device_name(lm_dev(u)));
    set_str(L, "precision", gqe_lm_precision(u->lm));
    return 1;
}
static int lm_tostring(lua_State *L) {
    l_lm *u = luaL_checkudata(L, 1, LM_MT);
    if (!u->lm) { lua_pushstring(L, "gqe.nn.LM (closed)"); return 1; }
    const gqe_lm_config *c = gqe_lm_get_config(u->lm);
    lua_pushfstring(L, "gqe.nn.LM{vocab=%d, dim=%d, layers=%d, attention=%s} %d params %s %s", (int)c->vocab,
                    (int)c->dim, (int)c->layers, gqe_attn_kind_name(c->attn.kind),
                    (int)gqe_lm_num_params(u->lm), gqe_device_name(lm_dev(u)), gqe_lm_precision(u->lm));
    return 1;
}
static int lm_paramset(lua_State *L) {
    l_lm *u = luaL_checkudata(L, 1, LM_MT);
    if (u->lm) lua_pushlightuserdata(L, gqe_lm_params(u->lm)); else lua_pushnil(L);
    return 1;
}

/* router_calls() -> {n per layer}: the random routers' draw counters (a
 * checkpoint holds them); set_router_calls(t) puts them back. */
static int lm_router_calls(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    int64_t n = gqe_lm_layers(u->lm);
    lua_createtable(L, (int)n, 0);
    for (int64_t l = 0; l < n; l++) {
        lua_pushinteger(L, (lua_Integer)gqe_attn_route_calls(gqe_lm_attn(u->lm, l)));
        lua_rawseti(L, -2, l + 1);
    }
    return 1;
}
static int lm_set_router_calls(lua_State *L) {
    l_lm *u = check_lm(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int64_t n = gqe_lm_layers(u->lm);
    luaL_argcheck(L, luaL_len(L, 2) == n, 2, "one counter per layer");
    for (int64_t l = 0; l < n; l++) {
        lua_rawgeti(L, 2, l + 1);
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        luaL_argcheck(L, ok && v >= 0, 2, "counters are integers >= 0");
        gqe_attn_set_route_calls(gqe_lm_attn(u->lm, l), (uint64_t)v);
        lua_pop(L, 1);
    }
    return 0;
}

static const luaL_Reg lm_methods[] = {
    {"loss", lm_loss}, {"accuracy", lm_accuracy}, {"forward", lm_forward}, {"backward", lm_backward}, {"state", lm_state},
    {"grads", lm_grads}, {"load", lm_load}, {"zero_grad", lm_zero_grad}, {"num_params", lm_num_params},
    {"after_step", lm_after_step}, {"flops_per_token", lm_flops}, {"device", lm_device},
    {"parameters", lm_parameters}, {"usage", lm_usage}, {"aux_losses", lm_aux_losses},
    {"routing", lm_routing}, {"generate", lm_generate}, {"config", lm_config},
    {"router_calls", lm_router_calls}, {"set_router_calls", lm_set_router_calls}, {NULL, NULL}};

/* gqe.nn.names: the values the core accepts for each named choice, in the
 * core's order (config.lua's description takes its allowed values here). */
static void push_name_list(lua_State *L, const char *(*name)(int)) {
    lua_newtable(L);
    for (int i = 0; strcmp(name(i), "?") != 0; i++) {
        lua_pushstring(L, name(i));
        lua_seti(L, -2, i + 1);
    }
}
static const char *attention_name(int i) { return gqe_attn_kind_name((gqe_attn_kind)i); }
static const char *variant_name(int i) { return gqe_variant_name((gqe_variant)i); }
static const char *router_name(int i) { return gqe_router_name((gqe_router_kind)i); }
static const char *mlp_name(int i) { return gqe_mlp_name((gqe_mlp_kind)i); }
static void push_names(lua_State *L) {
    lua_newtable(L);
    push_name_list(L, attention_name);
    lua_setfield(L, -2, "attention");
    push_name_list(L, variant_name);
    lua_setfield(L, -2, "variant");
    push_name_list(L, router_name);
    lua_setfield(L, -2, "router");
    push_name_list(L, mlp_name);
    lua_setfield(L, -2, "mlp");
}

static void new_class(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction tostring, lua_CFunction paramset) {
    gqe_lua_new_class(L, mt, methods, gc, tostring);
    lua_pushcfunction(L, paramset);
    lua_setfield(L, -2, "__gqe_paramset");
    lua_pop(L, 1);
}

void gqe_lua_open_nn(lua_State *L) {
    new_class(L, ATTN_MT, attn_methods, attn_gc, attn_tostring, attn_paramset);
    new_class(L, LM_MT, lm_methods, lm_gc, lm_tostring, lm_paramset);
    lua_getfield(L, -1, "nn");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "nn");
    }
    lua_pushcfunction(L, attn_new);
    lua_setfield(L, -2, "GQEAttention");
    lua_pushcfunction(L, lm_new);
    lua_setfield(L, -2, "LM");
    lua_pushcfunction(L, lm_check);
    lua_setfield(L, -2, "check_lm");
    lua_pushcfunction(L, lm_active_heads);
    lua_setfield(L, -2, "active_heads");
    push_names(L);
    lua_setfield(L, -2, "names");
    lua_pop(L, 1);
}
