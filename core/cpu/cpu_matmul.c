/* Matmul through OpenBLAS: row-major, transposes expressed through the
 * stored leading dimensions, so nothing is ever copied. */
#include "cpu.h"
#include <cblas.h>

gqe_status cpu_matmul(gqe_tensor *c, const gqe_tensor *a, const gqe_tensor *b,
                      bool trans_a, bool trans_b, float alpha, float beta) {
    CPU_NEED_F32("matmul", c); CPU_NEED_F32("matmul", a); CPU_NEED_F32("matmul", b);
    int64_t M = cpu_rows(c), N = cpu_last(c);
    int64_t K = trans_a ? cpu_rows(a) : cpu_last(a);
    if (M == 0 || N == 0) return GQE_OK;
    if (K == 0) {   /* C = beta C; BLAS implementations disagree on K = 0 */
        float *pc = gqe_f32(c);
        for (int64_t i = 0; i < M * N; i++) pc[i] = beta == 0.0f ? 0.0f : beta * pc[i];
        return GQE_OK;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, gqe_f32(a), (blasint)cpu_last(a),
                gqe_f32(b), (blasint)cpu_last(b), beta, gqe_f32(c), (blasint)N);
    return GQE_OK;
}
