/* Output slots (GQE.md step 6) on the host: slot B's weighted mix with
 * o_proj's input around it, the weighted_concat scaling and the shared
 * head's keys and values. */
#include "cpu.h"

/* cat = [o's first S heads | mix | o's head S], mix = sum_s w_s o_s with
 * w = P / max(sum P, eps). */
gqe_status cpu_slot_mix_forward(gqe_tensor *cat, gqe_tensor *w, const gqe_tensor *o,
                                const gqe_tensor *p, float eps) {
    CPU_NEED_F32("slot_mix_forward", cat); CPU_NEED_F32("slot_mix_forward", w);
    CPU_NEED_F32("slot_mix_forward", o); CPU_NEED_F32("slot_mix_forward", p);
    int64_t D = cpu_last(o), R = cpu_rows(p), S = cpu_last(p), H = o->shape[o->ndim - 2], C = S + 2;
    float *pc = gqe_f32(cat), *pw = gqe_f32(w);
    const float *oo = gqe_f32(o), *pp = gqe_f32(p);
    #pragma omp parallel for if (R * S * D > 32768)
    for (int64_t r = 0; r < R; r++) {
        float sum = 0;
        for (int64_t s = 0; s < S; s++) sum += pp[r * S + s];
        float den = sum > eps ? sum : eps;
        const float *orow = oo + r * H * D;
        float *crow = pc + r * C * D, *mix = crow + S * D;
        memcpy(crow, orow, sizeof(float) * (size_t)(S * D));
        memcpy(crow + (S + 1) * D, orow + S * D, sizeof(float) * (size_t)D);
        for (int64_t c = 0; c < D; c++) mix[c] = 0;
        for (int64_t s = 0; s < S; s++) {
            float ws = pp[r * S + s] / den;
            pw[r * S + s] = ws;
            const float *os = orow + s * D;
            for (int64_t c = 0; c < D; c++) mix[c] += ws * os[c];
        }
    }
    return GQE_OK;
}

/* mix = sum_s P_s o_s / den. Unclamped (den = sum P): dP_s = dmix.(o_s - mix)/den;
 * clamped (den = eps, a constant, like torch's clamp below its min): dmix.o_s/eps. */
gqe_status cpu_slot_mix_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dcat,
                                 const gqe_tensor *o, const gqe_tensor *p, const gqe_tensor *cat,
                                 const gqe_tensor *w, float eps) {
    const char *op = "slot_mix_backward";
    CPU_NEED_F32(op, d_o); CPU_NEED_F32(op, dp); CPU_NEED_F32(op, dcat);
    CPU_NEED_F32(op, o); CPU_NEED_F32(op, p); CPU_NEED_F32(op, cat); CPU_NEED_F32(op, w);
    int64_t D = cpu_last(o), R = cpu_rows(p), S = cpu_last(p), H = o->shape[o->ndim - 2], C = S + 2;
    float *pdo = gqe_f32(d_o), *pdp = gqe_f32(dp);
    const float *gc = gqe_f32(dcat), *oo = gqe_f32(o), *pp = gqe_f32(p), *pc = gqe_f32(cat), *pw = gqe_f32(w);
    #pragma omp parallel for if (R * S * D > 32768)
    for (int64_t r = 0; r < R; r++) {
        float sum = 0;
        for (int64_t s = 0; s < S; s++) sum += pp[r * S + s];
        bool clamped = sum < eps;
        float den = clamped ? eps : sum;
        const float *grow = gc + r * C * D, *gmix = grow + S * D, *mix = pc + (r * C + S) * D;
        float *dorow = pdo + r * H * D;
        for (int64_t s = 0; s < S; s++) {
            const float *os = oo + (r * H + s) * D, *gs = grow + s * D;
            float *dos = dorow + s * D, ws = pw[r * S + s], dot = 0;
            for (int64_t c = 0; c < D; c++) {
                dos[c] = gs[c] + ws * gmix[c];
                dot += gmix[c] * (clamped ? os[c] : os[c] - mix[c]);
            }
            pdp[r * S + s] = dot / den;
        }
        memcpy(dorow + S * D, grow + (S + 1) * D, sizeof(float) * (size_t)D);
        for (int64_t c = (S + 1) * D; c < H * D; c++) dorow[c] = 0;
    }
    return GQE_OK;
}

