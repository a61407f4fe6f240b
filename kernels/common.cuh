/* Shared by every file of kernels/: the C headers, the error macros, float
 * access that works for f32 and bf16 alike, launch helpers, and the
 * declarations of the backend entries defined across the .cu files. */
#ifndef GQE_KERNELS_COMMON_CUH
#define GQE_KERNELS_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <stdint.h>

extern "C" {
#include "backend.h"
#include "error.h"
#include "tensor.h"
#include "rng.h"
}

/* ---- errors ------------------------------------------------------------ */
#define CUDA_CHECK(call) do { cudaError_t _e = (call); if (_e != cudaSuccess) \
    return gqe_fail(GQE_ERR_DEVICE, "%s failed at %s:%d: %s", #call, __FILE__, __LINE__, cudaGetErrorString(_e)); } while (0)
/* After every launch: a bad configuration shows up here, not in the next call. */
#define LAUNCH_CHECK(what) do { cudaError_t _e = cudaGetLastError(); if (_e != cudaSuccess) \
    return gqe_fail(GQE_ERR_DEVICE, "%s failed at %s:%d: %s", what, __FILE__, __LINE__, cudaGetErrorString(_e)); } while (0)
const char *gqe_cublas_status_str(cublasStatus_t s);
#define CUBLAS_CHECK(call) do { cublasStatus_t _e = (call); if (_e != CUBLAS_STATUS_SUCCESS) \
    return gqe_fail(GQE_ERR_DEVICE, "%s failed at %s:%d: %s", #call, __FILE__, __LINE__, gqe_cublas_status_str(_e)); } while (0)

/* ---- float access for f32 or bf16 tensors -------------------------------
 * The dtype test is uniform over a launch, so the branch costs next to
 * nothing in memory-bound kernels and lets one kernel take any mix. */
struct fptr {
    void *p;
    int bf;
};
__device__ __forceinline__ float ldf(fptr a, int64_t i) {
    return a.bf ? __bfloat162float(((const __nv_bfloat16 *)a.p)[i]) : ((const float *)a.p)[i];
}
__device__ __forceinline__ void stf(fptr a, int64_t i, float v) {
    if (a.bf) ((__nv_bfloat16 *)a.p)[i] = __float2bfloat16_rn(v);
    else ((float *)a.p)[i] = v;
}
/* The value a store of v into t keeps (bf16 rounds). */
__device__ __forceinline__ float stored(fptr t, float v) {
    return t.bf ? __bfloat162float(__float2bfloat16_rn(v)) : v;
}

static inline fptr fp(const gqe_tensor *t) {
    fptr r;
    r.p = gqe_tensor_data(t);
    r.bf = t->dtype == GQE_BF16;
    return r;
}
/* All-bf16 fast paths move 8 values per thread through 16-byte loads; they
 * apply when every pointer is 16-byte aligned and the count divides by 8.
 * Rounding is the same as stf's, so results equal the scalar path's. */
static inline bool aligned16(const void *a, const void *b = NULL, const void *c = NULL, const void *d = NULL,
                             const void *e = NULL) {
    return ((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d | (uintptr_t)e) % 16 == 0;
}
static inline bool vec8_ok(int64_t n, const void *a, const void *b = NULL, const void *c = NULL) {
    return n % 8 == 0 && aligned16(a, b, c);
}
__device__ __forceinline__ void unpack8(uint4 u, float f[8]) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int k = 0; k < 4; k++) { float2 t = __bfloat1622float2(h[k]); f[2 * k] = t.x; f[2 * k + 1] = t.y; }
}
__device__ __forceinline__ uint4 pack8(const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
    for (int k = 0; k < 4; k++) h[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
    return u;
}
/* Four consecutive values of an f32 or bf16 tensor in one load or store
 * (16 or 8 bytes): i % 4 == 0 and the pointer 16-byte aligned (vec4_ok).
 * Rounding is stf's, so results equal four scalar stores. */
static inline bool vec4_ok(int64_t n, const void *a, const void *b = NULL, const void *c = NULL,
                           const void *d = NULL, const void *e = NULL) {
    return n % 4 == 0 && aligned16(a, b, c, d, e);
}
__device__ __forceinline__ void ld4(fptr a, int64_t i, float f[4]) {
    if (a.bf) {
        uint2 u = *(const uint2 *)((const __nv_bfloat16 *)a.p + i);
        float2 lo = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x), hi = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
        f[0] = lo.x; f[1] = lo.y; f[2] = hi.x; f[3] = hi.y;
    } else {
        float4 v = *(const float4 *)((const float *)a.p + i);
        f[0] = v.x; f[1] = v.y; f[2] = v.z; f[3] = v.w;
    }
}
__device__ __forceinline__ void st4(fptr a, int64_t i, const float f[4]) {
    if (a.bf) {
        __nv_bfloat162 lo = __floats2bfloat162_rn(f[0], f[1]), hi = __floats2bfloat162_rn(f[2], f[3]);
        uint2 u;
        u.x = *(const unsigned *)&lo;
        u.y = *(const unsigned *)&hi;
        *(uint2 *)((__nv_bfloat16 *)a.p + i) = u;
    } else {
        *(float4 *)((float *)a.p + i) = make_float4(f[0], f[1], f[2], f[3]);
    }
}
static inline bool all_bf16(const gqe_tensor *a, const gqe_tensor *b = NULL, const gqe_tensor *c = NULL) {
    return a->dtype == GQE_BF16 && (!b || b->dtype == GQE_BF16) && (!c || c->dtype == GQE_BF16);
}
static inline fptr fp_null(void) { fptr r; r.p = NULL; r.bf = 0; return r; }

