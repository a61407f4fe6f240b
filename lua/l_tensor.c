/* gqe.Tensor: constructors, element access, conversions, matmul and
 * safetensors files. Constructors build values on the host in the target
 * dtype and move them to the device once; element access on a device tensor
 * moves the single element, which is slow but only used by scripts and tests. */
#include "bind.h"
#include "ops.h"
#include "rng.h"
#include "safetensors.h"
#include "size.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const TENSOR_OPTS[] = {"device", "dtype", NULL};
static const char *const RANDN_OPTS[] = {"device", "dtype", "mean", "seed", "std", NULL};

gqe_dtype gqe_lua_check_dtype(lua_State *L, const char *name, const char *what) {
    static const char *const names[] = {"f32", "bf16", "i32"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) return (gqe_dtype)i;
    luaL_error(L, "%s: unknown dtype '%s' (allowed: f32, bf16, i32)", what, name);
    return GQE_F32;
}

int gqe_lua_check_shape(lua_State *L, int idx, int64_t shape[GQE_MAX_DIMS]) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (n > GQE_MAX_DIMS)
        luaL_argerror(L, idx, lua_pushfstring(L, "tensors have at most %d dims, got %d", GQE_MAX_DIMS, (int)n));
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        int ok = 0;
        lua_Integer d = lua_tointegerx(L, -1, &ok);
        if (!ok || lua_type(L, -1) != LUA_TNUMBER)
            luaL_argerror(L, idx, lua_pushfstring(L, "shape[%d] must be an integer, got %s", (int)i, luaL_typename(L, -1)));
        if (d < 0)
            luaL_argerror(L, idx, lua_pushfstring(L, "shape[%d] is negative (%d)", (int)i, (int)d));
        shape[i - 1] = d;
        lua_pop(L, 1);
    }
    return (int)n;
}

/* ---- host element access --------------------------------------------- */

static void put(gqe_dtype dt, void *data, size_t i, lua_Number v) {
    if (dt == GQE_F32) ((float *)data)[i] = (float)v;
    else if (dt == GQE_BF16) ((uint16_t *)data)[i] = gqe_f32_to_bf16((float)v);
    else ((int32_t *)data)[i] = (int32_t)v;
}

static void push_elem(lua_State *L, gqe_dtype dt, const void *data, size_t i) {
    if (dt == GQE_F32) lua_pushnumber(L, ((const float *)data)[i]);
    else if (dt == GQE_BF16) lua_pushnumber(L, gqe_bf16_to_f32(((const uint16_t *)data)[i]));
    else lua_pushinteger(L, ((const int32_t *)data)[i]);
}

/* Pushes a host tensor with t's values (t itself when already on the host). */
static gqe_tensor *push_host(lua_State *L, const gqe_tensor *t) {
    gqe_tensor h;
    if (t->device == GQE_CPU) h = gqe_tensor_ref(t);
    else GQE_LUA_CHECK(L, "to cpu", gqe_tensor_to(&h, t, GQE_CPU, t->dtype));
    gqe_lua_push_tensor(L, h);
    return lua_touserdata(L, -1);
}

/* Pushes a new host tensor (uninitialised) and returns it. */
static gqe_tensor *push_new(lua_State *L, gqe_dtype dt, int ndim, const int64_t *shape) {
    gqe_tensor t;
    GQE_LUA_CHECK(L, NULL, gqe_tensor_new(&t, dt, GQE_CPU, ndim, shape));
    gqe_lua_push_tensor(L, t);
    return lua_touserdata(L, -1);
}

/* Replaces the host tensor on top of the stack by its copy on dev. */
static void move_top(lua_State *L, gqe_device dev) {
    if (dev == GQE_CPU) return;
    gqe_tensor *h = lua_touserdata(L, -1), d;
    GQE_LUA_CHECK(L, NULL, gqe_tensor_to(&d, h, dev, h->dtype));
    lua_pop(L, 1);
    gqe_lua_push_tensor(L, d);
}

