/* Causal bf16 attention through cuDNN's fused flash-attention engines
 * (the cuDNN graph backend API, in C). On Hopper these are warpgroup-MMA
 * kernels about twice as fast as our mma.sync ones, so the GQE layer's slot
 * heads and shared head use them whenever the shape fits (see *_ok below).
 *
 * libcudnn.so.9 is opened at run time: a machine without cuDNN runs the
 * built-in kernels, and GQE_CUDA_CUDNN=0 asks for them explicitly. The
 * graphs are the ones cuDNN's own frontend builds for SDPA (scores, scale,
 * causal select, softmax with log-sum-exp stats, P V; and the matching
 * backward), so the engine heuristics recognise them as fused attention.
 * Plans are built once per shape and cached for the process. */
#include "common.cuh"
#include "attention.cuh"
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if __has_include(<cudnn_graph.h>)
#include <cudnn_graph.h>
#define GQE_CUDNN_HEADERS 1
#endif

#ifndef GQE_CUDNN_HEADERS
/* Built without cuDNN's headers: the built-in kernels serve every call. */
bool gqe_cudnn_attn_fwd_ok(const gqe_tensor *, const gqe_tensor *, const gqe_tensor *, const gqe_tensor *,
                           const gqe_tensor *, bool) { return false; }
bool gqe_cudnn_attn_bwd_ok(const gqe_tensor *, const gqe_tensor *, const gqe_tensor *, const gqe_tensor *,
                           const gqe_tensor *, const gqe_tensor *, const gqe_tensor *, const gqe_tensor *,
                           bool) { return false; }
gqe_status gqe_cudnn_attn_fwd(gqe_tensor *, gqe_tensor *, const gqe_tensor *, const gqe_tensor *,
                              const gqe_tensor *, bool, float, bool *used) { *used = false; return GQE_OK; }
gqe_status gqe_cudnn_attn_bwd(gqe_tensor *, gqe_tensor *, gqe_tensor *, const gqe_tensor *, const gqe_tensor *,
                              const gqe_tensor *, const gqe_tensor *, const gqe_tensor *, const gqe_tensor *,
                              bool, float, bool, bool *used) { *used = false; return GQE_OK; }
int64_t gqe_cuda_cudnn_attention_calls(void) { return 0; }
#else

typedef cudnnBackendDescriptor_t desc_t;

/* ---- the library, opened once ----------------------------------------------- */
static struct {
    int state;  /* 0 not tried, 1 ready, -1 unavailable */
    cudnnHandle_t handle;
    size_t version;
    size_t (*getVersion)(void);
    cudnnStatus_t (*create)(cudnnHandle_t *);
    const char *(*errorString)(cudnnStatus_t);
    void (*lastError)(char *, size_t);
    cudnnStatus_t (*createDesc)(cudnnBackendDescriptorType_t, desc_t *);
    cudnnStatus_t (*destroyDesc)(desc_t);
    cudnnStatus_t (*finalize)(desc_t);
    cudnnStatus_t (*setAttr)(desc_t, cudnnBackendAttributeName_t, cudnnBackendAttributeType_t, int64_t,
                             const void *);
    cudnnStatus_t (*getAttr)(desc_t const, cudnnBackendAttributeName_t, cudnnBackendAttributeType_t, int64_t,
                             int64_t *, void *);
    cudnnStatus_t (*execute)(cudnnHandle_t, desc_t, desc_t);
} L;

static bool env_off(void) {
    const char *e = getenv("GQE_CUDA_CUDNN");
    return e && (!strcmp(e, "0") || !strcmp(e, "off") || !strcmp(e, "no"));
}

/* Why the library could not be used, printed once when GQE_CUDA_CUDNN=1
 * insists on it (otherwise falling back is silent: it is not an error). */
static void note_unavailable(const char *why) {
    const char *e = getenv("GQE_CUDA_CUDNN");
    if (e && !strcmp(e, "1")) fprintf(stderr, "gqe: cuDNN attention unavailable (%s): using built-in kernels\n", why);
}

