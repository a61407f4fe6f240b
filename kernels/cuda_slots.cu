/* Output slots (GQE.md step 6): slot B's weighted mix, which writes
 * o_proj's whole input [slots | mix | shared] of variant gqe from the
 * attention output o (R, H, D), H > S, and the weighted_concat scaling
 * (o (R, S, D)). P (R, S). */
#include "common.cuh"

#define THREADS 256

/* Row r's mix denominator max(sum_s P, eps); *clamped: the eps side won. */
__device__ __forceinline__ float mix_den(fptr p, int64_t r, int64_t S, float eps, bool *clamped) {
    float sum = 0;
    for (int64_t s = 0; s < S; s++) sum += ldf(p, r * S + s);
    *clamped = sum < eps;
    return *clamped ? eps : sum;
}

/* One warp per row: S and D are small (a few slots of one head width).
 * cat (R, S+2, D) = [o's slots | mix | o's head S]; o (R, H, D). */
__global__ void k_slot_mix_fwd(fptr cat, fptr w, fptr o, fptr p, int64_t R, int64_t S, int64_t H, int64_t D,
                               float eps) {
    int lane = threadIdx.x & 31;
    int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (r >= R) return;
    bool clamped;
    float den = mix_den(p, r, S, eps, &clamped);
    int64_t C = S + 2;
    if (lane == 0)
        for (int64_t s = 0; s < S; s++) stf(w, r * S + s, ldf(p, r * S + s) / den);
    for (int64_t d = lane; d < D; d += 32) {
        float acc = 0;
        for (int64_t s = 0; s < S; s++) {
            float v = ldf(o, (r * H + s) * D + d);
            stf(cat, (r * C + s) * D + d, v);
            acc += (ldf(p, r * S + s) / den) * v;
        }
        stf(cat, (r * C + S) * D + d, acc);
        stf(cat, (r * C + S + 1) * D + d, ldf(o, (r * H + S) * D + d));
    }
}

/* bf16 o and cat, D % 8 == 0: a thread per (row, 8 columns) with 16-byte
 * loads; the float order of k_slot_mix_fwd, so the results are equal. */
template <typename I>
__global__ void k_slot_mix_fwd8(uint4 *cat, fptr w, const uint4 *__restrict__ o, fptr p, I R, I S, I H, I D8,
                                float eps) {
    I C = S + 2;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < R * D8; e += (I)gridDim.x * blockDim.x) {
        I r = e / D8, c = e % D8;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, v[8];
        bool clamped;
        float den = mix_den(p, r, S, eps, &clamped);
        for (I s = 0; s < S; s++) {
            float ws = ldf(p, r * S + s) / den;
            if (c == 0) stf(w, r * S + s, ws);
            uint4 u = o[(r * H + s) * D8 + c];
            cat[(r * C + s) * D8 + c] = u;
            unpack8(u, v);
#pragma unroll
            for (int k = 0; k < 8; k++) acc[k] += ws * v[k];
        }
        cat[(r * C + S) * D8 + c] = pack8(acc);
        cat[(r * C + S + 1) * D8 + c] = o[(r * H + S) * D8 + c];
    }
}

/* Unclamped (den = sum P): dP_s = dmix.(o_s - mix)/den; clamped (sum P <
 * eps, den the constant eps): dmix.o_s/eps. do_s = dcat_s + w_s dmix; the
 * shared head's do is dcat's last head, its copies' zero. */
__global__ void k_slot_mix_bwd(fptr d_o, fptr dp, fptr dcat, fptr o, fptr p, fptr cat, fptr w, int64_t R, int64_t S,
                               int64_t H, int64_t D, float eps) {
    int lane = threadIdx.x & 31;
    int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (r >= R) return;
    bool clamped;
    float den = mix_den(p, r, S, eps, &clamped);
    int64_t C = S + 2;
    for (int64_t s = 0; s < S; s++) {
        float ws = ldf(w, r * S + s), dot = 0;
        for (int64_t d = lane; d < D; d += 32) {
            float g = ldf(dcat, (r * C + S) * D + d);
            int64_t oi = (r * H + s) * D + d;
            float os = ldf(o, oi);
            stf(d_o, oi, ldf(dcat, (r * C + s) * D + d) + ws * g);
            dot += g * (clamped ? os : os - ldf(cat, (r * C + S) * D + d));
        }
        dot = warp_sum(dot);
        if (lane == 0) stf(dp, r * S + s, dot / den);
    }
    for (int64_t d = lane; d < D; d += 32) stf(d_o, (r * H + S) * D + d, ldf(dcat, (r * C + S + 1) * D + d));
    for (int64_t i = (S + 1) * D + lane; i < H * D; i += 32) stf(d_o, r * H * D + i, 0.0f);
}

