/* libFuzzer target: the config reader, reached the ways a user reaches it.
 * The input is tried (1) as a JSON config (gqe.json.decode, then
 * gqe.config.resolve, and as a gqe.experiment definition through
 * experiment.expand), and (2) as command-line arguments, one per line,
 * through config.parse_args / config.apply / config.resolve on top of a
 * small base config. A config that resolves must survive the JSON round
 * trip `gqe resume` relies on (same hash), and, when small, build its model,
 * optimizer and schedule. Any Lua error is a clean rejection; a crash, a
 * sanitizer report or a broken invariant (abort) is a bug. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int luaopen_gqe(lua_State *L);

static const char HARNESS[] =
    "local input = ...\n"
    "local gqe = require 'gqe'\n"
    "local config, json = gqe.config, gqe.json\n"
    "local train = require 'gqe.train'\n"
    "local experiment = require 'gqe.experiment'\n"
    "local function invariant(ok, what) if not ok then error('INVARIANT: ' .. what, 0) end end\n"
    /* Builds what train.run builds before the first step, for small configs. */
    "local function build_small(c)\n"
    "  local m, t = c.model, c.train\n"
    "  if m.dim > 64 or m.layers > 2 or m.experts > 32 or m.head_dim > 64 or m.mlp_hidden > 256\n"
    "     or m.vocab > 1024 or t.seq > 64 or m.max_seq > 64 then return end\n"
    "  local ok, lm = pcall(gqe.nn.LM, train.model_options(c, m.vocab > 0 and m.vocab or 256))\n"
    "  if not ok then return end\n"
    "  local o = c.optim\n"
    "  pcall(train.make_optimizer, c, lm)\n"
    "  local oks, sched = pcall(gqe.optim.schedule, { kind = c.schedule.kind, warmup = c.schedule.warmup,\n"
    "    total = t.steps, min_lr = c.schedule.min_lr, decay_frac = c.schedule.decay_frac })\n"
    "  if oks then for _, s in ipairs({ 0, t.steps // 2, t.steps - 1 }) do\n"
    "    local lr = sched:lr(s, o.lr)\n"
    "    invariant(lr == lr and lr >= 0, 'schedule gave lr ' .. tostring(lr) .. ' at step ' .. s)\n"
    "  end end\n"
    "end\n"
    "local function check_resolved(c)\n"
    "  local ok, c2 = pcall(function() return config.resolve(json.decode(config.to_json(c))) end)\n"
    "  invariant(ok, 'a resolved config does not survive its JSON round trip: ' .. tostring(c2))\n"
    "  invariant(config.hash(c2) == config.hash(c), 'the JSON round trip changes the config hash')\n"
    "  config.params(c)\n"
    "  build_small(c)\n"
    "end\n"
    /* 1. JSON. */
    "local ok, v = pcall(json.decode, input)\n"
    "if ok and type(v) == 'table' then\n"
    "  local okr, c = pcall(config.resolve, v)\n"
    "  if okr then check_resolved(c) end\n"
    "  local oke, runs = pcall(experiment.expand, v, {})\n"
    "  if oke then for i = 1, math.min(#runs, 4) do check_resolved(runs[i].config) end end\n"
    "end\n"
    /* 2. Arguments, one per line. */
    "local args = {}\n"
    "for line in input:gmatch('[^\\n]+') do args[#args + 1] = line end\n"
    "local okp, overrides = pcall(config.parse_args, args)\n"
    "if okp then\n"
    "  local base = { data = { path = 'unused.txt' },\n"
    "    model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },\n"
    "    train = { steps = 10, batch = 2, seq = 16 } }\n"
    "  if pcall(config.apply, base, overrides) then\n"
    "    local okr, c = pcall(config.resolve, base)\n"
    "    if okr then check_resolved(c) end\n"
    "  end\n"
    "end\n";

static lua_State *g_L;

/* libFuzzer sees coverage only in instrumented C; the config reader is Lua.
 * A line hook feeds (previous line, line) pairs of the Lua code into extra
 * counters libFuzzer reads like its own, so inputs that reach new Lua
 * branches are kept. Without libFuzzer (the replay build) it is inert. */
#define LUA_EDGES (1u << 14)
#if defined(__clang__) && defined(__linux__)
__attribute__((section("__libfuzzer_extra_counters")))
#endif
static uint8_t g_lua_edges[LUA_EDGES];
static uintptr_t g_prev_line;

static void line_hook(lua_State *L, lua_Debug *ar) {
    if (!lua_getinfo(L, "S", ar)) return;
    /* A chunk's source string lives as long as its functions: its address
     * names the file. */
    uintptr_t here = (uintptr_t)ar->source * 2654435761u + (uintptr_t)ar->currentline;
    uint8_t *c = &g_lua_edges[(here ^ (g_prev_line >> 1)) & (LUA_EDGES - 1)];
    if (*c < 255) ++*c;
    g_prev_line = here;
}

static int open_all(lua_State *L) {
    luaL_openlibs(L);
    luaL_requiref(L, "gqe", luaopen_gqe, 1);
    lua_pop(L, 1);
    return 0;
}

static void setup(void) {
    g_L = luaL_newstate();
    if (!g_L) abort();
    lua_pushcfunction(g_L, open_all);
    if (lua_pcall(g_L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_config: cannot load gqe: %s\n", lua_tostring(g_L, -1));
        abort();
    }
    if (luaL_loadbuffer(g_L, HARNESS, sizeof HARNESS - 1, "=fuzz_config") != LUA_OK) {
        fprintf(stderr, "fuzz_config: harness: %s\n", lua_tostring(g_L, -1));
        abort();
    }
    lua_setfield(g_L, LUA_REGISTRYINDEX, "fuzz_config.harness");
    lua_sethook(g_L, line_hook, LUA_MASKLINE, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_L) setup();
    lua_State *L = g_L;
    lua_getfield(L, LUA_REGISTRYINDEX, "fuzz_config.harness");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        /* The harness catches every rejection itself: what reaches here is a
         * broken invariant or an error outside the pcalls. */
        fprintf(stderr, "fuzz_config: %s\n", lua_tostring(L, -1));
        abort();
    }
    /* Models and optimizers hold C memory until collected; collecting now
     * also keeps this input's mallocs and frees balanced, which spares
     * libFuzzer a leak scan after every input. */
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
