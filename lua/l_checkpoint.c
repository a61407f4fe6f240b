/* gqe.checkpoint.save / load: bindings over core/checkpoint.h. */
#include "bind.h"
#include "checkpoint.h"
#include <stdlib.h>

/* save(path, lm, opt|nil, {step=, data_index=, config=, run_uid=, config_hash=}) */
static int l_save(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    gqe_lm *lm = gqe_lua_check_lm(L, 2);
    gqe_optimizer *opt = lua_isnoneornil(L, 3) ? NULL : gqe_lua_check_optim(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    static const char *const keys[] = {"step", "data_index", "config", "run_uid", "config_hash", NULL};
    gqe_lua_check_keys(L, 4, "checkpoint", keys);
    gqe_checkpoint_info info = {0};
    info.step = gqe_lua_opt_int(L, 4, "checkpoint", "step", 0);
    info.data_index = gqe_lua_opt_int(L, 4, "checkpoint", "data_index", info.step);
    info.config_json = (char *)gqe_lua_opt_str(L, 4, "checkpoint", "config", NULL);
    info.run_uid = (char *)gqe_lua_opt_str(L, 4, "checkpoint", "run_uid", NULL);
    info.config_hash = (char *)gqe_lua_opt_str(L, 4, "checkpoint", "config_hash", NULL);
    GQE_LUA_TRY(L, "checkpoint.save", gqe_checkpoint_save(path, lm, opt, &info));
    return 0;
}

static void set_str(lua_State *L, const char *key, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, key);
}

/* load(path, lm, opt|nil[, {run_uid=, config_hash=, step=}]) -> {step=,
 * data_index=, config=, run_uid=, config_hash=, verified=}; the optional
 * table is the identity the file must have before anything is restored. */
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    gqe_lm *lm = gqe_lua_check_lm(L, 2);
    gqe_optimizer *opt = lua_isnoneornil(L, 3) ? NULL : gqe_lua_check_optim(L, 3);
    gqe_checkpoint_info expect = {.step = -1}, *exp = NULL;
    if (!lua_isnoneornil(L, 4)) {
        static const char *const keys[] = {"run_uid", "config_hash", "step", NULL};
        gqe_lua_check_keys(L, 4, "checkpoint.load", keys);
        expect.run_uid = (char *)gqe_lua_opt_str(L, 4, "checkpoint.load", "run_uid", NULL);
        expect.config_hash = (char *)gqe_lua_opt_str(L, 4, "checkpoint.load", "config_hash", NULL);
        expect.step = gqe_lua_opt_int(L, 4, "checkpoint.load", "step", -1);
        exp = &expect;
    }
    gqe_checkpoint_info info = {0};
    GQE_LUA_TRY(L, "checkpoint.load", gqe_checkpoint_load_expecting(path, lm, opt, exp, &info));
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, info.step);
    lua_setfield(L, -2, "step");
    lua_pushinteger(L, info.data_index);
    lua_setfield(L, -2, "data_index");
    lua_pushboolean(L, info.verified);
    lua_setfield(L, -2, "verified");
    set_str(L, "config", info.config_json);
    set_str(L, "run_uid", info.run_uid);
    set_str(L, "config_hash", info.config_hash);
    gqe_checkpoint_info_free(&info);
    return 1;
}

void gqe_lua_open_checkpoint(lua_State *L) {
    static const luaL_Reg fns[] = {{"save", l_save}, {"load", l_load}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "checkpoint");
}
