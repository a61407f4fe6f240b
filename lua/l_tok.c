/* gqe.tokenizer: GPT-2's BPE (core/tok.h) and the shard writer.
 *   tokenizer.load(encoder_json, vocab_bpe) -> Tokenizer
 *   tok:encode(str) -> {ids}     tok:decode(ids) -> str   (ids: a table or an i32 tensor)
 *   tok:token(id) -> bytes       tok:vocab(), tok:eot()
 *   tok:encode_count(str) -> number of ids (no table built)
 *   tokenizer.shard_writer(prefix, shard_tokens) -> ShardWriter
 *   writer:add(tok, str, prepend_eot) -> tokens added; writer:close() -> tokens, files */
#include "bind.h"
#include "tok.h"
#include "tok/shards.h"
#include <stdlib.h>
#include <string.h>

#define TOK_MT "gqe.Tokenizer"
#define WRITER_MT "gqe.ShardWriter"

static gqe_tokenizer *check_tok(lua_State *L, int idx) {
    gqe_tokenizer **box = luaL_checkudata(L, idx, TOK_MT);
    if (!*box) luaL_error(L, "tokenizer is closed");
    return *box;
}

static int l_load(lua_State *L) {
    const char *enc = luaL_checkstring(L, 1), *bpe = luaL_checkstring(L, 2);
    gqe_tokenizer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, TOK_MT);
    GQE_LUA_TRY(L, "tokenizer.load", gqe_tok_load(box, enc, bpe));
    return 1;
}

static int tok_close(lua_State *L) {
    gqe_tokenizer **box = luaL_checkudata(L, 1, TOK_MT);
    gqe_tok_free(*box);
    *box = NULL;
    return 0;
}

static int tok_tostring(lua_State *L) {
    gqe_tokenizer **box = luaL_checkudata(L, 1, TOK_MT);
    lua_pushfstring(L, "gqe.Tokenizer(gpt2, vocab %d)%s", *box ? (int)gqe_tok_vocab(*box) : 0, *box ? "" : " closed");
    return 1;
}

static void encode_or_fail(lua_State *L, gqe_tokenizer *t, int idx, gqe_tok_ids *ids) {
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    if (gqe_tok_encode(t, s, len, ids) != GQE_OK) { gqe_tok_ids_free(ids); gqe_lua_fail(L, "tokenizer:encode"); }
}

static int tok_encode(lua_State *L) {
    gqe_tokenizer *t = check_tok(L, 1);
    gqe_tok_ids ids = {0};
    encode_or_fail(L, t, 2, &ids);
    lua_createtable(L, (int)ids.n, 0);
    for (int64_t i = 0; i < ids.n; i++) { lua_pushinteger(L, ids.ids[i]); lua_rawseti(L, -2, i + 1); }
    gqe_tok_ids_free(&ids);
    return 1;
}

static int tok_encode_count(lua_State *L) {
    gqe_tokenizer *t = check_tok(L, 1);
    gqe_tok_ids ids = {0};
    encode_or_fail(L, t, 2, &ids);
    lua_pushinteger(L, ids.n);
    gqe_tok_ids_free(&ids);
    return 1;
}

static int tok_decode(lua_State *L) {
    gqe_tokenizer *t = check_tok(L, 1);
    gqe_tensor *ids = gqe_lua_check_ids(L, 2, "tokenizer:decode");
    char *out;
    size_t len;
    GQE_LUA_TRY(L, "tokenizer:decode", gqe_tok_decode(t, gqe_i32(ids), gqe_tensor_numel(ids), &out, &len));
    lua_pushlstring(L, out, len);
    free(out);
    return 1;
}

static int tok_token(lua_State *L) {
    gqe_tokenizer *t = check_tok(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    size_t len;
    const char *s = (id >= 0 && id < gqe_tok_vocab(t)) ? gqe_tok_token(t, (int32_t)id, &len) : NULL;
    if (!s) return luaL_error(L, "tokenizer:token: id %d is outside the vocabulary [0, %d)", (int)id, (int)gqe_tok_vocab(t));
    lua_pushlstring(L, s, len);
    return 1;
}

static int tok_vocab(lua_State *L) { lua_pushinteger(L, gqe_tok_vocab(check_tok(L, 1))); return 1; }
static int tok_eot(lua_State *L) { lua_pushinteger(L, gqe_tok_eot(check_tok(L, 1))); return 1; }

/* ---- shard writer ---- */

static gqe_shard_writer *check_writer(lua_State *L, int idx) {
    gqe_shard_writer **box = luaL_checkudata(L, idx, WRITER_MT);
    if (!*box) luaL_error(L, "shard writer is closed");
    return *box;
}

static int l_shard_writer(lua_State *L) {
    const char *prefix = luaL_checkstring(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    gqe_shard_writer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, WRITER_MT);
    GQE_LUA_TRY(L, "shard_writer", gqe_shard_writer_open(box, prefix, n));
    return 1;
}

static int writer_add(lua_State *L) {
    gqe_shard_writer *w = check_writer(L, 1);
    gqe_tokenizer *t = check_tok(L, 2);
    gqe_tok_ids ids = {0};
    if (lua_toboolean(L, 4)) {
        gqe_status s = gqe_tok_ids_push(&ids, gqe_tok_eot(t));
        if (s != GQE_OK) return gqe_lua_fail(L, "shard_writer:add");
    }
    encode_or_fail(L, t, 3, &ids);
    gqe_status s = gqe_shard_writer_add(w, ids.ids, ids.n);
    lua_pushinteger(L, ids.n);
    gqe_tok_ids_free(&ids);
    if (s != GQE_OK) return gqe_lua_fail(L, "shard_writer:add");
    return 1;
}

static int writer_finish(lua_State *L) {
    gqe_shard_writer **box = luaL_checkudata(L, 1, WRITER_MT);
    if (!*box) luaL_error(L, "shard writer is closed");
    int64_t tokens = 0;
    int files = 0;
    gqe_status s = gqe_shard_writer_finish(*box, &tokens, &files);
    *box = NULL;
    if (s != GQE_OK) return gqe_lua_fail(L, "shard_writer:finish");
    lua_pushinteger(L, tokens);
    lua_pushinteger(L, files);
    return 2;
}

static int writer_close(lua_State *L) {   /* abandons: the shard files written so far stay */
    gqe_shard_writer **box = luaL_checkudata(L, 1, WRITER_MT);
    gqe_shard_writer_free(*box);
    *box = NULL;
    return 0;
}

static int writer_tostring(lua_State *L) { lua_pushstring(L, "gqe.ShardWriter"); return 1; }

void gqe_lua_open_tok(lua_State *L) {
    static const luaL_Reg tok_methods[] = {{"encode", tok_encode}, {"encode_count", tok_encode_count},
        {"decode", tok_decode}, {"token", tok_token}, {"vocab", tok_vocab}, {"eot", tok_eot}, {NULL, NULL}};
    gqe_lua_new_class(L, TOK_MT, tok_methods, tok_close, tok_tostring);
    lua_pop(L, 1);
    static const luaL_Reg writer_methods[] = {{"add", writer_add}, {"finish", writer_finish}, {NULL, NULL}};
    gqe_lua_new_class(L, WRITER_MT, writer_methods, writer_close, writer_tostring);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"load", l_load}, {"shard_writer", l_shard_writer}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "tokenizer");
}
