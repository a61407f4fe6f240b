/* Matmul through OpenBLAS: row-major, transposes expressed through the
 * stored leading dimensions, so nothing is ever copied.
 *
 * Large products are cut into independent tiles of C, each one
 * single-threaded sgemm over the full K (the OpenMP OpenBLAS runs
 * single-threaded inside our parallel regions), handed out dynamically.
 * OpenBLAS's own threading makes its threads wait on each other's packed
 * panels many times per call, so one thread descheduled by a busy machine
 * stalls the other; independent tiles only meet at the end, and a thread
 * that runs keeps taking tiles. The tiling depends on the shapes only and
 * every element keeps its K order, so results do not depend on the thread
 * count. */
#include "cpu.h"
#include <cblas.h>
#include <omp.h>

#define TILE_WORK (4.0 * 1024 * 1024)   /* multiply-adds below which a tile is not worth a hand-off */
#define MAX_TILES 16
#define TILE_ALIGN 32                   /* tile edges on whole micro-kernel panels */

typedef struct {
    bool ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_args;

/* Rows [i0, i1) and columns [j0, j1) of C. */
static void gemm_tile(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const float *a = g->ta ? g->a + i0 : g->a + i0 * g->lda;
    const float *b = g->tb ? g->b + j0 * g->ldb : g->b + j0;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                (blasint)(i1 - i0), (blasint)(j1 - j0), (blasint)g->K, g->alpha, a, (blasint)g->lda,
                b, (blasint)g->ldb, g->beta, g->c + i0 * g->ldc + j0, (blasint)g->ldc);
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

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
    cpu_threads_adapt();
    gemm_args g = {trans_a, trans_b, M, N, K, cpu_last(a), cpu_last(b), N, alpha, beta,
                   gqe_f32(a), gqe_f32(b), gqe_f32(c)};
    double work = (double)M * (double)N * (double)K;
    int64_t want = (int64_t)(work / TILE_WORK);
    want = want < MAX_TILES ? want : MAX_TILES;
    /* Split the longer side of C; a side too short for `want` tiles gets fewer. */
    bool by_rows = M >= N;
    int64_t side = by_rows ? M : N;
    int64_t step = want > 1 ? round_up((side + want - 1) / want, TILE_ALIGN) : side;
    int64_t tiles = (side + step - 1) / step;
    /* The tiles depend on the shape alone, never on the thread count, and
     * each is one single-threaded sgemm (OpenBLAS runs single-threaded inside
     * a parallel region): OpenBLAS picks other kernels, and so other summation
     * orders, for other thread counts, and results must not change with
     * OMP_NUM_THREADS. Even a single tile goes through the region. */
    if (omp_in_parallel()) {
        gemm_tile(&g, 0, M, 0, N);
        return GQE_OK;
    }
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tiles; t++) {
        int64_t lo = t * step, hi = lo + step < side ? lo + step : side;
        if (by_rows) gemm_tile(&g, lo, hi, 0, N);
        else gemm_tile(&g, 0, M, lo, hi);
    }
    return GQE_OK;
}
