/* RoPE, rotate-half convention, in place on x (B, T, H, D), fused into
 * the slot gather, and in the GQE input-gradient pack (qkv_grad_pack), whose
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
        float x1 = ldf(q, src), x2 = ldf(q, src + half);
        rotate_pair<false>(x1, x2, tab[(pos_offset + (rg / G) % T) * half + i]);
        stf(slots, o1, x1);
        stf(slots, o2, x2);
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

/* ---- qkv_grad_pack -------------------------------------------------------
 * A thread writes W pairs of one head of a dy row (W = 8 when every tensor
 * is bf16 and 16-byte aligned, else 1), or W of its router logits. Values
 * pass through stored() wherever the op chain this stands for stores them
 * (rope_backward and group_mean_backward work in place), so the results
 * equal that chain's. */
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
__global__ void k_qkv_grad_pack(fptr dy, fptr ds, const int32_t *__restrict__ idx, fptr dk, fptr dv, fptr dkb,
                                fptr dvb, fptr dl, fptr dqs, const float2 *__restrict__ tab, int64_t R, int T,
                                int G, int M, int K, int D, int *flag) {
    /* A block per row (grid-stride over rows), its threads over the row's
     * units: 32-bit index math within a row, the divisions being most of
     * the work besides the memory traffic. */
    const int half = D / 2, hw = half / W, N = G * M;
    const int nq = N * hw, nk = G * hw, nl = dl.p ? N / W : 0;
    const int U = (int)pack_units(G, M, D, dl.p != NULL, dqs.p != NULL, W);
    const int64_t width = (int64_t)(N + 2 * G + (dqs.p ? 1 : 0)) * D + (dl.p ? N : 0);
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
                    const int64_t src = ((r * G + g) * K + j) * D + c;
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
                const int64_t src = (r * G + g) * D + c;
                const fptr x = is_k ? dk : dv, xb = is_k ? dkb : dvb;
                ldw<W>(x, src, a);
                ldw<W>(x, src + half, b);
                if (xb.p) {
                    float p[W], q[W];
                    ldw<W>(xb, r * D + c, p);
                    ldw<W>(xb, r * D + c + half, q);
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
            } else {   /* the shared query */
                const int c = (u - nq - 2 * nk - nl) * W;
                ldw<W>(dqs, r * D + c, a);
                ldw<W>(dqs, r * D + c + half, b);
                if (tr) {
#pragma unroll
                    for (int w = 0; w < W; w++) {
                        rotate_pair<true>(a[w], b[w], tr[c + w]);
                        a[w] = stored(dqs, a[w]);
                        b[w] = stored(dqs, b[w]);
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
                                  const gqe_tensor *dk, const gqe_tensor *dv, const gqe_tensor *dkbar,
                                  const gqe_tensor *dvbar, const gqe_tensor *dlogits, const gqe_tensor *dqs,
                                  int64_t M, bool rope, float theta) {
    const char *op = "qkv_grad_pack";
    const gqe_tensor *all[8] = {dy, dslots, dk, dv, dkbar, dvbar, dlogits, dqs};
    static const char *const names[8] = {"dy", "dslots", "dk", "dv", "dkbar", "dvbar", "dlogits", "dqs"};
    for (int i = 0; i < 8; i++)
        if (all[i]) GQE_TRY(gqe_cuda_need_float(all[i], op, names[i]));
    GQE_TRY(gqe_cuda_need_i32(idx, op, "idx"));
    int64_t R = idx->shape[0], G = idx->shape[1], K = idx->shape[2], T = dk->shape[1], D = dk->shape[3];
    if (R == 0 || D == 0) return GQE_OK;
    int *flag = gqe_cuda_flag_ptr();
    if (!flag) return gqe_fail(GQE_ERR_DEVICE, "%s: no device flag", op);
    const float2 *tab = NULL;
    if (rope) GQE_TRY(rope_table(T, D, theta, &tab));
    bool vec = (D / 2) % 8 == 0 && (G * M) % 8 == 0;
    for (int i = 0; i < 8; i++)
        if (all[i]) vec = vec && all[i]->dtype == GQE_BF16 && aligned16(gqe_tensor_data(all[i]));
    /* 32-bit math within a row: a row's width and units stay far below 2^31 */
    if ((G * M + 2 * G + 1) * D + G * M > INT32_MAX / 4)
        return gqe_fail(GQE_ERR_SHAPE, "%s: rows of %lld x %lld heads are too wide", op, (long long)(G * M), (long long)D);
    const int W = vec ? 8 : 1;
    const int U = (int)pack_units(G, M, D, dlogits != NULL, dqs != NULL, W);
    const int threads = U < 256 ? (U + 31) / 32 * 32 : 256;
    const unsigned grid = (unsigned)(R < 65536 * 8 ? R : 65536 * 8);
    if (vec)
        k_qkv_grad_pack<8><<<grid, threads>>>(fp(dy), fp(dslots), gqe_i32(idx), fp(dk), fp(dv), fp_opt(dkbar),
                                              fp_opt(dvbar), fp_opt(dlogits), fp_opt(dqs), tab, R, (int)T, (int)G,
                                              (int)M, (int)K, (int)D, flag);
    else
        k_qkv_grad_pack<1><<<grid, threads>>>(fp(dy), fp(dslots), gqe_i32(idx), fp(dk), fp(dv), fp_opt(dkbar),
                                              fp_opt(dvbar), fp_opt(dlogits), fp_opt(dqs), tab, R, (int)T, (int)G,
                                              (int)M, (int)K, (int)D, flag);
    LAUNCH_CHECK("qkv grad pack kernel");
    return GQE_OK;
}
