/* RoPE, rotate-half convention, in place on x (B, T, H, D), fused into
 * the slot gather, into the shared head's group mean (group_mean_append and
 * its backward), and in the GQE input-gradient pack (qkv_grad_pack), whose
 * rotations back are most of its work.
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

/* One pair (x1, x2) = (x[i], x[i + D/2]) rotated by the angle whose cos and
 * sin are cs; INVERSE turns it back. Every RoPE kernel rotates through it,
 * so fused and one-by-one passes round alike. */
template <bool INVERSE>
__device__ __forceinline__ void rotate_pair(float &x1, float &x2, float2 cs) {
    const float c = cs.x, s = INVERSE ? -cs.y : cs.y, a = x1, b = x2;
    x1 = a * c - b * s;
    x2 = b * c + a * s;
}

template <bool INVERSE, typename I>
__global__ void k_rope(fptr x, const float2 *__restrict__ tab, I n, I T, I H, I half, I pos_offset) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I i = e % half;
        I row = e / half;                     /* (b, t, h) flattened */
        I t = (row / H) % T;
        I i1 = row * 2 * half + i, i2 = i1 + half;
        float x1 = ldf(x, i1), x2 = ldf(x, i2);
        rotate_pair<INVERSE>(x1, x2, tab[(pos_offset + t) * half + i]);
        stf(x, i1, x1);
        stf(x, i2, x2);
    }
}

/* Rotates the pairs (a[k], b[k]) = (x[i], x[i + D/2]) by the angles cs[k]. */
template <bool INVERSE>
__device__ __forceinline__ void rotate8(float a[8], float b[8], const float2 *__restrict__ cs) {
#pragma unroll
    for (int k = 0; k < 8; k++) rotate_pair<INVERSE>(a[k], b[k], cs[k]);
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
 * slots (R, H, D), H >= G*K: head g*K + j of row r takes Q[r, g*M + idx[s]],
 * s = (r*G + g)*K + j, rotated by position pos_offset + r % T; heads past
 * G*K (the shared query, written there unturned) are rotated in place. A
 * thread per (row, head, pair or 8 pairs). A bad expert index writes zeros
 * and sets the device flag, as the plain gather does. */
template <typename I>
__global__ void k_gather_slots_rope(fptr slots, fptr q, const int32_t *idx, const float2 *__restrict__ tab, I n,
                                    I T, I G, I M, I K, I H, I half, I pos_offset, int *flag) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I i = e % half, rh = e / half, r = rh / H, h = rh % H;
        I o1 = rh * 2 * half + i, o2 = o1 + half;
        float x1, x2;
        if (h < G * K) {
            I s = r * G * K + h;
            int32_t m = idx[s];
            if (m < 0 || m >= M) {
                if (i == 0) atomicOr(flag, GQE_FLAG_EXPERT);
                stf(slots, o1, 0.0f);
                stf(slots, o2, 0.0f);
                continue;
            }
            I src = ((s / K) * M + m) * 2 * half + i;
            x1 = ldf(q, src);
            x2 = ldf(q, src + half);
        } else {
            x1 = ldf(slots, o1);
            x2 = ldf(slots, o2);
        }
        rotate_pair<false>(x1, x2, tab[(pos_offset + r % T) * half + i]);
        stf(slots, o1, x1);
        stf(slots, o2, x2);
    }
}

