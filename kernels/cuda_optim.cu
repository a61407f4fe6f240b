/* Fused optimizer updates over the flat f32 parameter buffers: one pass
 * reads p, g and the state and writes p and the state. The float operations
 * follow core/cpu/cpu_optim.c (itself torch.optim's order), with the bias
 * corrections formed on the host in double the same way. */
#include "common.cuh"
#include <math.h>

#define THREADS 256

__global__ void k_adamw(float *p, const float *g, float *m, float *v, int64_t n, float decay, float a1, float beta2,
                        float a2, float bc2_sqrt, float eps, float step_size, float gscale) {
    GRID_STRIDE(i, n) {
        float gi = g[i] * gscale;
        float pi = p[i] * decay;
        float mi = m[i];
        mi += a1 * (gi - mi);
        float vi = v[i] * beta2 + a2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        pi += -step_size * (mi / denom);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

gqe_status gqe_cuda_adamw_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *m, gqe_tensor *v,
                                 float lr, float beta1, float beta2, float eps, float wd, int64_t step, float grad_scale) {
    GQE_TRY(gqe_cuda_need_f32(p, "adamw_update", "p"));
    GQE_TRY(gqe_cuda_need_f32(g, "adamw_update", "g"));
    GQE_TRY(gqe_cuda_need_f32(m, "adamw_update", "m"));
    GQE_TRY(gqe_cuda_need_f32(v, "adamw_update", "v"));
    int64_t n = gqe_tensor_numel(p);
    if (n == 0) return GQE_OK;
    double bc1 = 1.0 - pow((double)beta1, (double)step), bc2 = 1.0 - pow((double)beta2, (double)step);
    float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * wd, a1 = 1.0f - beta1, a2 = 1.0f - beta2;
    k_adamw<<<gqe_grid_for(n, THREADS), THREADS>>>(gqe_f32(p), gqe_f32(g), gqe_f32(m), gqe_f32(v), n, decay, a1, beta2,
                                                   a2, bc2_sqrt, eps, step_size, grad_scale);
    LAUNCH_CHECK("adamw kernel");
    return GQE_OK;
}

__global__ void k_sgd(float *p, const float *g, float *buf, int64_t n, float lr, float momentum, float wd,
                      int nesterov, int first, float gscale) {
    GRID_STRIDE(i, n) {
        float d = g[i] * gscale;
        if (wd != 0.0f) d += wd * p[i];
        if (buf) {
            float b = first ? d : momentum * buf[i] + d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] += -lr * d;
    }
}

gqe_status gqe_cuda_sgd_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *buf, float lr,
                               float momentum, float wd, bool nesterov, int64_t step, float grad_scale) {
    GQE_TRY(gqe_cuda_need_f32(p, "sgd_update", "p"));
    GQE_TRY(gqe_cuda_need_f32(g, "sgd_update", "g"));
    bool use_buf = momentum != 0.0f;
    if (use_buf) GQE_TRY(gqe_cuda_need_f32(buf, "sgd_update", "buf"));
    int64_t n = gqe_tensor_numel(p);
    if (n == 0) return GQE_OK;
    k_sgd<<<gqe_grid_for(n, THREADS), THREADS>>>(gqe_f32(p), gqe_f32(g), use_buf ? gqe_f32(buf) : NULL, n, lr, momentum,
                                                 wd, nesterov, step <= 1, grad_scale);
    LAUNCH_CHECK("sgd kernel");
    return GQE_OK;
}
