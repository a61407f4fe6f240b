/* The helpers of bind.h: tensor userdata and option-table readers shared by
 * every binding file. */
#include "bind.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gqe_lua_push_tensor(lua_State *L, gqe_tensor t) {
    gqe_tensor *u = lua_newuserdatauv(L, sizeof *u, 0);
    *u = t;
    luaL_setmetatable(L, GQE_TENSOR_MT);
}

gqe_tensor *gqe_lua_test_tensor(lua_State *L, int idx) {
    return luaL_testudata(L, idx, GQE_TENSOR_MT);
}

gqe_tensor *gqe_lua_check_tensor(lua_State *L, int idx) {
    gqe_tensor *t = luaL_testudata(L, idx, GQE_TENSOR_MT);
    if (!t) luaL_typeerror(L, idx, "gqe.Tensor");
    /* A closed tensor (<close> or explicit free) must not reach the core. */
    if (!t->storage) luaL_argerror(L, idx, "tensor has been freed");
    return t;
}

int gqe_lua_fail(lua_State *L, const char *what) {
    const char *msg = gqe_last_error();
    if (!msg || !*msg) msg = "unknown error";
    if (what && *what) return luaL_error(L, "%s: %s", what, msg);
    return luaL_error(L, "%s", msg);
}

/* Pushes t[key] when t at idx is a table; returns 0 (nothing pushed) when the
 * table is absent or the key is nil. */
static int opt_field(lua_State *L, int idx, const char *what, const char *key) {
    if (lua_isnoneornil(L, idx)) return 0;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: options must be a table, got %s", what, luaL_typename(L, idx));
    if (lua_getfield(L, idx, key) == LUA_TNIL) { lua_pop(L, 1); return 0; }
    return 1;
}

static int type_error(lua_State *L, const char *what, const char *key, const char *expected) {
    return luaL_error(L, "%s.%s: expected %s, got %s", what, key, expected, luaL_typename(L, -1));
}

lua_Integer gqe_lua_opt_int(lua_State *L, int idx, const char *what, const char *key, lua_Integer def) {
    idx = lua_absindex(L, idx);
    if (!opt_field(L, idx, what, key)) return def;
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || lua_type(L, -1) != LUA_TNUMBER) type_error(L, what, key, "integer");
    lua_pop(L, 1);
    return v;
}

lua_Number gqe_lua_opt_num(lua_State *L, int idx, const char *what, const char *key, lua_Number def) {
    idx = lua_absindex(L, idx);
    if (!opt_field(L, idx, what, key)) return def;
    if (lua_type(L, -1) != LUA_TNUMBER) type_error(L, what, key, "number");
    lua_Number v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The string stays valid while the options table holds it. */
const char *gqe_lua_opt_str(lua_State *L, int idx, const char *what, const char *key, const char *def) {
    idx = lua_absindex(L, idx);
    if (!opt_field(L, idx, what, key)) return def;
    if (lua_type(L, -1) != LUA_TSTRING) type_error(L, what, key, "string");
    const char *v = lua_tostring(L, -1);
    lua_pop(L, 1);
    return v;
}

int gqe_lua_opt_bool(lua_State *L, int idx, const char *what, const char *key, int def) {
    idx = lua_absindex(L, idx);
    if (!opt_field(L, idx, what, key)) return def;
    if (lua_type(L, -1) != LUA_TBOOLEAN) type_error(L, what, key, "boolean");
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void gqe_lua_deprecated(lua_State *L, const char *what, const char *old_name, const char *new_name) {
    /* once per (what, old name): the registry remembers what was said */
    lua_pushfstring(L, "gqe.deprecated %s.%s", what, old_name);
    if (lua_rawget(L, LUA_REGISTRYINDEX) == LUA_TNIL) {
        lua_pushfstring(L, "gqe.deprecated %s.%s", what, old_name);
        lua_pushboolean(L, 1);
        lua_rawset(L, LUA_REGISTRYINDEX);
        fprintf(stderr, "gqe: warning: %s: '%s' is deprecated and goes in the next release; use '%s'\n",
                what, old_name, new_name);
    }
    lua_pop(L, 1);
}

void gqe_lua_check_keys(lua_State *L, int idx, const char *what, const char *const *allowed) {
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: options must be a table, got %s", what, luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            for (const char *const *a = allowed; *a && !known; a++) known = strcmp(*a, k) == 0;
        }
        if (!known) {
            /* key string at -1 from here on, then the sorted list above it */
            const char *key = luaL_tolstring(L, -2, NULL);
            size_t n = 0;
            while (allowed[n]) n++;
            const char **sorted = lua_newuserdatauv(L, (n + 1) * sizeof *sorted, 0);
            memcpy(sorted, allowed, n * sizeof *sorted);
            qsort(sorted, n, sizeof *sorted, cmp_str);
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (size_t i = 0; i < n; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, sorted[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown key '%s' (valid keys: %s)", what, key, lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
}

void gqe_lua_new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                       lua_CFunction close, lua_CFunction tostring) {
    if (!luaL_newmetatable(L, mt)) return;   /* already registered */
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
}