static void read_opts(lua_State *L, int idx, const char *what, const char *const *keys,
                      gqe_dtype *dt, gqe_device *dev) {
    gqe_lua_check_keys(L, idx, what, keys);
    *dt = gqe_lua_check_dtype(L, gqe_lua_opt_str(L, idx, what, "dtype", gqe_dtype_name(*dt)), what);
    const char *d = gqe_lua_opt_str(L, idx, what, "device", "cpu");
    GQE_LUA_CHECK(L, what, gqe_device_parse(d, dev));
}

/* ---- constructors ------------------------------------------------------ */

static void fill_from_table(lua_State *L, int idx, int dim, int ndim, const int64_t *shape,
                            gqe_tensor *t, size_t *pos, const char *what) {
    lua_Integer n = (lua_Integer)luaL_len(L, idx);
    if (n != shape[dim])
        luaL_error(L, "%s: ragged table: dimension %d has %d elements where %d were expected",
                   what, dim + 1, (int)n, (int)shape[dim]);
    for (lua_Integer i = 1; i <= n; i++) {
        int ty = lua_geti(L, idx, i);
        if (dim + 1 < ndim) {
            if (ty != LUA_TTABLE)
                luaL_error(L, "%s: expected a table at depth %d, got %s", what, dim + 2, luaL_typename(L, -1));
            fill_from_table(L, lua_gettop(L), dim + 1, ndim, shape, t, pos, what);
        } else {
            if (ty != LUA_TNUMBER)
                luaL_error(L, "%s: elements must be numbers, got %s", what, luaL_typename(L, -1));
            put(t->dtype, gqe_tensor_data(t), (*pos)++, lua_tonumber(L, -1));
        }
        lua_pop(L, 1);
    }
}

