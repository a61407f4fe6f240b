/* Between cuda_matmul.cu and cuda_matmul_tune.cu: the column-major GEMM
 * that gqe_cuda_matmul would hand cublasGemmEx (operands already swapped),
 * and the call that runs it through the fastest algorithm for its shape. */
#ifndef GQE_KERNELS_CUDA_MATMUL_TUNE_CUH
#define GQE_KERNELS_CUDA_MATMUL_TUNE_CUH

#include "common.cuh"

/* cuBLAS's column-major problem C(m,n) = alpha op(A)(m,k) op(B)(k,n) + beta C:
 * A is the row-major B, B the row-major A, m = N and n = M. */
struct gqe_gemm_call {
    cublasHandle_t h;
    cublasOperation_t opa, opb;
    int m, n, k;
    const void *a, *b;
    int lda, ldb;
    void *c;
    int ldc;
    cudaDataType_t tab, tc;   /* A and B share a type */
    cublasComputeType_t ct;
    float alpha, beta;
};

/* Runs the GEMM. bf16 A and B go through the algorithm timed fastest at the
 * first call of their key (GQE_CUDA_GEMM_TUNE=0 turns that off); f32 ones,
 * and keys that could not be tuned, through cublasGemmEx(DEFAULT). Fails only
 * where cublasGemmEx fails (or C could not be restored after timing). */
gqe_status gqe_cuda_gemm(const gqe_gemm_call *g);

#endif
