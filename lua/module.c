/* luaopen_gqe: the `gqe` module for the host program and for a stock lua5.4.
 * The C bindings fill the table, then the Lua library (the .lua files of lua/gqe,
 * compiled into the binary) extends it through gqe/init.lua. GQE_LUA_DIR
 * points at a directory of those files to use instead, for development. */
#include "bind.h"
#include "embedded.h"
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GQE_VERSION "0.1.0"
#define LIB_PREFIX "lua/gqe/"

/* package.preload loader for an embedded file: upvalues data, length and
 * chunk name; called by require with (modname, extra). */
static int load_embedded(lua_State *L) {
    const char *data = lua_touserdata(L, lua_upvalueindex(1));
    size_t len = (size_t)lua_tointeger(L, lua_upvalueindex(2));
    const char *chunkname = lua_tostring(L, lua_upvalueindex(3));
    if (luaL_loadbuffer(L, data, len, chunkname) != LUA_OK) return lua_error(L);
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* The same for a file on disk (GQE_LUA_DIR): upvalue is the path. */
static int load_disk(lua_State *L) {
    const char *path = lua_tostring(L, lua_upvalueindex(1));
    if (luaL_loadfile(L, path) != LUA_OK) return lua_error(L);
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* "cli.lua" or "x/y.lua" -> pushes "gqe.cli" / "gqe.x.y"; 0 if not a .lua name. */
static int push_modname(lua_State *L, const char *rel) {
    size_t n = strlen(rel);
    if (n < 5 || strcmp(rel + n - 4, ".lua") != 0) return 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "gqe.");
    for (size_t i = 0; i + 4 < n; i++) luaL_addchar(&b, rel[i] == '/' ? '.' : rel[i]);
    luaL_pushresult(&b);
    return 1;
}

/* Registers every library file in the preload table at index `preload`. */
static void register_embedded(lua_State *L, int preload) {
    size_t plen = strlen(LIB_PREFIX);
    for (const gqe_embedded_file *f = gqe_embedded_files; f->path; f++) {
        if (strncmp(f->path, LIB_PREFIX, plen) != 0) continue;
        if (!push_modname(L, f->path + plen)) continue;
        lua_pushlightuserdata(L, (void *)f->data);
        lua_pushinteger(L, (lua_Integer)f->len);
        lua_pushfstring(L, "@%s", f->path);
        lua_pushcclosure(L, load_embedded, 3);
        lua_settable(L, preload);
    }
}

static void register_dir(lua_State *L, int preload, const char *dir, const char *sub) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (!d) {
        if (!*sub) luaL_error(L, "GQE_LUA_DIR: cannot open directory %s", dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char rel[1024];
        snprintf(rel, sizeof rel, "%s%s", sub, e->d_name);
        if (e->d_type == DT_DIR) {
            char nsub[1100];
            snprintf(nsub, sizeof nsub, "%s/", rel);
            register_dir(L, preload, dir, nsub);
            continue;
        }
        if (!push_modname(L, rel)) continue;
        lua_pushfstring(L, "%s/%s", dir, rel);
        lua_pushcclosure(L, load_disk, 1);
        lua_settable(L, preload);
    }
    closedir(d);
}

/* A stock lua5.4 dlcloses C modules when its state closes, while the
 * OpenMP and OpenBLAS worker threads we started are still parked in code
 * from our dependencies: unmapping it crashes those threads at exit. Taking
 * a never-deleted reference to ourselves keeps everything mapped. */
static void pin_library(void) {
    Dl_info info;
    if (dladdr((void *)pin_library, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

int luaopen_gqe(lua_State *L) {
    pin_library();
    lua_newtable(L);
    int mod = lua_gettop(L);
    gqe_lua_open_tensor(L);
    gqe_lua_open_nn(L);
    gqe_lua_open_optim(L);
    gqe_lua_open_data(L);
    gqe_lua_open_runlog(L);
    gqe_lua_open_sys(L);
    gqe_lua_open_checkpoint(L);
    gqe_lua_open_dist(L);
    gqe_lua_open_tok(L);
    gqe_lua_open_eval(L);
    lua_pushliteral(L, GQE_VERSION);
    lua_setfield(L, mod, "version");

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    int preload = lua_gettop(L);
    const char *dir = getenv("GQE_LUA_DIR");
    if (dir && *dir) register_dir(L, preload, dir, "");
    else register_embedded(L, preload);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, mod);
    lua_setfield(L, -2, "gqe");
    lua_pop(L, 1);

    /* init.lua gets the module as `...` and extends it in place. */
    if (lua_getfield(L, preload, "gqe.init") == LUA_TFUNCTION) {
        lua_pushvalue(L, mod);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    lua_settop(L, mod);
    return 1;
}
