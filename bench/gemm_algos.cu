/* Would cuBLASLt's other algorithms beat cublasGemmEx's own pick? For each
 * matmul shape of the 236M benchmark model's training step at 16K tokens
 * (row-major M x N x K and transposes as GQE_PROFILE prints them), the time
 * of cublasGemmEx (what core/ops' matmul calls) against every algorithm
 * cublasLtMatmulAlgoGetHeuristic offers, best of 3 x 20 calls each. One JSON
 * line per shape; gain = GemmEx time / best time. Inputs are zeros: the
 * kernels' speed does not depend on the values.
 *   make build/gemm_algos && build/gemm_algos */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
#define CK(x) do { auto e_ = (x); if ((int)e_ != 0) { fprintf(stderr, "%s:%d %s -> %d\n", __FILE__, __LINE__, #x, (int)e_); exit(1);} } while (0)
struct Shape { int M, N, K; bool ta, tb; bool cf32; float beta; };
static Shape shapes[] = {
  {16384,4096,1024,false,true,false,0},{16384,4096,1024,false,false,false,0},
  {16384,1024,4096,false,false,true,0},{16384,1024,4096,false,true,false,0},{16384,1024,4096,false,true,true,0},
  {1024,4096,16384,true,false,true,1},{4096,1024,16384,true,false,true,1},
  {16384,50304,1024,false,true,false,0},{50304,1024,16384,true,false,true,1},{16384,1024,50304,false,false,true,0},
  {2128,1024,16384,true,false,true,1},{16384,1024,2128,false,false,true,0},
  {16384,512,1024,false,true,false,0},{16384,1024,1024,false,true,false,0},{16384,2128,1024,false,true,false,0},
  {16384,1024,640,false,true,true,0},{16384,1024,640,false,true,false,0},{1024,640,16384,true,false,true,1},
  {16384,640,1024,false,false,false,0},{16384,80,1024,false,true,true,0}};
int main() {
  size_t big = (size_t)16384 * 50304;
  void *A, *B, *C, *ws; size_t wsz = 32 << 20;
  CK(cudaMalloc(&A, big * 2)); CK(cudaMalloc(&B, big * 2)); CK(cudaMalloc(&C, big * 4)); CK(cudaMalloc(&ws, wsz));
  CK(cudaMemset(A, 0, big * 2)); CK(cudaMemset(B, 0, big * 2)); CK(cudaMemset(C, 0, big * 4));
  cublasHandle_t h; CK(cublasCreate(&h)); CK(cublasSetWorkspace(h, ws, wsz));
  cublasLtHandle_t lt; CK(cublasLtCreate(&lt));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  for (auto &s : shapes) {
    int m = s.N, n = s.M, k = s.K;
    int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;   /* cols of row-major a, b */
    cublasOperation_t opA = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opB = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    float alpha = 1, beta = s.beta;
    cudaDataType_t tc = s.cf32 ? CUDA_R_32F : CUDA_R_16BF;
    auto time_it = [&](auto fn) { float best = 1e9; for (int rep = 0; rep < 3; rep++) { fn(); cudaEventRecord(e0);
        for (int i = 0; i < 20; i++) fn(); cudaEventRecord(e1); cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1);
        if (ms / 20 < best) best = ms / 20; } return best; };
    float t_def = time_it([&] { cublasGemmEx(h, opA, opB, m, n, k, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, tc, m,
                                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT); });
    cublasLtMatmulDesc_t d; CK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
    CK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB));
    cublasLtMatrixLayout_t la, lb, lc;
    CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, opA == CUBLAS_OP_N ? m : k, opA == CUBLAS_OP_N ? k : m, ldb));
    CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, opB == CUBLAS_OP_N ? k : n, opB == CUBLAS_OP_N ? n : k, lda));
    CK(cublasLtMatrixLayoutCreate(&lc, tc, m, n, m));
    cublasLtMatmulPreference_t pref; CK(cublasLtMatmulPreferenceCreate(&pref));
    CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz));
    cublasLtMatmulHeuristicResult_t res[32]; int nres = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, d, la, lb, lc, lc, pref, 32, res, &nres));
    float best = 1e9, first = 0; int bi = -1;
    for (int i = 0; i < nres; i++) {
      float t = time_it([&] { cublasLtMatmul(lt, d, &alpha, B, la, A, lb, &beta, C, lc, C, lc, &res[i].algo, ws, wsz, 0); });
      if (i == 0) first = t;
      if (t < best) { best = t; bi = i; }
    }
    double fl = 2.0 * s.M * s.N * s.K;
    printf("{\"shape\": \"%dx%dx%d %c%c %s%s\", \"default_ms\": %.4f, \"lt_first_ms\": %.4f, \"lt_best_ms\": %.4f, \"best_index\": %d, \"n\": %d, \"default_tflops\": %.0f, \"best_tflops\": %.0f, \"gain\": %.3f}\n",
           s.M, s.N, s.K, s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.cf32 ? "f32" : "bf16", s.beta ? "+" : "", t_def, first, best, bi, nres,
           fl / t_def / 1e9, fl / best / 1e9, t_def / best);
    fflush(stdout);
    cublasLtMatmulPreferenceDestroy(pref); cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc); cublasLtMatmulDescDestroy(d);
  }
  return 0;
}
