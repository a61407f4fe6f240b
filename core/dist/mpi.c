/* The MPI engine: OpenMPI's libmpi.so.40 opened at run time. Its handles
 * (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are addresses of predefined
 * objects in the library (mpi.h's OMPI_PREDEFINED_GLOBAL), so they come
 * from dlsym too, and the build needs neither mpi.h nor libmpi. Every
 * collective is the nonblocking one, tested under the communicator's
 * deadline. */
#include "internal.h"
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *MPI_Comm, *MPI_Datatype, *MPI_Op, *MPI_Request;
#define MPI_IN_PLACE ((void *)1)
#define MPI_STATUS_IGNORE NULL
#define MPI_THREAD_FUNNELED 1

static struct {
    void *lib;
    bool broken;   /* a collective was abandoned: finalizing could wait for it forever */
    MPI_Comm world;
    MPI_Datatype f32, f64, u8;
    MPI_Op sum, max;
    int (*Initialized)(int *);
    int (*Init_thread)(int *, char ***, int, int *);
    int (*Finalized)(int *);
    int (*Finalize)(void);
    int (*Comm_rank)(MPI_Comm, int *);
    int (*Comm_size)(MPI_Comm, int *);
    int (*Error_string)(int, char *, int *);
    int (*Test)(MPI_Request *, int *, void *);
    int (*Testall)(int, MPI_Request *, int *, void *);
    int (*Iallreduce)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm, MPI_Request *);
    int (*Ireduce_scatter_block)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm, MPI_Request *);
    int (*Iallgather)(const void *, int, MPI_Datatype, void *, int, MPI_Datatype, MPI_Comm, MPI_Request *);
    int (*Ibcast)(void *, int, MPI_Datatype, int, MPI_Comm, MPI_Request *);
    int (*Ibarrier)(MPI_Comm, MPI_Request *);
} M;

static gqe_status load(void) {
    if (M.lib) return GQE_OK;
    /* RTLD_GLOBAL: OpenMPI's own plugins resolve their symbols in libmpi. */
    const char *name = getenv("GQE_MPI_LIBRARY");   /* another OpenMPI build */
    if (!name || !*name) name = "libmpi.so.40";
    void *h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!h)
        return gqe_fail(GQE_ERR_DEVICE, "train.device=cpu with several ranks needs MPI, but %s could not be "
                        "opened (%s): install OpenMPI (apt-get install openmpi-bin libopenmpi-dev) or set "
                        "GQE_MPI_LIBRARY to its libmpi.so", name, dlerror());
#define SYM(field, sym) do { *(void **)&M.field = dlsym(h, sym); \
        if (!M.field) { dlclose(h); memset(&M, 0, sizeof M); \
            return gqe_fail(GQE_ERR_DEVICE, "%s lacks %s: gqe needs OpenMPI 4 or later", name, sym); } } while (0)
    SYM(Initialized, "MPI_Initialized"); SYM(Init_thread, "MPI_Init_thread"); SYM(Finalized, "MPI_Finalized");
    SYM(Finalize, "MPI_Finalize"); SYM(Comm_rank, "MPI_Comm_rank");
    SYM(Comm_size, "MPI_Comm_size"); SYM(Error_string, "MPI_Error_string"); SYM(Test, "MPI_Test"); SYM(Testall, "MPI_Testall");
    SYM(Iallreduce, "MPI_Iallreduce"); SYM(Ireduce_scatter_block, "MPI_Ireduce_scatter_block");
    SYM(Iallgather, "MPI_Iallgather"); SYM(Ibcast, "MPI_Ibcast"); SYM(Ibarrier, "MPI_Ibarrier");
    SYM(world, "ompi_mpi_comm_world"); SYM(f32, "ompi_mpi_float"); SYM(f64, "ompi_mpi_double");
    SYM(u8, "ompi_mpi_unsigned_char"); SYM(sum, "ompi_mpi_op_sum"); SYM(max, "ompi_mpi_op_max");
#undef SYM
    M.lib = h;
    return GQE_OK;
}

static gqe_status mpi_fail(gqe_comm *c, const char *what, int rc) {
    char msg[512] = "";
    int len = 0;
    if (M.Error_string) M.Error_string(rc, msg, &len);
    return gqe_fail(GQE_ERR_DEVICE, "rank %d: MPI %s failed: %s", c->rank, what, msg);
}

static MPI_Datatype mpi_type(dist_dtype dt) { return dt == DIST_F32 ? M.f32 : dt == DIST_F64 ? M.f64 : M.u8; }

typedef struct { MPI_Request req; int rc; } pending;

static int test_done(void *ctx) {
    pending *p = ctx;
    int flag = 0;
    p->rc = M.Test(&p->req, &flag, MPI_STATUS_IGNORE);
    if (p->rc != 0) return -1;
    return flag ? 1 : 0;
}

static gqe_status finish(gqe_comm *c, const char *what, int rc, pending *p) {
    if (rc != 0) return mpi_fail(c, what, rc);
    gqe_status st = gqe_dist_wait(c, what, test_done, p);
    if (st == GQE_ERR_DEVICE && p->rc != 0) return mpi_fail(c, what, p->rc);
    return st;
}

static gqe_status check_count(gqe_comm *c, size_t n) {
    if (n > INT32_MAX) return gqe_fail(GQE_ERR_ARG, "rank %d: MPI collective of %zu elements exceeds the int count", c->rank, n);
    return GQE_OK;
}

