/* Global gradient-norm clipping, as torch.nn.utils.clip_grad_norm_. */
#include "optim.h"
#include "ops.h"
#include <math.h>

gqe_status gqe_clip_coefficient(gqe_paramset *ps, float max_norm, float *norm_out, float *coef_out) {
    *coef_out = 1.0f;
    if (isnan(max_norm))
        return gqe_fail(GQE_ERR_ARG, "clip max_norm must be a number, got nan");
    double sumsq = 0.0;
    if (ps->numel > 0) {
        if (gqe_tensor_is_empty(&ps->grad))
            return gqe_fail(GQE_ERR_ARG, "clipping needs an allocated paramset (call gqe_paramset_alloc first)");
        GQE_TRY(gqe_sumsq(&ps->grad, &sumsq));
    }
    double norm = sqrt(sumsq);
    if (norm_out) *norm_out = (float)norm;
    /* Non-finite norms are the caller's to handle: scaling by 0 or NaN would
     * hide the divergence that the norm reports. */
    if (!isfinite(norm) || !(max_norm > 0.0f)) return GQE_OK;
    /* PyTorch computes the coefficient in the norm's dtype (f32 here) and
     * scales whenever it is below 1. */
    float coef = max_norm / ((float)norm + 1e-6f);
    if (coef < 1.0f) *coef_out = coef;
    return GQE_OK;
}

gqe_status gqe_clip_grad_norm(gqe_paramset *ps, float max_norm, float *norm_out) {
    float coef;
    GQE_TRY(gqe_clip_coefficient(ps, max_norm, norm_out, &coef));
    if (coef < 1.0f) GQE_TRY(gqe_scale(&ps->grad, coef));
    return GQE_OK;
}
