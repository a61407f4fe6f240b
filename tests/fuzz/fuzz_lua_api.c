/* libFuzzer target: the Lua API under hostile calls. Every function of the
 * gqe module (found by walking its tables, so new bindings join without an
 * edit here) and every method of its objects (tensors, layers, models,
 * optimizers, schedules, data sets, run logs) is called with arguments drawn
 * from a pool of hostile values: NaN, infinities, integers at 2^31, 2^48,
 * 2^62 and the extremes, negative sizes, shapes whose products overflow,
 * option tables with out-of-range values, objects of the wrong kind (another
 * model's optimizer, a closed tensor), strings where numbers belong. A Lua
 * error is a clean refusal; a crash or a sanitizer report is a bug.
 *
 * Two input forms:
 * - bytes: each call takes one byte for the function, one for the argument
 *   count and one per argument (an index into the value pool, by name);
 * - text starting with "#calls": one call per line, "NAME VALUE...", NAME as
 *   in the function list ("gqe.zeros", "LM:generate", the receiver then
 *   being the first VALUE). Regressions are kept in this form so they stay
 *   readable and do not depend on the order of the lists.
 * GQE_FUZZ_TRACE=1 prints each call and its outcome.
 * Functions that act on the process or the machine (spawn, kill, sleep,
 * signal handlers, whole runs, git) are left out; every path argument is a
 * name inside a temporary directory made for the fuzzer. Sizes that are
 * valid but huge (between 2^26 and 2^48 elements) are skipped: refusing them
 * is the allocator's job, and the fuzzer would only measure memory. */
#include <fcntl.h>
#include <ftw.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int luaopen_gqe(lua_State *L);

