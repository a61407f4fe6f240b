/* The public ops: check shapes, dtypes and devices once, here, then call
 * the table of the tensors' device. Backends receive canonical views (the
 * documented number of dims, leading dims merged into the row dim R), so
 * they index without re-deriving layouts. No numerics in this file. */
#include "backend.h"
#include "profile.h"
#include <math.h>
#include <stdio.h>

const gqe_backend *gqe_backend_for(gqe_device dev) {
    return dev == GQE_CUDA ? &gqe_cuda_backend : &gqe_cpu_backend;
}

const char *gqe_op_name(gqe_op_id op) {
    static const char *const names[] = {
#define GQE_OP(name, params) #name,
#include "op_list.h"
    };
    return (unsigned)op < GQE_OP_COUNT ? names[op] : NULL;
}

bool gqe_backend_supports(const gqe_backend *be, gqe_op_id op) {
    switch (op) {
#define GQE_OP(name, params) case GQE_OP_ID_##name: return be->name != NULL;
#include "op_list.h"
    case GQE_OP_COUNT: break;
    }
    return false;
}

/* kind: 'f' float (f32 or bf16, the backend decides), 'F' f32 only,
 * 'i' i32, 'a' any dtype. */
static gqe_status dtype_ok(const char *op, const char *name, const gqe_tensor *t, char kind) {
    bool ok = kind == 'a' || (kind == 'i' && t->dtype == GQE_I32) || (kind == 'F' && t->dtype == GQE_F32) ||
              (kind == 'f' && t->dtype != GQE_I32);
    if (ok) return GQE_OK;
    const char *want = kind == 'i' ? "i32" : kind == 'F' ? "f32" : "f32 or bf16";
    return gqe_fail(GQE_ERR_SHAPE, "%s: %s must be %s, got %s", op, name, want, gqe_dtype_name(t->dtype));
}

/* Views t with exactly nd dims (extra leading dims merged into the first,
 * missing ones taken as 1) and checks them against want (-1: any).
 * layout names the dims for messages. */
static gqe_status shaped(const char *op, const char *name, const gqe_tensor *t, char kind,
                         const char *layout, int nd, const int64_t *want, gqe_tensor *view) {
    char have[96], exp[96];
    if (!t || gqe_tensor_is_empty(t))
        return gqe_fail(GQE_ERR_SHAPE, "%s: %s is missing or empty, expected %s", op, name, layout);
    GQE_TRY(dtype_ok(op, name, t, kind));
    size_t len = (size_t)snprintf(exp, sizeof exp, "%s = (", layout);
    for (int i = 0; i < nd && len < sizeof exp; i++) {
        if (want[i] < 0) len += (size_t)snprintf(exp + len, sizeof exp - len, i ? ", *" : "*");
        else len += (size_t)snprintf(exp + len, sizeof exp - len, i ? ", %lld" : "%lld", (long long)want[i]);
    }
    if (len < sizeof exp) snprintf(exp + len, sizeof exp - len, ")");
    int64_t shape[GQE_MAX_DIMS];
    if (t->ndim < nd) {   /* missing leading dims are 1 (a scalar is (1)) */
        int pad = nd - t->ndim;
        for (int i = 0; i < nd; i++) shape[i] = i < pad ? 1 : t->shape[i - pad];
    } else {
        int64_t lead = 1, drop = t->ndim - nd;
        for (int i = 0; i <= drop; i++) lead *= t->shape[i];
        shape[0] = lead;
        for (int i = 1; i < nd; i++) shape[i] = t->shape[drop + i];
    }
    *view = gqe_tensor_reshape(t, nd, shape);
    for (int i = 0; i < nd; i++)
        if (want[i] >= 0 && shape[i] != want[i])
            return gqe_fail(GQE_ERR_SHAPE, "%s: %s has shape %s, expected %s", op, name,
                            gqe_tensor_shape_str(t, have, sizeof have), exp);
    return GQE_OK;
}

static gqe_status one_device(const char *op, int n, const gqe_tensor *const *ts) {
    for (int i = 1; i < n; i++)
        if (ts[i]->device != ts[0]->device)
            return gqe_fail(GQE_ERR_SHAPE, "%s: tensors are on different devices (%s and %s)", op,
                            gqe_device_name(ts[0]->device), gqe_device_name(ts[i]->device));
    return GQE_OK;
}

#define NARGS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* Declares view V of parameter t, checked to be `layout` with the given dims. */
#define ARG(V, t, kind, layout, ...) gqe_tensor V; \
    GQE_TRY(shaped(OP, #t, (t), (kind), (layout), NARGS(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}, &V))
#define SAME_DEVICE(...) GQE_TRY(one_device(OP, \
    (int)(sizeof((const gqe_tensor *[]){__VA_ARGS__}) / sizeof(gqe_tensor *)), (const gqe_tensor *[]){__VA_ARGS__}))
#define REQUIRE(cond, ...) do { if (!(cond)) return gqe_fail(GQE_ERR_SHAPE, __VA_ARGS__); } while (0)
#define DISPATCH(dev, fn, ...) do { const gqe_backend *be_ = gqe_backend_for(dev); \
    if (!be_->fn) return gqe_fail(GQE_ERR_DEVICE, "op %s is not available on %s", OP, be_->name); \
    if (gqe_profile_enabled()) { gqe_profile_token t0_ = gqe_profile_begin(be_); gqe_status s_ = be_->fn(__VA_ARGS__); \
        gqe_profile_end(be_, OP, t0_); return s_; } \
    return be_->fn(__VA_ARGS__); } while (0)

