/* Cross-entropy and top-1 accuracy over rows of logits on the host. */
#include "cpu.h"

/* Targets must be in [-inf, V): negatives mean "ignore". Checked up front so
 * the error is raised in the calling thread. */
static gqe_status check_targets(const char *op, const int32_t *t, int64_t R, int64_t V) {
    for (int64_t r = 0; r < R; r++)
        if (t[r] >= V) return gqe_fail(GQE_ERR_ARG, "%s: targets[%lld] = %d is not below the vocabulary size %lld",
                                       op, (long long)r, t[r], (long long)V);
    return GQE_OK;
}

static float row_logsumexp(const float *x, int64_t V) {
    float m = -INFINITY;
    for (int64_t j = 0; j < V; j++) m = x[j] > m ? x[j] : m;
    double s = 0;
    for (int64_t j = 0; j < V; j++) s += expf(x[j] - m);
    return m + (float)log(s);
}

gqe_status cpu_cross_entropy_forward(gqe_tensor *losses, const gqe_tensor *logits, const gqe_tensor *targets) {
    CPU_NEED_F32("cross_entropy_forward", losses); CPU_NEED_F32("cross_entropy_forward", logits);
    int64_t R = cpu_rows(logits), V = cpu_last(logits);
    const int32_t *tg = gqe_i32(targets);
    GQE_TRY(check_targets("cross_entropy_forward", tg, R, V));
    float *l = gqe_f32(losses);
    const float *x = gqe_f32(logits);
    #pragma omp parallel for if (R * V > 32768)
    for (int64_t r = 0; r < R; r++)
        l[r] = tg[r] < 0 ? 0.0f : row_logsumexp(x + r * V, V) - x[r * V + tg[r]];
    return GQE_OK;
}

/* dr = scale * (softmax - onehot(t)) from the row's lse, zeros where t < 0;
 * dr may be xr: element j is read just before it is overwritten. */
static void row_gradient(float *dr, const float *xr, int64_t V, int32_t t, float scale, float lse) {
    if (t < 0) { for (int64_t j = 0; j < V; j++) dr[j] = 0.0f; return; }
    for (int64_t j = 0; j < V; j++) dr[j] = scale * expf(xr[j] - lse);
    dr[t] -= scale;
}

/* dlogits may be logits itself: each row reads all its logits (for lse)
 * before row_gradient writes it. */
gqe_status cpu_cross_entropy_backward(gqe_tensor *dlogits, const gqe_tensor *logits,
                                      const gqe_tensor *targets, float scale) {
    CPU_NEED_F32("cross_entropy_backward", dlogits); CPU_NEED_F32("cross_entropy_backward", logits);
    int64_t R = cpu_rows(logits), V = cpu_last(logits);
    const int32_t *tg = gqe_i32(targets);
    GQE_TRY(check_targets("cross_entropy_backward", tg, R, V));
    float *d = gqe_f32(dlogits);
    const float *x = gqe_f32(logits);
    #pragma omp parallel for if (R * V > 32768)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * V;
        row_gradient(d + r * V, xr, V, tg[r], scale, tg[r] < 0 ? 0.0f : row_logsumexp(xr, V));
    }
    return GQE_OK;
}

/* The first index of the row's maximum; NaNs are skipped (x > m and x == m
 * are both false for them), -1 when every value is NaN. */
static int64_t row_argmax(const float *x, int64_t V) {
    float m = -INFINITY;
    int64_t best = -1;
    for (int64_t j = 0; j < V; j++)
        if (x[j] > m || (best < 0 && x[j] == m)) { m = x[j]; best = j; }
    return best;
}

gqe_status cpu_argmax_correct(gqe_tensor *correct, const gqe_tensor *logits, const gqe_tensor *targets) {
    CPU_NEED_F32("argmax_correct", correct); CPU_NEED_F32("argmax_correct", logits);
    int64_t R = cpu_rows(logits), V = cpu_last(logits);
    const int32_t *tg = gqe_i32(targets);
    GQE_TRY(check_targets("argmax_correct", tg, R, V));
    float *c = gqe_f32(correct);
    const float *x = gqe_f32(logits);
    #pragma omp parallel for if (R * V > 32768)
    for (int64_t r = 0; r < R; r++) c[r] = tg[r] >= 0 && row_argmax(x + r * V, V) == tg[r] ? 1.0f : 0.0f;
    return GQE_OK;
}

/* In place is safe: each row's lse, loss and argmax are taken before the
 * row is overwritten, and rows are independent. */
gqe_status cpu_cross_entropy_fused(gqe_tensor *dlogits, gqe_tensor *losses, gqe_tensor *correct,
                                   const gqe_tensor *logits, const gqe_tensor *targets, float scale) {
    const char *op = "cross_entropy_fused";
    CPU_NEED_F32(op, dlogits); CPU_NEED_F32(op, losses); CPU_NEED_F32(op, correct); CPU_NEED_F32(op, logits);
    int64_t R = cpu_rows(logits), V = cpu_last(logits);
    const int32_t *tg = gqe_i32(targets);
    GQE_TRY(check_targets(op, tg, R, V));
    float *d = gqe_f32(dlogits), *l = gqe_f32(losses), *c = gqe_f32(correct);
    const float *x = gqe_f32(logits);
    #pragma omp parallel for if (R * V > 32768)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * V;
        float lse = tg[r] < 0 ? 0.0f : row_logsumexp(xr, V);
        l[r] = tg[r] < 0 ? 0.0f : lse - xr[tg[r]];
        c[r] = tg[r] >= 0 && row_argmax(xr, V) == tg[r] ? 1.0f : 0.0f;
        row_gradient(d + r * V, xr, V, tg[r], scale, lse);
    }
    return GQE_OK;
}