/* bf16 d_o, dcat, o and cat with D/8 a power of two <= 32: a thread per
 * (row, 8 columns), so one row's threads are D/8 neighbouring lanes of a
 * warp and the dot products reduce by shuffles among them. No grid-stride
 * loop: every lane of a warp reaches the shuffles. */
__global__ void k_slot_mix_bwd8(uint4 *d_o, fptr dp, const uint4 *dcat, const uint4 *o, fptr p, const uint4 *cat,
                                fptr w, int32_t R, int32_t S, int32_t H, int32_t D8, float eps) {
    int32_t e = (int32_t)blockIdx.x * blockDim.x + threadIdx.x;
    bool live = e < R * D8;
    int32_t r = live ? e / D8 : 0, c = e % D8, C = S + 2;
    float g[8], y[8], v[8], a[8];
    unpack8(dcat[(r * C + S) * D8 + c], g);
    unpack8(cat[(r * C + S) * D8 + c], y);
    bool clamped;
    float den = mix_den(p, r, S, eps, &clamped);
    for (int32_t s = 0; s < S; s++) {
        float ws = ldf(w, r * S + s), dot = 0;
        unpack8(o[(r * H + s) * D8 + c], v);
        unpack8(dcat[(r * C + s) * D8 + c], a);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            a[k] = a[k] + ws * g[k];
            dot += g[k] * (clamped ? v[k] : v[k] - y[k]);
        }
        if (live) d_o[(r * H + s) * D8 + c] = pack8(a);
        for (int32_t off = D8 / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        if (live && c == 0) stf(dp, r * S + s, dot / den);
    }
    if (!live) return;
    d_o[(r * H + S) * D8 + c] = dcat[(r * C + S + 1) * D8 + c];
    for (int32_t h = S + 1; h < H; h++) d_o[(r * H + h) * D8 + c] = make_uint4(0, 0, 0, 0);
}