/* Float ops take f32 or bf16; the message names the op and the tensor. */
gqe_status gqe_cuda_need_float(const gqe_tensor *t, const char *op, const char *name);
gqe_status gqe_cuda_need_f32(const gqe_tensor *t, const char *op, const char *name);
gqe_status gqe_cuda_need_i32(const gqe_tensor *t, const char *op, const char *name);

/* ---- launches ------------------------------------------------------------ */
static inline unsigned int gqe_grid_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    /* Grid-stride loops cover anything beyond this. */
    return (unsigned int)(b > 65535LL * 32 ? 65535LL * 32 : b);
}
#define GRID_STRIDE(i, n) for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                               i += (int64_t)gridDim.x * blockDim.x)

/* Sums v over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the total. `scratch` holds 32 values of T. */
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <typename T>
__device__ T block_sum(T v, T *scratch) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();              /* scratch may still be read by a previous call */
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    T t = lane < nw ? scratch[lane] : (T)0;
    return warp_sum(t);
}
__device__ __forceinline__ float block_max(float v, float *scratch) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    float t = lane < nw ? scratch[lane] : -INFINITY;
    return warp_max(t);
}

/* ---- device scratch and the bad-index flag ------------------------------ */
/* Scratch from the caching allocator; free with gqe_cuda_scratch_free. */
gqe_status gqe_cuda_scratch(void **p, size_t nbytes);
void gqe_cuda_scratch_free(void *p);
/* Kernels that index with data (embedding ids, targets, expert indices)
 * set this flag instead of reading out of bounds; gqe_cuda_flag_check turns
 * it into an error message naming the op (one synchronising read). */
enum { GQE_FLAG_EMBEDDING = 1, GQE_FLAG_TARGET = 2, GQE_FLAG_EXPERT = 4 };
int *gqe_cuda_flag_ptr(void);
gqe_status gqe_cuda_flag_check(void);

/* cuBLAS handle, created on first use. */
gqe_status gqe_cuda_cublas(cublasHandle_t *h);

/* ---- backend entries (one file per job, like core/cpu) ------------------- */
gqe_status gqe_cuda_convert(gqe_tensor *dst, const gqe_tensor *src);
/* gqe_cuda_<name> for every op of core/op_list.h. */
#define GQE_OP(name, params) gqe_status gqe_cuda_##name params;
#include "op_list.h"

/* Attention variants (cuda_attention.cu dispatches between them). */
gqe_status gqe_cuda_attn_fwd_generic(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                     const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale);
gqe_status gqe_cuda_attn_bwd_generic(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                     const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                     const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                     bool causal, float scale);
/* Tensor-core bf16 path; returns false (and does nothing) when the shapes,
 * dtypes or alignment are not ones it handles. */
bool gqe_cuda_attn_tc_fwd_ok(const gqe_tensor *out, const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v);
gqe_status gqe_cuda_attn_fwd_tc(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale);
bool gqe_cuda_attn_tc_bwd_ok(const gqe_tensor *dq, const gqe_tensor *dk, const gqe_tensor *dv,
                             const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                             const gqe_tensor *v, const gqe_tensor *out);
gqe_status gqe_cuda_attn_bwd_tc(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                bool causal, float scale);

/* cuDNN's fused attention (kernels/cuda_attention_cudnn.cu): bf16, S == T a
 * multiple of 128, D a multiple of 8 up to 128. *used is false (and nothing
 * ran) when cuDNN is absent, disabled (GQE_CUDA_CUDNN=0) or has no engine
 * for the shape; the caller then runs the built-in kernels. */
bool gqe_cudnn_attn_fwd_ok(const gqe_tensor *out, const gqe_tensor *lse, const gqe_tensor *q, const gqe_tensor *k,
                           const gqe_tensor *v, bool causal);
gqe_status gqe_cudnn_attn_fwd(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q, const gqe_tensor *k,
                              const gqe_tensor *v, bool causal, float scale, bool *used);
bool gqe_cudnn_attn_bwd_ok(const gqe_tensor *dq, const gqe_tensor *dk, const gqe_tensor *dv, const gqe_tensor *dout,
                           const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v, const gqe_tensor *out,
                           bool causal);
gqe_status gqe_cudnn_attn_bwd(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv, const gqe_tensor *dout,
                              const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v, const gqe_tensor *out,
                              const gqe_tensor *lse, bool causal, float scale, bool accumulate, bool *used);

#endif