template <typename I>
__global__ void k_gather_slots_rope8(uint4 *slots, const uint4 *__restrict__ q, const int32_t *idx,
                                     const float2 *__restrict__ tab, I n8, I T, I G, I M, I K, I H, I half8,
                                     I pos_offset, int *flag) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n8; e += (I)gridDim.x * blockDim.x) {
        I c = e % half8, rh = e / half8, r = rh / H, h = rh % H;
        I o1 = rh * 2 * half8 + c, o2 = o1 + half8;
        float a[8], b[8];
        if (h < G * K) {
            I s = r * G * K + h;
            int32_t m = idx[s];
            if (m < 0 || m >= M) {
                if (c == 0) atomicOr(flag, GQE_FLAG_EXPERT);
                slots[o1] = slots[o2] = make_uint4(0, 0, 0, 0);
                continue;
            }
            I src = ((s / K) * M + m) * 2 * half8 + c;
            unpack8(q[src], a);
            unpack8(q[src + half8], b);
        } else {
            unpack8(slots[o1], a);
            unpack8(slots[o2], b);
        }
        rotate8<false>(a, b, tab + ((pos_offset + r % T) * half8 + c) * 8);
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
    int64_t K = idx->shape[idx->ndim - 1], G = idx->shape[idx->ndim - 2], T = slots->shape[1], H = slots->shape[2];
    int64_t D = q->shape[q->ndim - 1], M = G ? q->shape[q->ndim - 2] / G : 0, half = D / 2;
    int64_t R = (G * K != 0) ? gqe_tensor_numel(idx) / (G * K) : 0;
    int64_t n = R * H * half;   /* every head of slots, the gathered and the ones after */
    if (n == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "%s: no device flag", op);
    const float2 *tab = NULL;
    GQE_TRY(rope_table(pos_offset + T, D, theta, &tab));
    /* slots may hold more heads than the gather writes: its size bounds the offsets */
    int64_t span = gqe_tensor_numel(q) > gqe_tensor_numel(slots) ? gqe_tensor_numel(q) : gqe_tensor_numel(slots);
    bool small = fits_i32(span > 2 * n ? span : 2 * n, pos_offset + T, half);
    if (all_bf16(slots, q) && half % 8 == 0 && vec8_ok(D, gqe_tensor_data(slots), gqe_tensor_data(q))) {
        uint4 *s8 = (uint4 *)gqe_tensor_data(slots);
        const uint4 *q8 = (const uint4 *)gqe_tensor_data(q);
        unsigned grid = gqe_grid_for(n / 8, 256);
        if (small)
            k_gather_slots_rope8<int32_t><<<grid, 256>>>(s8, q8, gqe_i32(idx), tab, (int32_t)(n / 8), (int32_t)T,
                                                         (int32_t)G, (int32_t)M, (int32_t)K, (int32_t)H,
                                                         (int32_t)(half / 8), (int32_t)pos_offset, flag);
        else
            k_gather_slots_rope8<int64_t><<<grid, 256>>>(s8, q8, gqe_i32(idx), tab, n / 8, T, G, M, K, H, half / 8,
                                                         pos_offset, flag);
    } else {
        unsigned grid = gqe_grid_for(n, 256);
        if (small)
            k_gather_slots_rope<int32_t><<<grid, 256>>>(fp(slots), fp(q), gqe_i32(idx), tab, (int32_t)n, (int32_t)T,
                                                        (int32_t)G, (int32_t)M, (int32_t)K, (int32_t)H,
                                                        (int32_t)half, (int32_t)pos_offset, flag);
        else
            k_gather_slots_rope<int64_t><<<grid, 256>>>(fp(slots), fp(q), gqe_i32(idx), tab, n, T, G, M, K, H, half,
                                                        pos_offset, flag);
    }
    LAUNCH_CHECK("gather slots rope kernel");
    return GQE_OK;
}

/* ---- the shared head's keys and values -----------------------------------
 * out (R, G+1, D) = [y | mean_g y], y = x (R, G, D) turned by RoPE at
 * positions pos_offset + r % T when ROPE. A thread owns one column pair (i,
 * i + D/2) with ROPE, one column without (D may be odd then), and walks the
 * G heads: the mean sums y as stored, in g order, in registers, then scales
 * by 1/G (the float order of the one-by-one mean over a stored y). */
