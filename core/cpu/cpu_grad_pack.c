/* qkv_grad_pack on the CPU: the op chain it stands for, run on copies of
 * the inputs (the ops work in place) and gathered into dy. The CPU has no
 * passes to save; this body is the definition the fused kernels match. */
#include "cpu.h"

static gqe_tensor rows2(const gqe_tensor *t, int64_t R) {
    return gqe_tensor_reshape(t, 2, (int64_t[]){R, R ? gqe_tensor_numel(t) / R : 0});
}

/* A private f32 copy of src, same shape. */
static gqe_status copy_of(gqe_tensor *out, const gqe_tensor *src) { return gqe_tensor_to(out, src, GQE_CPU, GQE_F32); }

gqe_status cpu_qkv_grad_pack(gqe_tensor *dy, const gqe_tensor *dslots, const gqe_tensor *idx, const gqe_tensor *dk,
                             const gqe_tensor *dv, const gqe_tensor *dkbar, const gqe_tensor *dvbar,
                             const gqe_tensor *dlogits, const gqe_tensor *dqs, int64_t M, bool rope, float theta) {
    const char *op = "qkv_grad_pack";
    CPU_NEED_F32(op, dy); CPU_NEED_F32(op, dslots); CPU_NEED_F32(op, dk); CPU_NEED_F32(op, dv);
    CPU_NEED_F32(op, dkbar); CPU_NEED_F32(op, dvbar); CPU_NEED_F32(op, dlogits); CPU_NEED_F32(op, dqs);
    int64_t R = idx->shape[0], G = idx->shape[1], D = dk->shape[3];
    gqe_tensor ds = {0}, q = {0}, k = {0}, v = {0}, qs = {0};
    gqe_status st = copy_of(&ds, dslots);
    if (st == GQE_OK) st = gqe_tensor_zeros(&q, GQE_F32, GQE_CPU, 3, (int64_t[]){R, G * M, D});
    if (st == GQE_OK) st = copy_of(&k, dk);
    if (st == GQE_OK) st = copy_of(&v, dv);
    if (st == GQE_OK && dqs) st = copy_of(&qs, dqs);
    if (st == GQE_OK && rope) st = cpu_rope_backward(&ds, theta, 0);
    if (st == GQE_OK) {
        gqe_tensor ds3 = gqe_tensor_reshape(&ds, 3, (int64_t[]){R, idx->shape[1] * idx->shape[2], D});
        st = cpu_scatter_slots(&q, &ds3, idx);
    }
    if (st == GQE_OK && dkbar) {
        gqe_tensor k3 = gqe_tensor_reshape(&k, 3, (int64_t[]){R, G, D}), v3 = gqe_tensor_reshape(&v, 3, (int64_t[]){R, G, D});
        gqe_tensor kb3 = gqe_tensor_reshape(dkbar, 3, (int64_t[]){R, 1, D});
        gqe_tensor vb3 = gqe_tensor_reshape(dvbar, 3, (int64_t[]){R, 1, D});
        st = cpu_group_mean_backward(&k3, &kb3);
        if (st == GQE_OK) st = cpu_group_mean_backward(&v3, &vb3);
    }
    if (st == GQE_OK && rope) st = cpu_rope_backward(&k, theta, 0);
    if (st == GQE_OK && rope && dqs) st = cpu_rope_backward(&qs, theta, 0);
    /* [dq | dk | dv | dlogits | dqs] */
    const gqe_tensor *parts[5] = {&q, &k, &v, dlogits, dqs ? &qs : NULL};
    int64_t col = 0;
    for (int i = 0; i < 5 && st == GQE_OK; i++) {
        if (!parts[i]) continue;
        gqe_tensor src = rows2(parts[i], R);
        st = cpu_copy_cols(dy, col, &src, 0, src.shape[1], false);
        col += src.shape[1];
    }
    gqe_tensor_free(&ds);
    gqe_tensor_free(&q);
    gqe_tensor_free(&k);
    gqe_tensor_free(&v);
    gqe_tensor_free(&qs);
    return st;
}