gqe_tensor *gqe_lua_table_to_tensor(lua_State *L, int idx, gqe_dtype dtype, const char *what) {
    idx = lua_absindex(L, idx);
    int64_t shape[GQE_MAX_DIMS];
    int ndim = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        gqe_tensor *t = push_new(L, dtype, 0, shape);
        put(dtype, gqe_tensor_data(t), 0, lua_tonumber(L, idx));
        return t;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushvalue(L, idx);
    while (lua_istable(L, -1)) {
        if (ndim == GQE_MAX_DIMS) luaL_error(L, "%s: tables nest deeper than %d dims", what, GQE_MAX_DIMS);
        shape[ndim++] = (int64_t)luaL_len(L, -1);
        if (shape[ndim - 1] == 0) break;
        lua_geti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    gqe_tensor *t = push_new(L, dtype, ndim, shape);
    size_t pos = 0;
    fill_from_table(L, idx, 0, ndim, shape, t, &pos, what);
    return t;
}

gqe_tensor *gqe_lua_check_ids(lua_State *L, int idx, const char *what) {
    idx = lua_absindex(L, idx);
    gqe_tensor *t = gqe_lua_test_tensor(L, idx);
    if (t) return gqe_lua_check_tensor(L, idx);
    if (!lua_istable(L, idx)) luaL_typeerror(L, idx, "gqe.Tensor or table of integers");
    t = gqe_lua_table_to_tensor(L, idx, GQE_I32, what);
    lua_replace(L, idx);
    return lua_touserdata(L, idx);
}

static int l_tensor(lua_State *L) {
    gqe_dtype dt = GQE_F32;
    gqe_device dev;
    if (lua_type(L, 1) != LUA_TTABLE && lua_type(L, 1) != LUA_TNUMBER)
        luaL_typeerror(L, 1, "table of numbers");
    read_opts(L, 2, "gqe.tensor", TENSOR_OPTS, &dt, &dev);
    gqe_lua_table_to_tensor(L, 1, dt, "gqe.tensor");
    move_top(L, dev);
    return 1;
}

/* full(shape, v, opts) and its zeros/ones spellings. */
static int make_full(lua_State *L, int opt_idx, lua_Number v, const char *what) {
    int64_t shape[GQE_MAX_DIMS];
    int ndim = gqe_lua_check_shape(L, 1, shape);
    gqe_dtype dt = GQE_F32;
    gqe_device dev;
    read_opts(L, opt_idx, what, TENSOR_OPTS, &dt, &dev);
    gqe_tensor *t = push_new(L, dt, ndim, shape);
    int64_t n = gqe_tensor_numel(t);
    void *p = gqe_tensor_data(t);
    for (int64_t i = 0; i < n; i++) put(dt, p, (size_t)i, v);
    move_top(L, dev);
    return 1;
}
static int l_zeros(lua_State *L) { return make_full(L, 2, 0, "gqe.zeros"); }
static int l_ones(lua_State *L) { return make_full(L, 2, 1, "gqe.ones"); }
static int l_full(lua_State *L) { return make_full(L, 3, luaL_checknumber(L, 2), "gqe.full"); }

static int l_randn(lua_State *L) {
    int64_t shape[GQE_MAX_DIMS];
    int ndim = gqe_lua_check_shape(L, 1, shape);
    gqe_dtype dt = GQE_F32;
    gqe_device dev;
    read_opts(L, 2, "gqe.randn", RANDN_OPTS, &dt, &dev);
    lua_Integer seed = gqe_lua_opt_int(L, 2, "gqe.randn", "seed", 0);
    lua_Number std = gqe_lua_opt_num(L, 2, "gqe.randn", "std", 1.0);
    lua_Number mean = gqe_lua_opt_num(L, 2, "gqe.randn", "mean", 0.0);
    gqe_tensor *t = push_new(L, dt, ndim, shape);
    int64_t n = gqe_tensor_numel(t);
    void *p = gqe_tensor_data(t);
    for (int64_t i = 0; i < n; i++)
        put(dt, p, (size_t)i, mean + std * gqe_rng_normal_at((uint64_t)seed, 0, (uint64_t)i));
    move_top(L, dev);
    return 1;
}

/* arange(n) -> 0..n-1; arange(a, b) -> a..b-1 (like Python's range). */
static int l_arange(lua_State *L) {
    lua_Integer a = 0, b = luaL_checkinteger(L, 1);
    int opt = 2;
    if (lua_type(L, 2) == LUA_TNUMBER) { a = b; b = luaL_checkinteger(L, 2); opt = 3; }
    gqe_dtype dt = GQE_F32;
    gqe_device dev;
    read_opts(L, opt, "gqe.arange", TENSOR_OPTS, &dt, &dev);
    /* b - a itself can overflow (arange(-2^62, 2^62)). */
    int64_t n = 0;
    if (b > a && __builtin_sub_overflow(b, a, &n))
        return luaL_error(L, "gqe.arange: the range [%I, %I) is too large", (LUAI_UACINT)a, (LUAI_UACINT)b);
    gqe_tensor *t = push_new(L, dt, 1, &n);
    for (int64_t i = 0; i < n; i++) put(dt, gqe_tensor_data(t), (size_t)i, (lua_Number)(a + i));
    move_top(L, dev);
    return 1;
}

/* ---- queries ----------------------------------------------------------- */

static int m_shape(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) { lua_pushinteger(L, t->shape[i]); lua_seti(L, -2, i + 1); }
    return 1;
}
static int m_size(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return m_shape(L);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (i < 0) i += t->ndim + 1;
    luaL_argcheck(L, i >= 1 && i <= t->ndim, 2, "dimension out of range");
    lua_pushinteger(L, t->shape[i - 1]);
    return 1;
}
static int m_dim(lua_State *L) { lua_pushinteger(L, gqe_lua_check_tensor(L, 1)->ndim); return 1; }
static int m_numel(lua_State *L) { lua_pushinteger(L, gqe_tensor_numel(gqe_lua_check_tensor(L, 1))); return 1; }
static int m_dtype(lua_State *L) { lua_pushstring(L, gqe_dtype_name(gqe_lua_check_tensor(L, 1)->dtype)); return 1; }
static int m_device(lua_State *L) { lua_pushstring(L, gqe_device_name(gqe_lua_check_tensor(L, 1)->device)); return 1; }

static int m_len(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    lua_pushinteger(L, t->ndim ? t->shape[0] : 0);
    return 1;
}