/* ---- elementwise and reductions ---------------------------------------- */
gqe_status gqe_fill(gqe_tensor *t, float value) {
    const char *OP = "fill";
    ARG(T, t, 'a', "(N)", -1);
    DISPATCH(T.device, fill, &T, value);
}

gqe_status gqe_scale(gqe_tensor *t, float alpha) {
    const char *OP = "scale";
    ARG(T, t, 'f', "(N)", -1);
    DISPATCH(T.device, scale, &T, alpha);
}

gqe_status gqe_axpy(gqe_tensor *y, float alpha, const gqe_tensor *x) {
    const char *OP = "axpy";
    ARG(Y, y, 'f', "(N)", -1);
    ARG(X, x, 'f', "(N)", Y.shape[0]);
    SAME_DEVICE(&Y, &X);
    DISPATCH(Y.device, axpy, &Y, alpha, &X);
}

gqe_status gqe_add(gqe_tensor *out, const gqe_tensor *a, const gqe_tensor *b) {
    const char *OP = "add";
    ARG(A, a, 'f', "(N)", -1);
    ARG(B, b, 'f', "(N)", A.shape[0]);
    ARG(O, out, 'f', "(N)", A.shape[0]);
    SAME_DEVICE(&O, &A, &B);
    DISPATCH(O.device, add, &O, &A, &B);
}

gqe_status gqe_sumsq(const gqe_tensor *t, double *out) {
    const char *OP = "sumsq";
    ARG(T, t, 'f', "(N)", -1);
    REQUIRE(out, "%s: the result pointer is NULL", OP);
    DISPATCH(T.device, sumsq, &T, out);
}

gqe_status gqe_sum(const gqe_tensor *t, double *out) {
    const char *OP = "sum";
    ARG(T, t, 'f', "(N)", -1);
    REQUIRE(out, "%s: the result pointer is NULL", OP);
    DISPATCH(T.device, sum, &T, out);
}

gqe_status gqe_copy_cols(gqe_tensor *dst, int64_t dst_col, const gqe_tensor *src,
                         int64_t src_col, int64_t cols, bool accumulate) {
    const char *OP = "copy_cols";
    ARG(D, dst, 'f', "(R, Cd)", -1, -1);
    ARG(S, src, 'f', "(R, Cs)", D.shape[0], -1);
    SAME_DEVICE(&D, &S);
    REQUIRE(cols >= 0 && dst_col >= 0 && src_col >= 0 && dst_col + cols <= D.shape[1] && src_col + cols <= S.shape[1],
            "%s: columns [%lld, %lld) of dst (%lld wide) and [%lld, %lld) of src (%lld wide) are not all in range", OP,
            (long long)dst_col, (long long)(dst_col + cols), (long long)D.shape[1],
            (long long)src_col, (long long)(src_col + cols), (long long)S.shape[1]);
    DISPATCH(D.device, copy_cols, &D, dst_col, &S, src_col, cols, accumulate);
}

/* ---- matmul -------------------------------------------------------------- */
gqe_status gqe_matmul(gqe_tensor *c, const gqe_tensor *a, const gqe_tensor *b,
                      bool trans_a, bool trans_b, float alpha, float beta) {
    const char *OP = "matmul";
    ARG(C, c, 'f', "C (M, N)", -1, -1);
    int64_t M = C.shape[0], N = C.shape[1];
    ARG(A, a, 'f', trans_a ? "A^T (K, M)" : "A (M, K)", trans_a ? -1 : M, trans_a ? M : -1);
    int64_t K = trans_a ? A.shape[0] : A.shape[1];
    ARG(B, b, 'f', trans_b ? "B^T (N, K)" : "B (K, N)", trans_b ? N : K, trans_b ? K : N);
    SAME_DEVICE(&C, &A, &B);
    char label[64];
    if (gqe_profile_enabled()) {   /* one profile row per shape */
        snprintf(label, sizeof label, "matmul %lldx%lldx%lld %c%c %s,%s>%s%s", (long long)M, (long long)N, (long long)K,
                 trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', gqe_dtype_name(A.dtype), gqe_dtype_name(B.dtype),
                 gqe_dtype_name(C.dtype), beta != 0.0f ? "+" : "");
        OP = label;
    }
    DISPATCH(C.device, matmul, &C, &A, &B, trans_a, trans_b, alpha, beta);
}

/* ---- embedding, RMSNorm ------------------------------------------------- */
gqe_status gqe_embedding_forward(gqe_tensor *out, const gqe_tensor *table, const gqe_tensor *ids) {
    const char *OP = "embedding_forward";
    ARG(I, ids, 'i', "(R)", -1);
    ARG(T, table, 'f', "(V, D)", -1, -1);
    ARG(O, out, 'f', "(R, D)", I.shape[0], T.shape[1]);
    SAME_DEVICE(&O, &T, &I);
    DISPATCH(O.device, embedding_forward, &O, &T, &I);
}

gqe_status gqe_embedding_backward(gqe_tensor *dtable, const gqe_tensor *dout, const gqe_tensor *ids) {
    const char *OP = "embedding_backward";
    ARG(I, ids, 'i', "(R)", -1);
    ARG(T, dtable, 'f', "(V, D)", -1, -1);
    ARG(G, dout, 'f', "(R, D)", I.shape[0], T.shape[1]);
    SAME_DEVICE(&T, &G, &I);
    DISPATCH(T.device, embedding_backward, &T, &G, &I);
}