gqe_status cpu_slot_scale_forward(gqe_tensor *out, const gqe_tensor *o, const gqe_tensor *p) {
    CPU_NEED_F32("slot_scale_forward", out); CPU_NEED_F32("slot_scale_forward", o); CPU_NEED_F32("slot_scale_forward", p);
    int64_t D = cpu_last(o), RS = cpu_rows(o);
    float *po = gqe_f32(out);
    const float *oo = gqe_f32(o), *pp = gqe_f32(p);
    #pragma omp parallel for if (RS * D > 32768)
    for (int64_t rs = 0; rs < RS; rs++)
        for (int64_t c = 0; c < D; c++) po[rs * D + c] = pp[rs] * oo[rs * D + c];
    return GQE_OK;
}

gqe_status cpu_slot_scale_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout,
                                   const gqe_tensor *o, const gqe_tensor *p) {
    const char *op = "slot_scale_backward";
    CPU_NEED_F32(op, d_o); CPU_NEED_F32(op, dp); CPU_NEED_F32(op, dout); CPU_NEED_F32(op, o); CPU_NEED_F32(op, p);
    int64_t D = cpu_last(o), RS = cpu_rows(o);
    float *pdo = gqe_f32(d_o), *pdp = gqe_f32(dp);
    const float *g = gqe_f32(dout), *oo = gqe_f32(o), *pp = gqe_f32(p);
    #pragma omp parallel for if (RS * D > 32768)
    for (int64_t rs = 0; rs < RS; rs++) {
        float dot = 0;
        for (int64_t c = 0; c < D; c++) {
            pdo[rs * D + c] += pp[rs] * g[rs * D + c];
            dot += g[rs * D + c] * oo[rs * D + c];
        }
        pdp[rs] += dot;
    }
    return GQE_OK;
}

/* y = rope(x) (a copy), then out = [y | mean_g y]. */
gqe_status cpu_group_mean_append(gqe_tensor *out, const gqe_tensor *x, bool rope, float theta, int64_t pos_offset) {
    CPU_NEED_F32("group_mean_append", out); CPU_NEED_F32("group_mean_append", x);
    int64_t D = cpu_last(x), G = x->shape[2], R = x->shape[0] * x->shape[1];
    gqe_tensor y = {0};
    GQE_TRY(gqe_tensor_to(&y, x, GQE_CPU, GQE_F32));
    gqe_status st = rope ? cpu_rope_forward(&y, theta, pos_offset) : GQE_OK;
    if (st != GQE_OK) {
        gqe_tensor_free(&y);
        return st;
    }
    float *po = gqe_f32(out);
    const float *py = gqe_f32(&y);
    float inv = 1.0f / (float)G;
    #pragma omp parallel for if (R * G * D > 32768)
    for (int64_t r = 0; r < R; r++) {
        memcpy(po + r * (G + 1) * D, py + r * G * D, (size_t)(G * D) * sizeof(float));
        for (int64_t c = 0; c < D; c++) {
            float s = 0;
            for (int64_t g = 0; g < G; g++) s += py[(r * G + g) * D + c];
            po[(r * (G + 1) + G) * D + c] = s * inv;
        }
    }
    gqe_tensor_free(&y);
    return GQE_OK;
}

/* dx = dout[.., :G] + dout[.., G] / G, then turned back in place. */
gqe_status cpu_group_mean_append_backward(gqe_tensor *dx, const gqe_tensor *dout, bool rope, float theta) {
    CPU_NEED_F32("group_mean_append_backward", dx); CPU_NEED_F32("group_mean_append_backward", dout);
    int64_t D = cpu_last(dx), G = dx->shape[2], R = dx->shape[0] * dx->shape[1];
    float *pdx = gqe_f32(dx);
    const float *g = gqe_f32(dout);
    float inv = 1.0f / (float)G;
    #pragma omp parallel for if (R * G * D > 32768)
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < G; k++)
            for (int64_t c = 0; c < D; c++)
                pdx[(r * G + k) * D + c] = g[(r * (G + 1) + k) * D + c] + g[(r * (G + 1) + G) * D + c] * inv;
    return rope ? cpu_rope_backward(dx, theta, 0) : GQE_OK;
}