template <bool ROPE, typename I>
__global__ void k_group_mean_append(fptr out, fptr x, const float2 *__restrict__ tab, I n, I T, I G, I D,
                                    I pos_offset) {
    const I half = D / 2, cols = ROPE ? half : D;
    const float inv = 1.0f / (float)G;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        const I i = e % cols, r = e / cols;
        const I xi = r * G * D + i, oi = r * (G + 1) * D + i;
        float2 cs = make_float2(1.0f, 0.0f);
        if constexpr (ROPE) cs = tab[(pos_offset + r % T) * half + i];
        float s1 = 0, s2 = 0;
        for (I g = 0; g < G; g++) {
            float a = ldf(x, xi + g * D);
            if constexpr (ROPE) {
                float b = ldf(x, xi + g * D + half);
                rotate_pair<false>(a, b, cs);
                stf(out, oi + g * D + half, b);
                s2 += stored(out, b);
            }
            stf(out, oi + g * D, a);
            s1 += stored(out, a);
        }
        stf(out, oi + G * D, s1 * inv);
        if constexpr (ROPE) stf(out, oi + G * D + half, s2 * inv);
    }
}

/* bf16, 16-byte aligned, D % 8 == 0 ((D/2) % 8 == 0 with ROPE): 8 columns
 * (8 pairs with ROPE) per thread. The stored y is read back from its packed
 * word, so the mean equals k_group_mean_append's. */
template <bool ROPE, typename I>
__global__ void k_group_mean_append8(uint4 *out, const uint4 *__restrict__ x, const float2 *__restrict__ tab, I n8,
                                     I T, I G, I D8, I pos_offset) {
    const I half8 = D8 / 2, cols = ROPE ? half8 : D8;
    const float inv = 1.0f / (float)G;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n8; e += (I)gridDim.x * blockDim.x) {
        const I c = e % cols, r = e / cols;
        const I xi = r * G * D8 + c, oi = r * (G + 1) * D8 + c;
        const float2 *cs = NULL;
        if constexpr (ROPE) cs = tab + ((pos_offset + r % T) * half8 + c) * 8;
        float s1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s2[8] = {0, 0, 0, 0, 0, 0, 0, 0}, a[8], b[8];
        for (I g = 0; g < G; g++) {
            unpack8(x[xi + g * D8], a);
            if constexpr (ROPE) {
                unpack8(x[xi + g * D8 + half8], b);
                rotate8<false>(a, b, cs);
                const uint4 yb = pack8(b);
                out[oi + g * D8 + half8] = yb;
                unpack8(yb, b);
#pragma unroll
                for (int k = 0; k < 8; k++) s2[k] += b[k];
            }
            const uint4 ya = pack8(a);
            out[oi + g * D8] = ya;
            unpack8(ya, a);
#pragma unroll
            for (int k = 0; k < 8; k++) s1[k] += a[k];
        }
#pragma unroll
        for (int k = 0; k < 8; k++) {
            s1[k] *= inv;
            s2[k] *= inv;
        }
        out[oi + G * D8] = pack8(s1);
        if constexpr (ROPE) out[oi + G * D8 + half8] = pack8(s2);
    }
}

/* dx (R, G, D) = rope_backward(stored(dout[r, g] + dout[r, G] / G)) at
 * position r % T, or without the rotation: the float operations of
 * qkv_grad_pack's dk and dv columns, so the two agree bit for bit. */
template <bool ROPE, typename I>
__global__ void k_group_mean_append_bwd(fptr dx, fptr dout, const float2 *__restrict__ tab, I n, I T, I G, I D) {
    const I half = D / 2, cols = ROPE ? half : D;
    const float inv = 1.0f / (float)G;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        const I i = e % cols, rg = e / cols, r = rg / G, g = rg % G;
        const I src = (r * (G + 1) + g) * D + i, mean = (r * (G + 1) + G) * D + i, dst = rg * D + i;
        float a = stored(dx, ldf(dout, src) + ldf(dout, mean) * inv);
        if constexpr (ROPE) {
            float b = stored(dx, ldf(dout, src + half) + ldf(dout, mean + half) * inv);
            rotate_pair<true>(a, b, tab[(r % T) * half + i]);
            stf(dx, dst + half, b);
        }
        stf(dx, dst, a);
    }
}