static int m_tostring(lua_State *L) {
    gqe_tensor *t = luaL_checkudata(L, 1, GQE_TENSOR_MT);
    if (!t->storage) { lua_pushstring(L, "gqe.Tensor (freed)"); return 1; }
    char buf[96];
    lua_pushfstring(L, "gqe.Tensor %s %s %s", gqe_dtype_name(t->dtype), gqe_device_name(t->device),
                    gqe_tensor_shape_str(t, buf, sizeof buf));
    return 1;
}

static int m_gc(lua_State *L) {
    gqe_tensor *t = luaL_checkudata(L, 1, GQE_TENSOR_MT);
    gqe_tensor_free(t);
    return 0;
}

/* ---- conversions and views -------------------------------------------- */

/* dst = src for any pair of dtypes: the core copies within floats and within
 * i32; between the two the values go through host floats (exact below 2^24). */
static void copy_any(lua_State *L, gqe_tensor *dst, const gqe_tensor *src, const char *what) {
    if ((dst->dtype == GQE_I32) == (src->dtype == GQE_I32)) {
        GQE_LUA_CHECK(L, what, gqe_tensor_copy(dst, src));
        return;
    }
    int64_t n = gqe_tensor_numel(src);
    if (gqe_tensor_numel(dst) != n) {
        char a[96], b[96];
        luaL_error(L, "%s: %s into %s: element counts differ", what, gqe_tensor_shape_str(src, a, 96),
                   gqe_tensor_shape_str(dst, b, 96));
    }
    float *buf = lua_newuserdatauv(L, (size_t)n * sizeof(float) + 1, 0);
    GQE_LUA_CHECK(L, what, gqe_tensor_read_f32(src, buf, (size_t)n));
    GQE_LUA_CHECK(L, what, gqe_tensor_write_f32(dst, buf, (size_t)n));
    lua_pop(L, 1);
}

/* Pushes a new tensor with src's values on dev as dtype. */
static void push_converted(lua_State *L, const gqe_tensor *src, gqe_device dev, gqe_dtype dt, const char *what) {
    gqe_tensor out;
    if ((dt == GQE_I32) == (src->dtype == GQE_I32)) {
        GQE_LUA_CHECK(L, what, gqe_tensor_to(&out, src, dev, dt));
        gqe_lua_push_tensor(L, out);
        return;
    }
    GQE_LUA_CHECK(L, what, gqe_tensor_new(&out, dt, dev, src->ndim, src->shape));
    gqe_lua_push_tensor(L, out);
    copy_any(L, lua_touserdata(L, -1), src, what);
}

static int m_to(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    gqe_device dev;
    GQE_LUA_CHECK(L, "to", gqe_device_parse(luaL_checkstring(L, 2), &dev));
    gqe_dtype dt = lua_isnoneornil(L, 3) ? t->dtype : gqe_lua_check_dtype(L, luaL_checkstring(L, 3), "to");
    push_converted(L, t, dev, dt, "to");
    return 1;
}
static int m_float(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    push_converted(L, t, t->device, GQE_F32, "float");
    return 1;
}
static int m_clone(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1), out;
    GQE_LUA_CHECK(L, "clone", gqe_tensor_to(&out, t, t->device, t->dtype));
    gqe_lua_push_tensor(L, out);
    return 1;
}

static int m_view(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    luaL_argcheck(L, n >= 0 && n <= GQE_MAX_DIMS, 2, "too many dimensions");
    int64_t shape[GQE_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < n; i++) {
        lua_geti(L, 2, i + 1);
        int ok = 0;
        lua_Integer d = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        luaL_argcheck(L, ok, 2, "dimensions must be integers");
        if (d == -1 && infer < 0) { infer = i; shape[i] = 1; continue; }
        luaL_argcheck(L, d >= 0, 2, "negative dimension (only one -1 is allowed)");
        shape[i] = d;
    }
    /* Checked: a product that wraps could otherwise match numel by accident. */
    GQE_LUA_CHECK(L, NULL, gqe_shape_numel("view", (int)n, shape, &known));
    int64_t numel = gqe_tensor_numel(t);
    if (infer >= 0) shape[infer] = known ? numel / known : 0;
    int64_t total;
    GQE_LUA_CHECK(L, NULL, gqe_shape_numel("view", (int)n, shape, &total));
    if (total != numel) {
        char buf[96];
        return luaL_error(L, "view: a tensor of shape %s (%I elements) cannot be viewed as %I elements",
                          gqe_tensor_shape_str(t, buf, sizeof buf), (LUAI_UACINT)numel, (LUAI_UACINT)total);
    }
    gqe_tensor r = gqe_tensor_ref(t);
    gqe_lua_push_tensor(L, gqe_tensor_reshape(&r, (int)n, shape));
    return 1;
}