gqe_status gqe_rmsnorm_forward(gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *x,
                               const gqe_tensor *w, float eps) {
    const char *OP = "rmsnorm_forward";
    ARG(X, x, 'f', "(R, D)", -1, -1);
    int64_t R = X.shape[0], D = X.shape[1];
    ARG(O, out, 'f', "(R, D)", R, D);
    ARG(RS, rstd, 'f', "(R)", R);
    ARG(W, w, 'f', "(D)", D);
    SAME_DEVICE(&X, &O, &RS, &W);
    DISPATCH(X.device, rmsnorm_forward, &O, &RS, &X, &W, eps);
}

gqe_status gqe_rmsnorm_backward(gqe_tensor *dx, gqe_tensor *dw, const gqe_tensor *dout,
                                const gqe_tensor *x, const gqe_tensor *w, const gqe_tensor *rstd,
                                gqe_tensor *dx_copy) {
    const char *OP = "rmsnorm_backward";
    ARG(X, x, 'f', "(R, D)", -1, -1);
    int64_t R = X.shape[0], D = X.shape[1];
    ARG(DX, dx, 'f', "(R, D)", R, D);
    ARG(G, dout, 'f', "(R, D)", R, D);
    ARG(DW, dw, 'f', "(D)", D);
    ARG(W, w, 'f', "(D)", D);
    ARG(RS, rstd, 'f', "(R)", R);
    SAME_DEVICE(&X, &DX, &G, &DW, &W, &RS);
    if (!dx_copy) DISPATCH(X.device, rmsnorm_backward, &DX, &DW, &G, &X, &W, &RS, NULL);
    ARG(DC, dx_copy, 'f', "(R, D)", R, D);
    SAME_DEVICE(&X, &DC);
    DISPATCH(X.device, rmsnorm_backward, &DX, &DW, &G, &X, &W, &RS, &DC);
}

gqe_status gqe_add_rmsnorm_forward(gqe_tensor *sum, gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *a,
                                   const gqe_tensor *b, const gqe_tensor *w, float eps) {
    const char *OP = "add_rmsnorm_forward";
    ARG(A, a, 'f', "(R, D)", -1, -1);
    int64_t R = A.shape[0], D = A.shape[1];
    ARG(B, b, 'f', "(R, D)", R, D);
    ARG(S, sum, 'f', "(R, D)", R, D);
    ARG(O, out, 'f', "(R, D)", R, D);
    ARG(RS, rstd, 'f', "(R)", R);
    ARG(W, w, 'f', "(D)", D);
    SAME_DEVICE(&A, &B, &S, &O, &RS, &W);
    DISPATCH(A.device, add_rmsnorm_forward, &S, &O, &RS, &A, &B, &W, eps);
}

/* ---- activations, RoPE --------------------------------------------------- */
gqe_status gqe_gelu_forward(gqe_tensor *out, const gqe_tensor *x) {
    const char *OP = "gelu_forward";
    ARG(X, x, 'f', "(N)", -1);
    ARG(O, out, 'f', "(N)", X.shape[0]);
    SAME_DEVICE(&O, &X);
    DISPATCH(X.device, gelu_forward, &O, &X);
}

gqe_status gqe_gelu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout, gqe_tensor *out) {
    const char *OP = "gelu_backward";
    ARG(X, x, 'f', "(N)", -1);
    ARG(DX, dx, 'f', "(N)", X.shape[0]);
    ARG(G, dout, 'f', "(N)", X.shape[0]);
    SAME_DEVICE(&DX, &X, &G);
    if (!out) DISPATCH(X.device, gelu_backward, &DX, &X, &G, NULL);
    ARG(O, out, 'f', "(N)", X.shape[0]);
    SAME_DEVICE(&O, &X);
    DISPATCH(X.device, gelu_backward, &DX, &X, &G, &O);
}

gqe_status gqe_swiglu_forward(gqe_tensor *out, const gqe_tensor *x) {
    const char *OP = "swiglu_forward";
    ARG(X, x, 'f', "(R, 2H)", -1, -1);
    REQUIRE(X.shape[1] % 2 == 0, "%s: x's last dim %lld must be even ([gate | up])", OP, (long long)X.shape[1]);
    ARG(O, out, 'f', "(R, H)", X.shape[0], X.shape[1] / 2);
    SAME_DEVICE(&O, &X);
    DISPATCH(X.device, swiglu_forward, &O, &X);
}

gqe_status gqe_swiglu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout) {
    const char *OP = "swiglu_backward";
    ARG(X, x, 'f', "(R, 2H)", -1, -1);
    REQUIRE(X.shape[1] % 2 == 0, "%s: x's last dim %lld must be even ([gate | up])", OP, (long long)X.shape[1]);
    ARG(DX, dx, 'f', "(R, 2H)", X.shape[0], X.shape[1]);
    ARG(G, dout, 'f', "(R, H)", X.shape[0], X.shape[1] / 2);
    SAME_DEVICE(&DX, &X, &G);
    DISPATCH(X.device, swiglu_backward, &DX, &X, &G);
}

static gqe_status rope_check(const char *OP, const gqe_tensor *x, gqe_tensor *X) {
    GQE_TRY(shaped(OP, "x", x, 'f', "(B, T, H, D)", 4, (const int64_t[]){-1, -1, -1, -1}, X));
    REQUIRE(X->shape[3] % 2 == 0, "%s: head dim D = %lld must be even", OP, (long long)X->shape[3]);
    return GQE_OK;
}

gqe_status gqe_rope_forward(gqe_tensor *x, float theta, int64_t pos_offset) {
    const char *OP = "rope_forward";
    gqe_tensor X;
    GQE_TRY(rope_check(OP, x, &X));
    REQUIRE(pos_offset >= 0, "%s: pos_offset %lld must be >= 0", OP, (long long)pos_offset);
    DISPATCH(X.device, rope_forward, &X, theta, pos_offset);
}

