/* gqe.checkpoint.save / load: bindings over core/checkpoint.h. */
#include "bind.h"
#include "checkpoint.h"
#include <stdlib.h>

/* save(path, lm, opt|nil, {step=, data_index=, config=}) */
static int l_save(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    gqe_lm *lm = gqe_lua_check_lm(L, 2);
    gqe_optimizer *opt = lua_isnoneornil(L, 3) ? NULL : gqe_lua_check_optim(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    static const char *const keys[] = {"step", "data_index", "config", NULL};
    gqe_lua_check_keys(L, 4, "checkpoint", keys);
    gqe_checkpoint_info info = {0};
    info.step = gqe_lua_opt_int(L, 4, "checkpoint", "step", 0);
    info.data_index = gqe_lua_opt_int(L, 4, "checkpoint", "data_index", info.step);
    info.config_json = (char *)gqe_lua_opt_str(L, 4, "checkpoint", "config", NULL);
    GQE_LUA_TRY(L, "checkpoint.save", gqe_checkpoint_save(path, lm, opt, &info));
    return 0;
}

/* load(path, lm, opt|nil) -> {step=, data_index=, config=} */
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    gqe_lm *lm = gqe_lua_check_lm(L, 2);
    gqe_optimizer *opt = lua_isnoneornil(L, 3) ? NULL : gqe_lua_check_optim(L, 3);
    gqe_checkpoint_info info = {0};
    GQE_LUA_TRY(L, "checkpoint.load", gqe_checkpoint_load(path, lm, opt, &info));
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, info.step);
    lua_setfield(L, -2, "step");
    lua_pushinteger(L, info.data_index);
    lua_setfield(L, -2, "data_index");
    if (info.config_json) {
        lua_pushstring(L, info.config_json);
        lua_setfield(L, -2, "config");
        free(info.config_json);
    }
    return 1;
}

void gqe_lua_open_checkpoint(lua_State *L) {
    static const luaL_Reg fns[] = {{"save", l_save}, {"load", l_load}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "checkpoint");
}
