/* What the communicator's backends (mpi.c, nccl.c) share with comm.c. */
#ifndef GQE_DIST_INTERNAL_H
#define GQE_DIST_INTERNAL_H
#include "../dist.h"
#include <stddef.h>

typedef enum { DIST_F32 = 0, DIST_F64, DIST_U8 } dist_dtype;

/* Buffers are on the backend's device unless `host` is set (mpi: always host). */
typedef struct comm_ops {
    /* in == out is in place; op is SUM or MAX */
    gqe_status (*all_reduce)(gqe_comm *c, const void *in, void *out, size_t n, dist_dtype dt, gqe_reduce_op op, bool host);
    gqe_status (*reduce_scatter)(gqe_comm *c, const void *in, void *out, size_t n_out, gqe_reduce_op op);
    gqe_status (*all_gather)(gqe_comm *c, const void *in, void *out, size_t n_in);
    gqe_status (*broadcast)(gqe_comm *c, void *buf, size_t n, dist_dtype dt, int root, bool host);
    gqe_status (*barrier)(gqe_comm *c);
    /* nonblocking SUM all-reduce in place; wait finishes all started */
    gqe_status (*start)(gqe_comm *c, void *buf, size_t n);
    gqe_status (*wait)(gqe_comm *c);
    void (*abort)(gqe_comm *c);
    void (*close)(gqe_comm *c);
} comm_ops;

struct gqe_comm {
    const comm_ops *ops;
    void *impl;
    const char *backend;
    gqe_device device;
    int rank, world, local_rank;
    double timeout_s;
    bool aborted;
};

gqe_status gqe_dist_open_mpi(gqe_comm *c, const gqe_dist_env *env);
gqe_status gqe_dist_open_nccl(gqe_comm *c, const gqe_dist_env *env);

/* Polls done(ctx) (1 done, 0 not yet, -1 failed with gqe_fail set) until it
 * finishes or the communicator's deadline passes; `what` names the
 * collective in the timeout message. */
gqe_status gqe_dist_wait(gqe_comm *c, const char *what, int (*done)(void *ctx), void *ctx);
double gqe_dist_now(void);

/* TCP rendezvous: rank 0 listens on addr:port and sends `len` bytes to each
 * of the world - 1 others, which connect (retrying until the deadline). */
gqe_status gqe_dist_rendezvous(const char *addr, int port, int rank, int world, void *buf, size_t len,
                               double timeout_s);

#endif