static const char HARNESS[] =
    "local input, dir = ...\n"
    "local gqe = require 'gqe'\n"
    "local TRACE = os.getenv('GQE_FUZZ_TRACE')\n"
    "local SKIP = { ['gqe.spawn'] = 1, ['gqe.kill'] = 1, ['gqe.wait'] = 1, ['gqe.sleep'] = 1,\n"
    "  ['gqe.signals_install'] = 1, ['gqe.signals_reset'] = 1, ['gqe.train'] = 1, ['gqe.experiment'] = 1,\n"
    "  ['gqe.git_commit'] = 1, ['gqe.sgemm_bench'] = 1, ['gqe.summary_table'] = 1, ['gqe.load_run'] = 1,\n"
    "  ['gqe.launch'] = 1, ['gqe.exit'] = 1 }\n"
    /* The function list: gqe.* and its sub-tables, sorted; methods are added
     * from the objects' metatables below. */
    "local fns, names = {}, {}\n"
    "local function walk(t, prefix, depth)\n"
    "  local keys = {}\n"
    "  for k in pairs(t) do if type(k) == 'string' then keys[#keys + 1] = k end end\n"
    "  table.sort(keys)\n"
    "  for _, k in ipairs(keys) do\n"
    "    local v, name = rawget(t, k), prefix .. k\n"
    "    if type(v) == 'function' and not SKIP[name] then fns[name] = v; names[#names + 1] = name\n"
    "    elseif type(v) == 'table' and depth < 2 and not SKIP[name] then walk(v, name .. '.', depth + 1) end\n"
    "  end\n"
    "end\n"
    "walk(gqe, 'gqe.', 0)\n"
    /* The value pool: fresh objects for every input. */
    "local f = io.open(dir .. '/text.txt', 'wb'); f:write(string.rep('the quick brown fox. ', 200)); f:close()\n"
    "local V = {}\n"
    "local function obj(name, make) local ok, v = pcall(make); if ok then V[name] = v end end\n"
    "V['nil'] = nil; V['true'] = true; V['false'] = false\n"
    "V.i0, V.i1, V.i2, V.i3, V.i7, V.i16 = 0, 1, 2, 3, 7, 16\n"
    "V.neg1, V.neg3 = -1, -3\n"
    "V.i2_31, V.i2_32, V.i2_48, V.i2_49, V.i2_62 = 2147483648, 4294967296, 1 << 48, 1 << 49, 1 << 62\n"
    "V.imax, V.imin = math.maxinteger, math.mininteger\n"
    "V.nan, V.inf, V.ninf, V.half, V.f2_63, V.fbig = 0/0, math.huge, -math.huge, 0.5, 2.0^63, 1e308\n"
    "V.s_empty, V.s_x, V.s_f32, V.s_bf16, V.s_i32, V.s_cuda, V.s_cpu = '', 'x', 'f32', 'bf16', 'i32', 'cuda', 'cpu'\n"
    "V.s_dotdot, V.s_nul, V.s_long = '..', 'a\\0b', string.rep('z', 5000)\n"
    "V.s_num = '12'\n"
    "V.p_file, V.p_db, V.p_text = dir .. '/out.safetensors', dir .. '/fuzz.db', dir .. '/text.txt'\n"
    "V.p_dir, V.p_missing, V.p_memory = dir, dir .. '/no/such/file', ':memory:'\n"
    "V.t_empty, V.t_1, V.t_23, V.t_neg, V.t_4d = {}, { 1 }, { 2, 3 }, { -1 }, { 2, 1, 2, 2 }\n"
    "V.t_5d, V.t_2_31sq = { 1, 1, 1, 1, 1 }, { 2147483648, 2147483648 }\n"
    "V.t_2_62, V.t_max2, V.t_inf = { 1 << 62 }, { math.maxinteger, 2 }, { -1, 1 << 62 }\n"
    "V.t_nan, V.t_str, V.t_nested, V.t_ragged = { 0/0 }, { 'a' }, { { 1, 2 }, { 3, 4 } }, { { 1, 2 }, { 3 } }\n"
    "V.t_tokens, V.t_badtok = { 1, 2, 3 }, { 1, -5, 99999 }\n"
    "V.t_deep = {}; do local t = V.t_deep; for _ = 1, 300 do t[1] = {}; t = t[1] end end\n"
    "V.o_empty = {}\n"
    "V.o_dev = { device = 'cuda', dtype = 'i32' }\n"
    "V.o_badtype = { dtype = 'f64' }\n"
    "V.o_gen = { top_k = -3, temperature = 0/0, seed = -1 }\n"
    "V.o_gen2 = { top_k = math.maxinteger, temperature = math.huge }\n"
    "V.o_lm = { vocab = 16, dim = 16, layers = 1, experts = 4, groups = 2, k = 1, max_seq = 8 }\n"
    "V.o_lm_bad = { vocab = 16, dim = 1 << 40, layers = 1, experts = 4, groups = 2 }\n"
    "V.o_lm_bad2 = { vocab = math.maxinteger, dim = 16, layers = 1, experts = 4, groups = 2, max_seq = 1 << 62 }\n"
    "V.o_attn = { dim = 16, experts = 4, groups = 2, k = 2, head_dim = 1 << 40 }\n"
    "V.o_attn2 = { dim = 1 << 62, experts = 8, groups = 2, head_dim = 1 << 62 }\n"
    "V.o_lm_bad3 = { vocab = 16, dim = 16, layers = 1, experts = 8, groups = 2, head_dim = 1 << 61, mlp_hidden = 1 << 62 }\n"
    "V.o_opt = { lr = 0/0, betas = { 2, -1 }, eps = -1, weight_decay = math.huge }\n"
    "V.o_sched = { kind = 'cosine', warmup = math.maxinteger, total = -1, min_lr = 0/0 }\n"
    "V.o_ckpt = { step = -1, data_index = math.maxinteger, run_uid = '../../x', config_hash = 'a/b' }\n"
    "V.o_data = { kind = 'text', path = dir .. '/text.txt', batch = 1 << 40, seq = 1 << 40 }\n"
    "V.o_data2 = { kind = 'recall', vocab = math.maxinteger, seq = -1 }\n"
    "V.o_run = { experiment_id = -1, name = '', params = { [''] = {} } }\n"
    "V.o_data3 = { kind = 'shards', path = dir .. '/*.bin', batch = 2, seq = 8 }\n"
    "V.o_data4 = { kind = 'text', path = dir .. '/text.txt', batch = 2, seq = 8, val_frac = 0/0 }\n"
    "V.o_sched2 = { kind = 'wsd', warmup = 2, total = 3, decay_frac = 0 }\n"
    "V.o_gen3 = { seed = math.mininteger, top_k = 1, temperature = 1e-30 }\n"
    "V.t_maxtok = { math.maxinteger, math.mininteger }\n"
    "V.fn = function() error('called back') end\n"
    "V.mt = setmetatable({}, { __index = function() error('index') end, __len = function() return 1 << 62 end })\n"
    "obj('x', function() return gqe.randn({ 2, 3 }, { seed = 1 }) end)\n"
    "obj('xi', function() return gqe.tensor({ 1, 2, 3 }, { dtype = 'i32' }) end)\n"
    "obj('xb', function() return gqe.ones({ 4 }, { dtype = 'bf16' }) end)\n"
    "obj('x0', function() return gqe.zeros({ 0 }) end)\n"
    "obj('xs', function() return gqe.full({}, 7) end)\n"
    "obj('xclosed', function() local t = gqe.zeros({ 2 }); local c = getmetatable(t).__close or getmetatable(t).__gc; if c then c(t) end; return t end)\n"
    "obj('lm', function() return gqe.nn.LM(V.o_lm) end)\n"
    "obj('lm2', function() return gqe.nn.LM{ vocab = 32, dim = 32, layers = 2, experts = 4, groups = 2, max_seq = 16, router = 'balanced' } end)\n"
    "obj('opt', function() return gqe.optim.AdamW(V.lm, {}) end)\n"
    "obj('opt2', function() return gqe.optim.SGD(V.lm2, { momentum = 0.9 }) end)\n"
    "obj('attn', function() return gqe.nn.GQEAttention{ dim = 16, experts = 4, groups = 2, k = 1 } end)\n"
    "obj('sched', function() return gqe.optim.schedule{ kind = 'wsd', warmup = 2, total = 10 } end)\n"
    "obj('ds', function() return gqe.data.open{ kind = 'text', path = dir .. '/text.txt', batch = 2, seq = 8 } end)\n"
    "obj('db', function() return gqe.db.open(dir .. '/fuzz.db') end)\n"
    "obj('weights', function() return { ['q_proj.weight'] = V.x, ['tok_emb.weight'] = V.xi } end)\n"
    /* Methods, from each object's metatable: "LM:generate" and the like. */
    "local classes = { x = 'Tensor', lm = 'LM', opt = 'Optimizer', attn = 'Attention', sched = 'Schedule',\n"
    "                  ds = 'Dataset', db = 'RunLog' }\n"
    "local cls_names, receiver = {}, {}\n"
    "for k in pairs(classes) do cls_names[#cls_names + 1] = k end\n"
    "table.sort(cls_names)\n"
    "for _, k in ipairs(cls_names) do\n"
    "  local o = V[k]\n"
    "  local mt = o ~= nil and getmetatable(o)\n"
    "  local idx = type(mt) == 'table' and mt.__index\n"
    "  if type(idx) == 'table' then\n"
    "    local ms = {}\n"
    "    for m, fn in pairs(idx) do if type(fn) == 'function' then ms[#ms + 1] = m end end\n"
    "    table.sort(ms)\n"
    "    for _, m in ipairs(ms) do\n"
    "      local name = classes[k] .. ':' .. m\n"
    "      fns[name] = idx[m]; names[#names + 1] = name; receiver[classes[k]] = k\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local vnames = {}\n"
    "for k in pairs(V) do vnames[#vnames + 1] = k end\n"
    "vnames[#vnames + 1] = 'nil'\n"
    "table.sort(vnames)\n"
    /* Valid but huge sizes are the allocator's to refuse; skip those calls. */
    "local BIG, CAP = 2.0^26, 2.0^48\n"
    "local function in_range(x) return x > BIG and x <= CAP end\n"
    /* A number alone, or the product of a table's numbers (a shape). */
    "local function huge(v, depth)\n"
    "  if math.type(v) then return in_range(math.abs(v + 0.0)) end\n"
    "  if type(v) ~= 'table' or getmetatable(v) or depth > 2 then return false end\n"
    "  local p, any = 1.0, false\n"
    "  for _, x in pairs(v) do\n"
    "    if type(x) == 'table' and huge(x, depth + 1) then return true end\n"
    "    if math.type(x) then p = p * math.abs(x + 0.0); any = true end\n"
    "  end\n"
    "  return any and in_range(p)\n"
    "end\n"
    "local function call(name, args, n)\n"
    "  local fn = fns[name]\n"
    "  if not fn then return end\n"
    "  for i = 1, n do if huge(args[i], 0) then return end end\n"
    "  local ok, err = pcall(fn, table.unpack(args, 1, n))\n"
    "  if TRACE then io.stderr:write(name, ' -> ', ok and 'ok' or tostring(err), '\\n') end\n"
    "end\n"
    "if input:sub(1, 6) == '#calls' then\n"
    "  for line in input:gmatch('[^\\n]+') do\n"
    "    if line:sub(1, 1) ~= '#' then\n"
    "      local words = {}\n"
    "      for w in line:gmatch('%S+') do words[#words + 1] = w end\n"
    "      local args = {}\n"
    "      for i = 2, #words do args[i - 1] = V[words[i]] end\n"
    "      call(words[1], args, #words - 1)\n"
    "    end\n"
    "  end\n"
    "else\n"
    "  local pos = 0\n"
    "  local function byte() pos = pos + 1; return input:byte(pos) or 0 end\n"
    "  while pos < #input do\n"
    "    local name = names[byte() % #names + 1]\n"
    "    local n = byte() % 5\n"
    "    local args = {}\n"
    "    for i = 1, n do args[i] = V[vnames[byte() % #vnames + 1]] end\n"
    /* A method mostly gets an object of its class as the receiver. */
    "    local cls = name:match('^(%w+):')\n"
    "    if cls and byte() % 4 ~= 0 then table.insert(args, 1, V[receiver[cls]]); n = n + 1 end\n"
    "    call(name, args, n)\n"
    "  end\n"
    "end\n"
    "if V.db then pcall(V.db.close, V.db) end\n";

