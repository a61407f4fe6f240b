/* qkv_grad_pack on the CPU: the op chain it stands for, run on copies of
 * the inputs (the ops work in place) and gathered into dy. The CPU has no
 * passes to save; this body is the definition the fused kernels match. */
#include "cpu.h"

static gqe_tensor rows2(const gqe_tensor *t, int64_t R) {
    return gqe_tensor_reshape(t, 2, (int64_t[]){R, R ? gqe_tensor_numel(t) / R : 0});
}

/* A private f32 copy of src, same shape. */
static gqe_status copy_of(gqe_tensor *out, const gqe_tensor *src) { return gqe_tensor_to(out, src, GQE_CPU, GQE_F32); }

/* dk or dv of the G groups: the shared head's share (its last head) added
 * and, for keys, RoPE taken off; without the shared head a copy, turned. */
static gqe_status kv_grad(gqe_tensor *out, const gqe_tensor *d, bool shared, bool rope, float theta) {
    if (!shared) {
        GQE_TRY(copy_of(out, d));
        return rope ? cpu_rope_backward(out, theta, 0) : GQE_OK;
    }
    GQE_TRY(gqe_tensor_zeros(out, GQE_F32, GQE_CPU, 4, (int64_t[]){d->shape[0], d->shape[1], d->shape[2] - 1, d->shape[3]}));
    return cpu_group_mean_append_backward(out, d, rope, theta);
}

gqe_status cpu_qkv_grad_pack(gqe_tensor *dy, const gqe_tensor *dslots, const gqe_tensor *idx, const gqe_tensor *dk,
                             const gqe_tensor *dv, const gqe_tensor *dlogits, bool shared, int64_t M, bool rope,
                             float theta) {
    const char *op = "qkv_grad_pack";
    CPU_NEED_F32(op, dy); CPU_NEED_F32(op, dslots); CPU_NEED_F32(op, dk); CPU_NEED_F32(op, dv);
    CPU_NEED_F32(op, dlogits);
    int64_t R = idx->shape[0], G = idx->shape[1], SK = G * idx->shape[2], D = dk->shape[3];
    gqe_tensor ds = {0}, q = {0}, k = {0}, v = {0};
    gqe_status st = copy_of(&ds, dslots);   /* every head turned back, the shared query's too */
    if (st == GQE_OK) st = gqe_tensor_zeros(&q, GQE_F32, GQE_CPU, 3, (int64_t[]){R, G * M, D});
    if (st == GQE_OK && rope) st = cpu_rope_backward(&ds, theta, 0);
    if (st == GQE_OK) {
        gqe_tensor ds3 = gqe_tensor_reshape(&ds, 3, (int64_t[]){R, dslots->shape[2], D});
        st = cpu_scatter_slots(&q, &ds3, idx);
    }
    if (st == GQE_OK) st = kv_grad(&k, dk, shared, rope, theta);
    if (st == GQE_OK) st = kv_grad(&v, dv, shared, false, theta);
    /* [dq | dk | dv | dlogits | dqs]: whole tensors, then dslots' last head */
    const gqe_tensor *parts[4] = {&q, &k, &v, dlogits};
    int64_t col = 0;
    for (int i = 0; i < 4 && st == GQE_OK; i++) {
        if (!parts[i]) continue;
        gqe_tensor src = rows2(parts[i], R);
        st = cpu_copy_cols(dy, col, &src, 0, src.shape[1], false);
        col += src.shape[1];
    }
    if (st == GQE_OK && shared) {
        gqe_tensor src = rows2(&ds, R);
        st = cpu_copy_cols(dy, col, &src, SK * D, D, false);
    }
    gqe_tensor_free(&ds);
    gqe_tensor_free(&q);
    gqe_tensor_free(&k);
    gqe_tensor_free(&v);
    return st;
}
