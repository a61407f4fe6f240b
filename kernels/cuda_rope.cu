/* RoPE, rotate-half convention, in place on x (B, T, H, D), and fused into
 * the slot gather.
 * The angle is computed in f32 the way PyTorch references do
 * (inv_freq = 1 / theta^(2i/D), angle = pos * inv_freq) so golden files
 * produced there match; cosf/sinf are the accurate versions. They are
 * evaluated once per (position, frequency) into a cached table: per
 * element they cost more than the rotation itself. */
#include "common.cuh"

__global__ void k_rope_table(float2 *tab, int64_t P, int64_t D, float theta) {
    int64_t half = D / 2;
    GRID_STRIDE(e, P * half) {
        int64_t i = e % half, t = e / half;
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)D);
        float ang = (float)t * inv_freq;
        tab[e] = make_float2(cosf(ang), sinf(ang));
    }
}

/* One table, regrown (to a power of two of positions) when a call needs
 * more positions or another D or theta. Ops run on one host thread. */
static float2 *g_tab;
static int64_t g_tab_P, g_tab_D;
static float g_tab_theta;

static gqe_status rope_table(int64_t need_P, int64_t D, float theta, const float2 **out) {
    if (!g_tab || g_tab_D != D || g_tab_theta != theta || g_tab_P < need_P) {
        int64_t P = 64;
        while (P < need_P) P *= 2;
        if (g_tab) { gqe_cuda_scratch_free(g_tab); g_tab = NULL; }
        void *p = NULL;
        GQE_TRY(gqe_cuda_scratch(&p, (size_t)(P * (D / 2)) * sizeof(float2)));
        k_rope_table<<<gqe_grid_for(P * (D / 2), 256), 256>>>((float2 *)p, P, D, theta);
        LAUNCH_CHECK("rope table kernel");
        g_tab = (float2 *)p;
        g_tab_P = P;
        g_tab_D = D;
        g_tab_theta = theta;
    }
    *out = g_tab;
    return GQE_OK;
}

template <bool INVERSE, typename I>
__global__ void k_rope(fptr x, const float2 *__restrict__ tab, I n, I T, I H, I half, I pos_offset) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I i = e % half;
        I row = e / half;                     /* (b, t, h) flattened */
        I t = (row / H) % T;
        float2 cs = tab[(pos_offset + t) * half + i];
        float c = cs.x, s = INVERSE ? -cs.y : cs.y;
        I i1 = row * 2 * half + i, i2 = i1 + half;
        float x1 = ldf(x, i1), x2 = ldf(x, i2);
        stf(x, i1, x1 * c - x2 * s);
        stf(x, i2, x2 * c + x1 * s);
    }
}

/* Rotates the pairs (a[k], b[k]) = (x[i], x[i + D/2]) by the angles cs[k]. */
template <bool INVERSE>
__device__ __forceinline__ void rotate8(float a[8], float b[8], const float2 *__restrict__ cs) {
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float2 t = cs[k];
        float c = t.x, s = INVERSE ? -t.y : t.y, x1 = a[k], x2 = b[k];
        a[k] = x1 * c - x2 * s;
        b[k] = x2 * c + x1 * s;
    }
}

/* bf16, (D/2) % 8 == 0: a thread rotates 8 pairs (two 16-byte words);
 * same float expressions as k_rope, so the results are equal. */
template <bool INVERSE, typename I>
__global__ void k_rope8(uint4 *x, const float2 *__restrict__ tab, I n8, I T, I H, I half8, I pos_offset) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n8; e += (I)gridDim.x * blockDim.x) {
        I c = e % half8, row = e / half8;
        I t = (row / H) % T;
        I i1 = row * 2 * half8 + c, i2 = i1 + half8;
        float a[8], b[8];
        unpack8(x[i1], a);
        unpack8(x[i2], b);
        rotate8<INVERSE>(a, b, tab + ((pos_offset + t) * half8 + c) * 8);
        x[i1] = pack8(a);
        x[i2] = pack8(b);
    }
}

/* 32-bit index math when every index fits: the divisions dominate otherwise */
static bool fits_i32(int64_t elems, int64_t P, int64_t half) {
    return elems < INT32_MAX && P * half < INT32_MAX;
}