/* bf16 twin of k_group_mean_append_bwd: the sum is rounded by a pack and
 * unpack, which round as stored() does. */
template <bool ROPE, typename I>
__global__ void k_group_mean_append_bwd8(uint4 *dx, const uint4 *__restrict__ dout, const float2 *__restrict__ tab,
                                         I n8, I T, I G, I D8) {
    const I half8 = D8 / 2, cols = ROPE ? half8 : D8;
    const float inv = 1.0f / (float)G;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n8; e += (I)gridDim.x * blockDim.x) {
        const I c = e % cols, rg = e / cols, r = rg / G, g = rg % G;
        const I src = (r * (G + 1) + g) * D8 + c, mean = (r * (G + 1) + G) * D8 + c, dst = rg * D8 + c;
        float a[8], p[8];
        unpack8(dout[src], a);
        unpack8(dout[mean], p);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] = a[k] + p[k] * inv;
        if constexpr (ROPE) {
            float b[8], q[8];
            unpack8(dout[src + half8], b);
            unpack8(dout[mean + half8], q);
#pragma unroll
            for (int k = 0; k < 8; k++) b[k] = b[k] + q[k] * inv;
            unpack8(pack8(a), a);
            unpack8(pack8(b), b);
            rotate8<true>(a, b, tab + ((r % T) * half8 + c) * 8);
            dx[dst + half8] = pack8(b);
        }
        dx[dst] = pack8(a);
    }
}

template <typename I>
static void group_mean_append_launch(gqe_tensor *out, const gqe_tensor *x, const float2 *tab, bool vec, bool rope,
                                     int64_t n, int64_t T, int64_t G, int64_t D, int64_t pos_offset) {
    if (vec) {
        uint4 *o8 = (uint4 *)gqe_tensor_data(out);
        const uint4 *x8 = (const uint4 *)gqe_tensor_data(x);
        unsigned grid = gqe_grid_for(n / 8, 256);
        if (rope) k_group_mean_append8<true, I><<<grid, 256>>>(o8, x8, tab, (I)(n / 8), (I)T, (I)G, (I)(D / 8), (I)pos_offset);
        else k_group_mean_append8<false, I><<<grid, 256>>>(o8, x8, tab, (I)(n / 8), (I)T, (I)G, (I)(D / 8), (I)pos_offset);
    } else {
        unsigned grid = gqe_grid_for(n, 256);
        if (rope) k_group_mean_append<true, I><<<grid, 256>>>(fp(out), fp(x), tab, (I)n, (I)T, (I)G, (I)D, (I)pos_offset);
        else k_group_mean_append<false, I><<<grid, 256>>>(fp(out), fp(x), tab, (I)n, (I)T, (I)G, (I)D, (I)pos_offset);
    }
}

template <typename I>
static void group_mean_append_bwd_launch(gqe_tensor *dx, const gqe_tensor *dout, const float2 *tab, bool vec,
                                         bool rope, int64_t n, int64_t T, int64_t G, int64_t D) {
    if (vec) {
        uint4 *dx8 = (uint4 *)gqe_tensor_data(dx);
        const uint4 *g8 = (const uint4 *)gqe_tensor_data(dout);
        unsigned grid = gqe_grid_for(n / 8, 256);
        if (rope) k_group_mean_append_bwd8<true, I><<<grid, 256>>>(dx8, g8, tab, (I)(n / 8), (I)T, (I)G, (I)(D / 8));
        else k_group_mean_append_bwd8<false, I><<<grid, 256>>>(dx8, g8, tab, (I)(n / 8), (I)T, (I)G, (I)(D / 8));
    } else {
        unsigned grid = gqe_grid_for(n, 256);
        if (rope) k_group_mean_append_bwd<true, I><<<grid, 256>>>(fp(dx), fp(dout), tab, (I)n, (I)T, (I)G, (I)D);
        else k_group_mean_append_bwd<false, I><<<grid, 256>>>(fp(dx), fp(dout), tab, (I)n, (I)T, (I)G, (I)D);
    }
}