gqe_status gqe_rope_backward(gqe_tensor *dx, float theta, int64_t pos_offset) {
    const char *OP = "rope_backward";
    gqe_tensor X;
    GQE_TRY(rope_check(OP, dx, &X));
    REQUIRE(pos_offset >= 0, "%s: pos_offset %lld must be >= 0", OP, (long long)pos_offset);
    DISPATCH(X.device, rope_backward, &X, theta, pos_offset);
}

/* ---- attention ----------------------------------------------------------- */
static gqe_status attn_dims(const char *OP, const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v,
                            bool causal, gqe_tensor *Q, gqe_tensor *K, gqe_tensor *V) {
    GQE_TRY(shaped(OP, "q", q, 'f', "(B, T, Hq, D)", 4, (const int64_t[]){-1, -1, -1, -1}, Q));
    GQE_TRY(shaped(OP, "k", k, 'f', "(B, S, Hkv, D)", 4, (const int64_t[]){Q->shape[0], -1, -1, Q->shape[3]}, K));
    GQE_TRY(shaped(OP, "v", v, 'f', "(B, S, Hkv, D)", 4, K->shape, V));
    int64_t T = Q->shape[1], S = K->shape[1], Hq = Q->shape[2], Hkv = K->shape[2];
    REQUIRE(Hkv > 0 && Hq % Hkv == 0, "%s: query heads Hq = %lld must be a multiple of KV heads Hkv = %lld",
            OP, (long long)Hq, (long long)Hkv);
    REQUIRE(S > 0 || T == 0, "%s: no keys (S = 0) for %lld queries", OP, (long long)T);
    REQUIRE(!causal || S >= T, "%s: causal attention needs S >= T (keys include the queries), got T = %lld, S = %lld",
            OP, (long long)T, (long long)S);
    return GQE_OK;
}

gqe_status gqe_attention_forward(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                 const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale) {
    const char *OP = "attention_forward";
    gqe_tensor Q, K, V;
    GQE_TRY(attn_dims(OP, q, k, v, causal, &Q, &K, &V));
    ARG(O, out, 'f', "(B, T, Hq, D)", Q.shape[0], Q.shape[1], Q.shape[2], Q.shape[3]);
    ARG(L, lse, 'F', "(B, Hq, T)", Q.shape[0], Q.shape[2], Q.shape[1]);
    SAME_DEVICE(&O, &L, &Q, &K, &V);
    DISPATCH(Q.device, attention_forward, &O, &L, &Q, &K, &V, causal, scale);
}

gqe_status gqe_attention_backward(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                  const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                  const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                  bool causal, float scale, bool accumulate) {
    const char *OP = "attention_backward";
    gqe_tensor Q, K, V;
    GQE_TRY(attn_dims(OP, q, k, v, causal, &Q, &K, &V));
    ARG(O, out, 'f', "(B, T, Hq, D)", Q.shape[0], Q.shape[1], Q.shape[2], Q.shape[3]);
    ARG(G, dout, 'f', "(B, T, Hq, D)", Q.shape[0], Q.shape[1], Q.shape[2], Q.shape[3]);
    ARG(DQ, dq, 'f', "(B, T, Hq, D)", Q.shape[0], Q.shape[1], Q.shape[2], Q.shape[3]);
    ARG(DK, dk, 'f', "(B, S, Hkv, D)", K.shape[0], K.shape[1], K.shape[2], K.shape[3]);
    ARG(DV, dv, 'f', "(B, S, Hkv, D)", K.shape[0], K.shape[1], K.shape[2], K.shape[3]);
    ARG(L, lse, 'F', "(B, Hq, T)", Q.shape[0], Q.shape[2], Q.shape[1]);
    SAME_DEVICE(&Q, &K, &V, &O, &G, &DQ, &DK, &DV, &L);
    DISPATCH(Q.device, attention_backward, &DQ, &DK, &DV, &G, &Q, &K, &V, &O, &L, causal, scale, accumulate);
}

/* ---- cross-entropy ------------------------------------------------------- */
gqe_status gqe_cross_entropy_forward(gqe_tensor *losses, const gqe_tensor *logits, const gqe_tensor *targets) {
    const char *OP = "cross_entropy_forward";
    ARG(X, logits, 'f', "(R, V)", -1, -1);
    ARG(T, targets, 'i', "(R)", X.shape[0]);
    ARG(L, losses, 'f', "(R)", X.shape[0]);
    SAME_DEVICE(&L, &X, &T);
    DISPATCH(X.device, cross_entropy_forward, &L, &X, &T);
}

gqe_status gqe_cross_entropy_backward(gqe_tensor *dlogits, const gqe_tensor *logits,
                                      const gqe_tensor *targets, float scale) {
    const char *OP = "cross_entropy_backward";
    ARG(X, logits, 'f', "(R, V)", -1, -1);
    ARG(T, targets, 'i', "(R)", X.shape[0]);
    ARG(DX, dlogits, 'f', "(R, V)", X.shape[0], X.shape[1]);
    SAME_DEVICE(&DX, &X, &T);
    DISPATCH(X.device, cross_entropy_backward, &DX, &X, &T, scale);
}

gqe_status gqe_cross_entropy_fused(gqe_tensor *dlogits, gqe_tensor *losses, gqe_tensor *correct,
                                   const gqe_tensor *logits, const gqe_tensor *targets, float scale) {
    const char *OP = "cross_entropy_fused";
    ARG(X, logits, 'f', "(R, V)", -1, -1);
    ARG(T, targets, 'i', "(R)", X.shape[0]);
    ARG(DX, dlogits, 'f', "(R, V)", X.shape[0], X.shape[1]);
    ARG(L, losses, 'f', "(R)", X.shape[0]);
    ARG(C, correct, 'f', "(R)", X.shape[0]);
    SAME_DEVICE(&DX, &L, &C, &X, &T);
    DISPATCH(X.device, cross_entropy_fused, &DX, &L, &C, &X, &T, scale);
}