static gqe_status rope(gqe_tensor *x, float theta, int64_t pos_offset, bool inverse, const char *op) {
    GQE_TRY(gqe_cuda_need_float(x, op, "x"));
    if (x->ndim != 4) return gqe_fail(GQE_ERR_SHAPE, "%s: x must be (B, T, H, D), got %d dims", op, x->ndim);
    int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3], half = D / 2;
    if (D % 2) return gqe_fail(GQE_ERR_SHAPE, "%s: head width D must be even, got %lld", op, (long long)D);
    int64_t n = B * T * H * half;
    if (n == 0) return GQE_OK;
    const float2 *tab = NULL;
    GQE_TRY(rope_table(pos_offset + T, D, theta, &tab));
    bool small = fits_i32(2 * n, pos_offset + T, half);
    if (all_bf16(x) && half % 8 == 0 && vec8_ok(D, gqe_tensor_data(x))) {
        uint4 *x8 = (uint4 *)gqe_tensor_data(x);
        unsigned grid = gqe_grid_for(n / 8, 256);
        if (small && inverse) k_rope8<true, int32_t><<<grid, 256>>>(x8, tab, (int32_t)(n / 8), (int32_t)T, (int32_t)H, (int32_t)(half / 8), (int32_t)pos_offset);
        else if (small) k_rope8<false, int32_t><<<grid, 256>>>(x8, tab, (int32_t)(n / 8), (int32_t)T, (int32_t)H, (int32_t)(half / 8), (int32_t)pos_offset);
        else if (inverse) k_rope8<true, int64_t><<<grid, 256>>>(x8, tab, n / 8, T, H, half / 8, pos_offset);
        else k_rope8<false, int64_t><<<grid, 256>>>(x8, tab, n / 8, T, H, half / 8, pos_offset);
        LAUNCH_CHECK("rope kernel (bf16, 8 pairs per thread)");
        return GQE_OK;
    }
    unsigned grid = gqe_grid_for(n, 256);
    if (small) {
        if (inverse) k_rope<true, int32_t><<<grid, 256>>>(fp(x), tab, (int32_t)n, (int32_t)T, (int32_t)H, (int32_t)half, (int32_t)pos_offset);
        else k_rope<false, int32_t><<<grid, 256>>>(fp(x), tab, (int32_t)n, (int32_t)T, (int32_t)H, (int32_t)half, (int32_t)pos_offset);
    } else {
        if (inverse) k_rope<true, int64_t><<<grid, 256>>>(fp(x), tab, n, T, H, half, pos_offset);
        else k_rope<false, int64_t><<<grid, 256>>>(fp(x), tab, n, T, H, half, pos_offset);
    }
    LAUNCH_CHECK("rope kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_rope_forward(gqe_tensor *x, float theta, int64_t pos_offset) {
    return rope(x, theta, pos_offset, false, "rope_forward");
}
gqe_status gqe_cuda_rope_backward(gqe_tensor *dx, float theta, int64_t pos_offset) {
    return rope(dx, theta, pos_offset, true, "rope_backward");
}

/* ---- the slot gather with RoPE applied on the way ------------------------
 * slots (R, G*K, D) row s = (r*G + g)*K + j takes Q[r, g*M + idx[s]] rotated
 * by position pos_offset + r % T. A bad expert index writes zeros and sets
 * the device flag, as the plain gather does. */
template <typename I>
__global__ void k_gather_slots_rope(fptr slots, fptr q, const int32_t *idx, const float2 *__restrict__ tab, I n,
                                    I T, I G, I M, I K, I half, I pos_offset, int *flag) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I i = e % half, s = e / half, rg = s / K;
        I o1 = s * 2 * half + i, o2 = o1 + half;
        int32_t m = idx[s];
        if (m < 0 || m >= M) {
            if (i == 0) atomicOr(flag, GQE_FLAG_EXPERT);
            stf(slots, o1, 0.0f);
            stf(slots, o2, 0.0f);
            continue;
        }
        I src = (rg * M + m) * 2 * half + i;
        float2 cs = tab[(pos_offset + (rg / G) % T) * half + i];
        float x1 = ldf(q, src), x2 = ldf(q, src + half);
        stf(slots, o1, x1 * cs.x - x2 * cs.y);
        stf(slots, o2, x2 * cs.x + x1 * cs.y);
    }
}

