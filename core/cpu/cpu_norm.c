/* RMSNorm and embedding lookup on the host. */
#include "cpu.h"
#include <string.h>

gqe_status cpu_embedding_forward(gqe_tensor *out, const gqe_tensor *table, const gqe_tensor *ids) {
    CPU_NEED_F32("embedding_forward", out); CPU_NEED_F32("embedding_forward", table);
    int64_t R = gqe_tensor_numel(ids), V = cpu_rows(table), D = cpu_last(table);
    const int32_t *id = gqe_i32(ids);
    int64_t bad = cpu_find_bad_index(id, R, V);
    if (bad >= 0) return gqe_fail(GQE_ERR_ARG, "embedding_forward: ids[%lld] = %d is outside the table's %lld rows",
                                  (long long)bad, id[bad], (long long)V);
    float *o = gqe_f32(out);
    const float *tb = gqe_f32(table);
    #pragma omp parallel for if (R * D > 32768)
    for (int64_t r = 0; r < R; r++) memcpy(o + r * D, tb + (int64_t)id[r] * D, (size_t)D * sizeof(float));
    return GQE_OK;
}

/* Serial over rows: two rows may name the same id, and the row update is
 * a short vector loop anyway. */
gqe_status cpu_embedding_backward(gqe_tensor *dtable, const gqe_tensor *dout, const gqe_tensor *ids) {
    CPU_NEED_F32("embedding_backward", dtable); CPU_NEED_F32("embedding_backward", dout);
    int64_t R = gqe_tensor_numel(ids), V = cpu_rows(dtable), D = cpu_last(dtable);
    const int32_t *id = gqe_i32(ids);
    int64_t bad = cpu_find_bad_index(id, R, V);
    if (bad >= 0) return gqe_fail(GQE_ERR_ARG, "embedding_backward: ids[%lld] = %d is outside the table's %lld rows",
                                  (long long)bad, id[bad], (long long)V);
    float *dt = gqe_f32(dtable);
    const float *g = gqe_f32(dout);
    for (int64_t r = 0; r < R; r++) {
        float *row = dt + (int64_t)id[r] * D;
        const float *gr = g + r * D;
        for (int64_t c = 0; c < D; c++) row[c] += gr[c];
    }
    return GQE_OK;
}

/* out row = x row * rstd * w; the one place the CPU normalises a row. */
static void norm_row(float *o, float *rs, const float *xr, const float *pw, int64_t D, float eps) {
    float ss = 0;
    for (int64_t c = 0; c < D; c++) ss += xr[c] * xr[c];
    float inv = 1.0f / sqrtf(ss / (float)D + eps);
    *rs = inv;
    for (int64_t c = 0; c < D; c++) o[c] = xr[c] * inv * pw[c];
}

gqe_status cpu_rmsnorm_forward(gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *x,
                               const gqe_tensor *w, float eps) {
    CPU_NEED_F32("rmsnorm_forward", out); CPU_NEED_F32("rmsnorm_forward", rstd);
    CPU_NEED_F32("rmsnorm_forward", x); CPU_NEED_F32("rmsnorm_forward", w);
    int64_t R = cpu_rows(x), D = cpu_last(x);
    float *o = gqe_f32(out), *rs = gqe_f32(rstd);
    const float *px = gqe_f32(x), *pw = gqe_f32(w);
    #pragma omp parallel for if (R * D > 32768)
    for (int64_t r = 0; r < R; r++) norm_row(o + r * D, rs + r, px + r * D, pw, D, eps);
    return GQE_OK;
}

gqe_status cpu_add_rmsnorm_forward(gqe_tensor *sum, gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *a,
                                   const gqe_tensor *b, const gqe_tensor *w, float eps) {
    CPU_NEED_F32("add_rmsnorm_forward", sum); CPU_NEED_F32("add_rmsnorm_forward", out);
    CPU_NEED_F32("add_rmsnorm_forward", rstd); CPU_NEED_F32("add_rmsnorm_forward", a);
    CPU_NEED_F32("add_rmsnorm_forward", b); CPU_NEED_F32("add_rmsnorm_forward", w);
    int64_t R = cpu_rows(a), D = cpu_last(a);
    float *s = gqe_f32(sum), *o = gqe_f32(out), *rs = gqe_f32(rstd);
    const float *pa = gqe_f32(a), *pb = gqe_f32(b), *pw = gqe_f32(w);
    #pragma omp parallel for if (R * D > 32768)
    for (int64_t r = 0; r < R; r++) {
        float *sr = s + r * D;
        for (int64_t c = 0; c < D; c++) sr[c] = pa[r * D + c] + pb[r * D + c];
        norm_row(o + r * D, rs + r, sr, pw, D, eps);
    }
    return GQE_OK;
}

/* y = x r w with r = (mean x^2 + eps)^-1/2:
 * dx = r (w dy) - x r^3 / D * sum(w dy x);  dw = sum_r dy x r. */
gqe_status cpu_rmsnorm_backward(gqe_tensor *dx, gqe_tensor *dw, const gqe_tensor *dout,
                                const gqe_tensor *x, const gqe_tensor *w, const gqe_tensor *rstd,
                                gqe_tensor *dx_copy) {
    CPU_NEED_F32("rmsnorm_backward", dx); CPU_NEED_F32("rmsnorm_backward", dw);
    CPU_NEED_F32("rmsnorm_backward", dout); CPU_NEED_F32("rmsnorm_backward", x);
    CPU_NEED_F32("rmsnorm_backward", w); CPU_NEED_F32("rmsnorm_backward", rstd);
    int64_t R = cpu_rows(x), D = cpu_last(x);
    float *pdx = gqe_f32(dx), *pdw = gqe_f32(dw);
    const float *g = gqe_f32(dout), *px = gqe_f32(x), *pw = gqe_f32(w), *rs = gqe_f32(rstd);
    #pragma omp parallel for if (R * D > 32768)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = px + r * D, *gr = g + r * D;
        float inv = rs[r], dot = 0;
        for (int64_t c = 0; c < D; c++) dot += gr[c] * pw[c] * xr[c];
        float k = dot * inv * inv * inv / (float)D;
        for (int64_t c = 0; c < D; c++) pdx[r * D + c] += inv * pw[c] * gr[c] - xr[c] * k;
    }
    /* dw sums over rows: keep it serial over rows so no two threads meet. */
    for (int64_t r = 0; r < R; r++) {
        const float *xr = px + r * D, *gr = g + r * D;
        float inv = rs[r];
        for (int64_t c = 0; c < D; c++) pdw[c] += gr[c] * xr[c] * inv;
    }
    if (dx_copy) {
        CPU_NEED_F32("rmsnorm_backward", dx_copy);
        if (gqe_f32(dx_copy) != pdx) memcpy(gqe_f32(dx_copy), pdx, (size_t)(R * D) * sizeof(float));
    }
    return GQE_OK;
}
