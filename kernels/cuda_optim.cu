/* Fused optimizer updates over the flat f32 parameter buffers: one pass
 * reads p, g and the state and writes p and the state. The float operations
 * follow core/cpu/cpu_optim.c (itself torch.optim's order), with the bias
 * corrections formed on the host in double the same way. */
#include "common.cuh"
#include <math.h>

#define THREADS 256

struct adamw_consts {
    float decay, a1, beta2, a2, bc2_sqrt, eps, step_size, gscale;
};

/* One parameter's update; both kernels below run exactly these operations. */
__device__ __forceinline__ void adamw_elem(float &p, float g, float &m, float &v, const adamw_consts &k) {
    float gi = g * k.gscale;
    float pi = p * k.decay;
    float mi = m;
    mi += k.a1 * (gi - mi);
    float vi = v * k.beta2 + k.a2 * gi * gi;
    float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
    pi += -k.step_size * (mi / denom);
    p = pi;
    m = mi;
    v = vi;
}

__global__ void k_adamw(float *p, const float *g, float *m, float *v, int64_t n, adamw_consts k) {
    GRID_STRIDE(i, n) adamw_elem(p[i], g[i], m[i], v[i], k);
}

/* Four parameters per thread in 16-byte words (the update is memory-bound:
 * 28 bytes a parameter); per element the operations of k_adamw. */
__global__ void k_adamw4(float4 *p, const float4 *__restrict__ g, float4 *m, float4 *v, int64_t n4, adamw_consts k) {
    GRID_STRIDE(i, n4) {
        float4 pp = p[i], gg = g[i], mm = m[i], vv = v[i];
        adamw_elem(pp.x, gg.x, mm.x, vv.x, k);
        adamw_elem(pp.y, gg.y, mm.y, vv.y, k);
        adamw_elem(pp.z, gg.z, mm.z, vv.z, k);
        adamw_elem(pp.w, gg.w, mm.w, vv.w, k);
        p[i] = pp;
        m[i] = mm;
        v[i] = vv;
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
    adamw_consts k;
    k.step_size = (float)((double)lr / bc1);
    k.bc2_sqrt = (float)sqrt(bc2);
    k.decay = 1.0f - lr * wd;
    k.a1 = 1.0f - beta1;
    k.a2 = 1.0f - beta2;
    k.beta2 = beta2;
    k.eps = eps;
    k.gscale = grad_scale;
    float *pp = gqe_f32(p), *pm = gqe_f32(m), *pv = gqe_f32(v);
    const float *pg = gqe_f32(g);
    if (vec4_ok(n, pp, pg, pm, pv))
        k_adamw4<<<gqe_grid_for(n / 4, THREADS), THREADS>>>((float4 *)pp, (const float4 *)pg, (float4 *)pm,
                                                            (float4 *)pv, n / 4, k);
    else
        k_adamw<<<gqe_grid_for(n, THREADS), THREADS>>>(pp, pg, pm, pv, n, k);
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