static gqe_status m_all_reduce(gqe_comm *c, const void *in, void *out, size_t n, dist_dtype dt, gqe_reduce_op op, bool host) {
    GQE_TRY(check_count(c, n));
    pending p = {0};
    int rc = M.Iallreduce(in == out ? MPI_IN_PLACE : in, out, (int)n, mpi_type(dt), op == GQE_REDUCE_MAX ? M.max : M.sum,
                          M.world, &p.req);
    return finish(c, "all_reduce", rc, &p);
}

static gqe_status m_reduce_scatter(gqe_comm *c, const void *in, void *out, size_t n_out, gqe_reduce_op op) {
    GQE_TRY(check_count(c, n_out));
    pending p = {0};
    int rc = M.Ireduce_scatter_block(in, out, (int)n_out, M.f32, op == GQE_REDUCE_MAX ? M.max : M.sum, M.world, &p.req);
    return finish(c, "reduce_scatter", rc, &p);
}

static gqe_status m_all_gather(gqe_comm *c, const void *in, void *out, size_t n_in) {
    GQE_TRY(check_count(c, n_in));
    pending p = {0};
    /* in place when this rank's block of out is the input (ZeRO's weights) */
    bool in_place = (const char *)in == (const char *)out + (size_t)c->rank * n_in * sizeof(float);
    int rc = M.Iallgather(in_place ? MPI_IN_PLACE : in, (int)n_in, M.f32, out, (int)n_in, M.f32, M.world, &p.req);
    return finish(c, "all_gather", rc, &p);
}

static gqe_status m_broadcast(gqe_comm *c, void *buf, size_t n, dist_dtype dt, int root, bool host) {
    GQE_TRY(check_count(c, n));
    pending p = {0};
    int rc = M.Ibcast(buf, (int)n, mpi_type(dt), root, M.world, &p.req);
    return finish(c, "broadcast", rc, &p);
}

static gqe_status m_barrier(gqe_comm *c) {
    pending p = {0};
    int rc = M.Ibarrier(M.world, &p.req);
    return finish(c, "barrier", rc, &p);
}

/* Started all-reduces, finished together by m_wait. */
static struct { MPI_Request *req; int n, cap, rc; } P;

static gqe_status m_start(gqe_comm *c, void *buf, size_t n) {
    GQE_TRY(check_count(c, n));
    if (P.n == P.cap) {
        int cap = P.cap ? 2 * P.cap : 64;
        MPI_Request *r = realloc(P.req, (size_t)cap * sizeof *r);
        if (!r) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        P.req = r;
        P.cap = cap;
    }
    int rc = M.Iallreduce(MPI_IN_PLACE, buf, (int)n, M.f32, M.sum, M.world, &P.req[P.n]);
    if (rc != 0) return mpi_fail(c, "all_reduce", rc);
    P.n++;
    return GQE_OK;
}

static int all_done(void *ctx) {
    (void)ctx;
    int flag = 0;
    P.rc = M.Testall(P.n, P.req, &flag, MPI_STATUS_IGNORE);
    if (P.rc != 0) return -1;
    return flag ? 1 : 0;
}

static gqe_status m_wait(gqe_comm *c) {
    if (P.n == 0) return GQE_OK;
    gqe_status st = gqe_dist_wait(c, "all_reduce of gradient buckets", all_done, NULL);
    if (st == GQE_ERR_DEVICE && P.rc != 0) st = mpi_fail(c, "all_reduce", P.rc);
    if (st == GQE_OK) P.n = 0;
    return st;
}

/* Nothing to cancel in MPI: the failing rank records its run and exits
 * non-zero, and mpirun then ends the others. MPI_Abort here would kill
 * this process before the run log knows why. */
static void m_abort(gqe_comm *c) { (void)c; M.broken = true; }

/* MPI may be initialised once per process: it stays up until exit, when
 * the last communicator has long been closed. */
static void m_close(gqe_comm *c) { (void)c; }

static void finalize_at_exit(void) {
    int fin = 0;
    if (M.lib && !M.broken && M.Finalized(&fin) == 0 && !fin) M.Finalize();
}

static const comm_ops mpi_ops = {m_all_reduce, m_reduce_scatter, m_all_gather, m_broadcast, m_barrier,
                                 m_start, m_wait, m_abort, m_close};

gqe_status gqe_dist_open_mpi(gqe_comm *c, const gqe_dist_env *env) {
    if (strcmp(env->source, "mpirun") != 0 && strcmp(env->source, "slurm") != 0 && env->world > 1)
        return gqe_fail(GQE_ERR_ARG, "CPU ranks run over MPI, which needs ranks started by mpirun or srun (these came "
                        "from %s variables): use mpirun -np N, srun, or `gqe launch --backend mpi`", env->source);
    GQE_TRY(load());
    int inited = 0;
    M.Initialized(&inited);
    if (!inited) {
        int provided = 0, rc = M.Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != 0) return mpi_fail(c, "init", rc);
        atexit(finalize_at_exit);
    }
    int rank = -1, size = -1;
    M.Comm_rank(M.world, &rank);
    M.Comm_size(M.world, &size);
    if (rank != env->rank || size != env->world)
        return gqe_fail(GQE_ERR_ARG, "MPI says rank %d of %d but the environment (%s) says rank %d of %d", rank, size,
                        env->source, env->rank, env->world);
    c->ops = &mpi_ops;
    return GQE_OK;
}