static bool cudnn_ready(void) {
    if (L.state) return L.state > 0;
    L.state = -1;
    if (env_off()) return false;
    void *lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (!lib) { note_unavailable(dlerror()); return false; }
#define SYM(field, name)                                                       \
    do {                                                                       \
        *(void **)&L.field = dlsym(lib, name);                                 \
        if (!L.field) { note_unavailable("missing " name); return false; }     \
    } while (0)
    SYM(getVersion, "cudnnGetVersion");
    SYM(create, "cudnnCreate");
    SYM(errorString, "cudnnGetErrorString");
    SYM(lastError, "cudnnGetLastErrorString");
    SYM(createDesc, "cudnnBackendCreateDescriptor");
    SYM(destroyDesc, "cudnnBackendDestroyDescriptor");
    SYM(finalize, "cudnnBackendFinalize");
    SYM(setAttr, "cudnnBackendSetAttribute");
    SYM(getAttr, "cudnnBackendGetAttribute");
    SYM(execute, "cudnnBackendExecute");
#undef SYM
    L.version = L.getVersion();
    /* The fused-attention graph patterns below are those of cuDNN 9. */
    if (L.version < 90000) { note_unavailable("cuDNN older than 9.0"); return false; }
    if (L.create(&L.handle) != CUDNN_STATUS_SUCCESS) { note_unavailable("cudnnCreate failed"); return false; }
    L.state = 1;
    return true;
}

