/* RoPE, rotate-half convention, in place on x (B, T, H, D).
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

static gqe_status rope(gqe_tensor *x, float theta, int64_t pos_offset, bool inverse, const char *op) {
    GQE_TRY(gqe_cuda_need_float(x, op, "x"));
    if (x->ndim != 4) return gqe_fail(GQE_ERR_SHAPE, "%s: x must be (B, T, H, D), got %d dims", op, x->ndim);
    int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3];
    if (D % 2) return gqe_fail(GQE_ERR_SHAPE, "%s: head width D must be even, got %lld", op, (long long)D);
    int64_t n = B * T * H * (D / 2);
    if (n == 0) return GQE_OK;
    const float2 *tab = NULL;
    GQE_TRY(rope_table(pos_offset + T, D, theta, &tab));
    unsigned grid = gqe_grid_for(n, 256);
    /* 32-bit index math when every index fits: the divisions dominate otherwise */
    if (2 * n < INT32_MAX && (pos_offset + T) * (D / 2) < INT32_MAX) {
        if (inverse) k_rope<true, int32_t><<<grid, 256>>>(fp(x), tab, (int32_t)n, (int32_t)T, (int32_t)H, (int32_t)(D / 2), (int32_t)pos_offset);
        else k_rope<false, int32_t><<<grid, 256>>>(fp(x), tab, (int32_t)n, (int32_t)T, (int32_t)H, (int32_t)(D / 2), (int32_t)pos_offset);
    } else {
        if (inverse) k_rope<true, int64_t><<<grid, 256>>>(fp(x), tab, n, T, H, D / 2, pos_offset);
        else k_rope<false, int64_t><<<grid, 256>>>(fp(x), tab, n, T, H, D / 2, pos_offset);
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
