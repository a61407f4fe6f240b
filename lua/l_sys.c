/* System services for scripts: clocks, host facts, signals that let a
 * training loop stop cleanly, child processes for --jobs N, and the OpenBLAS
 * sgemm peak used as the CPU baseline of `gqe bench`. */
#include "bind.h"
#include "backend.h"
#include "interrupt.h"
#include "ops.h"
#include "profile.h"
#include "rng.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int l_clock(lua_State *L) { lua_pushnumber(L, now()); return 1; }
static int l_pid(lua_State *L) { lua_pushinteger(L, getpid()); return 1; }
static int l_cuda_available(lua_State *L) { lua_pushboolean(L, gqe_cuda_available()); return 1; }
static int l_cuda_device_count(lua_State *L) { lua_pushinteger(L, gqe_cuda_device_count()); return 1; }

/* gqe.profile_reset(): drops the GQE_PROFILE table so far (call after a warm-up). */
static int l_profile_reset(lua_State *L) { (void)L; gqe_profile_reset(); return 0; }

/* gqe.cuda_memory([reset_peak]) -> {in_use, peak, reserved} in bytes. */
static int l_cuda_memory(lua_State *L) {
    gqe_memory_stats m;
    gqe_cuda_memory_stats(&m, lua_toboolean(L, 1));
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)m.in_use);
    lua_setfield(L, -2, "in_use");
    lua_pushinteger(L, (lua_Integer)m.peak);
    lua_setfield(L, -2, "peak");
    lua_pushinteger(L, (lua_Integer)m.reserved);
    lua_setfield(L, -2, "reserved");
    return 1;
}

static int l_hostname(lua_State *L) {
    char buf[256];
    if (gethostname(buf, sizeof buf) != 0) strcpy(buf, "unknown");
    buf[sizeof buf - 1] = 0;
    lua_pushstring(L, buf);
    return 1;
}

static int l_getenv(lua_State *L) {
    const char *v = getenv(luaL_checkstring(L, 1));
    if (v) lua_pushstring(L, v); else lua_pushnil(L);
    return 1;
}

/* isatty([fd = 1]) */
static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
    return 1;
}

/* Sleeps the full time unless a signal handled by signals_install arrives. */
static volatile sig_atomic_t g_signal;   /* 0, SIGINT or SIGTERM: the first interrupt */
static volatile sig_atomic_t g_direct;   /* an interrupt came straight to this process */
static int g_installed;
static int g_quiet;   /* a --jobs worker: its sweep speaks for it */

static int l_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    if (s <= 0) return 0;
    struct timespec req = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)}, rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR && !g_signal) req = rem;
    return 0;
}

/* ---- signals: the first asks the loop to stop, the second stops now ----- */

/* SIGUSR1 / SIGUSR2 are SIGINT / SIGTERM forwarded by the parent of a --jobs
 * sweep. They ask for a clean stop but never count as the second signal: the
 * same Ctrl-C usually reaches the worker directly too (a terminal signals
 * the whole process group, Slurm every process of the job), and one Ctrl-C
 * must not kill a run without its checkpoint. */
static void on_signal(int sig) {
    if (sig == SIGUSR1 || sig == SIGUSR2) {
        if (!g_signal) {
            g_signal = sig == SIGUSR1 ? SIGINT : SIGTERM;
            gqe_interrupt_request(g_signal);   /* long computations in the core stop too */
        }
        return;
    }
    if (g_direct) {
        static const char msg[] = "gqe: stopped at once (second signal); rerun to resume from the last checkpoints\n";
        if (!g_quiet) {
            ssize_t w = write(2, msg, sizeof msg - 1);   /* async-signal-safe; best-effort */
            (void)w;
        }
        _exit(sig == SIGTERM ? 143 : 130);
    }
    g_direct = 1;
    if (!g_signal) {
        g_signal = sig;
        gqe_interrupt_request(sig);   /* long computations in the core stop too */
    }
}

static const int STOP_SIGNALS[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
#define N_STOP_SIGNALS (int)(sizeof STOP_SIGNALS / sizeof STOP_SIGNALS[0])

static void stop_signal_set(sigset_t *set) {
    sigemptyset(set);
    for (int i = 0; i < N_STOP_SIGNALS; i++) sigaddset(set, STOP_SIGNALS[i]);
}

/* Installs the handlers (idempotent: a signal already caught stays caught)
 * and unblocks the signals a --jobs worker starts with blocked. A closed
 * stdout (`gqe resume 7 | head`) must not kill a run: SIGPIPE is ignored
 * and progress output is best-effort. */
static int l_signals_install(lua_State *L) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_STOP_SIGNALS; i++)
        if (sigaction(STOP_SIGNALS[i], &sa, NULL) != 0)
            return luaL_error(L, "gqe.signals_install: sigaction failed: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);   /* over a file-size limit, writes fail (EFBIG) like a full disk */
    if (!g_installed) {
        g_signal = g_direct = 0;
        gqe_interrupt_clear();
    }
    g_installed = 1;
    g_quiet = getenv("GQE_WORKER") != NULL;
    sigset_t set;
    stop_signal_set(&set);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    return 0;
}

