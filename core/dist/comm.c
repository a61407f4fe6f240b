/* The communicator's front: argument checks, MEAN as SUM then a scale,
 * the deadline every wait runs under. The engines are mpi.c and nccl.c;
 * they run at world size 1 too, so one GPU exercises the NCCL path. */
#include "internal.h"
#include "../ops.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

double gqe_dist_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

gqe_status gqe_dist_wait(gqe_comm *c, const char *what, int (*done)(void *ctx), void *ctx) {
    double deadline = gqe_dist_now() + c->timeout_s;
    for (long polls = 0;; polls++) {
        int r = done(ctx);
        if (r > 0) return GQE_OK;
        if (r < 0) return GQE_ERR_DEVICE;
        if (gqe_dist_now() > deadline) {
            gqe_comm_abort(c);
            return gqe_fail(GQE_ERR_DEVICE, "rank %d: %s did not complete within %.0f s: another rank died or hangs "
                            "(train.dist_timeout sets the limit)", c->rank, what, c->timeout_s);
        }
        /* Spin briefly (a collective of a step takes microseconds to
         * milliseconds), then sleep so a waiting rank leaves the cores to
         * the ranks still computing. */
        if (polls > 1000) nanosleep(&(struct timespec){0, polls > 20000 ? 1000000 : 50000}, NULL);
    }
}

gqe_status gqe_comm_open(gqe_comm **out, const gqe_dist_env *env, const gqe_comm_options *opts) {
    *out = NULL;
    const char *be = opts && opts->backend ? opts->backend : "mpi";
    double timeout = opts && opts->timeout_s > 0 ? opts->timeout_s : 60.0;
    if (env->world < 1 || env->rank < 0 || env->rank >= env->world)
        return gqe_fail(GQE_ERR_ARG, "rank %d is outside world size %d", env->rank, env->world);
    gqe_comm *c = calloc(1, sizeof *c);
    if (!c) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    c->rank = env->rank;
    c->world = env->world;
    c->local_rank = env->local_rank;
    c->timeout_s = timeout;
    gqe_status st;
    if (strcmp(be, "mpi") == 0) {
        c->backend = "mpi";
        c->device = GQE_CPU;
        st = gqe_dist_open_mpi(c, env);
    } else if (strcmp(be, "nccl") == 0) {
        c->backend = "nccl";
        c->device = GQE_CUDA;
        st = gqe_dist_open_nccl(c, env);
    } else {
        st = gqe_fail(GQE_ERR_ARG, "unknown communication backend '%s' (allowed: mpi, nccl)", be);
    }
    if (st != GQE_OK) { free(c); return st; }
    *out = c;
    return GQE_OK;
}

void gqe_comm_close(gqe_comm *c) {
    if (!c) return;
    if (c->ops) c->ops->close(c);
    free(c);
}

void gqe_comm_abort(gqe_comm *c) {
    if (!c || c->aborted) return;
    c->aborted = true;
    if (c->ops) c->ops->abort(c);
}

int gqe_comm_rank(const gqe_comm *c) { return c->rank; }
int gqe_comm_world(const gqe_comm *c) { return c->world; }
int gqe_comm_local_rank(const gqe_comm *c) { return c->local_rank; }
const char *gqe_comm_backend(const gqe_comm *c) { return c->backend; }
gqe_device gqe_comm_device(const gqe_comm *c) { return c->device; }

static gqe_status usable(gqe_comm *c, const char *what) {
    if (c->aborted)
        return gqe_fail(GQE_ERR_DEVICE, "rank %d: %s on a communicator aborted after an earlier failure", c->rank, what);
    return GQE_OK;
}

static gqe_status check_tensor(gqe_comm *c, const gqe_tensor *t, const char *what) {
    if (!t || !t->storage) return gqe_fail(GQE_ERR_ARG, "%s: no tensor", what);
    if (t->dtype != GQE_F32)
        return gqe_fail(GQE_ERR_SHAPE, "%s: tensors must be f32, got %s", what, gqe_dtype_name(t->dtype));
    if (t->device != c->device)
        return gqe_fail(GQE_ERR_SHAPE, "%s: backend %s needs %s tensors, got one on %s", what, c->backend,
                        gqe_device_name(c->device), gqe_device_name(t->device));
    return GQE_OK;
}

static gqe_reduce_op engine_op(gqe_reduce_op op) { return op == GQE_REDUCE_MEAN ? GQE_REDUCE_SUM : op; }

