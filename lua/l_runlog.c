/* gqe.db: the run log from Lua. db.open(path) returns a handle whose methods
 * mirror core/runlog.h; ids are Lua integers, SQL NULL is nil, and a failing
 * call raises a Lua error carrying the core's message. */
#include <string.h>
#include "bind.h"
#include "runlog.h"

#define RUNLOG_MT "gqe.RunLog"

/* Run-log failures (corrupt, full, locked, read-only database) are the
 * user's to read: the message names the database and the cause, so it is
 * raised without a "file:line:" prefix, which the host would take for a bug
 * in the code and print a traceback under. */
#undef GQE_LUA_TRY
#define GQE_LUA_TRY(L, what, expr) do { if ((expr) != GQE_OK) return runlog_fail(L, what); } while (0)
static int runlog_fail(lua_State *L, const char *what) {
    lua_pushfstring(L, "%s: %s", what, gqe_last_error());
    return lua_error(L);
}

typedef struct { gqe_runlog *db; } l_runlog;

static gqe_runlog *check_db(lua_State *L) {
    l_runlog *u = luaL_checkudata(L, 1, RUNLOG_MT);
    if (!u->db) luaL_error(L, "run log: handle is closed");
    return u->db;
}

static int l_open(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    l_runlog *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->db = NULL;
    luaL_setmetatable(L, RUNLOG_MT);
    GQE_LUA_TRY(L, "db.open", gqe_runlog_open(&u->db, path));
    return 1;
}

static int l_close(lua_State *L) {
    l_runlog *u = luaL_checkudata(L, 1, RUNLOG_MT);
    gqe_runlog_close(u->db);   /* flushes what is buffered */
    u->db = NULL;
    return 0;
}

static int l_tostring(lua_State *L) {
    l_runlog *u = luaL_checkudata(L, 1, RUNLOG_MT);
    lua_pushfstring(L, "gqe.db (%s)", u->db ? "open" : "closed");
    return 1;
}

static int l_experiment(lua_State *L) {
    gqe_runlog *db = check_db(L);
    int64_t id;
    GQE_LUA_TRY(L, "db:experiment", gqe_runlog_experiment(db, luaL_checkstring(L, 2), &id));
    lua_pushinteger(L, id);
    return 1;
}

static int l_find_finished(lua_State *L) {
    gqe_runlog *db = check_db(L);
    int64_t id;
    GQE_LUA_TRY(L, "db:find_finished", gqe_runlog_find_finished(db, luaL_checkinteger(L, 2),
                luaL_checkstring(L, 3), luaL_optstring(L, 4, NULL), &id));
    if (id) lua_pushinteger(L, id); else lua_pushnil(L);
    return 1;
}

/* The text stored for a param value: strings as is, integers without a
 * decimal point, booleans as true/false. */
static const char *param_text(lua_State *L, int idx, const char *key) {
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: return lua_tostring(L, idx);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) return lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        return lua_pushfstring(L, "%s", lua_tostring(L, idx));   /* copy: lua_tostring would mutate the slot */
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "true" : "false";
    default:
        luaL_error(L, "begin_run: params['%s'] is a %s; expected a string, number or boolean "
                   "(flatten nested tables to dotted keys)", key, luaL_typename(L, idx));
        return NULL;
    }
}

