/* gqe.dist: the job's ranks (env), a communicator (open) with its
 * collectives, and the two data-parallel hooks on a model: its gradients
 * reduced over the ranks and its routing statistics made global. */
#include "bind.h"
#include "dist.h"
#include "nn/lm.h"
#include "nn/params.h"
#include "ops.h"
#include "optim.h"
#include "zero.h"
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define COMM_MT "gqe.Comm"

typedef struct { gqe_comm *c; gqe_paramset *ps; } l_comm;   /* ps: the model whose buckets it reduces */

static gqe_comm *check_comm(lua_State *L, int idx) {
    l_comm *u = luaL_checkudata(L, idx, COMM_MT);
    if (!u->c) luaL_error(L, "communicator is closed");
    return u->c;
}

static gqe_reduce_op check_op(lua_State *L, int idx) {
    static const char *const names[] = {"sum", "mean", "max", NULL};
    static const gqe_reduce_op ops[] = {GQE_REDUCE_SUM, GQE_REDUCE_MEAN, GQE_REDUCE_MAX};
    return ops[luaL_checkoption(L, idx, "sum", names)];
}

static void push_env(lua_State *L, const gqe_dist_env *e) {
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, e->rank); lua_setfield(L, -2, "rank");
    lua_pushinteger(L, e->world); lua_setfield(L, -2, "world");
    lua_pushinteger(L, e->local_rank); lua_setfield(L, -2, "local_rank");
    lua_pushstring(L, e->master_addr); lua_setfield(L, -2, "master_addr");
    lua_pushinteger(L, e->master_port); lua_setfield(L, -2, "master_port");
    lua_pushstring(L, e->source); lua_setfield(L, -2, "source");
}

/* env() -> {rank=, world=, local_rank=, master_addr=, master_port=, source=} */
static int l_env(lua_State *L) {
    gqe_dist_env e;
    GQE_LUA_TRY(L, "dist.env", gqe_dist_env_from_process(&e));
    push_env(L, &e);
    return 1;
}

/* open{backend = "mpi"|"nccl", timeout = seconds} -> comm, for this process's job */
static int l_open(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"backend", "timeout", NULL};
    gqe_lua_check_keys(L, 1, "dist.open", keys);
    gqe_comm_options o = {0};
    o.backend = gqe_lua_opt_str(L, 1, "dist.open", "backend", "mpi");
    o.timeout_s = gqe_lua_opt_num(L, 1, "dist.open", "timeout", 60);
    gqe_dist_env e;
    GQE_LUA_TRY(L, "dist.open", gqe_dist_env_from_process(&e));
    l_comm *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->c = NULL;
    u->ps = NULL;
    luaL_setmetatable(L, COMM_MT);
    GQE_LUA_TRY(L, "dist.open", gqe_comm_open(&u->c, &e, &o));
    return 1;
}

static int c_close(lua_State *L) {
    l_comm *u = luaL_checkudata(L, 1, COMM_MT);
    gqe_comm_close(u->c);
    u->c = NULL;
    return 0;
}
static int c_tostring(lua_State *L) {
    l_comm *u = luaL_checkudata(L, 1, COMM_MT);
    if (!u->c) lua_pushliteral(L, "gqe.Comm(closed)");
    else lua_pushfstring(L, "gqe.Comm(%s, rank %d of %d)", gqe_comm_backend(u->c), gqe_comm_rank(u->c), gqe_comm_world(u->c));
    return 1;
}

static int c_rank(lua_State *L) { lua_pushinteger(L, gqe_comm_rank(check_comm(L, 1))); return 1; }
static int c_world(lua_State *L) { lua_pushinteger(L, gqe_comm_world(check_comm(L, 1))); return 1; }
static int c_local_rank(lua_State *L) { lua_pushinteger(L, gqe_comm_local_rank(check_comm(L, 1))); return 1; }
static int c_backend(lua_State *L) { lua_pushstring(L, gqe_comm_backend(check_comm(L, 1))); return 1; }
static int c_device(lua_State *L) { lua_pushstring(L, gqe_device_name(gqe_comm_device(check_comm(L, 1)))); return 1; }
static int c_abort(lua_State *L) { gqe_comm_abort(check_comm(L, 1)); return 0; }
static int c_barrier(lua_State *L) { GQE_LUA_TRY(L, "barrier", gqe_comm_barrier(check_comm(L, 1))); return 0; }

/* all_reduce(tensor [, "sum"|"mean"|"max"]): in place */
static int c_all_reduce(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    GQE_LUA_TRY(L, "all_reduce", gqe_comm_all_reduce(c, gqe_lua_check_tensor(L, 2), check_op(L, 3)));
    lua_settop(L, 2);
    return 1;
}

