#include "profile.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_OPS 64

typedef struct { const char *op; const char *device; double seconds; long calls; } entry;
static entry table[MAX_OPS];
static int n_entries;
static int enabled = -1;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void report_at_exit(void) { gqe_profile_report(stderr); }

bool gqe_profile_enabled(void) {
    if (enabled < 0) {
        const char *e = getenv("GQE_PROFILE");
        enabled = e && strcmp(e, "1") == 0;
        if (enabled) atexit(report_at_exit);
    }
    return enabled == 1;
}

double gqe_profile_begin(const gqe_backend *be) {
    if (be->synchronize) be->synchronize();
    return now();
}

void gqe_profile_end(const gqe_backend *be, const char *op, double t0) {
    if (be->synchronize) be->synchronize();
    double dt = now() - t0;
    /* op names are string literals: compare pointers first, then text */
    for (int i = 0; i < n_entries; i++)
        if ((table[i].op == op || strcmp(table[i].op, op) == 0) && table[i].device == be->name) {
            table[i].seconds += dt;
            table[i].calls++;
            return;
        }
    if (n_entries < MAX_OPS) table[n_entries++] = (entry){op, be->name, dt, 1};
}

static int slower_first(const void *a, const void *b) {
    double x = ((const entry *)a)->seconds, y = ((const entry *)b)->seconds;
    return (x < y) - (x > y);
}

void gqe_profile_report(FILE *f) {
    if (!n_entries) return;
    entry sorted[MAX_OPS];
    memcpy(sorted, table, sizeof(entry) * (size_t)n_entries);
    qsort(sorted, (size_t)n_entries, sizeof *sorted, slower_first);
    double total = 0;
    for (int i = 0; i < n_entries; i++) total += sorted[i].seconds;
    fprintf(f, "GQE_PROFILE: time per op (device waits included), %.3f s in all\n", total);
    fprintf(f, "%-28s %-8s %10s %8s %10s %6s\n", "op", "device", "total ms", "calls", "ms/call", "share");
    for (int i = 0; i < n_entries; i++)
        fprintf(f, "%-28s %-8s %10.2f %8ld %10.4f %5.1f%%\n", sorted[i].op, sorted[i].device,
                1e3 * sorted[i].seconds, sorted[i].calls, 1e3 * sorted[i].seconds / (double)sorted[i].calls,
                100.0 * sorted[i].seconds / total);
}