static void push_nested(lua_State *L, const gqe_tensor *h, int dim, size_t *pos) {
    if (dim == h->ndim) { push_elem(L, h->dtype, gqe_tensor_data(h), (*pos)++); return; }
    lua_createtable(L, (int)h->shape[dim], 0);
    for (int64_t i = 0; i < h->shape[dim]; i++) {
        push_nested(L, h, dim + 1, pos);
        lua_seti(L, -2, i + 1);
    }
}
static int m_totable(lua_State *L) {
    gqe_tensor *h = push_host(L, gqe_lua_check_tensor(L, 1));
    size_t pos = 0;
    push_nested(L, h, 0, &pos);
    return 1;
}

static int m_item(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    if (gqe_tensor_numel(t) != 1) {
        char buf[96];
        return luaL_error(L, "item: tensor of shape %s has %d elements, not 1",
                          gqe_tensor_shape_str(t, buf, sizeof buf), (int)gqe_tensor_numel(t));
    }
    gqe_tensor *h = push_host(L, t);
    push_elem(L, h->dtype, gqe_tensor_data(h), 0);
    return 1;
}

/* Element offset from 1-based indices at stack slots first..first+ndim-1. */
static size_t element_offset(lua_State *L, const gqe_tensor *t, int first) {
    int given = lua_gettop(L) - first + 1;
    if (given != t->ndim)
        luaL_error(L, "tensor has %d dims but %d indices were given", t->ndim, given < 0 ? 0 : given);
    size_t off = 0;
    for (int d = 0; d < t->ndim; d++) {
        lua_Integer i = luaL_checkinteger(L, first + d);
        if (i < 1 || i > t->shape[d])
            luaL_argerror(L, first + d, lua_pushfstring(L, "index %d out of range 1..%d for dim %d",
                                                        (int)i, (int)t->shape[d], d + 1));
        off = off * (size_t)t->shape[d] + (size_t)(i - 1);
    }
    return off;
}

static int m_get(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    size_t off = element_offset(L, t, 2);
    gqe_tensor one = gqe_tensor_view(t, off, 0, NULL);
    gqe_tensor *h = push_host(L, &one);
    push_elem(L, h->dtype, gqe_tensor_data(h), 0);
    return 1;
}

static int m_set(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    lua_Number v = luaL_checknumber(L, 2);
    size_t off = element_offset(L, t, 3);
    gqe_tensor one = gqe_tensor_view(t, off, 0, NULL);
    if (t->device == GQE_CPU) {
        put(t->dtype, gqe_tensor_data(&one), 0, v);
    } else {
        gqe_tensor *h = push_new(L, t->dtype, 0, NULL);
        put(t->dtype, gqe_tensor_data(h), 0, v);
        GQE_LUA_CHECK(L, "set", gqe_tensor_copy(&one, h));
    }
    lua_settop(L, 1);
    return 1;
}

static int m_fill(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1);
    lua_Number v = luaL_checknumber(L, 2);
    int64_t n = gqe_tensor_numel(t);
    if (t->device != GQE_CPU && t->dtype == GQE_F32) {
        GQE_LUA_CHECK(L, "fill", gqe_fill(t, (float)v));
    } else {
        gqe_tensor *h = t->device == GQE_CPU ? t : push_new(L, t->dtype, t->ndim, t->shape);
        for (int64_t i = 0; i < n; i++) put(t->dtype, gqe_tensor_data(h), (size_t)i, v);
        if (h != t) GQE_LUA_CHECK(L, "fill", gqe_tensor_copy(t, h));
    }
    lua_settop(L, 1);
    return 1;
}
static int m_zero(lua_State *L) { lua_settop(L, 1); lua_pushinteger(L, 0); return m_fill(L); }

