/* The NCCL engine: libnccl.so.2 opened at run time (as the cuDNN attention
 * path opens cuDNN), its unique id passed from rank 0 over the TCP
 * rendezvous, so the GPU machine needs no MPI. Collectives run on the
 * legacy default stream, after the kernels that produced their inputs; the
 * wait polls an event and NCCL's asynchronous error under the deadline and
 * aborts the communicator when it passes (a dead or hung peer). */
#include "internal.h"

#ifndef GQE_HAVE_CUDA
gqe_status gqe_dist_open_nccl(gqe_comm *c, const gqe_dist_env *env) {
    (void)c; (void)env;
    return gqe_fail(GQE_ERR_DEVICE, "the NCCL backend needs a CUDA build of gqe (this one was built with CUDA=0)");
}
#else
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

static struct {
    void *lib;
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*CommAbort)(ncclComm_t);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
    const char *(*GetErrorString)(ncclResult_t);
    ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*ReduceScatter)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*AllGather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*Broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
} N;

typedef struct {
    ncclComm_t comm;
    cudaEvent_t done;
    cudaStream_t side;      /* started all-reduces: overlap with the default stream's backward */
    cudaEvent_t ready;      /* recorded on the default stream before each */
    bool side_busy;
    void *scratch;          /* device staging for host buffers */
    size_t scratch_bytes;
} nccl_impl;

static gqe_status load(void) {
    if (N.lib) return GQE_OK;
    const char *name = getenv("GQE_NCCL_LIBRARY");   /* e.g. the one a PyTorch wheel ships */
    if (!name || !*name) name = "libnccl.so.2";
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return gqe_fail(GQE_ERR_DEVICE, "train.device=cuda with several ranks needs NCCL, but %s could not be "
                        "opened (%s): install NCCL 2 (e.g. apt-get install libnccl2), add its directory to "
                        "LD_LIBRARY_PATH or set GQE_NCCL_LIBRARY to its path", name, dlerror());
#define SYM(field, name) do { *(void **)&N.field = dlsym(h, name); \
        if (!N.field) { dlclose(h); memset(&N, 0, sizeof N); \
            return gqe_fail(GQE_ERR_DEVICE, "libnccl.so.2 lacks %s: gqe needs NCCL 2.12 or later", name); } } while (0)
    SYM(GetUniqueId, "ncclGetUniqueId"); SYM(CommInitRank, "ncclCommInitRank"); SYM(CommDestroy, "ncclCommDestroy");
    SYM(CommAbort, "ncclCommAbort"); SYM(CommGetAsyncError, "ncclCommGetAsyncError");
    SYM(GetErrorString, "ncclGetErrorString"); SYM(AllReduce, "ncclAllReduce"); SYM(ReduceScatter, "ncclReduceScatter");
    SYM(AllGather, "ncclAllGather"); SYM(Broadcast, "ncclBroadcast");
#undef SYM
    N.lib = h;
    return GQE_OK;
}

static gqe_status nfail(gqe_comm *c, const char *what, ncclResult_t r) {
    return gqe_fail(GQE_ERR_DEVICE, "rank %d: NCCL %s failed: %s", c->rank, what, N.GetErrorString(r));
}
static gqe_status cfail(gqe_comm *c, const char *what, cudaError_t e) {
    return gqe_fail(GQE_ERR_DEVICE, "rank %d: %s: %s", c->rank, what, cudaGetErrorString(e));
}

typedef struct { gqe_comm *c; } waiter;

static int stream_done(void *ctx) {
    gqe_comm *c = ((waiter *)ctx)->c;
    nccl_impl *m = c->impl;
    cudaError_t e = cudaEventQuery(m->done);
    if (e == cudaSuccess) return 1;
    if (e != cudaErrorNotReady) { cfail(c, "waiting for a collective", e); return -1; }
    ncclResult_t ar = ncclSuccess;
    N.CommGetAsyncError(m->comm, &ar);
    if (ar != ncclSuccess && ar != ncclInProgress) { nfail(c, "collective (asynchronous error)", ar); return -1; }
    return 0;
}