static gqe_status cudnn_fail(cudnnStatus_t st, const char *call, int line) {
    char msg[512] = "";
    L.lastError(msg, sizeof msg);
    return gqe_fail(GQE_ERR_DEVICE, "cuDNN %s failed at %s:%d: %s%s%s", call, __FILE__, line, L.errorString(st),
                    msg[0] ? ": " : "", msg);
}
#define DNN_CHECK(call)                                                        \
    do {                                                                       \
        cudnnStatus_t st_ = (call);                                            \
        if (st_ != CUDNN_STATUS_SUCCESS) return cudnn_fail(st_, #call, __LINE__); \
    } while (0)

/* ---- graph building ------------------------------------------------------------ */
/* One graph: every descriptor it made (kept alive with its plan), its
 * operations in dataflow order, and the first failure while building. */
typedef struct {
    desc_t d[128];
    int n;
    desc_t ops[48];
    int nops;
    int64_t uid;        /* next id for a virtual tensor */
    bool failed;
    char why[320];
} graph;

static void mark_failed(graph *g, const char *what) {
    if (g->failed) return;
    g->failed = true;
    char msg[256] = "";
    L.lastError(msg, sizeof msg);
    snprintf(g->why, sizeof g->why, "%s%s%s", what, msg[0] ? ": " : "", msg);
}
static desc_t make(graph *g, cudnnBackendDescriptorType_t type) {
    desc_t d = NULL;
    if (g->failed) return NULL;
    if (g->n == (int)(sizeof g->d / sizeof g->d[0])) { mark_failed(g, "too many descriptors"); return NULL; }
    if (L.createDesc(type, &d) != CUDNN_STATUS_SUCCESS) { mark_failed(g, "create descriptor"); return NULL; }
    g->d[g->n++] = d;
    return d;
}
static void set(graph *g, desc_t d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t n,
                const void *v) {
    if (!g->failed && L.setAttr(d, name, type, n, v) != CUDNN_STATUS_SUCCESS) mark_failed(g, "set attribute");
}
static void fin(graph *g, desc_t d, const char *what) {
    if (!g->failed && L.finalize(d) != CUDNN_STATUS_SUCCESS) mark_failed(g, what);
}
static void add_op(graph *g, desc_t d) {
    if (g->failed) return;
    if (g->nops == (int)(sizeof g->ops / sizeof g->ops[0])) { mark_failed(g, "too many operations"); return; }
    g->ops[g->nops++] = d;
}
static void graph_free(graph *g) {
    for (int i = g->n - 1; i >= 0; i--) L.destroyDesc(g->d[i]);
    g->n = g->nops = 0;
}

enum { VIRT = 1, BYVAL = 2 };
static desc_t tensor(graph *g, int64_t uid, cudnnDataType_t dt, const int64_t dim[4], const int64_t stride[4],
                     int flags) {
    desc_t t = make(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    if (!t) return NULL;
    bool virt = flags & VIRT, byval = flags & BYVAL;
    int64_t align = 16;
    set(g, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    set(g, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim);
    set(g, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride);
    set(g, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    set(g, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    set(g, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
    if (byval) set(g, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byval);
    fin(g, t, "tensor");
    return t;
}
static desc_t virt(graph *g, cudnnDataType_t dt, const int64_t dim[4], const int64_t stride[4]) {
    return tensor(g, g->uid++, dt, dim, stride, VIRT);
}
static desc_t scalar(graph *g, int64_t uid) {
    static const int64_t one[4] = {1, 1, 1, 1};
    return tensor(g, uid, CUDNN_DATA_FLOAT, one, one, BYVAL);
}

/* y = mode(x[, b[, t]]); axis >= 0 only for GEN_INDEX. */
static void pointwise(graph *g, cudnnPointwiseMode_t mode, cudnnDataType_t prec, desc_t x, desc_t b, desc_t t,
                      desc_t y, int64_t axis = -1) {
    desc_t pw = make(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    if (!pw) return;
    set(g, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    set(g, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (axis >= 0) set(g, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    fin(g, pw, "pointwise descriptor");
    desc_t op = make(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    if (!op) return;
    set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (b) set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    if (t) set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t);
    set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    fin(g, op, "pointwise operation");
    add_op(g, op);
}
static void reduction(graph *g, cudnnReduceTensorOp_t mode, desc_t x, desc_t y) {
    cudnnDataType_t f = CUDNN_DATA_FLOAT;
    desc_t r = make(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    if (!r) return;
    set(g, r, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    set(g, r, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f);
    fin(g, r, "reduction descriptor");
    desc_t op = make(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    if (!op) return;
    set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &r);
    fin(g, op, "reduction operation");
    add_op(g, op);
}
static void matmul(graph *g, desc_t a, desc_t b, desc_t c) {
    cudnnDataType_t f = CUDNN_DATA_FLOAT;
    desc_t m = make(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    if (!m) return;
    set(g, m, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f);
    fin(g, m, "matmul descriptor");
    desc_t op = make(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    if (!op) return;
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &m);
    fin(g, op, "matmul operation");
    add_op(g, op);
}
static void reshape(graph *g, desc_t x, desc_t y) {
    desc_t op = make(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    if (!op) return;
    set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    fin(g, op, "reshape operation");
    add_op(g, op);
}

/* Ids of the tensors that the variant pack binds. */
enum { U_Q = 1, U_K, U_V, U_O, U_STATS, U_SCALE, U_NEGINF, U_DO, U_DQ, U_DK, U_DV, U_SUM, U_DQACC, U_ONE,
       U_VIRT = 100 };

typedef struct {
    int64_t B, H, Hk, T, S, D;
    bool causal, backward;
} sdpa_key;

/* q/o/dq are (B, T, H, D) and k/v/dk/dv (B, S, Hk, D), row-major; cuDNN sees
 * (b, h, seq, d) with the matching strides. Scores (b, h, t, s) are packed. */
typedef struct {
    int64_t q[4], qs[4];     /* q, o, dO, dq */
    int64_t k[4], ks[4];     /* k, v, dk, dv */
    int64_t kt[4], kts[4];   /* k or v seen transposed: (b, hk, d, s) */
    int64_t sc[4], scs[4];   /* scores */
    int64_t st[4], sts[4];   /* scores transposed: (b, h, s, t) over the same packing */
    int64_t row[4], rows[4]; /* per query row: stats, softmax sums */
} layouts;

static void put4(int64_t *dst, int64_t a, int64_t b, int64_t c, int64_t d) {
    dst[0] = a; dst[1] = b; dst[2] = c; dst[3] = d;
}
static layouts layout_of(const sdpa_key *k) {
    layouts l;
    int64_t B = k->B, H = k->H, Hk = k->Hk, T = k->T, S = k->S, D = k->D;
    put4(l.q, B, H, T, D);   put4(l.qs, T * H * D, D, H * D, 1);
    put4(l.k, B, Hk, S, D);  put4(l.ks, S * Hk * D, D, Hk * D, 1);
    put4(l.kt, B, Hk, D, S); put4(l.kts, S * Hk * D, D, 1, Hk * D);
    put4(l.sc, B, H, T, S);  put4(l.scs, H * T * S, T * S, S, 1);
    put4(l.st, B, H, S, T);  put4(l.sts, H * T * S, T * S, 1, S);
    put4(l.row, B, H, T, 1); put4(l.rows, H * T, T, 1, 1);
    return l;
}

/* Top-left causal select: a score whose key column passes its query row
 * becomes -inf (S == T here, so top-left and bottom-right agree). */
static desc_t causal_mask(graph *g, desc_t s, const layouts *l, desc_t neginf) {
    desc_t row = virt(g, CUDNN_DATA_INT32, l->sc, l->scs);
    desc_t col = virt(g, CUDNN_DATA_INT32, l->sc, l->scs);
    desc_t keep = virt(g, CUDNN_DATA_BOOLEAN, l->sc, l->scs);
    desc_t out = virt(g, CUDNN_DATA_FLOAT, l->sc, l->scs);
    pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, s, NULL, NULL, row, 2);
    pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, s, NULL, NULL, col, 3);
    pointwise(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, NULL, keep);
    pointwise(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, s, neginf, keep, out);
    return out;
}

/* out = softmax(scale q k^T [masked]) v; stats = rowwise log-sum-exp. */
static void build_forward(graph *g, const sdpa_key *k) {
    layouts l = layout_of(k);
    const cudnnDataType_t F = CUDNN_DATA_FLOAT, H16 = CUDNN_DATA_BFLOAT16;
    desc_t q = tensor(g, U_Q, H16, l.q, l.qs, 0);
    desc_t kt = tensor(g, U_K, H16, l.kt, l.kts, 0);
    desc_t v = tensor(g, U_V, H16, l.k, l.ks, 0);
    desc_t o = tensor(g, U_O, H16, l.q, l.qs, 0);
    desc_t stats = tensor(g, U_STATS, F, l.row, l.rows, 0);
    desc_t scale = scalar(g, U_SCALE), neginf = scalar(g, U_NEGINF);
    desc_t s = virt(g, F, l.sc, l.scs), s1 = virt(g, F, l.sc, l.scs);
    matmul(g, q, kt, s);
    pointwise(g, CUDNN_POINTWISE_MUL, F, s, scale, NULL, s1);
    desc_t x = k->causal ? causal_mask(g, s1, &l, neginf) : s1;
    desc_t mx = virt(g, F, l.row, l.rows), sub = virt(g, F, l.sc, l.scs), ex = virt(g, F, l.sc, l.scs);
    desc_t sum = virt(g, F, l.row, l.rows), lg = virt(g, F, l.row, l.rows);
    desc_t p = virt(g, H16, l.sc, l.scs);
    reduction(g, CUDNN_REDUCE_TENSOR_MAX, x, mx);
    pointwise(g, CUDNN_POINTWISE_SUB, F, x, mx, NULL, sub);
    pointwise(g, CUDNN_POINTWISE_EXP, F, sub, NULL, NULL, ex);
    reduction(g, CUDNN_REDUCE_TENSOR_ADD, ex, sum);
    pointwise(g, CUDNN_POINTWISE_LOG, F, sum, NULL, NULL, lg);
    pointwise(g, CUDNN_POINTWISE_ADD, F, mx, lg, NULL, stats);
    pointwise(g, CUDNN_POINTWISE_DIV, F, ex, sum, NULL, p);
    matmul(g, p, v, o);
}

/* dq, dk, dv from dO, recomputing P from the saved stats. dq goes through an
 * f32 accumulator in the workspace; with grouped KV heads dk and dv are
 * computed per query head and summed over each group. */
static void build_backward(graph *g, const sdpa_key *k) {
    layouts l = layout_of(k);
    const cudnnDataType_t F = CUDNN_DATA_FLOAT, H16 = CUDNN_DATA_BFLOAT16;
    int64_t B = k->B, H = k->H, T = k->T, S = k->S, D = k->D;
    bool grouped = k->H != k->Hk;
    desc_t q = tensor(g, U_Q, H16, l.q, l.qs, 0);
    desc_t kt = tensor(g, U_K, H16, l.kt, l.kts, 0);
    desc_t vt = tensor(g, U_V, H16, l.kt, l.kts, 0);
    desc_t o = tensor(g, U_O, H16, l.q, l.qs, 0);
    desc_t dout = tensor(g, U_DO, H16, l.q, l.qs, 0);
    desc_t stats = tensor(g, U_STATS, F, l.row, l.rows, 0);
    desc_t dq = tensor(g, U_DQ, H16, l.q, l.qs, 0);
    desc_t dk = tensor(g, U_DK, H16, l.k, l.ks, 0);
    desc_t dv = tensor(g, U_DV, H16, l.k, l.ks, 0);
    desc_t scale = scalar(g, U_SCALE), neginf = scalar(g, U_NEGINF), one = scalar(g, U_ONE);

    /* softmax sum: rowsum(dO * O), kept in the workspace */
    int64_t pd[4], pds[4];
    put4(pd, B, H, T, D); put4(pds, H * T * D, T * D, H * D, 1);
    desc_t doo = virt(g, F, pd, pds), red = virt(g, F, l.row, l.rows);
    desc_t ssum = tensor(g, U_SUM, F, l.row, l.rows, 0);
    pointwise(g, CUDNN_POINTWISE_MUL, F, dout, o, NULL, doo);
    reduction(g, CUDNN_REDUCE_TENSOR_ADD, doo, red);
    pointwise(g, CUDNN_POINTWISE_MUL, F, red, one, NULL, ssum);

    /* P = exp(scale q k^T - stats), masked */
    desc_t s = virt(g, F, l.sc, l.scs), s1 = virt(g, F, l.sc, l.scs), s2 = virt(g, F, l.sc, l.scs);
    matmul(g, q, kt, s);
    pointwise(g, CUDNN_POINTWISE_MUL, F, s, scale, NULL, s1);
    pointwise(g, CUDNN_POINTWISE_SUB, F, s1, stats, NULL, s2);
    desc_t x = k->causal ? causal_mask(g, s2, &l, neginf) : s2;
    desc_t p = virt(g, F, l.sc, l.scs);
    pointwise(g, CUDNN_POINTWISE_EXP, F, x, NULL, NULL, p);

    /* dV = P^T dO */
    int64_t fd[4], fds[4];
    put4(fd, B, H, S, D); put4(fds, H * S * D, S * D, D, 1);
    desc_t pt = virt(g, H16, l.st, l.sts);
    reshape(g, p, pt);
    if (grouped) {
        desc_t dvf = virt(g, H16, fd, fds);
        matmul(g, pt, dout, dvf);
        reduction(g, CUDNN_REDUCE_TENSOR_ADD, dvf, dv);
    } else {
        matmul(g, pt, dout, dv);
    }

    /* dS = scale P (dO V^T - sum) */
    desc_t dp = virt(g, F, l.sc, l.scs), d1 = virt(g, F, l.sc, l.scs), d2 = virt(g, F, l.sc, l.scs);
    desc_t ds = virt(g, F, l.sc, l.scs);
    matmul(g, dout, vt, dp);
    pointwise(g, CUDNN_POINTWISE_SUB, F, dp, ssum, NULL, d1);
    pointwise(g, CUDNN_POINTWISE_MUL, F, d1, p, NULL, d2);
    pointwise(g, CUDNN_POINTWISE_MUL, F, d2, scale, NULL, ds);

    /* dK = dS^T Q */
    desc_t dst = virt(g, H16, l.st, l.sts);
    reshape(g, ds, dst);
    if (grouped) {
        desc_t dkf = virt(g, H16, fd, fds);
        matmul(g, dst, q, dkf);
        reduction(g, CUDNN_REDUCE_TENSOR_ADD, dkf, dk);
    } else {
        matmul(g, dst, q, dk);
    }

    /* dQ = dS K, accumulated in f32 */
    desc_t kk = virt(g, H16, l.k, l.ks);
    reshape(g, kt, kk);
    int64_t ad[4], ads[4];
    put4(ad, B, H, T, D); put4(ads, H * T * D, T * D, D, 1);
    desc_t acc = tensor(g, U_DQACC, F, ad, ads, 0);
    matmul(g, ds, kk, acc);
    pointwise(g, CUDNN_POINTWISE_IDENTITY, F, acc, NULL, NULL, dq);
}

/* ---- plans, cached per shape ---------------------------------------------------- */
typedef struct {
    sdpa_key key;
    graph g;
    desc_t plan;        /* NULL: cuDNN has no engine for this graph */
    int64_t workspace;
} entry;

#define MAX_PLANS 32
static entry *plans[MAX_PLANS];
static int nplans;

/* Heuristics rank the engines; the first whose plan finalizes is kept. */
static void make_plan(entry *e) {
    graph *g = &e->g;
    g->uid = U_VIRT;
    if (e->key.backward) build_backward(g, &e->key);
    else build_forward(g, &e->key);
    desc_t opg = make(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    if (!opg) return;
    /* the handle attribute is marked deprecated in newer headers but is the
     * one every cuDNN 9 release reads */
    set(g, opg, (cudnnBackendAttributeName_t)800 /* OPERATIONGRAPH_HANDLE */, CUDNN_TYPE_HANDLE, 1, &L.handle);
    set(g, opg, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->nops, g->ops);
    fin(g, opg, "operation graph");
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    for (int m = 0; m < 2 && !g->failed && !e->plan; m++) {
        desc_t heur = make(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
        if (!heur) return;
        set(g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &opg);
        set(g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[m]);
        fin(g, heur, "engine heuristics");
        if (g->failed) return;
        int64_t count = 0;
        if (L.getAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL) !=
            CUDNN_STATUS_SUCCESS)
            count = 0;
        if (count > 8) count = 8;
        desc_t cfg[8];
        int made = 0;
        for (int i = 0; i < count; i++) {
            cfg[i] = make(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
            if (!cfg[i]) return;
            made++;
        }
        int64_t got = 0;
        if (made && L.getAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, made, &got, cfg) !=
                        CUDNN_STATUS_SUCCESS)
            got = 0;
        for (int i = 0; i < got && !e->plan; i++) {
            desc_t plan = NULL;
            if (L.createDesc(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) != CUDNN_STATUS_SUCCESS) continue;
            bool ok = L.setAttr(plan, (cudnnBackendAttributeName_t)400 /* EXECUTION_PLAN_HANDLE */,
                                CUDNN_TYPE_HANDLE, 1, &L.handle) == CUDNN_STATUS_SUCCESS &&
                      L.setAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                &cfg[i]) == CUDNN_STATUS_SUCCESS &&
                      L.finalize(plan) == CUDNN_STATUS_SUCCESS;
            int64_t ws = 0, n = 0;
            if (ok) ok = L.getAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &ws) ==
                         CUDNN_STATUS_SUCCESS;
            if (ok) {
                e->plan = plan;
                e->workspace = ws;
            } else {
                L.destroyDesc(plan);
            }
        }
    }
    if (!e->plan && !g->failed) mark_failed(g, "no engine finalized for this graph");
}

static entry *plan_for(const sdpa_key *k) {
    for (int i = 0; i < nplans; i++)
        if (!memcmp(&plans[i]->key, k, sizeof *k)) return plans[i];
    if (nplans == MAX_PLANS) return NULL;   /* more shapes than a run uses: the rest run built-in */
    entry *e = (entry *)calloc(1, sizeof *e);
    if (!e) return NULL;
    e->key = *k;
    make_plan(e);
    if (!e->plan) {
        const char *v = getenv("GQE_CUDA_CUDNN");
        if (v && !strcmp(v, "1"))
            fprintf(stderr, "gqe: cuDNN attention %s B=%lld H=%lld/%lld T=%lld D=%lld: %s; using built-in kernels\n",
                    k->backward ? "backward" : "forward", (long long)k->B, (long long)k->H, (long long)k->Hk,
                    (long long)k->T, (long long)k->D, e->g.why);
        graph_free(&e->g);
    }
    plans[nplans++] = e;
    return e;
}

/* ---- eligibility and execution ------------------------------------------------- */
static bool aligned16(const gqe_tensor *t) { return ((uintptr_t)gqe_tensor_data(t) & 15) == 0; }
static bool bf16_4d(const gqe_tensor *t) { return t->dtype == GQE_BF16 && t->ndim == 4 && aligned16(t); }

/* Shapes the fused engines take without padding masks: S == T a multiple of
 * 128, head width a multiple of 8 up to 128. */
static bool shape_ok(const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v, bool causal) {
    if (!bf16_4d(q) || !bf16_4d(k) || !bf16_4d(v)) return false;
    int64_t T = q->shape[1], S = k->shape[1], D = q->shape[3];
    if (T != S || S % 128 || D % 8 || D > 128 || k->shape[3] != D || v->shape[3] != D) return false;
    if (k->shape[2] <= 0 || q->shape[2] % k->shape[2] || v->shape[2] != k->shape[2]) return false;
    (void)causal;
    return cudnn_ready();
}

static sdpa_key key_of(const gqe_tensor *q, const gqe_tensor *k, bool causal, bool backward) {
    sdpa_key key;
    memset(&key, 0, sizeof key);   /* the key is compared bytewise */
    key.B = q->shape[0]; key.T = q->shape[1]; key.H = q->shape[2]; key.D = q->shape[3];
    key.S = k->shape[1]; key.Hk = k->shape[2];
    key.causal = causal; key.backward = backward;
    return key;
}

static gqe_status run_plan(entry *e, int n, const int64_t *uids, void **ptrs, void *ws) {
    desc_t pack = NULL;
    DNN_CHECK(L.createDesc(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
    cudnnStatus_t st = L.setAttr(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (st == CUDNN_STATUS_SUCCESS)
        st = L.setAttr(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (st == CUDNN_STATUS_SUCCESS) st = L.setAttr(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (st == CUDNN_STATUS_SUCCESS) st = L.finalize(pack);
    if (st == CUDNN_STATUS_SUCCESS) st = L.execute(L.handle, e->plan, pack);
    L.destroyDesc(pack);
    if (st != CUDNN_STATUS_SUCCESS) return cudnn_fail(st, "cudnnBackendExecute(attention)", __LINE__);
    return GQE_OK;
}

static int64_t served;   /* calls that ran on cuDNN */
int64_t gqe_cuda_cudnn_attention_calls(void) { return served; }

static size_t round256(size_t n) { return (n + 255) & ~(size_t)255; }

bool gqe_cudnn_attn_fwd_ok(const gqe_tensor *out, const gqe_tensor *lse, const gqe_tensor *q, const gqe_tensor *k,
                           const gqe_tensor *v, bool causal) {
    return bf16_4d(out) && lse->dtype == GQE_F32 && shape_ok(q, k, v, causal);
}

bool gqe_cudnn_attn_bwd_ok(const gqe_tensor *dq, const gqe_tensor *dk, const gqe_tensor *dv, const gqe_tensor *dout,
                           const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v, const gqe_tensor *out,
                           bool causal) {
    (void)dq; (void)dk; (void)dv;   /* any float dtype: cuDNN's result is added into them */
    return bf16_4d(dout) && bf16_4d(out) && shape_ok(q, k, v, causal);
}

gqe_status gqe_cudnn_attn_fwd(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q, const gqe_tensor *k,
                              const gqe_tensor *v, bool causal, float scale, bool *used) {
    *used = false;
    sdpa_key key = key_of(q, k, causal, false);
    entry *e = plan_for(&key);
    if (!e || !e->plan) return GQE_OK;
    void *ws = NULL;
    if (e->workspace) GQE_TRY(gqe_cuda_scratch(&ws, (size_t)e->workspace));
    float neginf = -INFINITY;
    int64_t uids[7] = {U_Q, U_K, U_V, U_O, U_STATS, U_SCALE, U_NEGINF};
    void *ptrs[7] = {gqe_tensor_data(q), gqe_tensor_data(k), gqe_tensor_data(v), gqe_tensor_data(out),
                     gqe_tensor_data(lse), &scale, &neginf};
    /* the -inf of the causal select is in the graph only when causal */
    gqe_status st = run_plan(e, causal ? 7 : 6, uids, ptrs, ws);
    if (ws) gqe_cuda_scratch_free(ws);
    if (st == GQE_OK) { *used = true; served++; }
    return st;
}

/* A bf16 view of scratch memory shaped like t (for adding into t). */
static gqe_tensor scratch_like(gqe_storage *st, void *p, const gqe_tensor *t) {
    st->data = p; st->nbytes = (size_t)gqe_tensor_numel(t) * 2; st->device = GQE_CUDA; st->refcount = 1;
    st->owned = false;
    gqe_tensor r = *t;
    r.dtype = GQE_BF16; r.offset = 0; r.storage = st;
    return r;
}

gqe_status gqe_cudnn_attn_bwd(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv, const gqe_tensor *dout,
                              const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v, const gqe_tensor *out,
                              const gqe_tensor *lse, bool causal, float scale, bool accumulate, bool *used) {
    *used = false;
    sdpa_key key = key_of(q, k, causal, true);
    entry *e = plan_for(&key);
    if (!e || !e->plan) return GQE_OK;
    /* cuDNN overwrites its bf16 outputs: write straight into the callers'
     * gradients when they are bf16 and need no accumulation, else into
     * scratch that is added (or copied) into them afterwards */
    bool direct = !accumulate && all_bf16(dq, dk, dv) && aligned16(dq) && aligned16(dk) && aligned16(dv);
    /* one scratch block: plan workspace | softmax sums | dq accumulator [| dq | dk | dv] */
    size_t n_ws = round256((size_t)e->workspace);
    size_t n_sum = round256((size_t)(key.B * key.H * key.T) * 4);
    size_t n_acc = round256((size_t)gqe_tensor_numel(q) * 4);
    size_t n_q = round256((size_t)gqe_tensor_numel(q) * 2), n_k = round256((size_t)gqe_tensor_numel(k) * 2);
    char *base = NULL;
    GQE_TRY(gqe_cuda_scratch((void **)&base, n_ws + n_sum + n_acc + (direct ? 0 : n_q + 2 * n_k)));
    char *sum = base + n_ws, *acc = sum + n_sum, *tq = acc + n_acc, *tk = tq + n_q, *tv = tk + n_k;
    if (direct) {
        tq = (char *)gqe_tensor_data(dq);
        tk = (char *)gqe_tensor_data(dk);
        tv = (char *)gqe_tensor_data(dv);
    }
    gqe_status st = GQE_OK;
    /* cuDNN 9.6 and later clear the dq accumulator themselves */
    if (L.version < 90600 && cudaMemsetAsync(acc, 0, n_acc) != cudaSuccess)
        st = gqe_fail(GQE_ERR_DEVICE, "cudaMemsetAsync failed");
    float neginf = -INFINITY, one = 1.0f;
    int64_t uids[14] = {U_Q, U_K, U_V, U_O, U_DO, U_STATS, U_DQ, U_DK, U_DV, U_SCALE, U_ONE, U_SUM, U_DQACC, U_NEGINF};
    void *ptrs[14] = {gqe_tensor_data(q), gqe_tensor_data(k), gqe_tensor_data(v), gqe_tensor_data(out),
                      gqe_tensor_data(dout), gqe_tensor_data(lse), tq, tk, tv, &scale, &one, sum, acc, &neginf};
    if (st == GQE_OK) st = run_plan(e, causal ? 14 : 13, uids, ptrs, n_ws ? base : NULL);
    if (!direct) {
        gqe_storage sq, sk, sv;
        gqe_tensor gq = scratch_like(&sq, tq, dq), gk = scratch_like(&sk, tk, dk), gv = scratch_like(&sv, tv, dv);
        if (st == GQE_OK) st = accumulate ? gqe_cuda_add(dq, dq, &gq) : gqe_cuda_convert(dq, &gq);
        if (st == GQE_OK) st = accumulate ? gqe_cuda_add(dk, dk, &gk) : gqe_cuda_convert(dk, &gk);
        if (st == GQE_OK) st = accumulate ? gqe_cuda_add(dv, dv, &gv) : gqe_cuda_convert(dv, &gv);
    }
    gqe_cuda_scratch_free(base);
    if (st == GQE_OK) { *used = true; served++; }
    return st;
}
#endif