gqe_status gqe_cuda_group_mean_append(gqe_tensor *out, const gqe_tensor *x, bool rope, float theta,
                                      int64_t pos_offset) {
    const char *op = "group_mean_append";
    GQE_TRY(gqe_cuda_need_float(out, op, "out"));
    GQE_TRY(gqe_cuda_need_float(x, op, "x"));
    int64_t B = x->shape[0], T = x->shape[1], G = x->shape[2], D = x->shape[3], half = D / 2;
    int64_t n = B * T * (rope ? half : D);   /* threads: one per row and column (pair) */
    if (n == 0) return GQE_OK;
    const float2 *tab = NULL;
    if (rope) GQE_TRY(rope_table(pos_offset + T, D, theta, &tab));
    bool small = fits_i32(gqe_tensor_numel(out), rope ? pos_offset + T : 0, half);
    bool vec = all_bf16(out, x) && (!rope || half % 8 == 0) && vec8_ok(D, gqe_tensor_data(out), gqe_tensor_data(x));
    if (small) group_mean_append_launch<int32_t>(out, x, tab, vec, rope, n, T, G, D, pos_offset);
    else group_mean_append_launch<int64_t>(out, x, tab, vec, rope, n, T, G, D, pos_offset);
    LAUNCH_CHECK("group mean append kernel");
    return GQE_OK;
}

gqe_status gqe_cuda_group_mean_append_backward(gqe_tensor *dx, const gqe_tensor *dout, bool rope, float theta) {
    const char *op = "group_mean_append_backward";
    GQE_TRY(gqe_cuda_need_float(dx, op, "dx"));
    GQE_TRY(gqe_cuda_need_float(dout, op, "dout"));
    int64_t B = dx->shape[0], T = dx->shape[1], G = dx->shape[2], D = dx->shape[3], half = D / 2;
    int64_t n = B * T * G * (rope ? half : D);   /* threads: one per (row, head) and column (pair) */
    if (n == 0) return GQE_OK;
    const float2 *tab = NULL;
    if (rope) GQE_TRY(rope_table(T, D, theta, &tab));
    bool small = fits_i32(gqe_tensor_numel(dout), rope ? T : 0, half);
    bool vec = all_bf16(dx, dout) && (!rope || half % 8 == 0) && vec8_ok(D, gqe_tensor_data(dx), gqe_tensor_data(dout));
    if (small) group_mean_append_bwd_launch<int32_t>(dx, dout, tab, vec, rope, n, T, G, D);
    else group_mean_append_bwd_launch<int64_t>(dx, dout, tab, vec, rope, n, T, G, D);
    LAUNCH_CHECK("group mean append backward kernel");
    return GQE_OK;
}

/* ---- qkv_grad_pack -------------------------------------------------------
 * A thread writes W pairs of one head of a dy row (W = 8 when every tensor
 * is bf16 and 16-byte aligned, else 1), or W of its router logits. Values
 * pass through stored() wherever the op chain this stands for stores them
 * (group_mean_append_backward and rope_backward), so the results equal that
 * chain's. With the shared head, dslots rows hold HS > G*K heads (head G*K
 * the shared query's; any after it are ignored) and dk, dv rows G + 1 (the
 * group means' last). */
template <int W>
__device__ __forceinline__ void ldw(fptr p, int64_t i, float v[W]) {
    if constexpr (W == 8) unpack8(((const uint4 *)p.p)[i / 8], v);
    else v[0] = ldf(p, i);
}
template <int W>
__device__ __forceinline__ void stw(fptr p, int64_t i, const float v[W]) {
    if constexpr (W == 8) ((uint4 *)p.p)[i / 8] = pack8(v);
    else stf(p, i, v[0]);
}