gqe_status gqe_argmax_correct(gqe_tensor *correct, const gqe_tensor *logits, const gqe_tensor *targets) {
    const char *OP = "argmax_correct";
    ARG(X, logits, 'f', "(R, V)", -1, -1);
    ARG(T, targets, 'i', "(R)", X.shape[0]);
    ARG(C, correct, 'f', "(R)", X.shape[0]);
    SAME_DEVICE(&C, &X, &T);
    DISPATCH(X.device, argmax_correct, &C, &X, &T);
}

/* ---- routing --------------------------------------------------------------- */
gqe_status gqe_router_topk(gqe_tensor *probs, gqe_tensor *idx, gqe_tensor *topv,
                           const gqe_tensor *logits, gqe_score_fn fn, const gqe_tensor *bias) {
    const char *OP = "router_topk";
    ARG(LG, logits, 'f', "(R, G, M)", -1, -1, -1);
    int64_t R = LG.shape[0], G = LG.shape[1], M = LG.shape[2];
    ARG(P, probs, 'f', "(R, G, M)", R, G, M);
    ARG(I, idx, 'i', "(R, G, k)", R, G, -1);
    ARG(TV, topv, 'f', "(R, G, k)", R, G, I.shape[2]);
    REQUIRE(I.shape[2] >= 1 && I.shape[2] <= M, "%s: k = %lld must be in 1..M = %lld", OP, (long long)I.shape[2], (long long)M);
    REQUIRE(fn == GQE_SCORE_SOFTMAX || fn == GQE_SCORE_SIGMOID, "%s: unknown score function %d (allowed: softmax, sigmoid)", OP, (int)fn);
    gqe_tensor Bv, *Bp = NULL;
    if (bias) {
        GQE_TRY(shaped(OP, "bias", bias, 'f', "(G, M)", 2, (const int64_t[]){G, M}, &Bv));
        SAME_DEVICE(&LG, &Bv);
        Bp = &Bv;
    }
    SAME_DEVICE(&LG, &P, &I, &TV);
    DISPATCH(LG.device, router_topk, &P, &I, &TV, &LG, fn, Bp);
}

gqe_status gqe_router_score_backward(gqe_tensor *dlogits, const gqe_tensor *probs,
                                     const gqe_tensor *dprobs, gqe_score_fn fn) {
    const char *OP = "router_score_backward";
    ARG(P, probs, 'f', "(R, G, M)", -1, -1, -1);
    ARG(DP, dprobs, 'f', "(R, G, M)", P.shape[0], P.shape[1], P.shape[2]);
    ARG(DL, dlogits, 'f', "(R, G, M)", P.shape[0], P.shape[1], P.shape[2]);
    REQUIRE(fn == GQE_SCORE_SOFTMAX || fn == GQE_SCORE_SIGMOID, "%s: unknown score function %d (allowed: softmax, sigmoid)", OP, (int)fn);
    SAME_DEVICE(&DL, &P, &DP);
    DISPATCH(P.device, router_score_backward, &DL, &P, &DP, fn);
}

gqe_status gqe_router_random(gqe_tensor *idx, gqe_tensor *topv, int64_t M, uint64_t seed, uint64_t stream) {
    const char *OP = "router_random";
    ARG(I, idx, 'i', "(R, G, k)", -1, -1, -1);
    ARG(TV, topv, 'f', "(R, G, k)", I.shape[0], I.shape[1], I.shape[2]);
    REQUIRE(M >= I.shape[2] && M <= INT32_MAX, "%s: M = %lld experts per group cannot give k = %lld distinct picks",
            OP, (long long)M, (long long)I.shape[2]);
    SAME_DEVICE(&I, &TV);
    DISPATCH(I.device, router_random, &I, &TV, M, seed, stream);
}

gqe_status gqe_router_hash(gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens, int64_t M) {
    const char *OP = "router_hash";
    ARG(I, idx, 'i', "(R, G, k)", -1, -1, -1);
    ARG(TV, topv, 'f', "(R, G, k)", I.shape[0], I.shape[1], I.shape[2]);
    ARG(TK, tokens, 'i', "(R)", I.shape[0]);
    REQUIRE(M >= I.shape[2] && M <= INT32_MAX, "%s: M = %lld experts per group cannot give k = %lld distinct picks",
            OP, (long long)M, (long long)I.shape[2]);
    SAME_DEVICE(&I, &TV, &TK);
    DISPATCH(I.device, router_hash, &I, &TV, &TK, M);
}

gqe_status gqe_router_scatter_probs(gqe_tensor *dprobs, const gqe_tensor *dtopv, const gqe_tensor *idx) {
    const char *OP = "router_scatter_probs";
    ARG(DP, dprobs, 'f', "(R, G, M)", -1, -1, -1);
    ARG(I, idx, 'i', "(R, G, k)", DP.shape[0], DP.shape[1], -1);
    ARG(DT, dtopv, 'f', "(R, G, k)", DP.shape[0], DP.shape[1], I.shape[2]);
    SAME_DEVICE(&DP, &DT, &I);
    DISPATCH(DP.device, router_scatter_probs, &DP, &DT, &I);
}

