#include "profile.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_OPS 256

typedef struct { char op[64]; const char *device; double seconds; long calls; } entry;
static entry table[MAX_OPS];
static int n_entries;
static int enabled = -1;

/* Device markers are read in batches, so the run never waits per op. */
#define MAX_PENDING 4096
typedef struct { const gqe_backend *be; void *start, *end; int entry; } pending;
static pending queue[MAX_PENDING];
static int n_queue;

static void flush_markers(void) {
    for (int i = 0; i < n_queue; i++) {
        pending *q = &queue[i];
        table[q->entry].seconds += q->be->marks_elapsed(q->start, q->end);
        q->be->mark_free(q->start);
        q->be->mark_free(q->end);
    }
    n_queue = 0;
}

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

gqe_profile_token gqe_profile_begin(const gqe_backend *be) {
    gqe_profile_token t = {0, NULL};
    if (be->mark) {
        if (be->mark(&t.marker) != GQE_OK) t.marker = NULL;
    } else {
        t.t0 = now();
    }
    return t;
}

static int entry_for(const gqe_backend *be, const char *op) {
    for (int i = 0; i < n_entries; i++)
        if (table[i].device == be->name && strncmp(table[i].op, op, sizeof table[i].op - 1) == 0) return i;
    if (n_entries == MAX_OPS) return -1;
    entry *e = &table[n_entries];
    snprintf(e->op, sizeof e->op, "%s", op);
    e->device = be->name;
    e->seconds = 0;
    e->calls = 0;
    return n_entries++;
}

void gqe_profile_end(const gqe_backend *be, const char *op, gqe_profile_token start) {
    int i = entry_for(be, op);
    if (be->mark) {
        void *end = NULL;
        if (!start.marker) return;
        if (i < 0 || be->mark(&end) != GQE_OK) { be->mark_free(start.marker); return; }
        table[i].calls++;
        if (n_queue == MAX_PENDING) flush_markers();
        queue[n_queue++] = (pending){be, start.marker, end, i};
        return;
    }
    if (i < 0) return;
    table[i].seconds += now() - start.t0;
    table[i].calls++;
}

void gqe_profile_reset(void) {
    flush_markers();
    n_entries = 0;
}

static int slower_first(const void *a, const void *b) {
    double x = ((const entry *)a)->seconds, y = ((const entry *)b)->seconds;
    return (x < y) - (x > y);
}

void gqe_profile_report(FILE *f) {
    flush_markers();
    if (!n_entries) return;
    entry sorted[MAX_OPS];
    memcpy(sorted, table, sizeof(entry) * (size_t)n_entries);
    qsort(sorted, (size_t)n_entries, sizeof *sorted, slower_first);
    double total = 0;
    for (int i = 0; i < n_entries; i++) total += sorted[i].seconds;
    fprintf(f, "GQE_PROFILE: time per op, %.3f s in all\n", total);
    fprintf(f, "%-44s %-8s %10s %8s %10s %6s\n", "op", "device", "total ms", "calls", "ms/call", "share");
    for (int i = 0; i < n_entries; i++)
        fprintf(f, "%-44s %-8s %10.2f %8ld %10.4f %5.1f%%\n", sorted[i].op, sorted[i].device,
                1e3 * sorted[i].seconds, sorted[i].calls, 1e3 * sorted[i].seconds / (double)sorted[i].calls,
                100.0 * sorted[i].seconds / total);
}