/* Enqueued: wait for it under the deadline. */
static gqe_status finish(gqe_comm *c, const char *what, ncclResult_t r) {
    nccl_impl *m = c->impl;
    if (r != ncclSuccess) return nfail(c, what, r);
    cudaError_t e = cudaEventRecord(m->done, 0);
    if (e != cudaSuccess) return cfail(c, what, e);
    waiter w = {c};
    return gqe_dist_wait(c, what, stream_done, &w);
}

static gqe_status staging(gqe_comm *c, size_t bytes) {
    nccl_impl *m = c->impl;
    if (m->scratch_bytes >= bytes) return GQE_OK;
    if (m->scratch) cudaFree(m->scratch);
    m->scratch = NULL;
    m->scratch_bytes = 0;
    cudaError_t e = cudaMalloc(&m->scratch, bytes);
    if (e != cudaSuccess) return cfail(c, "staging buffer", e);
    m->scratch_bytes = bytes;
    return GQE_OK;
}

static ncclDataType_t ntype(dist_dtype dt) { return dt == DIST_F32 ? ncclFloat32 : dt == DIST_F64 ? ncclFloat64 : ncclUint8; }
static size_t tsize(dist_dtype dt) { return dt == DIST_F32 ? 4 : dt == DIST_F64 ? 8 : 1; }