gqe_status gqe_cuda_slot_mix_forward(gqe_tensor *cat, gqe_tensor *w, const gqe_tensor *o,
                                     const gqe_tensor *p, float eps) {
    const char *op = "slot_mix_forward";
    GQE_TRY(gqe_cuda_need_float(cat, op, "cat")); GQE_TRY(gqe_cuda_need_float(w, op, "w"));
    GQE_TRY(gqe_cuda_need_float(o, op, "o")); GQE_TRY(gqe_cuda_need_float(p, op, "p"));
    int64_t D = o->shape[o->ndim - 1], S = p->shape[p->ndim - 1], R = S ? gqe_tensor_numel(p) / S : 0;
    int64_t H = o->shape[o->ndim - 2];
    if (R == 0 || D == 0) return GQE_OK;
    if (all_bf16(cat, o) && vec8_ok(D, gqe_tensor_data(cat), gqe_tensor_data(o))) {
        uint4 *cat8 = (uint4 *)gqe_tensor_data(cat);
        const uint4 *o8 = (const uint4 *)gqe_tensor_data(o);
        unsigned grid = gqe_grid_for(R * D / 8, THREADS);
        if (gqe_tensor_numel(o) < INT32_MAX && gqe_tensor_numel(cat) < INT32_MAX)
            k_slot_mix_fwd8<int32_t><<<grid, THREADS>>>(cat8, fp(w), o8, fp(p), (int32_t)R, (int32_t)S, (int32_t)H,
                                                        (int32_t)(D / 8), eps);
        else
            k_slot_mix_fwd8<int64_t><<<grid, THREADS>>>(cat8, fp(w), o8, fp(p), R, S, H, D / 8, eps);
    } else {
        k_slot_mix_fwd<<<gqe_grid_for(R * 32, THREADS), THREADS>>>(fp(cat), fp(w), fp(o), fp(p), R, S, H, D, eps);
    }
    LAUNCH_CHECK("slot mix forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_slot_mix_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dcat,
                                      const gqe_tensor *o, const gqe_tensor *p, const gqe_tensor *cat,
                                      const gqe_tensor *w, float eps) {
    const char *op = "slot_mix_backward";
    GQE_TRY(gqe_cuda_need_float(d_o, op, "d_o")); GQE_TRY(gqe_cuda_need_float(dp, op, "dp"));
    GQE_TRY(gqe_cuda_need_float(dcat, op, "dcat")); GQE_TRY(gqe_cuda_need_float(o, op, "o"));
    GQE_TRY(gqe_cuda_need_float(p, op, "p")); GQE_TRY(gqe_cuda_need_float(cat, op, "cat"));
    GQE_TRY(gqe_cuda_need_float(w, op, "w"));
    int64_t D = o->shape[o->ndim - 1], S = p->shape[p->ndim - 1], R = S ? gqe_tensor_numel(p) / S : 0;
    int64_t H = o->shape[o->ndim - 2];
    if (R == 0 || D == 0) return GQE_OK;
    int64_t D8 = D / 8;
    if (all_bf16(d_o, dcat, o) && all_bf16(cat) && D % 8 == 0 && D8 <= 32 && (D8 & (D8 - 1)) == 0 &&
        gqe_tensor_numel(o) < INT32_MAX && gqe_tensor_numel(cat) < INT32_MAX &&
        vec8_ok(D, gqe_tensor_data(d_o), gqe_tensor_data(dcat), gqe_tensor_data(o)) &&
        vec8_ok(D, gqe_tensor_data(cat))) {
        unsigned grid = (unsigned)((R * D8 + THREADS - 1) / THREADS);
        k_slot_mix_bwd8<<<grid, THREADS>>>((uint4 *)gqe_tensor_data(d_o), fp(dp), (const uint4 *)gqe_tensor_data(dcat),
                                           (const uint4 *)gqe_tensor_data(o), fp(p),
                                           (const uint4 *)gqe_tensor_data(cat), fp(w), (int32_t)R, (int32_t)S,
                                           (int32_t)H, (int32_t)D8, eps);
    } else {
        k_slot_mix_bwd<<<gqe_grid_for(R * 32, THREADS), THREADS>>>(fp(d_o), fp(dp), fp(dcat), fp(o), fp(p), fp(cat),
                                                                    fp(w), R, S, H, D, eps);
    }
    LAUNCH_CHECK("slot mix backward kernel");
    return GQE_OK;
}

__global__ void k_slot_scale_fwd(fptr out, fptr o, fptr p, int64_t RS, int64_t D) {
    GRID_STRIDE(i, RS * D) stf(out, i, ldf(p, i / D) * ldf(o, i));
}

/* One warp per (r, s): do += P dout and dP += dout . o. */
__global__ void k_slot_scale_bwd(fptr d_o, fptr dp, fptr dout, fptr o, fptr p, int64_t RS, int64_t D) {
    int lane = threadIdx.x & 31;
    int64_t rs = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (rs >= RS) return;
    float pv = ldf(p, rs), dot = 0;
    for (int64_t d = lane; d < D; d += 32) {
        int64_t i = rs * D + d;
        float g = ldf(dout, i);
        stf(d_o, i, ldf(d_o, i) + pv * g);
        dot += g * ldf(o, i);
    }
    dot = warp_sum(dot);
    if (lane == 0) stf(dp, rs, ldf(dp, rs) + dot);
}

gqe_status gqe_cuda_slot_scale_forward(gqe_tensor *out, const gqe_tensor *o, const gqe_tensor *p) {
    GQE_TRY(gqe_cuda_need_float(out, "slot_scale_forward", "out"));
    GQE_TRY(gqe_cuda_need_float(o, "slot_scale_forward", "o"));
    GQE_TRY(gqe_cuda_need_float(p, "slot_scale_forward", "p"));
    int64_t D = o->shape[o->ndim - 1], RS = D ? gqe_tensor_numel(o) / D : 0;
    if (RS == 0) return GQE_OK;
    k_slot_scale_fwd<<<gqe_grid_for(RS * D, THREADS), THREADS>>>(fp(out), fp(o), fp(p), RS, D);
    LAUNCH_CHECK("slot scale forward kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_slot_scale_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout,
                                        const gqe_tensor *o, const gqe_tensor *p) {
    const char *op = "slot_scale_backward";
    GQE_TRY(gqe_cuda_need_float(d_o, op, "d_o")); GQE_TRY(gqe_cuda_need_float(dp, op, "dp"));
    GQE_TRY(gqe_cuda_need_float(dout, op, "dout")); GQE_TRY(gqe_cuda_need_float(o, op, "o"));
    GQE_TRY(gqe_cuda_need_float(p, op, "p"));
    int64_t D = o->shape[o->ndim - 1], RS = D ? gqe_tensor_numel(o) / D : 0;
    if (RS == 0) return GQE_OK;
    k_slot_scale_bwd<<<gqe_grid_for(RS * 32, THREADS), THREADS>>>(fp(d_o), fp(dp), fp(dout), fp(o), fp(p), RS, D);
    LAUNCH_CHECK("slot scale backward kernel");
    return GQE_OK;
}
