/* GELU (exact, erf form) and SwiGLU, forward and backward (backward adds). */
#include "common.cuh"

#define THREADS 256
#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

__device__ __forceinline__ float gelu_f(float v) { return 0.5f * v * (1.0f + erff(v * INV_SQRT2)); }
__device__ __forceinline__ float gelu_grad(float v) {
    return 0.5f * (1.0f + erff(v * INV_SQRT2)) + v * (INV_SQRT_2PI * expf(-0.5f * v * v));
}

__global__ void k_gelu_fwd(fptr out, fptr x, int64_t n) {
    GRID_STRIDE(i, n) {
        stf(out, i, gelu_f(ldf(x, i)));
    }
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
__global__ void k_gelu_bwd(fptr dx, fptr x, fptr dout, fptr out, int64_t n) {
    GRID_STRIDE(i, n) {
        float v = ldf(x, i);
        stf(dx, i, ldf(dout, i) * gelu_grad(v));
        if (out.p) stf(out, i, gelu_f(v));
    }
}

/* all-bf16 versions, 8 values per thread (common.cuh) */
__global__ void k_gelu_fwd8(uint4 *out, const uint4 *__restrict__ x, int64_t n8) {
    GRID_STRIDE(i, n8) {
        float f[8];
        unpack8(x[i], f);
#pragma unroll
        for (int k = 0; k < 8; k++) f[k] = gelu_f(f[k]);
        out[i] = pack8(f);
    }
}
__global__ void k_gelu_bwd8(uint4 *dx, const uint4 *__restrict__ x, const uint4 *__restrict__ dout, uint4 *out,
                            int64_t n8) {
    GRID_STRIDE(i, n8) {
        float v[8], d[8], g[8];
        unpack8(x[i], v);
        unpack8(dout[i], d);
#pragma unroll
        for (int k = 0; k < 8; k++) g[k] = d[k] * gelu_grad(v[k]);
        dx[i] = pack8(g);
        if (out) {
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = gelu_f(v[k]);
            out[i] = pack8(v);
        }
    }
}

__device__ __forceinline__ float sigmoidf_(float v) { return 1.0f / (1.0f + expf(-v)); }

/* x (R, 2H) = [gate | up]; out (R, H) = silu(gate) * up */
__global__ void k_swiglu_fwd(fptr out, fptr x, int64_t R, int64_t H) {
    GRID_STRIDE(i, R * H) {
        int64_t r = i / H, j = i % H;
        float g = ldf(x, r * 2 * H + j), u = ldf(x, r * 2 * H + H + j);
        stf(out, i, g * sigmoidf_(g) * u);
    }
}

__global__ void k_swiglu_bwd(fptr dx, fptr x, fptr dout, int64_t R, int64_t H) {
    GRID_STRIDE(i, R * H) {
        int64_t r = i / H, j = i % H;
        int64_t gi = r * 2 * H + j, ui = gi + H;
        float g = ldf(x, gi), u = ldf(x, ui), d = ldf(dout, i);
        float s = sigmoidf_(g);
        float silu = g * s;
        stf(dx, gi, d * u * s * (1.0f + g * (1.0f - s)));
        stf(dx, ui, d * silu);
    }
}

gqe_status gqe_cuda_gelu_forward(gqe_tensor *out, const gqe_tensor *x) {
    GQE_TRY(gqe_cuda_need_float(out, "gelu_forward", "out"));
    GQE_TRY(gqe_cuda_need_float(x, "gelu_forward", "x"));
    int64_t n = gqe_tensor_numel(x);
    if (n == 0) return GQE_OK;
    if (all_bf16(out, x) && vec8_ok(n, gqe_tensor_data(out), gqe_tensor_data(x)))
        k_gelu_fwd8<<<gqe_grid_for(n / 8, THREADS), THREADS>>>((uint4 *)gqe_tensor_data(out),
                                                               (const uint4 *)gqe_tensor_data(x), n / 8);
    else
        k_gelu_fwd<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(out), fp(x), n);
    LAUNCH_CHECK("gelu forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_gelu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout, gqe_tensor *out) {
    GQE_TRY(gqe_cuda_need_float(dx, "gelu_backward", "dx"));
    GQE_TRY(gqe_cuda_need_float(x, "gelu_backward", "x"));
    GQE_TRY(gqe_cuda_need_float(dout, "gelu_backward", "dout"));
    if (out) GQE_TRY(gqe_cuda_need_float(out, "gelu_backward", "out"));
    int64_t n = gqe_tensor_numel(x);
    if (n == 0) return GQE_OK;
    bool out8 = !out || (all_bf16(out) && vec8_ok(n, gqe_tensor_data(out)));
    if (out8 && all_bf16(dx, x, dout) && vec8_ok(n, gqe_tensor_data(dx), gqe_tensor_data(x), gqe_tensor_data(dout)))
        k_gelu_bwd8<<<gqe_grid_for(n / 8, THREADS), THREADS>>>((uint4 *)gqe_tensor_data(dx), (const uint4 *)gqe_tensor_data(x),
                                                               (const uint4 *)gqe_tensor_data(dout),
                                                               out ? (uint4 *)gqe_tensor_data(out) : NULL, n / 8);
    else
        k_gelu_bwd<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(dx), fp(x), fp(dout), out ? fp(out) : fp_null(), n);
    LAUNCH_CHECK("gelu backward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_swiglu_forward(gqe_tensor *out, const gqe_tensor *x) {
    GQE_TRY(gqe_cuda_need_float(out, "swiglu_forward", "out"));
    GQE_TRY(gqe_cuda_need_float(x, "swiglu_forward", "x"));
    int64_t H = out->shape[out->ndim - 1], R = H ? gqe_tensor_numel(out) / H : 0;
    if (R * H == 0) return GQE_OK;
    k_swiglu_fwd<<<gqe_grid_for(R * H, THREADS), THREADS>>>(fp(out), fp(x), R, H);
    LAUNCH_CHECK("swiglu forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_swiglu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout) {
    GQE_TRY(gqe_cuda_need_float(dx, "swiglu_backward", "dx"));
    GQE_TRY(gqe_cuda_need_float(x, "swiglu_backward", "x"));
    GQE_TRY(gqe_cuda_need_float(dout, "swiglu_backward", "dout"));
    int64_t H = dout->shape[dout->ndim - 1], R = H ? gqe_tensor_numel(dout) / H : 0;
    if (R * H == 0) return GQE_OK;
    k_swiglu_bwd<<<gqe_grid_for(R * H, THREADS), THREADS>>>(fp(dx), fp(x), fp(dout), R, H);
    LAUNCH_CHECK("swiglu backward kernel");
    return GQE_OK;
}