/* reduce_scatter(out, in [, op]), all_gather(out, in) */
static int c_reduce_scatter(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    GQE_LUA_TRY(L, "reduce_scatter", gqe_comm_reduce_scatter(c, gqe_lua_check_tensor(L, 2), gqe_lua_check_tensor(L, 3),
                                                              check_op(L, 4)));
    lua_settop(L, 2);
    return 1;
}
static int c_all_gather(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    GQE_LUA_TRY(L, "all_gather", gqe_comm_all_gather(c, gqe_lua_check_tensor(L, 2), gqe_lua_check_tensor(L, 3)));
    lua_settop(L, 2);
    return 1;
}

/* broadcast(tensor, root) in place */
static int c_broadcast(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    GQE_LUA_TRY(L, "broadcast", gqe_comm_broadcast(c, gqe_lua_check_tensor(L, 2), (int)luaL_checkinteger(L, 3)));
    lua_settop(L, 2);
    return 1;
}

/* all_reduce_numbers({x1, x2, ...} [, op]) -> a new table of the reduced values (doubles) */
static int c_all_reduce_numbers(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    gqe_reduce_op op = check_op(L, 3);
    int n = (int)luaL_len(L, 2);
    double *v = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *v, 0);   /* freed by the GC on error */
    for (int i = 0; i < n; i++) {
        lua_geti(L, 2, i + 1);
        v[i] = luaL_checknumber(L, -1);
        lua_pop(L, 1);
    }
    GQE_LUA_TRY(L, "all_reduce", gqe_comm_all_reduce_host(c, v, n, op));
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) { lua_pushnumber(L, v[i]); lua_seti(L, -2, i + 1); }
    return 1;
}

/* broadcast_string(s, root) -> root's string on every rank */
static int c_broadcast_string(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    size_t len = 0;
    const char *s = luaL_optlstring(L, 2, "", &len);
    int root = (int)luaL_checkinteger(L, 3);
    double n = (double)len;
    if (gqe_comm_rank(c) != root) n = 0;
    GQE_LUA_TRY(L, "broadcast", gqe_comm_all_reduce_host(c, &n, 1, GQE_REDUCE_MAX));
    size_t m = (size_t)n;
    char *buf = lua_newuserdatauv(L, m + 1, 0);
    memset(buf, 0, m + 1);
    if (gqe_comm_rank(c) == root) memcpy(buf, s, m);
    GQE_LUA_TRY(L, "broadcast", gqe_comm_broadcast_bytes(c, buf, m, root));
    lua_pushlstring(L, buf, m);
    return 1;
}

/* reduce_grads(lm [, scale]): the model's gradient buffer summed over the
 * ranks, then multiplied by scale (1 / (ranks x micro-batches) for the
 * mean gradient of the global batch). */
static int c_reduce_grads(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    gqe_paramset *ps = gqe_lm_params(gqe_lua_check_lm(L, 2));
    float scale = (float)luaL_optnumber(L, 3, 1.0);
    GQE_LUA_TRY(L, "reduce_grads", gqe_comm_all_reduce(c, &ps->grad, GQE_REDUCE_SUM));
    if (scale != 1.0f) GQE_LUA_TRY(L, "reduce_grads", gqe_scale(&ps->grad, scale));
    return 0;
}

/* A bucket of final gradients: its all-reduce starts now. */
static gqe_status bucket_ready(void *ctx, size_t offset, size_t count) {
    l_comm *u = ctx;
    gqe_tensor v = gqe_tensor_view4(&u->ps->grad, offset, (int64_t)count, 0, 0, 0);
    return gqe_comm_all_reduce_start(u->c, &v);
}

/* overlap_grads(lm, on): while on, lm:backward() starts the all-reduce of
 * each block's gradients as soon as they are final; finish_grads waits. */
static int c_overlap_grads(lua_State *L) {
    l_comm *u = luaL_checkudata(L, 1, COMM_MT);
    check_comm(L, 1);
    gqe_lm *lm = gqe_lua_check_lm(L, 2);
    bool on = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
    u->ps = gqe_lm_params(lm);
    GQE_LUA_TRY(L, "overlap_grads", gqe_lm_set_grad_ready(lm, on ? bucket_ready : NULL, on ? u : NULL));
    return 0;
}

/* finish_grads(lm [, scale]): waits for the started all-reduces, then
 * multiplies the gradients by scale (as reduce_grads). */
static int c_finish_grads(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    gqe_paramset *ps = gqe_lm_params(gqe_lua_check_lm(L, 2));
    float scale = (float)luaL_optnumber(L, 3, 1.0);
    GQE_LUA_TRY(L, "finish_grads", gqe_comm_wait(c));
    if (scale != 1.0f) GQE_LUA_TRY(L, "finish_grads", gqe_scale(&ps->grad, scale));
    return 0;
}

static gqe_status stats_mean(void *ctx, gqe_tensor *t) { return gqe_comm_all_reduce(ctx, t, GQE_REDUCE_MEAN); }

/* share_routing(lm, on): the model's routing statistics become their mean
 * over the ranks (off: this rank's own again). */