static lua_State *g_L;
static char g_dir[] = "/tmp/gqe_fuzz_api_XXXXXX";

static int open_all(lua_State *L) {
    luaL_openlibs(L);
    luaL_requiref(L, "gqe", luaopen_gqe, 1);
    lua_pop(L, 1);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void cleanup(void) { nftw(g_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS); }

/* Relative paths from the pool ("x", "..") land in the temporary directory:
 * each input runs there, and the caller's directory comes back after (the
 * replay main opens its next input by a relative path). */
static int g_home = -1;

static void setup(void) {
    if (!mkdtemp(g_dir)) { perror("fuzz_lua_api: temporary directory"); abort(); }
    atexit(cleanup);
    g_L = luaL_newstate();
    if (!g_L) abort();
    lua_pushcfunction(g_L, open_all);
    if (lua_pcall(g_L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_lua_api: cannot load gqe: %s\n", lua_tostring(g_L, -1));
        abort();
    }
    if (luaL_loadbuffer(g_L, HARNESS, sizeof HARNESS - 1, "=fuzz_lua_api") != LUA_OK) {
        fprintf(stderr, "fuzz_lua_api: harness: %s\n", lua_tostring(g_L, -1));
        abort();
    }
    lua_setfield(g_L, LUA_REGISTRYINDEX, "fuzz_lua_api.harness");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_L) setup();
    lua_State *L = g_L;
    g_home = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (g_home < 0 || chdir(g_dir) != 0) { perror("fuzz_lua_api: chdir"); abort(); }
    lua_getfield(L, LUA_REGISTRYINDEX, "fuzz_lua_api.harness");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushstring(L, g_dir);
    int rc = lua_pcall(L, 2, 0, 0);
    if (fchdir(g_home) != 0) { perror("fuzz_lua_api: fchdir"); abort(); }
    close(g_home);
    if (rc != LUA_OK) {
        /* Every call runs under pcall: an error here is in the harness's
         * own set-up, which must never fail. */
        fprintf(stderr, "fuzz_lua_api: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