static int l_begin_run(lua_State *L) {
    gqe_runlog *db = check_db(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const allowed[] = {"experiment_id", "name", "config_json", "config_hash", "params",
                                          "git_commit", "git_dirty", "host", "pid", "device", "seed", NULL};
    gqe_lua_check_keys(L, 2, "begin_run", allowed);
    gqe_run_info info = {0};
    info.experiment_id = gqe_lua_opt_int(L, 2, "begin_run", "experiment_id", 0);
    info.name = gqe_lua_opt_str(L, 2, "begin_run", "name", NULL);
    info.config_json = gqe_lua_opt_str(L, 2, "begin_run", "config_json", NULL);
    info.config_hash = gqe_lua_opt_str(L, 2, "begin_run", "config_hash", NULL);
    info.git_commit = gqe_lua_opt_str(L, 2, "begin_run", "git_commit", NULL);
    lua_getfield(L, 2, "git_dirty");
    info.git_dirty = lua_isnil(L, -1) ? -1 : gqe_lua_opt_bool(L, 2, "begin_run", "git_dirty", 0);
    lua_pop(L, 1);
    info.host = gqe_lua_opt_str(L, 2, "begin_run", "host", NULL);
    info.pid = gqe_lua_opt_int(L, 2, "begin_run", "pid", 0);
    info.device = gqe_lua_opt_str(L, 2, "begin_run", "device", NULL);
    info.seed = gqe_lua_opt_int(L, 2, "begin_run", "seed", 0);
    if (!info.name) return luaL_error(L, "begin_run: name is required");

    /* Param strings are anchored in a table at index `anchor` so the pointers
     * handed to C stay valid until the call returns. */
    lua_getfield(L, 2, "params");
    int params = lua_gettop(L);
    int n = 0;
    if (!lua_isnil(L, params)) {
        luaL_argexpected(L, lua_istable(L, params), 2, "params to be a table of key = value");
        lua_pushnil(L);
        while (lua_next(L, params)) { n++; lua_pop(L, 1); }
    }
    const char **keys = lua_newuserdatauv(L, sizeof(char *) * (size_t)(2 * n + 1), 0);
    const char **vals = keys + n;
    lua_newtable(L);
    int anchor = lua_gettop(L);
    int i = 0;
    if (n) {
        lua_pushnil(L);
        while (lua_next(L, params)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "begin_run: params keys must be strings (got a %s)", luaL_typename(L, -2));
            keys[i] = lua_tostring(L, -2);
            vals[i] = param_text(L, lua_gettop(L), keys[i]);
            lua_pushstring(L, vals[i]);
            lua_rawseti(L, anchor, i + 1);
            lua_settop(L, anchor + 1);   /* keep only the key for lua_next */
            i++;
        }
    }
    info.nparams = n;
    info.param_keys = keys;
    info.param_values = vals;
    int64_t id;
    GQE_LUA_TRY(L, "db:begin_run", gqe_runlog_run_begin(db, &info, &id));
    lua_pushinteger(L, id);
    return 1;
}

static int l_log(lua_State *L) {
    gqe_runlog *db = check_db(L);
    lua_Integer run = luaL_checkinteger(L, 2), step = luaL_checkinteger(L, 3);
    if (lua_istable(L, 4)) {   /* log(run, step, {key = value, ...}) */
        lua_pushnil(L);
        while (lua_next(L, 4)) {
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isnumber(L, -1))
                return luaL_error(L, "db:log: the table must map metric names to numbers");
            GQE_LUA_TRY(L, "db:log", gqe_runlog_metric(db, run, step, lua_tostring(L, -2), lua_tonumber(L, -1)));
            lua_pop(L, 1);
        }
        return 0;
    }
    GQE_LUA_TRY(L, "db:log", gqe_runlog_metric(db, run, step, luaL_checkstring(L, 4), luaL_checknumber(L, 5)));
    return 0;
}

static int l_head_usage(lua_State *L) {
    gqe_runlog *db = check_db(L);
    GQE_LUA_TRY(L, "db:head_usage", gqe_runlog_head_usage(db, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3),
                (int)luaL_checkinteger(L, 4), (int)luaL_checkinteger(L, 5), (int)luaL_checkinteger(L, 6),
                luaL_checkinteger(L, 7), luaL_checknumber(L, 8), luaL_checknumber(L, 9)));
    return 0;
}

static int l_eval(lua_State *L) {
    gqe_runlog *db = check_db(L);
    GQE_LUA_TRY(L, "db:eval", gqe_runlog_eval(db, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3),
                luaL_checkstring(L, 4), luaL_checkstring(L, 5), luaL_checknumber(L, 6)));
    return 0;
}

/* A set (path -> true): a retried write may report a path twice. */
static void collect_path(void *ud, const char *path) {
    lua_State *L = ud;
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, path);
}

/* checkpoint(run, step, path[, keep]) -> list of the paths pruned (keep > 0:
 * the run keeps its newest `keep` checkpoint rows; remove the files). */
static int l_checkpoint(lua_State *L) {
    gqe_runlog *db = check_db(L);
    lua_Integer run = luaL_checkinteger(L, 2), step = luaL_checkinteger(L, 3), keep = luaL_optinteger(L, 5, 0);
    const char *path = luaL_checkstring(L, 4);
    lua_newtable(L);
    GQE_LUA_TRY(L, "db:checkpoint", gqe_runlog_checkpoint_keep(db, run, step, path, keep, collect_path, L));
    lua_newtable(L);
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, -3)) { lua_pop(L, 1); lua_pushvalue(L, -1); lua_rawseti(L, -3, ++i); }
    return 1;
}