static int m_copy(lua_State *L) {
    gqe_tensor *t = gqe_lua_check_tensor(L, 1), *src = gqe_lua_check_tensor(L, 2);
    copy_any(L, t, src, "copy");
    lua_settop(L, 1);
    return 1;
}

/* An f32 tensor with t's values on t's device: t itself or a pushed copy. */
static gqe_tensor *as_f32(lua_State *L, gqe_tensor *t) {
    if (t->dtype == GQE_F32) return t;
    push_converted(L, t, t->device, GQE_F32, "to f32");
    return lua_touserdata(L, -1);
}

static int m_sum(lua_State *L) {
    gqe_tensor *t = as_f32(L, gqe_lua_check_tensor(L, 1));
    double s = 0;
    GQE_LUA_CHECK(L, "sum", gqe_sum(t, &s));
    lua_pushnumber(L, s);
    return 1;
}
static int m_norm(lua_State *L) {
    gqe_tensor *t = as_f32(L, gqe_lua_check_tensor(L, 1));
    double s = 0;
    GQE_LUA_CHECK(L, "norm", gqe_sumsq(t, &s));
    lua_pushnumber(L, sqrt(s));
    return 1;
}

/* Both tensors' values as host floats (a userdata keeps the buffer). */
static float *read_pair(lua_State *L, int64_t *n, float **b_out, const char *what) {
    gqe_tensor *a = gqe_lua_check_tensor(L, 1), *b = gqe_lua_check_tensor(L, 2);
    *n = gqe_tensor_numel(a);
    if (gqe_tensor_numel(b) != *n) {
        char sa[96], sb[96];
        luaL_error(L, "%s: shapes %s and %s differ in size", what, gqe_tensor_shape_str(a, sa, 96),
                   gqe_tensor_shape_str(b, sb, 96));
    }
    float *buf = lua_newuserdatauv(L, 2 * (size_t)*n * sizeof(float) + 1, 0);
    GQE_LUA_CHECK(L, what, gqe_tensor_read_f32(a, buf, (size_t)*n));
    GQE_LUA_CHECK(L, what, gqe_tensor_read_f32(b, buf + *n, (size_t)*n));
    *b_out = buf + *n;
    return buf;
}

static int m_max_abs_diff(lua_State *L) {
    int64_t n;
    float *b, *a = read_pair(L, &n, &b, "max_abs_diff");
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
    }
    lua_pushnumber(L, m);
    return 1;
}

/* max|a-b| / max|b|: the error measure the golden-file tests bound. */
static int m_rel_err(lua_State *L) {
    int64_t n;
    float *b, *a = read_pair(L, &n, &b, "rel_err");
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    lua_pushnumber(L, m / (s > 1e-30 ? s : 1e-30));
    return 1;
}

/* ---- matmul and files -------------------------------------------------- */

static int l_matmul(lua_State *L) {
    gqe_tensor *c = gqe_lua_check_tensor(L, 1), *a = gqe_lua_check_tensor(L, 2), *b = gqe_lua_check_tensor(L, 3);
    bool ta = lua_toboolean(L, 4), tb = lua_toboolean(L, 5);
    float alpha = (float)luaL_optnumber(L, 6, 1.0), beta = (float)luaL_optnumber(L, 7, 0.0);
    GQE_LUA_CHECK(L, "gqe.matmul", gqe_matmul(c, a, b, ta, tb, alpha, beta));
    lua_settop(L, 1);
    return 1;
}

