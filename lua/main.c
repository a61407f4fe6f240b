/* build/gqe: `gqe FILE.lua [args]` runs a script with the gqe module loaded
 * (like lua5.4, with `arg` and `...` set the same way); `gqe COMMAND [args]`
 * hands a chore to require("gqe.cli").main(command, args). */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int luaopen_gqe(lua_State *L);

static const char *const COMMANDS[] = {"runs", "compare", "report", "data", "bench", "help",
                                       "resume", "merge", "eval", "test", "__run", NULL};

static const char USAGE[] =
    "usage: gqe FILE.lua [args...]     run a script with the gqe module\n"
    "       gqe COMMAND [args...]      runs | compare | report | data | bench | resume | merge | eval | help\n";

/* Errors that carry a position ("file.lua:12: ...") come from code and get a
 * traceback; errors without one are messages for the user (a bad config key,
 * a missing file) and read better alone. */
static int has_position(const char *m) {
    const char *c = strchr(m, ':');
    if (!c || c == m || !isdigit((unsigned char)c[1])) return 0;
    for (c++; isdigit((unsigned char)*c); c++) {}
    return *c == ':';
}

/* Message handler: the error text, plus a traceback for errors from code. */
static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
        else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    if (!has_position(msg) && !getenv("GQE_TRACEBACK")) {
        /* Point at the user's own line: the innermost frame outside the library. */
        lua_Debug ar;
        for (int level = 1; lua_getstack(L, level, &ar); level++) {
            if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || ar.source[0] != '@') continue;
            if (strncmp(ar.source, "@lua/gqe/", 9) == 0) continue;
            lua_pushfstring(L, "%s\n  at %s:%d", msg, ar.short_src, ar.currentline);
            return 1;
        }
        lua_pushstring(L, msg);
        return 1;
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Calls the function below nargs arguments; prints "gqe: <error>" on failure. */
static int docall(lua_State *L, int nargs, int nres) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (st != LUA_OK) {
        fprintf(stderr, "gqe: %s\n", lua_tostring(L, -1));
        fflush(stderr);
        lua_pop(L, 1);
    }
    return st;
}

/* Global `arg` like lua5.4's: arg[-1] = program, arg[0] = script or command. */
static void set_arg(lua_State *L, int argc, char **argv, int script) {
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int is_command(const char *s) {
    for (const char *const *c = COMMANDS; *c; c++)
        if (strcmp(*c, s) == 0) return 1;
    return 0;
}

/* A script when it names a file, ends in .lua or has a path separator. */
static int is_script(const char *s) {
    struct stat st;
    size_t n = strlen(s);
    if (strchr(s, '/') || (n > 4 && strcmp(s + n - 4, ".lua") == 0)) return 1;
    return stat(s, &st) == 0 && S_ISREG(st.st_mode);
}

/* Pushes require("gqe.cli").main, or nothing and returns 0 when it is absent. */
static int push_cli_main(lua_State *L) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    int has = lua_getfield(L, -1, "gqe.cli") == LUA_TFUNCTION;
    lua_pop(L, 3);
    if (!has) return 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "gqe.cli");
    if (docall(L, 1, 1) != LUA_OK) return -1;
    if (!lua_istable(L, -1) || lua_getfield(L, -1, "main") != LUA_TFUNCTION) {
        lua_pop(L, lua_istable(L, -1) ? 2 : 1);
        return 0;
    }
    lua_remove(L, -2);
    return 1;
}

/* cli.main(command, {args...}); its integer result is the exit status. */
static int run_command(lua_State *L, const char *cmd, int argc, char **argv, int first) {
    int has = push_cli_main(L);
    if (has < 0) return 1;
    if (has == 0) {
        if (strcmp(cmd, "help") == 0) { fputs(USAGE, stdout); return 0; }
        fprintf(stderr, "gqe: command '%s' needs the gqe.cli library, which is not built in\n%s", cmd, USAGE);
        return 1;
    }
    lua_pushstring(L, cmd);
    lua_createtable(L, argc - first, 0);
    for (int i = first; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i - first + 1); }
    if (docall(L, 2, 1) != LUA_OK) return 1;
    int code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : lua_toboolean(L, -1) || lua_isnil(L, -1) ? 0 : 1;
    lua_pop(L, 1);
    return code;
}

static int run_script(lua_State *L, int argc, char **argv) {
    const char *path = argv[1];
    set_arg(L, argc, argv, 1);
    if (luaL_loadfile(L, path) != LUA_OK) {
        fprintf(stderr, "gqe: %s\n", lua_tostring(L, -1));
        return 1;
    }
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    return docall(L, argc - 2, 0) == LUA_OK ? 0 : 1;
}

/* Opens the libraries and the gqe module (global `gqe`, package.loaded.gqe). */
static int open_all(lua_State *L) {
    luaL_openlibs(L);
    luaL_requiref(L, "gqe", luaopen_gqe, 1);
    lua_pop(L, 1);
    return 0;
}

int main(int argc, char **argv) {
    /* A closed stdout (`gqe runs | head -3`) ends output, not the process:
     * writes fail quietly instead, so no run is ever killed by a pipe. */
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit (ulimit -f) then fails the write with EFBIG, handled
     * like a full disk, instead of killing the process mid-run. */
    signal(SIGXFSZ, SIG_IGN);
    /* A closed stdout (`gqe runs | head -3`) ends output, not the process:
     * writes fail quietly instead, so no run is ever killed by a pipe. */
    signal(SIGPIPE, SIG_IGN);
    lua_State *L = luaL_newstate();
    if (!L) { fputs("gqe: cannot create the Lua state (out of memory)\n", stderr); return 1; }
    lua_pushcfunction(L, open_all);
    if (docall(L, 0, 0) != LUA_OK) { lua_close(L); return 1; }
    int code;
    if (argc < 2) {
        /* Like git or make with nothing to do: the usage, and a failure. */
        set_arg(L, argc, argv, 0);
        int out = dup(1);
        dup2(2, 1);
        run_command(L, "help", argc, argv, argc);
        fflush(stdout);
        dup2(out, 1);
        close(out);
        code = 2;
    } else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        set_arg(L, argc, argv, 0);
        code = run_command(L, "help", argc, argv, argc);
    } else if (!is_command(argv[1]) && is_script(argv[1])) {
        code = run_script(L, argc, argv);
    } else {
        set_arg(L, argc, argv, 1);
        code = run_command(L, argv[1], argc, argv, 2);
    }
    lua_close(L);
    return code;
}
