/* gqe.eval: multiple-choice tasks and their scoring (core/eval.h).
 *   eval.task() -> Task;  eval.read_llmc(path) -> Task
 *   task:add(ctx_ids, {choice_ids, ...}, label [, {choice_bytes, ...}])  (label 0-based)
 *   task:measure(tokenizer|nil)   task:check_vocab(vocab, name)   #task   task:longest()
 *   eval.score(lm, task, B, T) -> {n, acc, acc_norm}, {logprob per choice, in order} */
#include "bind.h"
#include "eval.h"
#include <stdlib.h>
#include <stdint.h>

#define TASK_MT "gqe.Task"

static gqe_mc_task *check_task(lua_State *L, int idx) { return luaL_checkudata(L, idx, TASK_MT); }

static gqe_mc_task *new_task(lua_State *L) {
    gqe_mc_task *t = lua_newuserdatauv(L, sizeof *t, 0);
    *t = (gqe_mc_task){0};
    luaL_setmetatable(L, TASK_MT);
    return t;
}

static int l_task(lua_State *L) { new_task(L); return 1; }

static int l_read_llmc(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    GQE_LUA_TRY(L, "eval.read_llmc", gqe_mc_task_read_llmc(new_task(L), path));
    return 1;
}

/* The integer ids of the Lua list at idx, copied to dst (n entries). */
static void ids_into(lua_State *L, int idx, int32_t *dst, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < INT32_MIN || v > INT32_MAX) luaL_error(L, "%s: entry %d is not a token id", what, (int)i + 1);
        dst[i] = (int32_t)v;
    }
}

static int task_add(lua_State *L) {
    gqe_mc_task *t = check_task(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer label = luaL_checkinteger(L, 4);
    int has_bytes = !lua_isnoneornil(L, 5);
    if (has_bytes) luaL_checktype(L, 5, LUA_TTABLE);
    int nc = (int)luaL_len(L, 3);
    int64_t nctx = (int64_t)luaL_len(L, 2), total = nctx;
    for (int c = 0; c < nc; c++) {
        lua_rawgeti(L, 3, c + 1);
        luaL_argcheck(L, lua_istable(L, -1), 3, "task:add: every choice must be a list of token ids");
        total += (int64_t)luaL_len(L, -1);
        lua_pop(L, 1);
    }
    /* One buffer the garbage collector owns: a Lua error below leaks nothing. */
    size_t bytes = (size_t)(total + 1) * sizeof(int32_t) + (size_t)(nc + 1) * (sizeof(int32_t *) + 2 * sizeof(int64_t));
    char *mem = lua_newuserdatauv(L, bytes, 0);
    int32_t **choice = (int32_t **)mem;
    int64_t *len = (int64_t *)(choice + nc + 1), *nbytes = len + nc + 1;
    int32_t *tok = (int32_t *)(nbytes + nc + 1);
    ids_into(L, 2, tok, nctx, "task:add context");
    int32_t *p = tok + nctx;
    for (int c = 0; c < nc; c++) {
        lua_rawgeti(L, 3, c + 1);
        len[c] = (int64_t)luaL_len(L, -1);
        choice[c] = p;
        ids_into(L, lua_gettop(L), p, len[c], "task:add choice");
        p += len[c];
        lua_pop(L, 1);
        if (has_bytes) { lua_rawgeti(L, 5, c + 1); nbytes[c] = lua_tointeger(L, -1); lua_pop(L, 1); }
    }
    GQE_LUA_TRY(L, "task:add", gqe_mc_task_add(t, tok, nctx, nc, (const int32_t *const *)choice, len,
                                                has_bytes ? nbytes : NULL, label < 0 || label > 1 << 30 ? -1 : (int)label));
    return 0;
}

static int task_measure(lua_State *L) {
    gqe_mc_task *t = check_task(L, 1);
    const gqe_tokenizer *tok = NULL;
    if (!lua_isnoneornil(L, 2)) tok = *(gqe_tokenizer **)luaL_checkudata(L, 2, "gqe.Tokenizer");
    GQE_LUA_TRY(L, "task:measure", gqe_mc_task_measure(t, tok));
    return 0;
}

static int task_check_vocab(lua_State *L) {
    gqe_mc_task *t = check_task(L, 1);
    lua_Integer v = luaL_checkinteger(L, 2);
    const char *name = luaL_optstring(L, 3, "task");
    GQE_LUA_TRY(L, "task", gqe_mc_task_check_vocab(t, v, name));
    return 0;
}

static int task_len(lua_State *L) { lua_pushinteger(L, check_task(L, 1)->n); return 1; }

/* The longest row: context + choice tokens. */
static int task_longest(lua_State *L) {
    gqe_mc_task *t = check_task(L, 1);
    int64_t m = 0;
    for (int64_t i = 0; i < t->n; i++)
        for (int c = 0; c < t->ex[i].nchoices; c++) {
            int64_t n = t->ex[i].nctx + t->choice_len[t->ex[i].choice_off + c];
            if (n > m) m = n;
        }
    lua_pushinteger(L, m);
    return 1;
}
static int task_choices(lua_State *L) { lua_pushinteger(L, check_task(L, 1)->nchoice); return 1; }

static int task_close(lua_State *L) { gqe_mc_task_free(check_task(L, 1)); return 0; }
static int task_tostring(lua_State *L) {
    gqe_mc_task *t = check_task(L, 1);
    lua_pushfstring(L, "gqe.Task(%d examples, %d choices)", (int)t->n, (int)t->nchoice);
    return 1;
}

static int l_score(lua_State *L) {
    gqe_lm *lm = gqe_lua_check_lm(L, 1);
    gqe_mc_task *t = check_task(L, 2);
    lua_Integer B = luaL_checkinteger(L, 3), T = luaL_checkinteger(L, 4);
    double *lp = malloc((size_t)(t->nchoice ? t->nchoice : 1) * sizeof *lp);
    if (!lp) return luaL_error(L, "eval.score: out of memory");
    gqe_mc_summary sum;
    if (gqe_mc_score(lm, t, B, T, lp, &sum) != GQE_OK) { free(lp); return gqe_lua_fail(L, "eval.score"); }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, sum.n); lua_setfield(L, -2, "n");
    lua_pushnumber(L, sum.acc); lua_setfield(L, -2, "acc");
    lua_pushnumber(L, sum.acc_norm); lua_setfield(L, -2, "acc_norm");
    lua_createtable(L, (int)t->nchoice, 0);
    for (int64_t i = 0; i < t->nchoice; i++) { lua_pushnumber(L, lp[i]); lua_rawseti(L, -2, i + 1); }
    free(lp);
    return 2;
}

void gqe_lua_open_eval(lua_State *L) {
    static const luaL_Reg methods[] = {{"add", task_add}, {"measure", task_measure}, {"check_vocab", task_check_vocab},
                                       {"size", task_len}, {"choices", task_choices}, {"longest", task_longest}, {NULL, NULL}};
    gqe_lua_new_class(L, TASK_MT, methods, task_close, task_tostring);
    lua_pushcfunction(L, task_len);
    lua_setfield(L, -2, "__len");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"task", l_task}, {"read_llmc", l_read_llmc}, {"score", l_score}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "eval");
}
