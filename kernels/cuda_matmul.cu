/* C = alpha op(A) op(B) + beta C through cublasGemmEx, fp32 accumulation.
 * Row-major C (M,N) is column-major C^T (N,M), so we ask cuBLAS for
 * C^T = op(B)^T op(A)^T and swap the operands instead of copying.
 * f32 inputs run in true fp32 unless GQE_CUDA_TF32=1 is set in the
 * environment (parity tests need plain fp32); bf16 inputs use bf16 tensor
 * cores with fp32 accumulation. A and B of different dtypes: the f32 one is
 * rounded to bf16 in a scratch buffer first. */
#include "common.cuh"
#include <stdlib.h>
#include <string.h>

static bool tf32_allowed(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *e = getenv("GQE_CUDA_TF32");
        cached = (e && (strcmp(e, "1") == 0 || strcmp(e, "true") == 0)) ? 1 : 0;
    }
    return cached == 1;
}

static int64_t rows_of(const gqe_tensor *t) { return t->ndim >= 2 ? t->shape[t->ndim - 2] : 1; }
static int64_t cols_of(const gqe_tensor *t) { return t->shape[t->ndim >= 1 ? t->ndim - 1 : 0]; }

gqe_status gqe_cuda_matmul(gqe_tensor *c, const gqe_tensor *a, const gqe_tensor *b,
                           bool trans_a, bool trans_b, float alpha, float beta) {
    GQE_TRY(gqe_cuda_need_float(a, "matmul", "a"));
    GQE_TRY(gqe_cuda_need_float(b, "matmul", "b"));
    GQE_TRY(gqe_cuda_need_float(c, "matmul", "c"));
    int64_t M = rows_of(c), N = cols_of(c);
    int64_t K = trans_a ? rows_of(a) : cols_of(a);
    if (M == 0 || N == 0) return GQE_OK;
    if (K == 0) return gqe_cuda_scale(c, beta);  /* an empty sum: C = beta C */
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return gqe_fail(GQE_ERR_SHAPE, "matmul: dimensions above 2^31 are not supported on cuda");

    /* Mixed A/B: round the f32 operand to bf16 (activations are the bf16 side). */
    void *scratch = NULL;
    const void *pa = gqe_tensor_data(a), *pb = gqe_tensor_data(b);
    if (a->dtype != b->dtype) {
        const gqe_tensor *src = a->dtype == GQE_F32 ? a : b;
        size_t n = (size_t)gqe_tensor_numel(src);
        GQE_TRY(gqe_cuda_scratch(&scratch, n * 2));
        gqe_storage st = {scratch, n * 2, GQE_CUDA, 1, false};
        gqe_tensor tmp = *src;
        tmp.dtype = GQE_BF16;
        tmp.offset = 0;
        tmp.storage = &st;
        gqe_status s = gqe_cuda_convert(&tmp, src);
        if (s != GQE_OK) { gqe_cuda_scratch_free(scratch); return s; }
        if (src == a) pa = scratch; else pb = scratch;
    }
    gqe_dtype ab = (a->dtype == GQE_BF16 || b->dtype == GQE_BF16) ? GQE_BF16 : GQE_F32;

    cublasHandle_t h;
    gqe_status s = gqe_cuda_cublas(&h);
    if (s != GQE_OK) { gqe_cuda_scratch_free(scratch); return s; }

    /* Leading dimensions of the row-major storage = its column counts. */
    int lda = (int)cols_of(a), ldb = (int)cols_of(b), ldc = (int)N;
    cudaDataType_t tab = ab == GQE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cudaDataType_t tc = c->dtype == GQE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t ct = (ab == GQE_F32 && tf32_allowed()) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasStatus_t cs = cublasGemmEx(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     (int)N, (int)M, (int)K, &alpha, pb, tab, ldb, pa, tab, lda, &beta,
                                     gqe_tensor_data(c), tc, ldc, ct, CUBLAS_GEMM_DEFAULT);
    /* The scratch goes back to the cache now; the default stream orders its
     * next user after this GEMM. */
    gqe_cuda_scratch_free(scratch);
    if (cs != CUBLAS_STATUS_SUCCESS)
        return gqe_fail(GQE_ERR_DEVICE, "cublasGemmEx(M=%lld N=%lld K=%lld) failed at %s:%d: %s", (long long)M,
                        (long long)N, (long long)K, __FILE__, __LINE__, gqe_cublas_status_str(cs));
    return GQE_OK;
}
