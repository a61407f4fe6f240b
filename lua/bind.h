/* Helpers shared by the Lua binding files. Bindings only translate: check
 * arguments, call the core, push results; a failing core call becomes a Lua
 * error carrying the core's message. */
#ifndef GQE_LUA_BIND_H
#define GQE_LUA_BIND_H

#include <lua.h>
#include <lauxlib.h>
#include "tensor.h"

#define GQE_TENSOR_MT "gqe.Tensor"

/* Pushes a tensor userdata that takes over t's reference. */
void gqe_lua_push_tensor(lua_State *L, gqe_tensor t);
/* The tensor at idx, or a Lua error naming the argument. */
gqe_tensor *gqe_lua_check_tensor(lua_State *L, int idx);
gqe_tensor *gqe_lua_test_tensor(lua_State *L, int idx); /* NULL if not a tensor */
/* Raises a Lua error from the core's last message, prefixed by `what`. */
int gqe_lua_fail(lua_State *L, const char *what);
#define GQE_LUA_TRY(L, what, expr) do { if ((expr) != GQE_OK) return gqe_lua_fail(L, what); } while (0)
/* The same for functions that do not return int (gqe_lua_fail never returns). */
#define GQE_LUA_CHECK(L, what, expr) do { if ((expr) != GQE_OK) gqe_lua_fail(L, what); } while (0)

/* Options tables. Missing keys give the default; a key of the wrong type is
 * a Lua error naming `what.key` and the expected type. */
lua_Integer gqe_lua_opt_int(lua_State *L, int idx, const char *what, const char *key, lua_Integer def);
lua_Number gqe_lua_opt_num(lua_State *L, int idx, const char *what, const char *key, lua_Number def);
const char *gqe_lua_opt_str(lua_State *L, int idx, const char *what, const char *key, const char *def);
int gqe_lua_opt_bool(lua_State *L, int idx, const char *what, const char *key, int def);
/* The old name of an option: warns once per process on stderr
 * ("<what>: '<old>' is deprecated, use '<new>'"). */
void gqe_lua_deprecated(lua_State *L, const char *what, const char *old_name, const char *new_name);
/* Error listing the valid keys when the table at idx has any other key. */
void gqe_lua_check_keys(lua_State *L, int idx, const char *what, const char *const *allowed);

/* Shared by the tensor and nn bindings (lua/l_tensor.c). */
/* "f32" | "bf16" | "i32"; a Lua error naming `what` and the allowed values otherwise. */
gqe_dtype gqe_lua_check_dtype(lua_State *L, const char *name, const char *what);
/* A shape table {d1, ..., dn} (n <= GQE_MAX_DIMS, d >= 0) at idx; returns n. */
int gqe_lua_check_shape(lua_State *L, int idx, int64_t shape[GQE_MAX_DIMS]);
/* Pushes a new CPU tensor of dtype made from the (nested) Lua table of
 * numbers at idx and returns it. */
gqe_tensor *gqe_lua_table_to_tensor(lua_State *L, int idx, gqe_dtype dtype, const char *what);
/* The tensor at idx; a Lua table of integers there is first replaced (in its
 * stack slot, so the GC owns it) by a new i32 CPU tensor. */
gqe_tensor *gqe_lua_check_ids(lua_State *L, int idx, const char *what);

/* Registers the metatable `mt` of a class whose objects are released by
 * `close` (also __gc, __close and a `:close()` method) and printed by
 * `tostring`; `methods` become __index. Leaves the metatable on the stack. */
void gqe_lua_new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                       lua_CFunction close, lua_CFunction tostring);

/* Every binding file registers its functions into the module table at the
 * top of the stack (the `gqe` C module). */
void gqe_lua_open_tensor(lua_State *L);   /* lua/l_tensor.c: tensor, zeros, randn, safetensors */
void gqe_lua_open_nn(lua_State *L);       /* lua/l_nn.c: nn.GQEAttention, nn.LM */
void gqe_lua_open_optim(lua_State *L);    /* lua/l_optim.c: optim.AdamW, optim.SGD, schedule */
void gqe_lua_open_data(lua_State *L);     /* lua/l_data.c: data.open */
void gqe_lua_open_runlog(lua_State *L);   /* lua/l_runlog.c: db.open */
void gqe_lua_open_sys(lua_State *L);
void gqe_lua_open_checkpoint(lua_State *L); /* lua/l_checkpoint.c: checkpoint.save, checkpoint.load */
void gqe_lua_open_dist(lua_State *L);     /* lua/l_dist.c: dist.env, dist.open */
void gqe_lua_open_tok(lua_State *L);      /* lua/l_tok.c: tokenizer.load, tokenizer.shard_writer */
void gqe_lua_open_eval(lua_State *L);     /* lua/l_eval.c: eval.task, eval.score */

/* The core objects behind the nn and optim userdata, for other bindings. */
struct gqe_lm;
struct gqe_optimizer;
struct gqe_lm *gqe_lua_check_lm(lua_State *L, int idx);
struct gqe_optimizer *gqe_lua_check_optim(lua_State *L, int idx);      /* lua/l_sys.c: time, signals, host, pid, cuda */

#endif
