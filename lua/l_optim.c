/* gqe.optim: AdamW and SGD optimizers over a model's parameters, gradient
 * clipping, and learning-rate schedules. The model object is any userdata
 * whose metatable carries `__gqe_paramset`: a light userdata pointing at its
 * gqe_paramset, or a function(obj) returning one (so one metatable can serve
 * many objects). The optimizer keeps the model object in its uservalue so the
 * parameters outlive it, and looks the pointer up again before each use so a
 * closed model is an error instead of a dangling pointer. */
#include "bind.h"
#include "optim.h"
#include <math.h>
#include <stdio.h>

#define OPTIM_MT "gqe.Optimizer"
#define SCHEDULE_MT "gqe.Schedule"

typedef struct l_optim { gqe_optimizer *opt; } l_optim;

/* The paramset of the model object at idx, or NULL when the object says it
 * has none (closed). Raises an error when idx is no model object. */
static gqe_paramset *paramset_of(lua_State *L, int idx, const char *what) {
    idx = lua_absindex(L, idx);
    int t = lua_type(L, idx) == LUA_TUSERDATA ? luaL_getmetafield(L, idx, "__gqe_paramset") : LUA_TNIL;
    if (t == LUA_TFUNCTION) {
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
        t = lua_type(L, -1);
    }
    if (t != LUA_TLIGHTUSERDATA) {
        if (t != LUA_TNIL) lua_pop(L, 1);
        luaL_error(L, "%s: params must be a model object with parameters (e.g. gqe.nn.LM), got %s",
                   what, luaL_typename(L, idx));
        return NULL;
    }
    gqe_paramset *ps = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ps;
}

static l_optim *check_optim(lua_State *L, int idx) {
    l_optim *o = luaL_checkudata(L, idx, OPTIM_MT);
    if (!o->opt) luaL_error(L, "optimizer is closed");
    return o;
}

/* The optimizer at idx, after checking that its model is still open. */
static gqe_optimizer *live_optim(lua_State *L, int idx) {
    l_optim *o = check_optim(L, idx);
    lua_getiuservalue(L, idx, 1);
    gqe_paramset *ps = paramset_of(L, -1, "optimizer");
    lua_pop(L, 1);
    if (ps != gqe_optim_paramset(o->opt))
        luaL_error(L, "the model of this optimizer was closed or its parameters were reallocated");
    return o->opt;
}

gqe_optimizer *gqe_lua_check_optim(lua_State *L, int idx) { return live_optim(L, idx); }

/* Options table at idx: nil becomes an empty table so defaults apply. */
static void opts_table(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) {
        lua_settop(L, idx - 1);
        lua_newtable(L);
    }
    luaL_checktype(L, idx, LUA_TTABLE);
}

static void read_decay_flags(lua_State *L, const char *what, gqe_optim_config *c) {
    c->weight_decay = (float)gqe_lua_opt_num(L, 2, what, "weight_decay", c->weight_decay);
    c->decay_norms = gqe_lua_opt_bool(L, 2, what, "decay_norms", c->decay_norms);
    c->decay_embeddings = gqe_lua_opt_bool(L, 2, what, "decay_embeddings", c->decay_embeddings);
    c->decay_router = gqe_lua_opt_bool(L, 2, what, "decay_router", c->decay_router);
    c->router_lr_scale = (float)gqe_lua_opt_num(L, 2, what, "router_lr_scale", c->router_lr_scale);
}

