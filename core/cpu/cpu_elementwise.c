/* Elementwise ops, reductions and column copies on the host. */
#include "cpu.h"

#define PAR_N 32768   /* below this a parallel region costs more than it saves */

gqe_status cpu_fill(gqe_tensor *t, float value) {
    int64_t n = gqe_tensor_numel(t);
    if (t->dtype == GQE_F32) {
        float *p = gqe_f32(t);
        if (value == 0.0f && !signbit(value)) {   /* +0.0f is all zero bytes */
            memset(p, 0, (size_t)n * sizeof(float));
            return GQE_OK;
        }
        #pragma omp parallel for simd if (n > PAR_N)
        for (int64_t i = 0; i < n; i++) p[i] = value;
    } else if (t->dtype == GQE_I32) {
        int32_t *p = gqe_i32(t), v = (int32_t)value;
        for (int64_t i = 0; i < n; i++) p[i] = v;
    } else {
        uint16_t *p = gqe_tensor_data(t), v = gqe_f32_to_bf16(value);
        for (int64_t i = 0; i < n; i++) p[i] = v;
    }
    return GQE_OK;
}

gqe_status cpu_scale(gqe_tensor *t, float alpha) {
    CPU_NEED_F32("scale", t);
    int64_t n = gqe_tensor_numel(t);
    float *p = gqe_f32(t);
    #pragma omp parallel for simd if (n > PAR_N)
    for (int64_t i = 0; i < n; i++) p[i] *= alpha;
    return GQE_OK;
}

gqe_status cpu_axpy(gqe_tensor *y, float alpha, const gqe_tensor *x) {
    CPU_NEED_F32("axpy", y); CPU_NEED_F32("axpy", x);
    int64_t n = gqe_tensor_numel(y);
    float *py = gqe_f32(y);
    const float *px = gqe_f32(x);
    #pragma omp parallel for simd if (n > PAR_N)
    for (int64_t i = 0; i < n; i++) py[i] += alpha * px[i];
    return GQE_OK;
}

gqe_status cpu_add(gqe_tensor *out, const gqe_tensor *a, const gqe_tensor *b) {
    CPU_NEED_F32("add", out); CPU_NEED_F32("add", a); CPU_NEED_F32("add", b);
    int64_t n = gqe_tensor_numel(out);
    float *po = gqe_f32(out);
    const float *pa = gqe_f32(a), *pb = gqe_f32(b);
    #pragma omp parallel for simd if (n > PAR_N)
    for (int64_t i = 0; i < n; i++) po[i] = pa[i] + pb[i];
    return GQE_OK;
}

/* Double accumulation: these feed gradient norms and checksums. Partial
 * sums over fixed chunks, added in chunk order, so the result does not
 * depend on the number of threads. */
#define SUM_CHUNK 16384
#define SUM_MAX_CHUNKS 64

static double sum_span(const float *p, int64_t n, bool squares) {
    double s = 0;
    if (squares) for (int64_t i = 0; i < n; i++) s += (double)p[i] * p[i];
    else for (int64_t i = 0; i < n; i++) s += p[i];
    return s;
}

static double chunked_sum(const float *p, int64_t n, bool squares) {
    int64_t chunk = SUM_CHUNK, chunks = (n + chunk - 1) / chunk;
    if (chunks > SUM_MAX_CHUNKS) {
        chunk = (n + SUM_MAX_CHUNKS - 1) / SUM_MAX_CHUNKS;
        chunks = (n + chunk - 1) / chunk;
    }
    double part[SUM_MAX_CHUNKS];
    #pragma omp parallel for if (n > PAR_N)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * chunk, len = n - lo < chunk ? n - lo : chunk;
        part[c] = sum_span(p + lo, len, squares);
    }
    double s = 0;
    for (int64_t c = 0; c < chunks; c++) s += part[c];
    return s;
}

gqe_status cpu_sumsq(const gqe_tensor *t, double *out) {
    CPU_NEED_F32("sumsq", t);
    *out = chunked_sum(gqe_f32(t), gqe_tensor_numel(t), true);
    return GQE_OK;
}

gqe_status cpu_sum(const gqe_tensor *t, double *out) {
    CPU_NEED_F32("sum", t);
    *out = chunked_sum(gqe_f32(t), gqe_tensor_numel(t), false);
    return GQE_OK;
}

gqe_status cpu_copy_cols(gqe_tensor *dst, int64_t dst_col, const gqe_tensor *src,
                         int64_t src_col, int64_t cols, bool accumulate) {
    CPU_NEED_F32("copy_cols", dst); CPU_NEED_F32("copy_cols", src);
    int64_t R = cpu_rows(dst), cd = cpu_last(dst), cs = cpu_last(src);
    float *d = gqe_f32(dst) + dst_col;
    const float *s = gqe_f32(src) + src_col;
    #pragma omp parallel for if (R * cols > PAR_N)
    for (int64_t r = 0; r < R; r++) {
        float *dr = d + r * cd;
        const float *sr = s + r * cs;
        if (accumulate) for (int64_t c = 0; c < cols; c++) dr[c] += sr[c];
        else memmove(dr, sr, (size_t)cols * sizeof(float));
    }
    return GQE_OK;
}