/* claim_run(id) -> {status=, error=, ended=}: what the run was (see
 * gqe_runlog_run_claim); unclaim_run(id, that table) puts it back. */
static int l_claim_run(lua_State *L) {
    gqe_runlog *db = check_db(L);
    gqe_run_prev prev;
    GQE_LUA_TRY(L, "db:claim_run", gqe_runlog_run_claim(db, luaL_checkinteger(L, 2), &prev));
    lua_createtable(L, 0, 3);
    lua_pushstring(L, prev.status);
    lua_setfield(L, -2, "status");
    if (prev.error) { lua_pushstring(L, prev.error); lua_setfield(L, -2, "error"); }
    if (prev.ended >= 0) { lua_pushnumber(L, prev.ended); lua_setfield(L, -2, "ended"); }
    gqe_run_prev_free(&prev);
    return 1;
}

static int l_unclaim_run(lua_State *L) {
    gqe_runlog *db = check_db(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "status");
    lua_getfield(L, 3, "error");
    lua_getfield(L, 3, "ended");
    gqe_run_prev prev = {(char *)luaL_checkstring(L, -3), (char *)luaL_optstring(L, -2, NULL), luaL_optnumber(L, -1, -1)};
    GQE_LUA_TRY(L, "db:unclaim_run", gqe_runlog_run_unclaim(db, id, &prev));
    return 0;
}

static int l_flush(lua_State *L) {
    GQE_LUA_TRY(L, "db:flush", gqe_runlog_flush(check_db(L)));
    return 0;
}

static int l_pending(lua_State *L) {
    lua_pushinteger(L, gqe_runlog_pending(check_db(L)));
    return 1;
}

static int l_end_run(lua_State *L) {
    gqe_runlog *db = check_db(L);
    GQE_LUA_TRY(L, "db:end_run", gqe_runlog_run_end(db, luaL_checkinteger(L, 2), luaL_checkstring(L, 3),
                luaL_optstring(L, 4, NULL)));
    return 0;
}

static int l_mark_crashed(lua_State *L) {
    gqe_runlog *db = check_db(L);
    int64_t n;
    GQE_LUA_TRY(L, "db:mark_crashed", gqe_runlog_mark_crashed(db, luaL_optstring(L, 2, NULL),
                luaL_optnumber(L, 3, 0), &n));
    lua_pushinteger(L, n);
    return 1;
}

static int l_bench(lua_State *L) {
    gqe_runlog *db = check_db(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const allowed[] = {"name", "key", "value", "unit", "baseline", "device",
                                          "git_commit", "notes", NULL};
    gqe_lua_check_keys(L, 2, "bench", allowed);
    const char *name = gqe_lua_opt_str(L, 2, "bench", "name", NULL);
    const char *key = gqe_lua_opt_str(L, 2, "bench", "key", NULL);
    lua_getfield(L, 2, "value");
    if (!lua_isnumber(L, -1)) return luaL_error(L, "bench: value must be a number");
    lua_pop(L, 1);
    GQE_LUA_TRY(L, "db:bench", gqe_runlog_bench(db, name, key, gqe_lua_opt_num(L, 2, "bench", "value", 0),
                gqe_lua_opt_str(L, 2, "bench", "unit", NULL), gqe_lua_opt_num(L, 2, "bench", "baseline", 0),
                gqe_lua_opt_str(L, 2, "bench", "device", NULL), gqe_lua_opt_str(L, 2, "bench", "git_commit", NULL),
                gqe_lua_opt_str(L, 2, "bench", "notes", NULL)));
    return 0;
}

static void to_db_value(lua_State *L, int idx, gqe_db_value *v, const char *what) {
    memset(v, 0, sizeof *v);
    size_t len;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: v->type = GQE_DB_NULL; break;
    case LUA_TBOOLEAN: v->type = GQE_DB_INT; v->i = lua_toboolean(L, idx); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) { v->type = GQE_DB_INT; v->i = lua_tointeger(L, idx); }
        else { v->type = GQE_DB_REAL; v->d = lua_tonumber(L, idx); }
        break;
    case LUA_TSTRING: v->type = GQE_DB_TEXT; v->s = lua_tolstring(L, idx, &len); v->len = (int64_t)len; break;
    default: luaL_error(L, "db:query: parameter %s is a %s; expected nil, boolean, number or string",
                        what, luaL_typename(L, idx));
    }
}

