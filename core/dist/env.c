/* Rank and world from the variables launchers set (torchrun, mpirun,
 * Slurm), so an experiment script never says how it was started. */
#include "internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PORT 29500

static gqe_status parse_int(const char *name, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return gqe_fail(GQE_ERR_ARG, "environment variable %s='%s' must be an integer in %d..%d", name, s, lo, hi);
    *out = (int)v;
    return GQE_OK;
}

static const char *get(gqe_env_lookup lookup, void *ctx, const char *name) {
    const char *v = lookup(ctx, name);
    return v && *v ? v : NULL;
}

gqe_status gqe_slurm_first_host(const char *nodelist, char *out, size_t cap) {
    if (!nodelist || !*nodelist) return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST is empty");
    /* The first entry ends at a comma outside brackets; a bracket range
     * contributes its first number, zero padding kept. */
    size_t n = 0;
    const char *p = nodelist;
    while (*p && *p != ',' && *p != '[') {
        if (n + 1 >= cap) return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST: host name too long");
        out[n++] = *p++;
    }
    if (*p == '[') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST='%s': cannot read the range", nodelist);
        while (*p >= '0' && *p <= '9') {
            if (n + 1 >= cap) return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST: host name too long");
            out[n++] = *p++;
        }
        if (*p != '-' && *p != ',' && *p != ']') return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST='%s': cannot read the range", nodelist);
        if (!strchr(p, ']')) return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST='%s': unclosed '['", nodelist);
        /* a suffix after the bracket ("n[1-2]-ib") belongs to the name */
        p = strchr(p, ']') + 1;
        while (*p && *p != ',') {
            if (n + 1 >= cap) return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST: host name too long");
            out[n++] = *p++;
        }
    }
    if (n == 0) return gqe_fail(GQE_ERR_ARG, "SLURM_JOB_NODELIST='%s' names no host", nodelist);
    out[n] = '\0';
    return GQE_OK;
}

gqe_status gqe_dist_env_read(gqe_dist_env *e, gqe_env_lookup lookup, void *ctx) {
    memset(e, 0, sizeof *e);
    e->world = 1;
    e->master_port = DEFAULT_PORT;
    e->source = "single";
    static const struct { const char *source, *rank, *world, *local; } kinds[] = {
        {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
        {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
        {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        const char *r = get(lookup, ctx, kinds[k].rank), *w = get(lookup, ctx, kinds[k].world);
        if (!r && !w) continue;
        if (!r || !w)
            return gqe_fail(GQE_ERR_ARG, "environment: %s is set but %s is not (both name the job's ranks)",
                            r ? kinds[k].rank : kinds[k].world, r ? kinds[k].world : kinds[k].rank);
        GQE_TRY(parse_int(kinds[k].world, w, 1, 1 << 20, &e->world));
        GQE_TRY(parse_int(kinds[k].rank, r, 0, e->world - 1, &e->rank));
        const char *l = get(lookup, ctx, kinds[k].local);
        if (l) GQE_TRY(parse_int(kinds[k].local, l, 0, 1 << 20, &e->local_rank));
        else e->local_rank = e->rank;   /* one node */
        e->source = kinds[k].source;
        break;
    }
    const char *addr = get(lookup, ctx, "MASTER_ADDR");
    if (addr) {
        if (strlen(addr) >= sizeof e->master_addr) return gqe_fail(GQE_ERR_ARG, "MASTER_ADDR is too long");
        strcpy(e->master_addr, addr);
    } else if (strcmp(e->source, "slurm") == 0) {
        GQE_TRY(gqe_slurm_first_host(get(lookup, ctx, "SLURM_JOB_NODELIST"), e->master_addr, sizeof e->master_addr));
    } else if (e->world > 1 && strcmp(e->source, "torchrun") == 0) {
        strcpy(e->master_addr, "127.0.0.1");
    }
    const char *port = get(lookup, ctx, "MASTER_PORT");
    if (port) GQE_TRY(parse_int("MASTER_PORT", port, 1, 65535, &e->master_port));
    return GQE_OK;
}

static const char *process_env(void *ctx, const char *name) { (void)ctx; return getenv(name); }

gqe_status gqe_dist_env_from_process(gqe_dist_env *out) { return gqe_dist_env_read(out, process_env, NULL); }