static gqe_status n_all_reduce(gqe_comm *c, const void *in, void *out, size_t n, dist_dtype dt, gqe_reduce_op op, bool host) {
    nccl_impl *m = c->impl;
    size_t bytes = n * tsize(dt);
    void *buf = out;
    if (host) {
        GQE_TRY(staging(c, bytes));
        buf = m->scratch;
        cudaError_t e = cudaMemcpy(buf, in, bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return cfail(c, "all_reduce staging", e);
        in = buf;
    }
    GQE_TRY(finish(c, "all_reduce", N.AllReduce(in, buf, n, ntype(dt), op == GQE_REDUCE_MAX ? ncclMax : ncclSum, m->comm, 0)));
    if (host) {
        cudaError_t e = cudaMemcpy(out, buf, bytes, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) return cfail(c, "all_reduce staging", e);
    }
    return GQE_OK;
}

static gqe_status n_reduce_scatter(gqe_comm *c, const void *in, void *out, size_t n_out, gqe_reduce_op op) {
    nccl_impl *m = c->impl;
    return finish(c, "reduce_scatter", N.ReduceScatter(in, out, n_out, ncclFloat32, op == GQE_REDUCE_MAX ? ncclMax : ncclSum,
                                                       m->comm, 0));
}

static gqe_status n_all_gather(gqe_comm *c, const void *in, void *out, size_t n_in) {
    nccl_impl *m = c->impl;
    return finish(c, "all_gather", N.AllGather(in, out, n_in, ncclFloat32, m->comm, 0));
}

static gqe_status n_broadcast(gqe_comm *c, void *buf, size_t n, dist_dtype dt, int root, bool host) {
    nccl_impl *m = c->impl;
    size_t bytes = n * tsize(dt);
    void *dev = buf;
    if (host) {
        GQE_TRY(staging(c, bytes));
        dev = m->scratch;
        cudaError_t e = cudaMemcpy(dev, buf, bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return cfail(c, "broadcast staging", e);
    }
    GQE_TRY(finish(c, "broadcast", N.Broadcast(dev, dev, n, ntype(dt), root, m->comm, 0)));
    if (host) {
        cudaError_t e = cudaMemcpy(buf, dev, bytes, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) return cfail(c, "broadcast staging", e);
    }
    return GQE_OK;
}

static gqe_status n_start(gqe_comm *c, void *buf, size_t n) {
    nccl_impl *m = c->impl;
    cudaError_t e = cudaEventRecord(m->ready, 0);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(m->side, m->ready, 0);
    if (e != cudaSuccess) return cfail(c, "all_reduce", e);
    ncclResult_t r = N.AllReduce(buf, buf, n, ncclFloat32, ncclSum, m->comm, m->side);
    if (r != ncclSuccess) return nfail(c, "all_reduce", r);
    m->side_busy = true;
    return GQE_OK;
}

static gqe_status n_wait(gqe_comm *c) {
    nccl_impl *m = c->impl;
    if (!m->side_busy) return GQE_OK;
    cudaError_t e = cudaEventRecord(m->done, m->side);
    if (e != cudaSuccess) return cfail(c, "all_reduce", e);
    waiter w = {c};
    GQE_TRY(gqe_dist_wait(c, "all_reduce of gradient buckets", stream_done, &w));
    m->side_busy = false;
    return GQE_OK;
}

static gqe_status n_barrier(gqe_comm *c) {
    double one = 1;
    return n_all_reduce(c, &one, &one, 1, DIST_F64, GQE_REDUCE_SUM, true);
}

static void n_abort(gqe_comm *c) {
    nccl_impl *m = c->impl;
    if (m && m->comm) { N.CommAbort(m->comm); m->comm = NULL; }
}

static void n_close(gqe_comm *c) {
    nccl_impl *m = c->impl;
    if (!m) return;
    if (m->comm) N.CommDestroy(m->comm);
    if (m->scratch) cudaFree(m->scratch);
    if (m->done) cudaEventDestroy(m->done);
    if (m->ready) cudaEventDestroy(m->ready);
    if (m->side) cudaStreamDestroy(m->side);
    free(m);
    c->impl = NULL;
}

static const comm_ops nccl_ops = {n_all_reduce, n_reduce_scatter, n_all_gather, n_broadcast, n_barrier,
                                  n_start, n_wait, n_abort, n_close};

gqe_status gqe_dist_open_nccl(gqe_comm *c, const gqe_dist_env *env) {
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0)
        return gqe_fail(GQE_ERR_DEVICE, "rank %d: the NCCL backend needs a CUDA device, none is visible", env->rank);
    /* One GPU per rank: the local rank's, or the only one a scheduler that
     * binds GPUs to tasks left visible. */
    const char *lw = getenv("LOCAL_WORLD_SIZE");
    int local_world = lw && *lw ? atoi(lw) : 0;
    if (local_world > ndev || (ndev > 1 && env->local_rank >= ndev))
        return gqe_fail(GQE_ERR_ARG, "rank %d: %d ranks on this node but it shows %d GPU%s: start at most %d ranks per node",
                        env->rank, local_world > ndev ? local_world : env->local_rank + 1, ndev, ndev == 1 ? "" : "s", ndev);
    e = cudaSetDevice(ndev == 1 ? 0 : env->local_rank);
    if (e != cudaSuccess) return cfail(c, "selecting the GPU of the local rank", e);
    GQE_TRY(load());
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (env->rank == 0) {
        ncclResult_t r = N.GetUniqueId(&id);
        if (r != ncclSuccess) return nfail(c, "unique id", r);
    }
    GQE_TRY(gqe_dist_rendezvous(env->master_addr, env->master_port, env->rank, env->world, &id, sizeof id, c->timeout_s));
    nccl_impl *m = calloc(1, sizeof *m);
    if (!m) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    e = cudaEventCreateWithFlags(&m->done, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&m->ready, cudaEventDisableTiming);
    /* non-blocking: the legacy default stream would otherwise serialise with it */
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&m->side, cudaStreamNonBlocking);
    if (e != cudaSuccess) { c->impl = m; n_close(c); c->impl = NULL; return cfail(c, "event", e); }
    c->impl = m;
    c->ops = &nccl_ops;
    /* Every rank has the id: they are all alive and ncclCommInitRank returns. */
    ncclResult_t r = N.CommInitRank(&m->comm, env->world, id, env->rank);
    if (r != ncclSuccess) { m->comm = NULL; n_close(c); c->ops = NULL; return nfail(c, "communicator init", r); }
    return GQE_OK;
}
#endif
