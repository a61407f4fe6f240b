/* Thread count under a busy machine. OpenMP regions end in a barrier, and
 * libgomp spins ~3 ms there before sleeping: when other processes keep the
 * CPUs busy (a second run, `--jobs` workers, a build), a descheduled thread
 * holds its partner at every barrier and a step gets several times slower
 * than with one thread. So the heavy ops call cpu_threads_adapt(), which
 * every 20 ms reads how many tasks the kernel has runnable
 * (/proc/loadavg) and sets the thread count to the CPUs the other tasks
 * leave free, between 1 and the OpenMP setting at the first call.
 *
 * Every op splits its work by shape, never by thread count, so results do
 * not change with it. GQE_CPU_ADAPT=0 keeps the OpenMP setting. */
#include "cpu.h"
#include <fcntl.h>
#include <omp.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define ADAPT_INTERVAL_NS 20000000LL

static int ceiling = -1;     /* threads at most; 0: adaptation off */
static int cpus, current;
static int prev_others;
static long long next_check;

/* Runnable tasks system-wide (the 4th field of /proc/loadavg, "r/total"),
 * the reading thread included; -1 when unknown. */
static int runnable_tasks(void) {
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *p = buf;
    for (int field = 0; field < 3; field++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    return atoi(p);
}

void cpu_threads_adapt(void) {
    if (ceiling == 0 || omp_in_parallel()) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (now < next_check) return;
    next_check = now + ADAPT_INTERVAL_NS;
    if (ceiling < 0) {
        const char *env = getenv("GQE_CPU_ADAPT");
        ceiling = env && strcmp(env, "0") == 0 ? 0 : omp_get_max_threads();
        cpus = omp_get_num_procs();
        current = ceiling;
        if (ceiling <= 1) ceiling = 0;
        if (ceiling == 0) return;
    }
    int r = runnable_tasks();
    if (r < 0) return;
    /* Our own threads count as runnable: libgomp keeps them spinning
     * between the regions of a step. Two samples in a row must agree
     * before threads are given up, so a passing task does not cost any. */
    int others = r - current;
    others = others < 0 ? 0 : others;
    int busy = others < prev_others ? others : prev_others;
    prev_others = others;
    int want = cpus - busy;
    want = want < 1 ? 1 : want > ceiling ? ceiling : want;
    if (want != current) {
        omp_set_num_threads(want);
        current = want;
    }
}