gqe_status gqe_comm_all_reduce(gqe_comm *c, gqe_tensor *t, gqe_reduce_op op) {
    GQE_TRY(usable(c, "all_reduce"));
    GQE_TRY(check_tensor(c, t, "all_reduce"));
    size_t n = (size_t)gqe_tensor_numel(t);
    if (n > 0)
        GQE_TRY(c->ops->all_reduce(c, gqe_tensor_data(t), gqe_tensor_data(t), n, DIST_F32, engine_op(op), false));
    if (op == GQE_REDUCE_MEAN && c->world > 1) GQE_TRY(gqe_scale(t, 1.0f / (float)c->world));
    return GQE_OK;
}

gqe_status gqe_comm_reduce_scatter(gqe_comm *c, gqe_tensor *out, const gqe_tensor *in, gqe_reduce_op op) {
    GQE_TRY(usable(c, "reduce_scatter"));
    GQE_TRY(check_tensor(c, out, "reduce_scatter"));
    GQE_TRY(check_tensor(c, in, "reduce_scatter"));
    size_t n = (size_t)gqe_tensor_numel(out);
    if ((size_t)gqe_tensor_numel(in) != n * (size_t)c->world)
        return gqe_fail(GQE_ERR_SHAPE, "reduce_scatter: input has %lld elements, need world (%d) x output (%zu)",
                        (long long)gqe_tensor_numel(in), c->world, n);
    if (n > 0) GQE_TRY(c->ops->reduce_scatter(c, gqe_tensor_data(in), gqe_tensor_data(out), n, engine_op(op)));
    if (op == GQE_REDUCE_MEAN && c->world > 1) GQE_TRY(gqe_scale(out, 1.0f / (float)c->world));
    return GQE_OK;
}

gqe_status gqe_comm_all_gather(gqe_comm *c, gqe_tensor *out, const gqe_tensor *in) {
    GQE_TRY(usable(c, "all_gather"));
    GQE_TRY(check_tensor(c, out, "all_gather"));
    GQE_TRY(check_tensor(c, in, "all_gather"));
    size_t n = (size_t)gqe_tensor_numel(in);
    if ((size_t)gqe_tensor_numel(out) != n * (size_t)c->world)
        return gqe_fail(GQE_ERR_SHAPE, "all_gather: output has %lld elements, need world (%d) x input (%zu)",
                        (long long)gqe_tensor_numel(out), c->world, n);
    return n > 0 ? c->ops->all_gather(c, gqe_tensor_data(in), gqe_tensor_data(out), n) : GQE_OK;
}

gqe_status gqe_comm_broadcast(gqe_comm *c, gqe_tensor *t, int root) {
    GQE_TRY(usable(c, "broadcast"));
    GQE_TRY(check_tensor(c, t, "broadcast"));
    if (root < 0 || root >= c->world) return gqe_fail(GQE_ERR_ARG, "broadcast: root %d outside world size %d", root, c->world);
    size_t n = (size_t)gqe_tensor_numel(t);
    return n > 0 ? c->ops->broadcast(c, gqe_tensor_data(t), n, DIST_F32, root, false) : GQE_OK;
}

gqe_status gqe_comm_barrier(gqe_comm *c) {
    GQE_TRY(usable(c, "barrier"));
    return c->ops->barrier(c);
}

gqe_status gqe_comm_all_reduce_start(gqe_comm *c, gqe_tensor *t) {
    GQE_TRY(usable(c, "all_reduce"));
    GQE_TRY(check_tensor(c, t, "all_reduce"));
    size_t n = (size_t)gqe_tensor_numel(t);
    return n > 0 ? c->ops->start(c, gqe_tensor_data(t), n) : GQE_OK;
}

gqe_status gqe_comm_wait(gqe_comm *c) {
    GQE_TRY(usable(c, "wait"));
    return c->ops->wait(c);
}

gqe_status gqe_comm_all_reduce_host(gqe_comm *c, double *vals, int n, gqe_reduce_op op) {
    GQE_TRY(usable(c, "all_reduce"));
    if (n < 0) return gqe_fail(GQE_ERR_ARG, "all_reduce: negative count");
    if (n > 0) GQE_TRY(c->ops->all_reduce(c, vals, vals, (size_t)n, DIST_F64, engine_op(op), true));
    if (op == GQE_REDUCE_MEAN)
        for (int i = 0; i < n; i++) vals[i] /= (double)c->world;
    return GQE_OK;
}

gqe_status gqe_comm_broadcast_bytes(gqe_comm *c, void *buf, size_t n, int root) {
    GQE_TRY(usable(c, "broadcast"));
    if (root < 0 || root >= c->world) return gqe_fail(GQE_ERR_ARG, "broadcast: root %d outside world size %d", root, c->world);
    return n > 0 ? c->ops->broadcast(c, buf, n, DIST_U8, root, true) : GQE_OK;
}
