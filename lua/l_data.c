/* gqe.data: data sets as userdata. `data.open{...}` takes the fields of
 * gqe_data_config; `:batch(split, index, B, T)` returns two i32 CPU tensors
 * of shape (B, T), tokens and targets. */
#include "bind.h"
#include "data.h"

#define DATASET_MT "gqe.Dataset"

static const char *const open_keys[] = {"kind", "path", "val_path", "val_frac", "seed", "vocab", "batch",
                                        "seq", "num_pairs", "num_queries", NULL};

static gqe_dataset **check_box(lua_State *L) { return luaL_checkudata(L, 1, DATASET_MT); }

static gqe_dataset *check_dataset(lua_State *L) {
    gqe_dataset **box = check_box(L);
    if (!*box) luaL_error(L, "data set is closed");
    return *box;
}

static gqe_split check_split(lua_State *L, int idx) {
    gqe_split s;
    if (gqe_split_parse(luaL_checkstring(L, idx), &s) != GQE_OK) gqe_lua_fail(L, "dataset");
    return s;
}

static int l_open(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    gqe_lua_check_keys(L, 1, "data.open", open_keys);
    gqe_data_config cfg;
    gqe_data_config_default(&cfg);
    cfg.kind = gqe_lua_opt_str(L, 1, "data", "kind", cfg.kind);
    cfg.path = gqe_lua_opt_str(L, 1, "data", "path", NULL);
    cfg.val_path = gqe_lua_opt_str(L, 1, "data", "val_path", NULL);
    cfg.val_frac = (double)gqe_lua_opt_num(L, 1, "data", "val_frac", cfg.val_frac);
    cfg.seed = (uint64_t)gqe_lua_opt_int(L, 1, "data", "seed", 0);
    cfg.vocab = (int64_t)gqe_lua_opt_int(L, 1, "data", "vocab", 0);
    cfg.batch = (int64_t)gqe_lua_opt_int(L, 1, "data", "batch", 0);
    cfg.seq = (int64_t)gqe_lua_opt_int(L, 1, "data", "seq", 0);
    cfg.num_pairs = (int64_t)gqe_lua_opt_int(L, 1, "data", "num_pairs", cfg.num_pairs);
    cfg.num_queries = (int64_t)gqe_lua_opt_int(L, 1, "data", "num_queries", 0);
    /* The box exists before the data set, so a Lua error can never leak it. */
    gqe_dataset **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, DATASET_MT);
    GQE_LUA_TRY(L, "data.open", gqe_dataset_open(box, &cfg));
    return 1;
}

static int l_batch(lua_State *L) {
    gqe_dataset *ds = check_dataset(L);
    gqe_split split = check_split(L, 2);
    lua_Integer index = luaL_checkinteger(L, 3), B = luaL_checkinteger(L, 4), T = luaL_checkinteger(L, 5);
    luaL_argcheck(L, index >= 0, 3, "batch index must be >= 0");
    luaL_argcheck(L, B >= 1, 4, "B must be >= 1");
    luaL_argcheck(L, T >= 1, 5, "T must be >= 1");
    gqe_tensor tok, tgt;
    GQE_LUA_TRY(L, "dataset:batch", gqe_tensor_new4(&tok, GQE_I32, GQE_CPU, B, T, 0, 0));
    gqe_status s = gqe_tensor_new4(&tgt, GQE_I32, GQE_CPU, B, T, 0, 0);
    if (s != GQE_OK) { gqe_tensor_free(&tok); return gqe_lua_fail(L, "dataset:batch"); }
    s = gqe_dataset_batch(ds, split, index, B, T, gqe_i32(&tok), gqe_i32(&tgt));
    if (s != GQE_OK) {
        gqe_tensor_free(&tok);
        gqe_tensor_free(&tgt);
        return gqe_lua_fail(L, "dataset:batch");
    }
    gqe_lua_push_tensor(L, tok);
    gqe_lua_push_tensor(L, tgt);
    return 2;
}

static int l_vocab(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)gqe_dataset_vocab(check_dataset(L)));
    return 1;
}

/* Tokens in a split; nil for generated (unbounded) data sets. */
static int l_tokens(lua_State *L) {
    gqe_dataset *ds = check_dataset(L);
    int64_t n = gqe_dataset_tokens(ds, check_split(L, 2));
    if (n < 0) lua_pushnil(L); else lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* ds:token_counts(split) -> {count of id 0, count of id 1, ...} (vocab
 * entries) over the whole split; an error for generated data sets. */
static int l_token_counts(lua_State *L) {
    gqe_dataset *ds = check_dataset(L);
    gqe_split split = check_split(L, 2);
    int64_t V = gqe_dataset_vocab(ds);
    int64_t *counts = lua_newuserdatauv(L, sizeof *counts * (size_t)V, 0);   /* freed by the GC, even on error */
    GQE_LUA_TRY(L, "dataset:token_counts", gqe_dataset_token_counts(ds, split, counts));
    lua_createtable(L, (int)V, 0);
    for (int64_t i = 0; i < V; i++) {
        lua_pushinteger(L, (lua_Integer)counts[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_kind(lua_State *L) {
    lua_pushstring(L, gqe_dataset_kind(check_dataset(L)));
    return 1;
}

static int l_close(lua_State *L) {
    gqe_dataset **box = check_box(L);
    gqe_dataset_free(*box);
    *box = NULL;
    return 0;
}

static int l_tostring(lua_State *L) {
    gqe_dataset **box = check_box(L);
    if (!*box) lua_pushstring(L, "gqe.Dataset (closed)");
    else lua_pushfstring(L, "gqe.Dataset (%s, vocab %I)", gqe_dataset_kind(*box), (lua_Integer)gqe_dataset_vocab(*box));
    return 1;
}

static const luaL_Reg dataset_methods[] = {
    {"batch", l_batch}, {"vocab", l_vocab}, {"tokens", l_tokens}, {"token_counts", l_token_counts}, {"kind", l_kind}, {NULL, NULL}};

void gqe_lua_open_data(lua_State *L) {
    gqe_lua_new_class(L, DATASET_MT, dataset_methods, l_close, l_tostring);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    lua_setfield(L, -2, "data");
}