template <typename I>
__global__ void k_gather_slots_rope8(uint4 *slots, const uint4 *__restrict__ q, const int32_t *idx,
                                     const float2 *__restrict__ tab, I n8, I T, I G, I M, I K, I half8, I pos_offset,
                                     int *flag) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n8; e += (I)gridDim.x * blockDim.x) {
        I c = e % half8, s = e / half8, rg = s / K;
        I o1 = s * 2 * half8 + c, o2 = o1 + half8;
        int32_t m = idx[s];
        if (m < 0 || m >= M) {
            if (c == 0) atomicOr(flag, GQE_FLAG_EXPERT);
            slots[o1] = slots[o2] = make_uint4(0, 0, 0, 0);
            continue;
        }
        I src = (rg * M + m) * 2 * half8 + c;
        float a[8], b[8];
        unpack8(q[src], a);
        unpack8(q[src + half8], b);
        rotate8<false>(a, b, tab + ((pos_offset + (rg / G) % T) * half8 + c) * 8);
        slots[o1] = pack8(a);
        slots[o2] = pack8(b);
    }
}

gqe_status gqe_cuda_gather_slots_rope(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx, float theta,
                                      int64_t pos_offset) {
    const char *op = "gather_slots_rope";
    GQE_TRY(gqe_cuda_need_float(slots, op, "slots"));
    GQE_TRY(gqe_cuda_need_float(q, op, "q"));
    GQE_TRY(gqe_cuda_need_i32(idx, op, "idx"));
    int64_t K = idx->shape[idx->ndim - 1], G = idx->shape[idx->ndim - 2], T = slots->shape[1];
    int64_t D = q->shape[q->ndim - 1], M = G ? q->shape[q->ndim - 2] / G : 0, half = D / 2;
    int64_t R = (G * K != 0) ? gqe_tensor_numel(idx) / (G * K) : 0;
    int64_t n = R * G * K * half;
    if (n == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "%s: no device flag", op);
    const float2 *tab = NULL;
    GQE_TRY(rope_table(pos_offset + T, D, theta, &tab));
    bool small = fits_i32(gqe_tensor_numel(q) > 2 * n ? gqe_tensor_numel(q) : 2 * n, pos_offset + T, half);
    if (all_bf16(slots, q) && half % 8 == 0 && vec8_ok(D, gqe_tensor_data(slots), gqe_tensor_data(q))) {
        uint4 *s8 = (uint4 *)gqe_tensor_data(slots);
        const uint4 *q8 = (const uint4 *)gqe_tensor_data(q);
        unsigned grid = gqe_grid_for(n / 8, 256);
        if (small)
            k_gather_slots_rope8<int32_t><<<grid, 256>>>(s8, q8, gqe_i32(idx), tab, (int32_t)(n / 8), (int32_t)T,
                                                         (int32_t)G, (int32_t)M, (int32_t)K, (int32_t)(half / 8),
                                                         (int32_t)pos_offset, flag);
        else
            k_gather_slots_rope8<int64_t><<<grid, 256>>>(s8, q8, gqe_i32(idx), tab, n / 8, T, G, M, K, half / 8,
                                                         pos_offset, flag);
    } else {
        unsigned grid = gqe_grid_for(n, 256);
        if (small)
            k_gather_slots_rope<int32_t><<<grid, 256>>>(fp(slots), fp(q), gqe_i32(idx), tab, (int32_t)n, (int32_t)T,
                                                        (int32_t)G, (int32_t)M, (int32_t)K, (int32_t)half,
                                                        (int32_t)pos_offset, flag);
        else
            k_gather_slots_rope<int64_t><<<grid, 256>>>(fp(slots), fp(q), gqe_i32(idx), tab, n, T, G, M, K, half,
                                                        pos_offset, flag);
    }
    LAUNCH_CHECK("gather slots rope kernel");
    return GQE_OK;
}