gqe_status gqe_router_stats(gqe_tensor *counts, gqe_tensor *psum, const gqe_tensor *idx,
                            const gqe_tensor *probs, bool normalise) {
    const char *OP = "router_stats";
    ARG(P, probs, 'f', "(R, G, M)", -1, -1, -1);
    ARG(I, idx, 'i', "(R, G, k)", P.shape[0], P.shape[1], -1);
    ARG(C, counts, 'F', "(G, M)", P.shape[1], P.shape[2]);
    ARG(PS, psum, 'F', "(G, M)", P.shape[1], P.shape[2]);
    SAME_DEVICE(&C, &PS, &I, &P);
    DISPATCH(P.device, router_stats, &C, &PS, &I, &P, normalise);
}

gqe_status gqe_router_aux_backward(gqe_tensor *dprobs, const gqe_tensor *probs,
                                   const gqe_tensor *coef, bool normalise) {
    const char *OP = "router_aux_backward";
    ARG(P, probs, 'f', "(R, G, M)", -1, -1, -1);
    ARG(DP, dprobs, 'f', "(R, G, M)", P.shape[0], P.shape[1], P.shape[2]);
    ARG(C, coef, 'f', "(G, M)", P.shape[1], P.shape[2]);
    SAME_DEVICE(&DP, &P, &C);
    DISPATCH(P.device, router_aux_backward, &DP, &P, &C, normalise);
}

gqe_status gqe_router_backward(gqe_tensor *dlogits, const gqe_tensor *dtopv, const gqe_tensor *idx,
                               const gqe_tensor *probs, const gqe_tensor *counts, float coef_scale, gqe_score_fn fn,
                               bool normalise) {
    const char *OP = "router_backward";
    ARG(P, probs, 'f', "(R, G, M)", -1, -1, -1);
    ARG(DL, dlogits, 'f', "(R, G, M)", P.shape[0], P.shape[1], P.shape[2]);
    ARG(I, idx, 'i', "(R, G, k)", P.shape[0], P.shape[1], -1);
    REQUIRE(fn == GQE_SCORE_SOFTMAX || fn == GQE_SCORE_SIGMOID, "%s: unknown score function %d (allowed: softmax, sigmoid)", OP, (int)fn);
    gqe_tensor DT = {0}, C = {0};
    if (dtopv) {
        ARG(dt, dtopv, 'f', "(R, G, k)", P.shape[0], P.shape[1], I.shape[2]);
        DT = dt;
        SAME_DEVICE(&P, &DT);
    }
    if (counts) {
        ARG(c, counts, 'F', "(G, M)", P.shape[1], P.shape[2]);
        C = c;
        SAME_DEVICE(&P, &C);
    }
    SAME_DEVICE(&DL, &P, &I);
    DISPATCH(P.device, router_backward, &DL, dtopv ? &DT : NULL, &I, &P, counts ? &C : NULL, coef_scale, fn,
             normalise);
}

/* A slots tensor may hold more heads (dim `dim`) than the G*k it is
 * checked for: the shared head of variant gqe rides after them. */
static gqe_status slot_heads(const char *OP, const char *name, const gqe_tensor *t, int dim, int64_t need) {
    REQUIRE(t->shape[dim] >= need, "%s: %s has %lld heads, fewer than the G*k = %lld slots", OP, name,
            (long long)t->shape[dim], (long long)need);
    return GQE_OK;
}

/* Slots: idx (R, G, k) fixes R, G, k; Q is (R, G*M, D). */
static gqe_status slots_dims(const char *OP, const gqe_tensor *idx, const gqe_tensor *q, const char *qname,
                             gqe_tensor *I, gqe_tensor *Q) {
    GQE_TRY(shaped(OP, "idx", idx, 'i', "(R, G, k)", 3, (const int64_t[]){-1, -1, -1}, I));
    GQE_TRY(shaped(OP, qname, q, 'f', "(R, G*M, D)", 3, (const int64_t[]){I->shape[0], -1, -1}, Q));
    REQUIRE(Q->shape[1] % I->shape[1] == 0 && Q->shape[1] / I->shape[1] >= I->shape[2],
            "%s: %s has %lld experts, not G*M for G = %lld groups with M >= k = %lld", OP, qname,
            (long long)Q->shape[1], (long long)I->shape[1], (long long)I->shape[2]);
    return GQE_OK;
}

gqe_status gqe_gather_slots(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx) {
    const char *OP = "gather_slots";
    gqe_tensor I, Q;
    GQE_TRY(slots_dims(OP, idx, q, "q", &I, &Q));
    ARG(SL, slots, 'f', "(R, H >= G*k, D)", I.shape[0], -1, Q.shape[2]);
    GQE_TRY(slot_heads(OP, "slots", &SL, 1, I.shape[1] * I.shape[2]));
    SAME_DEVICE(&SL, &Q, &I);
    DISPATCH(Q.device, gather_slots, &SL, &Q, &I);
}

gqe_status gqe_gather_slots_rope(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx,
                                 float theta, int64_t pos_offset) {
    const char *OP = "gather_slots_rope";
    gqe_tensor I, Q;
    GQE_TRY(slots_dims(OP, idx, q, "q", &I, &Q));
    ARG(SL, slots, 'f', "(B, T, H >= G*k, D)", -1, -1, -1, Q.shape[2]);
    GQE_TRY(slot_heads(OP, "slots", &SL, 2, I.shape[1] * I.shape[2]));
    REQUIRE(SL.shape[0] * SL.shape[1] == I.shape[0], "%s: slots has B*T = %lld rows, idx has %lld", OP,
            (long long)(SL.shape[0] * SL.shape[1]), (long long)I.shape[0]);
    REQUIRE(Q.shape[2] % 2 == 0, "%s: head dim D = %lld must be even", OP, (long long)Q.shape[2]);
    REQUIRE(pos_offset >= 0, "%s: pos_offset %lld must be >= 0", OP, (long long)pos_offset);
    SAME_DEVICE(&SL, &Q, &I);
    DISPATCH(Q.device, gather_slots_rope, &SL, &Q, &I, theta, pos_offset);
}

