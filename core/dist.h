/* Data-parallel communication: which rank this process is, and the
 * collectives a data-parallel trainer needs, over the engines the field
 * already trusts. NCCL serves CUDA tensors; MPI (OpenMPI) serves host
 * tensors, so CI runs the same code path under `mpirun -np 2`. Both
 * libraries are opened with dlopen when a communicator is opened: a
 * single-process run loads neither.
 *
 * Every collective waits with a deadline (timeout_s): a rank that died or
 * hangs makes the others fail with a message instead of blocking forever. */
#ifndef GQE_DIST_H
#define GQE_DIST_H

#include <stdbool.h>
#include "tensor.h"

/* Where this process sits in the job, from the environment a launcher set. */
typedef struct gqe_dist_env {
    int rank, world, local_rank;
    char master_addr[256];   /* empty when the launcher gave none */
    int master_port;
    const char *source;      /* "torchrun", "mpirun", "slurm" or "single" */
} gqe_dist_env;

/* Reads, in order, torchrun-style RANK / WORLD_SIZE / LOCAL_RANK /
 * MASTER_ADDR / MASTER_PORT, mpirun's OMPI_COMM_WORLD_RANK / _SIZE /
 * _LOCAL_RANK, Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (master:
 * the first host of SLURM_JOB_NODELIST); none of them is a single process.
 * MASTER_ADDR and MASTER_PORT (default 29500) apply to every source. lookup
 * is getenv, or a table for tests. A malformed value is an error naming the
 * variable. */
typedef const char *(*gqe_env_lookup)(void *ctx, const char *name);
gqe_status gqe_dist_env_read(gqe_dist_env *out, gqe_env_lookup lookup, void *ctx);
/* The same from the process environment. */
gqe_status gqe_dist_env_from_process(gqe_dist_env *out);
/* The first host of a Slurm node list: "gpu[01-04,09],cpu7" -> "gpu01". */
gqe_status gqe_slurm_first_host(const char *nodelist, char *out, size_t cap);

typedef enum gqe_reduce_op { GQE_REDUCE_SUM = 0, GQE_REDUCE_MEAN, GQE_REDUCE_MAX } gqe_reduce_op;

typedef struct gqe_comm gqe_comm;

typedef struct gqe_comm_options {
    const char *backend;     /* "mpi" | "nccl" */
    double timeout_s;        /* deadline of each collective and of start-up (60) */
} gqe_comm_options;

/* Opens the communicator of env's job. "nccl" first selects GPU
 * env->local_rank and passes NCCL's unique id from rank 0 over TCP on
 * MASTER_ADDR:MASTER_PORT; "mpi" initialises MPI (the job must come from
 * mpirun or srun's PMIx). */
gqe_status gqe_comm_open(gqe_comm **out, const gqe_dist_env *env, const gqe_comm_options *opts);
void gqe_comm_close(gqe_comm *c);
/* Aborts every pending collective and the job's communicator (after a
 * fault): later calls fail at once. */
void gqe_comm_abort(gqe_comm *c);
int gqe_comm_rank(const gqe_comm *c);
int gqe_comm_world(const gqe_comm *c);
int gqe_comm_local_rank(const gqe_comm *c);
const char *gqe_comm_backend(const gqe_comm *c);
/* The device its tensors must live on: GQE_CUDA for nccl, GQE_CPU for mpi. */
gqe_device gqe_comm_device(const gqe_comm *c);

/* Collectives on contiguous f32 tensors of the communicator's device.
 * all_reduce works in place; MEAN is SUM then a scale by 1/world.
 * reduce_scatter: in has world * numel(out) elements, rank r receives
 * block r. all_gather: out has world * numel(in) elements, block r from rank r. */
gqe_status gqe_comm_all_reduce(gqe_comm *c, gqe_tensor *t, gqe_reduce_op op);
gqe_status gqe_comm_reduce_scatter(gqe_comm *c, gqe_tensor *out, const gqe_tensor *in, gqe_reduce_op op);
gqe_status gqe_comm_all_gather(gqe_comm *c, gqe_tensor *out, const gqe_tensor *in);
gqe_status gqe_comm_broadcast(gqe_comm *c, gqe_tensor *t, int root);
gqe_status gqe_comm_barrier(gqe_comm *c);
/* Overlap: a SUM all-reduce of t (in place) started now and finished by
 * gqe_comm_wait, which waits for every one started; t must stay alive until
 * then. Gradient buckets go out so while backward computes the next ones. */
gqe_status gqe_comm_all_reduce_start(gqe_comm *c, gqe_tensor *t);
gqe_status gqe_comm_wait(gqe_comm *c);
/* Host doubles (losses, flags, counters), staged through the device when
 * the backend needs one. */
gqe_status gqe_comm_all_reduce_host(gqe_comm *c, double *vals, int n, gqe_reduce_op op);
/* Host bytes from root to every rank (a config hash, a host name). */
gqe_status gqe_comm_broadcast_bytes(gqe_comm *c, void *buf, size_t n, int root);

#endif
