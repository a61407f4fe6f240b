/* RoPE, rotate-half convention, in place on x (B, T, H, D).
 * The angle is computed in f32 the way PyTorch references do
 * (inv_freq = 1 / theta^(2i/D), angle = pos * inv_freq) so golden files
 * produced there match; cosf/sinf are the accurate versions. */
#include "common.cuh"

template <bool INVERSE>
__global__ void k_rope(fptr x, int64_t B, int64_t T, int64_t H, int64_t D, float theta, int64_t pos_offset) {
    int64_t half = D / 2;
    int64_t n = B * T * H * half;
    GRID_STRIDE(e, n) {
        int64_t i = e % half;
        int64_t row = e / half;               /* (b, t, h) flattened */
        int64_t t = (row / H) % T;
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)D);
        float ang = (float)(pos_offset + t) * inv_freq;
        float c = cosf(ang), s = sinf(ang);
        if (INVERSE) s = -s;
        int64_t i1 = row * D + i, i2 = i1 + half;
        float x1 = ldf(x, i1), x2 = ldf(x, i2);
        stf(x, i1, x1 * c - x2 * s);
        stf(x, i2, x2 * c + x1 * s);
    }
}

static gqe_status rope(gqe_tensor *x, float theta, int64_t pos_offset, bool inverse, const char *op) {
    GQE_TRY(gqe_cuda_need_float(x, op, "x"));
    if (x->ndim != 4) return gqe_fail(GQE_ERR_SHAPE, "%s: x must be (B, T, H, D), got %d dims", op, x->ndim);
    int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3];
    if (D % 2) return gqe_fail(GQE_ERR_SHAPE, "%s: head width D must be even, got %lld", op, (long long)D);
    int64_t n = B * T * H * (D / 2);
    if (n == 0) return GQE_OK;
    if (inverse) k_rope<true><<<gqe_grid_for(n, 256), 256>>>(fp(x), B, T, H, D, theta, pos_offset);
    else k_rope<false><<<gqe_grid_for(n, 256), 256>>>(fp(x), B, T, H, D, theta, pos_offset);
    LAUNCH_CHECK("rope kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_rope_forward(gqe_tensor *x, float theta, int64_t pos_offset) {
    return rope(x, theta, pos_offset, false, "rope_forward");
}
gqe_status gqe_cuda_rope_backward(gqe_tensor *dx, float theta, int64_t pos_offset) {
    return rope(dx, theta, pos_offset, true, "rope_backward");
}