static int push_optimizer(lua_State *L, const gqe_optim_config *cfg, gqe_paramset *ps, const char *what) {
    l_optim *o = lua_newuserdatauv(L, sizeof *o, 1);
    o->opt = NULL;
    luaL_setmetatable(L, OPTIM_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    GQE_LUA_TRY(L, what, gqe_optim_create(&o->opt, cfg, ps));
    return 1;
}

/* What both constructors start with: the model's paramset (an error when it
 * is closed), the options table at 2 checked against keys, and the default
 * config of this kind with options.lr read. */
static gqe_paramset *optim_begin(lua_State *L, const char *what, const char *const *keys,
                                 gqe_optim_kind kind, gqe_optim_config *c) {
    gqe_paramset *ps = paramset_of(L, 1, what);
    if (!ps) {
        luaL_error(L, "%s: the model object is closed", what);
        return NULL;
    }
    opts_table(L, 2);
    gqe_lua_check_keys(L, 2, what, keys);
    *c = gqe_optim_config_default();
    c->kind = kind;
    c->lr = (float)gqe_lua_opt_num(L, 2, what, "lr", c->lr);
    return ps;
}

static int l_adamw(lua_State *L) {
    const char *what = "optim.AdamW";
    static const char *const keys[] = {"lr", "beta1", "beta2", "betas", "eps", "weight_decay", "decay_norms",
                                       "decay_embeddings", "decay_router", "router_lr_scale", NULL};
    gqe_optim_config c;
    gqe_paramset *ps = optim_begin(L, what, keys, GQE_OPTIM_ADAMW, &c);
    c.eps = (float)gqe_lua_opt_num(L, 2, what, "eps", c.eps);
    read_decay_flags(L, what, &c);
    c.beta1 = (float)gqe_lua_opt_num(L, 2, what, "beta1", c.beta1);
    c.beta2 = (float)gqe_lua_opt_num(L, 2, what, "beta2", c.beta2);
    /* betas = {beta1, beta2}: the former name, as in torch.optim.AdamW */
    int t = lua_getfield(L, 2, "betas");
    if (t != LUA_TNIL) {
        lua_getfield(L, 2, "beta1");
        lua_getfield(L, 2, "beta2");
        bool both = !lua_isnil(L, -1) || !lua_isnil(L, -2);
        lua_pop(L, 2);
        if (both) return luaL_error(L, "%s: give beta1 and beta2 only ('betas' is their deprecated form)", what);
        gqe_lua_deprecated(L, what, "betas", "beta1 and beta2");
    }
    if (t == LUA_TTABLE) {
        int ok1, ok2;
        lua_geti(L, -1, 1);
        lua_geti(L, -2, 2);
        c.beta1 = (float)lua_tonumberx(L, -2, &ok1);
        c.beta2 = (float)lua_tonumberx(L, -1, &ok2);
        if (!ok1 || !ok2 || lua_rawlen(L, -3) != 2)
            return luaL_error(L, "%s.betas must be a table of two numbers {beta1, beta2}", what);
        lua_pop(L, 2);
    } else if (t != LUA_TNIL) {
        return luaL_error(L, "%s.betas must be a table of two numbers {beta1, beta2}, got %s", what,
                          luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return push_optimizer(L, &c, ps, what);
}

static int l_sgd(lua_State *L) {
    const char *what = "optim.SGD";
    static const char *const keys[] = {"lr", "momentum", "weight_decay", "nesterov", "decay_norms",
                                       "decay_embeddings", "decay_router", "router_lr_scale", NULL};
    gqe_optim_config c;
    gqe_paramset *ps = optim_begin(L, what, keys, GQE_OPTIM_SGD, &c);
    c.momentum = (float)gqe_lua_opt_num(L, 2, what, "momentum", c.momentum);
    c.nesterov = gqe_lua_opt_bool(L, 2, what, "nesterov", c.nesterov);
    read_decay_flags(L, what, &c);
    return push_optimizer(L, &c, ps, what);
}

/* ---- optimizer methods ------------------------------------------------------ */

static int m_step(lua_State *L) {
    gqe_optimizer *opt = live_optim(L, 1);
    float lr = lua_isnoneornil(L, 2) ? gqe_optim_lr(opt) : (float)luaL_checknumber(L, 2);
    GQE_LUA_TRY(L, "optimizer:step", gqe_optim_step(opt, lr));
    return 0;
}

static int m_zero_grad(lua_State *L) {
    gqe_optimizer *opt = live_optim(L, 1);
    GQE_LUA_TRY(L, "optimizer:zero_grad", gqe_optim_zero_grad(opt));
    return 0;
}

static int m_clip(lua_State *L) {
    gqe_optimizer *opt = live_optim(L, 1);
    float max_norm = (float)luaL_checknumber(L, 2), norm = 0.0f;
    GQE_LUA_TRY(L, "optimizer:clip", gqe_optim_clip(opt, max_norm, &norm));
    lua_pushnumber(L, norm);
    return 1;
}

static int m_lr(lua_State *L) {
    lua_pushnumber(L, gqe_optim_lr(check_optim(L, 1)->opt));
    return 1;
}

static int m_set_lr(lua_State *L) {
    gqe_optimizer *opt = check_optim(L, 1)->opt;
    GQE_LUA_TRY(L, "optimizer:set_lr", gqe_optim_set_lr(opt, (float)luaL_checknumber(L, 2)));
    return 0;
}

static int m_step_count(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)gqe_optim_step_count(check_optim(L, 1)->opt));
    return 1;
}

static int m_set_step_count(lua_State *L) {
    gqe_optimizer *opt = check_optim(L, 1)->opt;
    GQE_LUA_TRY(L, "optimizer:set_step_count", gqe_optim_set_step_count(opt, (int64_t)luaL_checkinteger(L, 2)));
    return 0;
}

/* name -> tensor sharing the optimizer's storage: writing into one restores
 * state, and it stays valid after the optimizer is freed. */
static int m_state(lua_State *L) {
    gqe_optimizer *opt = check_optim(L, 1)->opt;
    int n = gqe_optim_state_count(opt);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        gqe_lua_push_tensor(L, gqe_tensor_ref(gqe_optim_state_tensor(opt, i)));
        lua_setfield(L, -2, gqe_optim_state_name(opt, i));
    }
    return 1;
}

static int m_kind(lua_State *L) {
    lua_pushstring(L, gqe_optim_kind_name(gqe_optim_get_config(check_optim(L, 1)->opt)->kind));
    return 1;
}

static int m_free(lua_State *L) {
    l_optim *o = luaL_checkudata(L, 1, OPTIM_MT);
    gqe_optim_free(o->opt);
    o->opt = NULL;
    return 0;
}