gqe_status gqe_scatter_slots(gqe_tensor *dq, const gqe_tensor *dslots, const gqe_tensor *idx) {
    const char *OP = "scatter_slots";
    gqe_tensor I, Q;
    GQE_TRY(slots_dims(OP, idx, dq, "dq", &I, &Q));
    ARG(SL, dslots, 'f', "(R, H >= G*k, D)", I.shape[0], -1, Q.shape[2]);
    GQE_TRY(slot_heads(OP, "dslots", &SL, 1, I.shape[1] * I.shape[2]));
    SAME_DEVICE(&SL, &Q, &I);
    DISPATCH(Q.device, scatter_slots, &Q, &SL, &I);
}

gqe_status gqe_qkv_grad_pack(gqe_tensor *dy, const gqe_tensor *dslots, const gqe_tensor *idx, const gqe_tensor *dk,
                             const gqe_tensor *dv, const gqe_tensor *dlogits, bool shared, int64_t M, bool rope,
                             float theta) {
    const char *OP = "qkv_grad_pack";
    ARG(I, idx, 'i', "(R, G, k)", -1, -1, -1);
    int64_t R = I.shape[0], G = I.shape[1], K = I.shape[2], extra = shared ? 1 : 0;
    REQUIRE(M >= K && K >= 1, "%s: M = %lld experts per group must be >= k = %lld >= 1", OP, (long long)M,
            (long long)K);
    const char *kv_layout = shared ? "(B, T, G+1, D)" : "(B, T, G, D)";
    ARG(DK, dk, 'f', kv_layout, -1, -1, G + extra, -1);
    int64_t B = DK.shape[0], T = DK.shape[1], D = DK.shape[3];
    REQUIRE(B * T == R, "%s: dk has B*T = %lld rows, idx has %lld", OP, (long long)(B * T), (long long)R);
    REQUIRE(D % 2 == 0, "%s: head dim D = %lld must be even (the kernels work on pairs)", OP, (long long)D);
    ARG(DS, dslots, 'f', shared ? "(B, T, H > G*k, D)" : "(B, T, G*k, D)", B, T, shared ? -1 : G * K, D);
    REQUIRE(!shared || DS.shape[2] > G * K, "%s: dslots has %lld heads: the shared head needs more than G*k = %lld",
            OP, (long long)DS.shape[2], (long long)(G * K));
    ARG(DV, dv, 'f', kv_layout, B, T, G + extra, D);
    bool routed = dlogits && !gqe_tensor_is_empty(dlogits);
    int64_t W = (G * M + 2 * G + extra) * D + (routed ? G * M : 0);
    ARG(DY, dy, 'f', "(R, W)", R, W);
    gqe_tensor L = {0};
    if (routed) {
        ARG(l, dlogits, 'f', "(R, G*M)", R, G * M);
        L = l;
        SAME_DEVICE(&DY, &L);
    }
    SAME_DEVICE(&DY, &DS, &I, &DK, &DV);
    DISPATCH(DY.device, qkv_grad_pack, &DY, &DS, &I, &DK, &DV, routed ? &L : NULL, shared, M, rope, theta);
}

/* ---- output slots ---------------------------------------------------------- */
gqe_status gqe_slot_mix_forward(gqe_tensor *cat, gqe_tensor *w, const gqe_tensor *o,
                                const gqe_tensor *p, float eps) {
    const char *OP = "slot_mix_forward";
    ARG(P, p, 'f', "(R, S)", -1, -1);
    int64_t R = P.shape[0], S = P.shape[1];
    ARG(O, o, 'f', "(R, H > S, D)", R, -1, -1);
    int64_t D = O.shape[2];
    REQUIRE(O.shape[1] > S, "%s: o has %lld heads, not more than P's %lld slots (the shared head follows them)", OP,
            (long long)O.shape[1], (long long)S);
    ARG(CAT, cat, 'f', "(R, S+2, D)", R, S + 2, D);
    ARG(W, w, 'f', "(R, S)", R, S);
    REQUIRE(eps > 0, "%s: eps = %g must be > 0", OP, (double)eps);
    SAME_DEVICE(&CAT, &W, &O, &P);
    DISPATCH(O.device, slot_mix_forward, &CAT, &W, &O, &P, eps);
}

gqe_status gqe_slot_mix_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dcat,
                                 const gqe_tensor *o, const gqe_tensor *p, const gqe_tensor *cat,
                                 const gqe_tensor *w, float eps) {
    const char *OP = "slot_mix_backward";
    ARG(P, p, 'f', "(R, S)", -1, -1);
    int64_t R = P.shape[0], S = P.shape[1];
    ARG(O, o, 'f', "(R, H > S, D)", R, -1, -1);
    int64_t H = O.shape[1], D = O.shape[2];
    REQUIRE(H > S, "%s: o has %lld heads, not more than P's %lld slots (the shared head follows them)", OP,
            (long long)H, (long long)S);
    ARG(DO, d_o, 'f', "(R, H, D)", R, H, D);
    ARG(DP, dp, 'f', "(R, S)", R, S);
    ARG(W, w, 'f', "(R, S)", R, S);
    ARG(CAT, cat, 'f', "(R, S+2, D)", R, S + 2, D);
    ARG(G, dcat, 'f', "(R, S+2, D)", R, S + 2, D);
    REQUIRE(eps > 0, "%s: eps = %g must be > 0", OP, (double)eps);
    SAME_DEVICE(&O, &DO, &P, &DP, &W, &CAT, &G);
    DISPATCH(O.device, slot_mix_backward, &DO, &DP, &G, &O, &P, &CAT, &W, eps);
}