static int l_signals_reset(lua_State *L) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_STOP_SIGNALS; i++) sigaction(STOP_SIGNALS[i], &sa, NULL);
    g_signal = g_direct = 0;
    g_installed = 0;
    gqe_interrupt_clear();
    (void)L;
    return 0;
}

static int l_interrupted(lua_State *L) {
    int s = g_signal;
    if (s == SIGINT) lua_pushliteral(L, "SIGINT");
    else if (s == SIGTERM) lua_pushliteral(L, "SIGTERM");
    else lua_pushboolean(L, 0);
    return 1;
}

/* ---- git ---------------------------------------------------------------- */

/* First line of a command's output, or NULL. */
static char *run_line(const char *cmd, char *buf, size_t n) {
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    char *r = fgets(buf, (int)n, f);
    int rc = pclose(f);
    if (!r || rc != 0) return NULL;
    buf[strcspn(buf, "\r\n")] = 0;
    return buf;
}

/* commit, dirty (true when tracked files differ from HEAD); nil outside git. */
static int l_git_commit(lua_State *L) {
    char commit[128], status[512];
    if (!run_line("git rev-parse HEAD 2>/dev/null", commit, sizeof commit)) { lua_pushnil(L); return 1; }
    lua_pushstring(L, commit);
    FILE *f = popen("git status --porcelain --untracked-files=no 2>/dev/null", "r");
    int dirty = 0;
    if (f) {
        dirty = fgets(status, sizeof status, f) != NULL;
        pclose(f);
    }
    lua_pushboolean(L, dirty);
    return 2;
}

/* ---- sgemm peak --------------------------------------------------------- */

/* Best of iters runs of an n x n x n f32 matmul on the CPU backend
 * (gqe_matmul, so the same threads and BLAS as training) on normal(0, 1)
 * matrices, GFLOP/s. The tensors belong to Lua from the start, so an
 * error leaks nothing. */
static gqe_tensor *bench_matrix(lua_State *L, int64_t n) {
    gqe_tensor t;
    GQE_LUA_CHECK(L, "sgemm_bench", gqe_tensor_new4(&t, GQE_F32, GQE_CPU, n, n, 0, 0));
    gqe_lua_push_tensor(L, t);
    return gqe_lua_check_tensor(L, -1);
}

static int l_sgemm_bench(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1), iters = luaL_optinteger(L, 2, 5);
    luaL_argcheck(L, n >= 1 && n <= 16384, 1, "n must be in 1..16384");
    luaL_argcheck(L, iters >= 1, 2, "iters must be >= 1");
    size_t nn = (size_t)n * (size_t)n;
    gqe_tensor *a = bench_matrix(L, n), *b = bench_matrix(L, n), *c = bench_matrix(L, n);
    float *pa = gqe_f32(a), *pb = gqe_f32(b);
    for (size_t i = 0; i < nn; i++) pa[i] = gqe_rng_normal_at(1, 0, i);
    for (size_t i = 0; i < nn; i++) pb[i] = gqe_rng_normal_at(1, 0, nn + i);
    GQE_LUA_TRY(L, "sgemm_bench", gqe_matmul(c, a, b, false, false, 1.0f, 0.0f));
    double best = 1e30;
    for (lua_Integer it = 0; it < iters; it++) {
        double t0 = now();
        GQE_LUA_TRY(L, "sgemm_bench", gqe_matmul(c, a, b, false, false, 1.0f, 0.0f));
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    lua_pop(L, 3);
    lua_pushnumber(L, 2.0 * (double)n * (double)n * (double)n / (best > 1e-12 ? best : 1e-12) / 1e9);
    return 1;
}

/* ---- child processes ---------------------------------------------------- */

static const char *const SPAWN_OPTS[] = {"stderr", "stdout", "worker", NULL};

static void redirect(const char *path, int fd) {
    if (!path) return;
    int f = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (f < 0) { fprintf(stderr, "gqe.spawn: cannot open %s: %s\n", path, strerror(errno)); _exit(127); }
    dup2(f, fd);
    close(f);
}