static int m_tostring(lua_State *L) {
    l_optim *o = luaL_checkudata(L, 1, OPTIM_MT);
    if (!o->opt) { lua_pushstring(L, "gqe.Optimizer (closed)"); return 1; }
    const gqe_optim_config *c = gqe_optim_get_config(o->opt);
    char buf[160];
    snprintf(buf, sizeof buf, "gqe.Optimizer(%s, lr=%g, weight_decay=%g, step=%lld)", gqe_optim_kind_name(c->kind),
             (double)gqe_optim_lr(o->opt), (double)c->weight_decay, (long long)gqe_optim_step_count(o->opt));
    lua_pushstring(L, buf);
    return 1;
}

static const luaL_Reg optim_methods[] = {
    {"step", m_step}, {"zero_grad", m_zero_grad}, {"clip", m_clip}, {"lr", m_lr},
    {"set_lr", m_set_lr}, {"step_count", m_step_count}, {"set_step_count", m_set_step_count},
    {"state", m_state}, {"kind", m_kind}, {NULL, NULL}};

/* ---- schedules ----------------------------------------------------------------- */

static int s_lr(lua_State *L) {
    const gqe_schedule_config *c = luaL_checkudata(L, 1, SCHEDULE_MT);
    lua_Integer step = luaL_checkinteger(L, 2);
    lua_Number base = luaL_optnumber(L, 3, 1.0);
    lua_pushnumber(L, gqe_schedule_lr(c, (float)base, (int64_t)step));
    return 1;
}

static int s_config(lua_State *L) {
    const gqe_schedule_config *c = luaL_checkudata(L, 1, SCHEDULE_MT);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, gqe_schedule_kind_name(c->kind)); lua_setfield(L, -2, "kind");
    lua_pushinteger(L, c->warmup); lua_setfield(L, -2, "warmup");
    lua_pushinteger(L, c->total); lua_setfield(L, -2, "total");
    lua_pushnumber(L, c->min_lr); lua_setfield(L, -2, "min_lr");
    lua_pushnumber(L, c->decay_frac); lua_setfield(L, -2, "decay_frac");
    return 1;
}

static int s_tostring(lua_State *L) {
    const gqe_schedule_config *c = luaL_checkudata(L, 1, SCHEDULE_MT);
    char buf[160];
    snprintf(buf, sizeof buf, "gqe.Schedule(%s, warmup=%lld, total=%lld, min_lr=%g, decay_frac=%g)",
             gqe_schedule_kind_name(c->kind), (long long)c->warmup, (long long)c->total, (double)c->min_lr,
             (double)c->decay_frac);
    lua_pushstring(L, buf);
    return 1;
}

static const luaL_Reg schedule_methods[] = {{"lr", s_lr}, {"config", s_config}, {NULL, NULL}};

/* optim.schedule{kind=, warmup=, total=, min_lr=, decay_frac=}: an object
 * called as sched(step, base_lr) or sched:lr(step, base_lr); base_lr
 * defaults to 1, which gives the multiplier. */
static int l_schedule(lua_State *L) {
    const char *what = "optim.schedule";
    static const char *const keys[] = {"kind", "warmup", "total", "min_lr", "decay_frac", NULL};
    lua_settop(L, 1);
    opts_table(L, 1);
    gqe_lua_check_keys(L, 1, what, keys);
    gqe_schedule_config c = gqe_schedule_config_default();
    const char *kind = gqe_lua_opt_str(L, 1, what, "kind", gqe_schedule_kind_name(c.kind));
    GQE_LUA_TRY(L, what, gqe_schedule_kind_parse(kind, &c.kind));
    c.warmup = (int64_t)gqe_lua_opt_int(L, 1, what, "warmup", c.warmup);
    c.total = (int64_t)gqe_lua_opt_int(L, 1, what, "total", c.total);
    c.min_lr = (float)gqe_lua_opt_num(L, 1, what, "min_lr", c.min_lr);
    c.decay_frac = (float)gqe_lua_opt_num(L, 1, what, "decay_frac", c.decay_frac);
    GQE_LUA_TRY(L, what, gqe_schedule_config_validate(&c));
    gqe_schedule_config *u = lua_newuserdatauv(L, sizeof *u, 0);
    *u = c;
    luaL_setmetatable(L, SCHEDULE_MT);
    return 1;
}

static const luaL_Reg optim_funcs[] = {{"AdamW", l_adamw}, {"SGD", l_sgd}, {"schedule", l_schedule}, {NULL, NULL}};

void gqe_lua_open_optim(lua_State *L) {
    gqe_lua_new_class(L, OPTIM_MT, optim_methods, m_free, m_tostring);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SCHEDULE_MT)) {
        luaL_newlib(L, schedule_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, s_lr); lua_setfield(L, -2, "__call");
        lua_pushcfunction(L, s_tostring); lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "optim") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "optim");
    }
    luaL_setfuncs(L, optim_funcs, 0);
    lua_pop(L, 1);
}