gqe_status gqe_slot_scale_forward(gqe_tensor *out, const gqe_tensor *o, const gqe_tensor *p) {
    const char *OP = "slot_scale_forward";
    ARG(O, o, 'f', "(R, S, D)", -1, -1, -1);
    ARG(P, p, 'f', "(R, S)", O.shape[0], O.shape[1]);
    ARG(OUT, out, 'f', "(R, S, D)", O.shape[0], O.shape[1], O.shape[2]);
    SAME_DEVICE(&OUT, &O, &P);
    DISPATCH(O.device, slot_scale_forward, &OUT, &O, &P);
}

gqe_status gqe_slot_scale_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout,
                                   const gqe_tensor *o, const gqe_tensor *p) {
    const char *OP = "slot_scale_backward";
    ARG(O, o, 'f', "(R, S, D)", -1, -1, -1);
    ARG(P, p, 'f', "(R, S)", O.shape[0], O.shape[1]);
    ARG(DO, d_o, 'f', "(R, S, D)", O.shape[0], O.shape[1], O.shape[2]);
    ARG(G, dout, 'f', "(R, S, D)", O.shape[0], O.shape[1], O.shape[2]);
    ARG(DP, dp, 'f', "(R, S)", O.shape[0], O.shape[1]);
    SAME_DEVICE(&O, &P, &DO, &G, &DP);
    DISPATCH(O.device, slot_scale_backward, &DO, &DP, &G, &O, &P);
}

gqe_status gqe_group_mean_append(gqe_tensor *out, const gqe_tensor *x, bool rope, float theta, int64_t pos_offset) {
    const char *OP = "group_mean_append";
    ARG(X, x, 'f', "(B, T, G, D)", -1, -1, -1, -1);
    ARG(O, out, 'f', "(B, T, G+1, D)", X.shape[0], X.shape[1], X.shape[2] + 1, X.shape[3]);
    REQUIRE(!rope || X.shape[3] % 2 == 0, "%s: head dim D = %lld must be even for RoPE", OP, (long long)X.shape[3]);
    REQUIRE(pos_offset >= 0, "%s: pos_offset %lld must be >= 0", OP, (long long)pos_offset);
    SAME_DEVICE(&O, &X);
    DISPATCH(X.device, group_mean_append, &O, &X, rope, theta, pos_offset);
}

gqe_status gqe_group_mean_append_backward(gqe_tensor *dx, const gqe_tensor *dout, bool rope, float theta) {
    const char *OP = "group_mean_append_backward";
    ARG(DX, dx, 'f', "(B, T, G, D)", -1, -1, -1, -1);
    ARG(G, dout, 'f', "(B, T, G+1, D)", DX.shape[0], DX.shape[1], DX.shape[2] + 1, DX.shape[3]);
    REQUIRE(!rope || DX.shape[3] % 2 == 0, "%s: head dim D = %lld must be even for RoPE", OP, (long long)DX.shape[3]);
    SAME_DEVICE(&DX, &G);
    DISPATCH(DX.device, group_mean_append_backward, &DX, &G, rope, theta);
}

/* ---- optimizers -------------------------------------------------------------- */
gqe_status gqe_adamw_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *m, gqe_tensor *v,
                            float lr, float beta1, float beta2, float eps, float wd, int64_t step, float grad_scale) {
    const char *OP = "adamw_update";
    ARG(P, p, 'F', "(N)", -1);
    ARG(G, g, 'F', "(N)", P.shape[0]);
    ARG(M, m, 'F', "(N)", P.shape[0]);
    ARG(V, v, 'F', "(N)", P.shape[0]);
    if (step < 1) return gqe_fail(GQE_ERR_ARG, "%s: step %lld must be >= 1", OP, (long long)step);
    if (!(grad_scale > 0.0f) || isinf(grad_scale))
        return gqe_fail(GQE_ERR_ARG, "%s: grad_scale %g must be finite and > 0", OP, (double)grad_scale);
    SAME_DEVICE(&P, &G, &M, &V);
    DISPATCH(P.device, adamw_update, &P, &G, &M, &V, lr, beta1, beta2, eps, wd, step, grad_scale);
}

gqe_status gqe_sgd_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *buf, float lr,
                          float momentum, float wd, bool nesterov, int64_t step, float grad_scale) {
    const char *OP = "sgd_update";
    ARG(P, p, 'F', "(N)", -1);
    ARG(G, g, 'F', "(N)", P.shape[0]);
    if (step < 1) return gqe_fail(GQE_ERR_ARG, "%s: step %lld must be >= 1", OP, (long long)step);
    if (!(grad_scale > 0.0f) || isinf(grad_scale))
        return gqe_fail(GQE_ERR_ARG, "%s: grad_scale %g must be finite and > 0", OP, (double)grad_scale);
    SAME_DEVICE(&P, &G);
    if (momentum == 0.0f) DISPATCH(P.device, sgd_update, &P, &G, NULL, lr, momentum, wd, nesterov, step, grad_scale);
    ARG(B, buf, 'F', "(N)", P.shape[0]);
    SAME_DEVICE(&P, &B);
    DISPATCH(P.device, sgd_update, &P, &G, &B, lr, momentum, wd, nesterov, step, grad_scale);
}