/* Appends the row as a table keyed by column name to the array at -1. */
static int push_row(void *ud, int ncol, const char *const *names, const gqe_db_value *v) {
    lua_State *L = ud;
    lua_createtable(L, 0, ncol);
    for (int c = 0; c < ncol; c++) {
        switch (v[c].type) {
        case GQE_DB_NULL: continue;
        case GQE_DB_INT:  lua_pushinteger(L, v[c].i); break;
        case GQE_DB_REAL: lua_pushnumber(L, v[c].d); break;
        default:          lua_pushlstring(L, v[c].s, (size_t)v[c].len); break;
        }
        lua_setfield(L, -2, names[c]);
    }
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* query(sql, b1, b2, ...) binds ?1, ?2...; query(sql, {experiment = "x"})
 * binds :experiment. Returns an array of rows. */
static int l_query(lua_State *L) {
    gqe_runlog *db = check_db(L);
    const char *sql = luaL_checkstring(L, 2);
    int top = lua_gettop(L), named = top == 3 && lua_istable(L, 3);
    int n = 0;
    if (named) { lua_pushnil(L); while (lua_next(L, 3)) { n++; lua_pop(L, 1); } }
    else n = top - 2;
    gqe_db_value *binds = lua_newuserdatauv(L, sizeof *binds * (size_t)(n + 1), 0);
    const char **names = lua_newuserdatauv(L, sizeof *names * (size_t)(n + 1), 0);
    int scratch = lua_gettop(L);
    if (named) {
        /* Keys and values stay referenced by the table, so pointers stay valid. */
        int i = 0;
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "db:query: named parameters need string keys");
            names[i] = lua_tostring(L, -2);
            to_db_value(L, -1, &binds[i], names[i]);
            lua_pop(L, 1);
            i++;
        }
    } else {
        for (int i = 0; i < n; i++) {
            char what[16];
            snprintf(what, sizeof what, "%d", i + 1);
            to_db_value(L, 3 + i, &binds[i], what);
        }
    }
    lua_settop(L, scratch);
    lua_newtable(L);
    GQE_LUA_TRY(L, "db:query", gqe_runlog_query(db, sql, n, binds, named ? names : NULL, push_row, L));
    return 1;
}

static int l_exec(lua_State *L) {
    gqe_runlog *db = check_db(L);
    GQE_LUA_TRY(L, "db:exec", gqe_runlog_exec(db, luaL_checkstring(L, 2)));
    return 0;
}

static int l_set_timeout(lua_State *L) {
    gqe_runlog_set_timeout(check_db(L), luaL_checknumber(L, 2));
    return 0;
}

/* db.saved_query("compare_runs") -> SQL text of analysis/queries/compare_runs.sql, or nil. */
static int l_saved_query(lua_State *L) {
    const char *sql = gqe_runlog_saved_query(luaL_checkstring(L, 1));
    if (sql) lua_pushstring(L, sql); else lua_pushnil(L);
    return 1;
}

void gqe_lua_open_runlog(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"experiment", l_experiment}, {"find_finished", l_find_finished}, {"begin_run", l_begin_run},
        {"log", l_log}, {"head_usage", l_head_usage}, {"eval", l_eval}, {"checkpoint", l_checkpoint},
        {"flush", l_flush}, {"pending", l_pending}, {"end_run", l_end_run}, {"mark_crashed", l_mark_crashed},
        {"claim_run", l_claim_run}, {"unclaim_run", l_unclaim_run},
        {"bench", l_bench}, {"query", l_query}, {"exec", l_exec}, {"set_timeout", l_set_timeout},
        {NULL, NULL}};
    gqe_lua_new_class(L, RUNLOG_MT, methods, l_close, l_tostring);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"open", l_open}, {"saved_query", l_saved_query}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushinteger(L, gqe_runlog_schema_version());
    lua_setfield(L, -2, "schema_version");
    lua_setfield(L, -2, "db");
}
