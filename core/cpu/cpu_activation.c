/* GELU (exact erf form) and SwiGLU on the host. */
#include "cpu.h"

#define INV_SQRT_2PI 0.39894228040143267794f

/* Phi comes from cpu_norm_cdf, which vectorises; libm's erff would not. */
CPU_SPAN static void gelu_fwd_span(float *restrict o, const float *restrict x, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = x[i] * cpu_norm_cdf(x[i]);
}

/* d/dx x Phi(x) = Phi(x) + x phi(x). */
CPU_SPAN static void gelu_bwd_span(float *restrict d, const float *restrict x, const float *restrict g, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], pdf = INV_SQRT_2PI * cpu_expf(-0.5f * v * v);
        d[i] = g[i] * (cpu_norm_cdf(v) + v * pdf);
    }
}

gqe_status cpu_gelu_forward(gqe_tensor *out, const gqe_tensor *x) {
    CPU_NEED_F32("gelu_forward", out); CPU_NEED_F32("gelu_forward", x);
    int64_t n = gqe_tensor_numel(x), spans = (n + CPU_SPAN_N - 1) / CPU_SPAN_N;
    float *o = gqe_f32(out);
    const float *px = gqe_f32(x);
    #pragma omp parallel for if (spans > 4)
    for (int64_t s = 0; s < spans; s++) {
        int64_t i = s * CPU_SPAN_N;
        gelu_fwd_span(o + i, px + i, n - i < CPU_SPAN_N ? n - i : CPU_SPAN_N);
    }
    return GQE_OK;
}

gqe_status cpu_gelu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout, gqe_tensor *out) {
    CPU_NEED_F32("gelu_backward", dx); CPU_NEED_F32("gelu_backward", x); CPU_NEED_F32("gelu_backward", dout);
    if (out) CPU_NEED_F32("gelu_backward", out);
    int64_t n = gqe_tensor_numel(x), spans = (n + CPU_SPAN_N - 1) / CPU_SPAN_N;
    float *d = gqe_f32(dx), *o = out ? gqe_f32(out) : NULL;
    const float *px = gqe_f32(x), *g = gqe_f32(dout);
    #pragma omp parallel for if (spans > 4)
    for (int64_t s = 0; s < spans; s++) {
        int64_t i = s * CPU_SPAN_N, len = n - i < CPU_SPAN_N ? n - i : CPU_SPAN_N;
        gelu_bwd_span(d + i, px + i, g + i, len);
        if (o) gelu_fwd_span(o + i, px + i, len);   /* x is still in cache */
    }
    return GQE_OK;
}

static inline float sigmoidf(float v) {
    return v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
}

gqe_status cpu_swiglu_forward(gqe_tensor *out, const gqe_tensor *x) {
    CPU_NEED_F32("swiglu_forward", out); CPU_NEED_F32("swiglu_forward", x);
    int64_t H = cpu_last(out), R = cpu_rows(out);
    float *o = gqe_f32(out);
    const float *px = gqe_f32(x);
    #pragma omp parallel for if (R * H > 16384)
    for (int64_t r = 0; r < R; r++) {
        const float *gate = px + r * 2 * H, *up = gate + H;
        for (int64_t c = 0; c < H; c++) o[r * H + c] = gate[c] * sigmoidf(gate[c]) * up[c];
    }
    return GQE_OK;
}

/* silu'(a) = s (1 + a (1 - s)), s = sigmoid(a). */
gqe_status cpu_swiglu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout) {
    CPU_NEED_F32("swiglu_backward", dx); CPU_NEED_F32("swiglu_backward", x); CPU_NEED_F32("swiglu_backward", dout);
    int64_t H = cpu_last(dout), R = cpu_rows(dout);
    float *d = gqe_f32(dx);
    const float *px = gqe_f32(x), *g = gqe_f32(dout);
    #pragma omp parallel for if (R * H > 16384)
    for (int64_t r = 0; r < R; r++) {
        const float *gate = px + r * 2 * H, *up = gate + H, *gr = g + r * H;
        float *dg = d + r * 2 * H, *du = dg + H;
        for (int64_t c = 0; c < H; c++) {
            float a = gate[c], s = sigmoidf(a);
            dg[c] = gr[c] * up[c] * s * (1.0f + a * (1.0f - s));
            du[c] = gr[c] * a * s;
        }
    }
    return GQE_OK;
}