/* Threads per dy row: N + 2G (+ 1 shared) heads of D/2/W pairs each, and
 * G*M/W logits when the router learns. */
__host__ __device__ inline int64_t pack_units(int64_t G, int64_t M, int64_t D, bool logits, bool shared, int W) {
    return (G * M + 2 * G + (shared ? 1 : 0)) * (D / 2 / W) + (logits ? G * M / W : 0);
}

template <int W>
__global__ void k_qkv_grad_pack(fptr dy, fptr ds, const int32_t *__restrict__ idx, fptr dk, fptr dv, fptr dl,
                                bool shared, const float2 *__restrict__ tab, int64_t R, int T, int G, int M, int K,
                                int HS, int D, int *flag) {
    /* A block per row (grid-stride over rows), its threads over the row's
     * units: 32-bit index math within a row, the divisions being most of
     * the work besides the memory traffic. */
    const int half = D / 2, hw = half / W, N = G * M;
    const int nq = N * hw, nk = G * hw, nl = dl.p ? N / W : 0;
    const int HK = G + (shared ? 1 : 0);   /* heads of a dk row; HS those of a dslots row */
    const int U = (int)pack_units(G, M, D, dl.p != NULL, shared, W);
    const int64_t width = (int64_t)(N + 2 * G + (shared ? 1 : 0)) * D + (dl.p ? N : 0);
    const float inv = 1.0f / (float)G;
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const int t = (int)(r % T);
        const float2 *tr = tab ? tab + (int64_t)t * half : NULL;
        const int64_t yrow = r * width;
        for (int u = threadIdx.x; u < U; u += blockDim.x) {
            float a[W], b[W];
            int col;
            if (u < nq) {   /* dq: the chosen slots, turned back, at their experts */
                const int h = u / hw, c = (u % hw) * W, g = h / M, m = h % M;
#pragma unroll
                for (int w = 0; w < W; w++) a[w] = b[w] = 0.0f;
                for (int j = 0; j < K; j++) {
                    const int32_t pick = idx[(r * G + g) * K + j];
                    if (pick < 0 || pick >= M) {
                        if (m == 0 && c == 0) atomicOr(flag, GQE_FLAG_EXPERT);
                        continue;
                    }
                    if (pick != m) continue;
                    const int64_t src = (r * HS + g * K + j) * D + c;
                    float x[W], y[W];
                    ldw<W>(ds, src, x);
                    ldw<W>(ds, src + half, y);
#pragma unroll
                    for (int w = 0; w < W; w++) {
                        if (tr) {
                            rotate_pair<true>(x[w], y[w], tr[c + w]);
                            x[w] = stored(ds, x[w]);
                            y[w] = stored(ds, y[w]);
                        }
                        a[w] = stored(dy, a[w] + x[w]);
                        b[w] = stored(dy, b[w] + y[w]);
                    }
                }
                col = h * D + c;
            } else if (u - nq < 2 * nk) {   /* dk, then dv: the shared head's share added */
                const bool is_k = u - nq < nk;
                const int v = is_k ? u - nq : u - nq - nk, g = v / hw, c = (v % hw) * W;
                const int64_t src = (r * HK + g) * D + c, mean = (r * HK + G) * D + c;
                const fptr x = is_k ? dk : dv;
                ldw<W>(x, src, a);
                ldw<W>(x, src + half, b);
                if (shared) {
                    float p[W], q[W];
                    ldw<W>(x, mean, p);
                    ldw<W>(x, mean + half, q);
#pragma unroll
                    for (int w = 0; w < W; w++) {
                        a[w] = stored(x, a[w] + p[w] * inv);
                        b[w] = stored(x, b[w] + q[w] * inv);
                    }
                }
                if (is_k && tr) {
#pragma unroll
                    for (int w = 0; w < W; w++) {
                        rotate_pair<true>(a[w], b[w], tr[c + w]);
                        a[w] = stored(x, a[w]);
                        b[w] = stored(x, b[w]);
                    }
                }
                col = (N + (is_k ? 0 : G) + g) * D + c;
            } else if (u - nq - 2 * nk < nl) {   /* router logits: a copy */
                const int c = (u - nq - 2 * nk) * W;
                ldw<W>(dl, r * N + c, a);
                stw<W>(dy, yrow + (int64_t)(N + 2 * G) * D + c, a);
                continue;
            } else {   /* the shared query: dslots' head G*K */
                const int c = (u - nq - 2 * nk - nl) * W;
                const int64_t src = (r * HS + G * K) * D + c;
                ldw<W>(ds, src, a);
                ldw<W>(ds, src + half, b);
                if (tr) {
#pragma unroll
                    for (int w = 0; w < W; w++) {
                        rotate_pair<true>(a[w], b[w], tr[c + w]);
                        a[w] = stored(ds, a[w]);
                        b[w] = stored(ds, b[w]);
                    }
                }
                col = (N + 2 * G) * D + (dl.p ? N : 0) + c;
            }
            stw<W>(dy, yrow + col, a);
            stw<W>(dy, yrow + col + half, b);
        }
    }
}