/* The file's tensors are copied out so they outlive the file struct. */
static int l_load_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    gqe_st_file f;
    memset(&f, 0, sizeof f);
    if (gqe_safetensors_read(path, &f) != GQE_OK) return gqe_lua_fail(L, "gqe.load_safetensors");
    lua_createtable(L, 0, f.count);
    for (int i = 0; i < f.count; i++) {
        gqe_tensor t;
        if (gqe_tensor_to(&t, &f.tensors[i], GQE_CPU, f.tensors[i].dtype) != GQE_OK) {
            gqe_st_file_free(&f);
            return gqe_lua_fail(L, "gqe.load_safetensors");
        }
        gqe_lua_push_tensor(L, t);
        lua_setfield(L, -2, f.names[i]);
    }
    lua_createtable(L, 0, f.meta_count);
    for (int i = 0; i < f.meta_count; i++) {
        lua_pushstring(L, f.meta_values[i]);
        lua_setfield(L, -2, f.meta_keys[i]);
    }
    gqe_st_file_free(&f);
    return 2;
}

/* save_safetensors(path, {name = tensor}, [{key = value}]): the core writes
 * atomically and reads device tensors itself. */
static int l_save_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    int n = 0, mn = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "gqe.save_safetensors: tensor names must be strings, got %s", luaL_typename(L, -2));
        if (!gqe_lua_test_tensor(L, -1))
            return luaL_error(L, "gqe.save_safetensors: '%s' is a %s, not a gqe.Tensor",
                              lua_tostring(L, -2), luaL_typename(L, -1));
        gqe_lua_check_tensor(L, -1);
        n++;
        lua_pop(L, 1);
    }
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) { mn++; lua_pop(L, 1); }
    }
    /* Arrays live in userdata and strings in tables, so an error frees all. */
    const char **names = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *names, 0);
    const gqe_tensor **tensors = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *tensors, 0);
    const char **mk = lua_newuserdatauv(L, (size_t)(mn + 1) * sizeof *mk, 0);
    const char **mv = lua_newuserdatauv(L, (size_t)(mn + 1) * sizeof *mv, 0);
    lua_newtable(L);
    int hold = lua_gettop(L);
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        names[i] = lua_tostring(L, -2);
        tensors[i++] = lua_touserdata(L, -1);
        lua_pop(L, 1);
    }
    i = 0;
    if (mn) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            int vt = lua_type(L, -1);
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "gqe.save_safetensors: metadata keys must be strings");
            if (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)
                return luaL_error(L, "gqe.save_safetensors: metadata '%s' is a %s (strings, numbers, booleans only)",
                                  lua_tostring(L, -2), luaL_typename(L, -1));
            mk[i] = lua_tostring(L, -2);
            mv[i] = luaL_tolstring(L, -1, NULL);
            lua_rawseti(L, hold, i + 1);
            lua_pop(L, 1);
            i++;
        }
    }
    GQE_LUA_CHECK(L, "gqe.save_safetensors", gqe_safetensors_write(path, n, names, tensors, mn, mk, mv));
    return 0;
}

static const luaL_Reg tensor_methods[] = {
    {"shape", m_shape}, {"size", m_size}, {"dim", m_dim}, {"numel", m_numel},
    {"dtype", m_dtype}, {"device", m_device}, {"to", m_to}, {"float", m_float},
    {"clone", m_clone}, {"totable", m_totable}, {"item", m_item}, {"view", m_view},
    {"reshape", m_view}, {"get", m_get}, {"set", m_set}, {"fill", m_fill},
    {"copy", m_copy}, {"zero", m_zero}, {"sum", m_sum}, {"norm", m_norm},
    {"max_abs_diff", m_max_abs_diff}, {"rel_err", m_rel_err}, {NULL, NULL}};

static const luaL_Reg tensor_meta[] = {
    {"__gc", m_gc}, {"__close", m_gc}, {"__tostring", m_tostring}, {"__len", m_len}, {NULL, NULL}};

static const luaL_Reg tensor_funcs[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
    {"randn", l_randn}, {"arange", l_arange}, {"matmul", l_matmul},
    {"load_safetensors", l_load_safetensors}, {"save_safetensors", l_save_safetensors}, {NULL, NULL}};

void gqe_lua_open_tensor(lua_State *L) {
    if (luaL_newmetatable(L, GQE_TENSOR_MT)) {
        luaL_setfuncs(L, tensor_meta, 0);
        luaL_newlib(L, tensor_methods);
        lua_setfield(L, -2, "__index");
        lua_pushstring(L, "gqe.Tensor");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, tensor_funcs, 0);
}
