/* Optimizer updates over flat f32 buffers, written in the same order of
 * float operations as torch.optim (AdamW with decoupled decay, SGD with
 * dampening 0) so runs match it closely. */
#include "cpu.h"

gqe_status cpu_adamw_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *m, gqe_tensor *v,
                            float lr, float beta1, float beta2, float eps, float wd, int64_t step, float grad_scale) {
    CPU_NEED_F32("adamw_update", p); CPU_NEED_F32("adamw_update", g);
    CPU_NEED_F32("adamw_update", m); CPU_NEED_F32("adamw_update", v);
    int64_t n = gqe_tensor_numel(p);
    float *pp = gqe_f32(p), *pm = gqe_f32(m), *pv = gqe_f32(v);
    const float *pg = gqe_f32(g);
    /* Bias corrections in double like torch's Python scalars. */
    double bc1 = 1.0 - pow((double)beta1, (double)step), bc2 = 1.0 - pow((double)beta2, (double)step);
    float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * wd, a1 = 1.0f - beta1, a2 = 1.0f - beta2;
    #pragma omp parallel for if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float gi = pg[i] * grad_scale;
        pp[i] *= decay;
        pm[i] += a1 * (gi - pm[i]);
        pv[i] = pv[i] * beta2 + a2 * gi * gi;
        float denom = sqrtf(pv[i]) / bc2_sqrt + eps;
        pp[i] += -step_size * (pm[i] / denom);
    }
    return GQE_OK;
}

gqe_status cpu_sgd_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *buf, float lr,
                          float momentum, float wd, bool nesterov, int64_t step, float grad_scale) {
    CPU_NEED_F32("sgd_update", p); CPU_NEED_F32("sgd_update", g);
    bool use_buf = momentum != 0.0f;
    if (use_buf) CPU_NEED_F32("sgd_update", buf);
    int64_t n = gqe_tensor_numel(p);
    float *pp = gqe_f32(p), *pb = use_buf ? gqe_f32(buf) : NULL;
    const float *pg = gqe_f32(g);
    #pragma omp parallel for if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float d = pg[i] * grad_scale;
        if (wd != 0.0f) d += wd * pp[i];
        if (use_buf) {
            pb[i] = step <= 1 ? d : momentum * pb[i] + d;
            d = nesterov ? d + momentum * pb[i] : pb[i];
        }
        pp[i] += -lr * d;
    }
    return GQE_OK;
}
