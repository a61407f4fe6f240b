/* Rotary position embedding, rotate-half convention, in place.
 * Angles are formed in f32 as the reference PyTorch module does
 * (inv_freq = 1 / theta^(2i/D), angle = pos * inv_freq), so long positions
 * round the same way on both sides. */
#include "cpu.h"
#include <stdlib.h>

static gqe_status rope(const char *op, gqe_tensor *x, float theta, int64_t pos_offset, float dir) {
    CPU_NEED_F32(op, x);
    int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3], half = D / 2;
    float *px = gqe_f32(x);
    float *inv = malloc((size_t)(half ? half : 1) * sizeof(float));
    if (!inv) return gqe_fail(GQE_ERR_NOMEM, "%s: out of host memory", op);
    for (int64_t i = 0; i < half; i++) inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)D);
    int fail = 0;
    #pragma omp parallel
    {
        float *cs = malloc((size_t)(half ? half : 1) * 2 * sizeof(float));
        if (!cs) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for
        for (int64_t t = 0; t < T; t++) {
            if (!cs) continue;
            float *sn = cs + half;
            float pos = (float)(pos_offset + t);
            for (int64_t i = 0; i < half; i++) {
                float a = pos * inv[i];
                cs[i] = cosf(a);
                sn[i] = dir * sinf(a);   /* dir -1: the inverse rotation */
            }
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < H; h++) {
                    float *row = px + ((b * T + t) * H + h) * D;
                    for (int64_t i = 0; i < half; i++) {
                        float x1 = row[i], x2 = row[i + half];
                        row[i] = x1 * cs[i] - x2 * sn[i];
                        row[i + half] = x2 * cs[i] + x1 * sn[i];
                    }
                }
        }
        free(cs);
    }
    free(inv);
    if (fail) return gqe_fail(GQE_ERR_NOMEM, "%s: out of host memory", op);
    return GQE_OK;
}

gqe_status cpu_rope_forward(gqe_tensor *x, float theta, int64_t pos_offset) {
    return rope("rope_forward", x, theta, pos_offset, 1.0f);
}

gqe_status cpu_rope_backward(gqe_tensor *dx, float theta, int64_t pos_offset) {
    return rope("rope_backward", dx, theta, pos_offset, -1.0f);
}