/* spawn(argv [, {stdout=path, stderr=path, worker=bool}]) -> pid. argv[1] ==
 * "gqe" runs this very executable (/proc/self/exe) so child runs use the
 * same build; any other argv[1] is looked up on PATH. Output paths are
 * appended to. A worker starts with the stop signals blocked (an interrupt
 * that arrives while it starts waits for its signals_install instead of
 * killing it) and gets SIGTERM when this process dies, so no run is left
 * behind by a killed sweep. */
static int l_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    gqe_lua_check_keys(L, 2, "gqe.spawn", SPAWN_OPTS);
    const char *out = gqe_lua_opt_str(L, 2, "gqe.spawn", "stdout", NULL);
    const char *err = gqe_lua_opt_str(L, 2, "gqe.spawn", "stderr", NULL);
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 1, 1, "argv must hold at least the program");
    const char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
    luaL_checkstack(L, (int)n + 2, "gqe.spawn: argv too long");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            return luaL_argerror(L, 1, lua_pushfstring(L, "argv[%d] is a %s, not a string", (int)i, luaL_typename(L, -1)));
        argv[i - 1] = lua_tostring(L, -1);   /* stays on the stack, so stays alive */
    }
    argv[n] = NULL;
    bool self = strcmp(argv[0], "gqe") == 0;
    bool worker = false;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "worker");
        worker = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return luaL_error(L, "gqe.spawn: fork failed: %s", strerror(errno));
    if (pid == 0) {
        if (worker) {
            sigset_t set;
            stop_signal_set(&set);
            sigprocmask(SIG_BLOCK, &set, NULL);
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(143);   /* the parent died before prctl */
        }
        redirect(out, 1);
        redirect(err, 2);
        if (self) execv("/proc/self/exe", (char *const *)argv);
        else execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "gqe.spawn: cannot run %s: %s\n", self ? "/proc/self/exe" : argv[0], strerror(errno));
        _exit(127);
    }
    lua_pushinteger(L, pid);
    return 1;
}

/* wait(pid [, nohang]) -> exit code (128 + signal when killed), pid.
 * pid -1 waits for any child; with nohang, nil while it still runs. */
static int l_wait(lua_State *L) {
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int nohang = lua_toboolean(L, 2), status = 0;
    pid_t r;
    do r = waitpid(pid, &status, nohang ? WNOHANG : 0);
    while (r < 0 && errno == EINTR && !g_signal);
    if (r == 0) { lua_pushnil(L); return 1; }
    if (r < 0) return luaL_error(L, "gqe.wait(%d): %s", (int)pid, strerror(errno));
    lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1);
    lua_pushinteger(L, r);
    return 2;
}

/* kill(pid [, "SIGTERM"|"SIGINT"|"SIGKILL"|"SIGUSR1"|"SIGUSR2"]): for
 * stopping child runs (SIGUSR1/2: a forwarded SIGINT/SIGTERM, see on_signal). */
static int l_kill(lua_State *L) {
    static const char *const names[] = {"SIGTERM", "SIGINT", "SIGKILL", "SIGUSR1", "SIGUSR2", NULL};
    static const int sigs[] = {SIGTERM, SIGINT, SIGKILL, SIGUSR1, SIGUSR2};
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    luaL_argcheck(L, pid > 0, 1, "pid must be positive");
    int s = sigs[luaL_checkoption(L, 2, "SIGTERM", names)];
    lua_pushboolean(L, kill(pid, s) == 0);
    return 1;
}

static const luaL_Reg sys_funcs[] = {
    {"clock", l_clock}, {"hostname", l_hostname}, {"pid", l_pid}, {"cuda_available", l_cuda_available},
    {"cuda_memory", l_cuda_memory}, {"profile_reset", l_profile_reset},
    {"signals_install", l_signals_install}, {"signals_reset", l_signals_reset},
    {"interrupted", l_interrupted}, {"git_commit", l_git_commit}, {"sgemm_bench", l_sgemm_bench},
    {"wait", l_wait}, {"kill", l_kill}, {"sleep", l_sleep}, {"getenv", l_getenv},
    {"isatty", l_isatty}, {"spawn", l_spawn}, {"cuda_device_count", l_cuda_device_count}, {NULL, NULL}};

void gqe_lua_open_sys(lua_State *L) {
    luaL_setfuncs(L, sys_funcs, 0);
#ifdef GQE_HAVE_CUDA
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    lua_setfield(L, -2, "cuda_built");
}