static fptr fp_opt(const gqe_tensor *t) { return t ? fp(t) : fp_null(); }

gqe_status gqe_cuda_qkv_grad_pack(gqe_tensor *dy, const gqe_tensor *dslots, const gqe_tensor *idx,
                                  const gqe_tensor *dk, const gqe_tensor *dv, const gqe_tensor *dlogits, bool shared,
                                  int64_t M, bool rope, float theta) {
    const char *op = "qkv_grad_pack";
    const gqe_tensor *all[5] = {dy, dslots, dk, dv, dlogits};
    static const char *const names[5] = {"dy", "dslots", "dk", "dv", "dlogits"};
    for (int i = 0; i < 5; i++)
        if (all[i]) GQE_TRY(gqe_cuda_need_float(all[i], op, names[i]));
    GQE_TRY(gqe_cuda_need_i32(idx, op, "idx"));
    int64_t R = idx->shape[0], G = idx->shape[1], K = idx->shape[2], T = dk->shape[1], D = dk->shape[3];
    if (R == 0 || D == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "%s: no device flag", op);
    const float2 *tab = NULL;
    if (rope) GQE_TRY(rope_table(T, D, theta, &tab));
    bool vec = (D / 2) % 8 == 0 && (G * M) % 8 == 0;
    for (int i = 0; i < 5; i++)
        if (all[i]) vec = vec && all[i]->dtype == GQE_BF16 && aligned16(gqe_tensor_data(all[i]));
    /* 32-bit math within a row: a row's width and units stay far below 2^31 */
    if ((G * M + 2 * G + 1) * D + G * M > INT32_MAX / 4)
        return gqe_fail(GQE_ERR_SHAPE, "%s: rows of %lld x %lld heads are too wide", op, (long long)(G * M), (long long)D);
    const int W = vec ? 8 : 1;
    const int U = (int)pack_units(G, M, D, dlogits != NULL, shared, W);
    const int threads = U < 256 ? (U + 31) / 32 * 32 : 256;
    const unsigned grid = (unsigned)(R < 65536 * 8 ? R : 65536 * 8);
    if (vec)
        k_qkv_grad_pack<8><<<grid, threads>>>(fp(dy), fp(dslots), gqe_i32(idx), fp(dk), fp(dv), fp_opt(dlogits),
                                              shared, tab, R, (int)T, (int)G, (int)M, (int)K, (int)dslots->shape[2],
                                              (int)D, flag);
    else
        k_qkv_grad_pack<1><<<grid, threads>>>(fp(dy), fp(dslots), gqe_i32(idx), fp(dk), fp(dv), fp_opt(dlogits),
                                              shared, tab, R, (int)T, (int)G, (int)M, (int)K, (int)dslots->shape[2],
                                              (int)D, flag);
    LAUNCH_CHECK("qkv grad pack kernel");
    return GQE_OK;
}