static int c_share_routing(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    gqe_lm *lm = gqe_lua_check_lm(L, 2);
    bool on = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
    gqe_lm_set_stats_reduce(lm, on ? stats_mean : NULL, on ? c : NULL);
    return 0;
}

/* scale_grads(lm, scale): without a communicator (one rank, micro-batches) */
static int l_scale_grads(lua_State *L) {
    gqe_paramset *ps = gqe_lm_params(gqe_lua_check_lm(L, 1));
    GQE_LUA_TRY(L, "scale_grads", gqe_scale(&ps->grad, (float)luaL_checknumber(L, 2)));
    return 0;
}

/* adopt_orphans(): ranks whose own launcher (mpirun) ended before them
 * become this process's children, so gqe launch reaps them and a run's
 * pid check sees them gone. */
static int l_adopt_orphans(lua_State *L) {
    lua_pushboolean(L, prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
    return 1;
}

/* ---- ZeRO-1 ----------------------------------------------------------- */
#define ZERO_MT "gqe.Zero"
typedef struct { gqe_zero *z; } l_zero;

static gqe_zero *check_zero(lua_State *L, int idx) {
    l_zero *u = luaL_checkudata(L, idx, ZERO_MT);
    if (!u->z) luaL_error(L, "ZeRO optimizer is closed");
    return u->z;
}

/* zero(comm, opt) -> the sharded twin of optimizer opt (its config and
 * model); opt itself can be closed afterwards. */
static int l_zero_new(lua_State *L) {
    gqe_comm *c = check_comm(L, 1);
    gqe_optimizer *opt = gqe_lua_check_optim(L, 2);
    l_zero *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->z = NULL;
    luaL_setmetatable(L, ZERO_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);   /* the communicator lives as long as this */
    GQE_LUA_TRY(L, "dist.zero", gqe_zero_create(&u->z, gqe_optim_get_config(opt), gqe_optim_paramset(opt), c));
    return 1;
}
static int z_close(lua_State *L) {
    l_zero *u = luaL_checkudata(L, 1, ZERO_MT);
    gqe_zero_free(u->z);
    u->z = NULL;
    return 0;
}
static int z_tostring(lua_State *L) {
    l_zero *u = luaL_checkudata(L, 1, ZERO_MT);
    lua_pushfstring(L, "gqe.Zero(%s)", u->z ? "open" : "closed");
    return 1;
}
/* reduce(grad_scale, max_norm) -> global gradient norm */
static int z_reduce(lua_State *L) {
    gqe_zero *z = check_zero(L, 1);
    float norm = 0;
    GQE_LUA_TRY(L, "zero:reduce", gqe_zero_reduce(z, (float)luaL_checknumber(L, 2), (float)luaL_optnumber(L, 3, 0), &norm));
    lua_pushnumber(L, norm);
    return 1;
}
static int z_step(lua_State *L) {
    GQE_LUA_TRY(L, "zero:step", gqe_zero_step(check_zero(L, 1), (float)luaL_checknumber(L, 2)));
    return 0;
}
static int z_gather(lua_State *L) {
    GQE_LUA_TRY(L, "zero:gather", gqe_zero_gather(check_zero(L, 1), gqe_lua_check_optim(L, 2)));
    return 0;
}
static int z_scatter(lua_State *L) {
    GQE_LUA_TRY(L, "zero:scatter", gqe_zero_scatter(check_zero(L, 1), gqe_lua_check_optim(L, 2)));
    return 0;
}
static int z_state_bytes(lua_State *L) { lua_pushinteger(L, (lua_Integer)gqe_zero_state_bytes(check_zero(L, 1))); return 1; }

void gqe_lua_open_dist(lua_State *L) {
    static const luaL_Reg zero_methods[] = {{"reduce", z_reduce}, {"step", z_step}, {"gather", z_gather},
                                            {"scatter", z_scatter}, {"state_bytes", z_state_bytes}, {NULL, NULL}};
    gqe_lua_new_class(L, ZERO_MT, zero_methods, z_close, z_tostring);
    lua_pop(L, 1);
    static const luaL_Reg methods[] = {
        {"rank", c_rank}, {"world", c_world}, {"local_rank", c_local_rank}, {"backend", c_backend},
        {"device", c_device}, {"abort", c_abort}, {"barrier", c_barrier}, {"all_reduce", c_all_reduce},
        {"reduce_scatter", c_reduce_scatter}, {"all_gather", c_all_gather}, {"broadcast", c_broadcast},
        {"all_reduce_numbers", c_all_reduce_numbers}, {"broadcast_string", c_broadcast_string},
        {"reduce_grads", c_reduce_grads}, {"share_routing", c_share_routing}, {"overlap_grads", c_overlap_grads},
        {"finish_grads", c_finish_grads}, {NULL, NULL}};
    gqe_lua_new_class(L, COMM_MT, methods, c_close, c_tostring);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"env", l_env}, {"open", l_open}, {"scale_grads", l_scale_grads},
                                   {"adopt_orphans", l_adopt_orphans}, {"zero", l_zero_new}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "dist");
}
