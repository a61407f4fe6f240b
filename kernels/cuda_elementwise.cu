/* Elementwise ops, dtype conversion, column copies and the two host-result
 * reductions. Each float tensor may be f32 or bf16 independently. */
#include "common.cuh"

#define THREADS 256

__global__ void k_convert(fptr dst, fptr src, int64_t n) {
    GRID_STRIDE(i, n) stf(dst, i, ldf(src, i));
}

gqe_status gqe_cuda_convert(gqe_tensor *dst, const gqe_tensor *src) {
    GQE_TRY(gqe_cuda_need_float(dst, "convert", "dst"));
    GQE_TRY(gqe_cuda_need_float(src, "convert", "src"));
    int64_t n = gqe_tensor_numel(src);
    if (n == 0) return GQE_OK;
    k_convert<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(dst), fp(src), n);
    LAUNCH_CHECK("convert kernel");
    return GQE_OK;
}

__global__ void k_fill(fptr t, float v, int64_t n) {
    GRID_STRIDE(i, n) stf(t, i, v);
}
__global__ void k_fill_i32(int32_t *t, int32_t v, int64_t n) {
    GRID_STRIDE(i, n) t[i] = v;
}

gqe_status gqe_cuda_fill(gqe_tensor *t, float value) {
    int64_t n = gqe_tensor_numel(t);
    if (n == 0) return GQE_OK;
    /* zero is all-zero bits in f32, bf16 and i32 */
    if (value == 0.0f && !signbit(value)) {
        CUDA_CHECK(cudaMemsetAsync(gqe_tensor_data(t), 0, gqe_tensor_nbytes(t), 0));
        return GQE_OK;
    }
    if (t->dtype == GQE_I32) k_fill_i32<<<gqe_grid_for(n, THREADS), THREADS>>>(gqe_i32(t), (int32_t)value, n);
    else k_fill<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(t), value, n);
    LAUNCH_CHECK("fill kernel");
    return GQE_OK;
}

__global__ void k_scale(fptr t, float a, int64_t n) {
    GRID_STRIDE(i, n) stf(t, i, ldf(t, i) * a);
}

gqe_status gqe_cuda_scale(gqe_tensor *t, float alpha) {
    GQE_TRY(gqe_cuda_need_float(t, "scale", "t"));
    int64_t n = gqe_tensor_numel(t);
    if (n == 0) return GQE_OK;
    k_scale<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(t), alpha, n);
    LAUNCH_CHECK("scale kernel");
    return GQE_OK;
}

__global__ void k_axpy(fptr y, float a, fptr x, int64_t n) {
    GRID_STRIDE(i, n) stf(y, i, ldf(y, i) + a * ldf(x, i));
}

gqe_status gqe_cuda_axpy(gqe_tensor *y, float alpha, const gqe_tensor *x) {
    GQE_TRY(gqe_cuda_need_float(y, "axpy", "y"));
    GQE_TRY(gqe_cuda_need_float(x, "axpy", "x"));
    int64_t n = gqe_tensor_numel(y);
    if (n == 0) return GQE_OK;
    k_axpy<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(y), alpha, fp(x), n);
    LAUNCH_CHECK("axpy kernel");
    return GQE_OK;
}

__global__ void k_add(fptr out, fptr a, fptr b, int64_t n) {
    GRID_STRIDE(i, n) stf(out, i, ldf(a, i) + ldf(b, i));
}

gqe_status gqe_cuda_add(gqe_tensor *out, const gqe_tensor *a, const gqe_tensor *b) {
    GQE_TRY(gqe_cuda_need_float(out, "add", "out"));
    GQE_TRY(gqe_cuda_need_float(a, "add", "a"));
    GQE_TRY(gqe_cuda_need_float(b, "add", "b"));
    int64_t n = gqe_tensor_numel(out);
    if (n == 0) return GQE_OK;
    k_add<<<gqe_grid_for(n, THREADS), THREADS>>>(fp(out), fp(a), fp(b), n);
    LAUNCH_CHECK("add kernel");
    return GQE_OK;
}

/* ---- host-result reductions ----------------------------------------------
 * Two passes with a fixed grid so the result is the same on every run:
 * per-block partial sums in double, then one block adds them in order. */
#define RED_BLOCKS 512

template <bool SQ>
__global__ void k_reduce_partial(fptr t, int64_t n, double *partial) {
    __shared__ double scratch[32];
    double acc = 0;
    GRID_STRIDE(i, n) {
        double v = (double)ldf(t, i);
        acc += SQ ? v * v : v;
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void k_reduce_final(const double *partial, int n, double *out) {
    __shared__ double scratch[32];
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) *out = acc;
}

static gqe_status reduce(const gqe_tensor *t, double *out, bool sq, const char *op) {
    GQE_TRY(gqe_cuda_need_float(t, op, "t"));
    int64_t n = gqe_tensor_numel(t);
    *out = 0;
    if (n == 0) return GQE_OK;
    double *buf;
    GQE_TRY(gqe_cuda_scratch((void **)&buf, (RED_BLOCKS + 1) * sizeof(double)));
    unsigned int blocks = gqe_grid_for(n, THREADS);
    if (blocks > RED_BLOCKS) blocks = RED_BLOCKS;
    if (sq) k_reduce_partial<true><<<blocks, THREADS>>>(fp(t), n, buf);
    else k_reduce_partial<false><<<blocks, THREADS>>>(fp(t), n, buf);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) {
        k_reduce_final<<<1, THREADS>>>(buf, (int)blocks, buf + RED_BLOCKS);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(out, buf + RED_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost);
    gqe_cuda_scratch_free(buf);
    if (e != cudaSuccess)
        return gqe_fail(GQE_ERR_DEVICE, "%s reduction failed at %s:%d: %s", op, __FILE__, __LINE__, cudaGetErrorString(e));
    return GQE_OK;
}

gqe_status gqe_cuda_sumsq(const gqe_tensor *t, double *out) { return reduce(t, out, true, "sumsq"); }
gqe_status gqe_cuda_sum(const gqe_tensor *t, double *out) { return reduce(t, out, false, "sum"); }

/* ---- copy_cols ---------------------------------------------------------------- */
__global__ void k_copy_cols(fptr dst, int64_t cd, int64_t dcol, fptr src, int64_t cs, int64_t scol,
                            int64_t cols, int64_t rows, int acc) {
    int64_t n = rows * cols;
    GRID_STRIDE(i, n) {
        int64_t r = i / cols, c = i % cols;
        float v = ldf(src, r * cs + scol + c);
        int64_t di = r * cd + dcol + c;
        stf(dst, di, acc ? ldf(dst, di) + v : v);
    }
}
__global__ void k_copy_cols_i32(int32_t *dst, int64_t cd, int64_t dcol, const int32_t *src, int64_t cs,
                                int64_t scol, int64_t cols, int64_t rows, int acc) {
    int64_t n = rows * cols;
    GRID_STRIDE(i, n) {
        int64_t r = i / cols, c = i % cols;
        int32_t v = src[r * cs + scol + c];
        int64_t di = r * cd + dcol + c;
        dst[di] = acc ? dst[di] + v : v;
    }
}

/* Same dtype, no accumulation, every row and pitch a whole number of
 * 16-byte words: one word per thread. Narrow blocks (a head's 128 bytes of
 * each row) ran at a fraction of bandwidth through the runtime's 2-D copy. */
template <typename I>
__global__ void k_copy_words(uint4 *dst, I dpitch, const uint4 *__restrict__ src, I spitch, I width, I n) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I r = i / width, c = i % width;
        dst[r * dpitch + c] = src[r * spitch + c];
    }
}

gqe_status gqe_cuda_copy_cols(gqe_tensor *dst, int64_t dst_col, const gqe_tensor *src,
                              int64_t src_col, int64_t cols, bool accumulate) {
    int64_t cd = dst->ndim >= 2 ? dst->shape[dst->ndim - 1] : gqe_tensor_numel(dst);
    int64_t cs = src->ndim >= 2 ? src->shape[src->ndim - 1] : gqe_tensor_numel(src);
    int64_t rows = cd ? gqe_tensor_numel(dst) / cd : 0;
    if (rows == 0 || cols == 0) return GQE_OK;
    if ((dst->dtype == GQE_I32) != (src->dtype == GQE_I32))
        return gqe_fail(GQE_ERR_SHAPE, "copy_cols: cannot mix %s and %s", gqe_dtype_name(dst->dtype), gqe_dtype_name(src->dtype));
    if (!accumulate && dst->dtype == src->dtype) {
        size_t es = gqe_dtype_size(dst->dtype);
        char *d = (char *)gqe_tensor_data(dst) + (size_t)dst_col * es;
        const char *sp = (const char *)gqe_tensor_data(src) + (size_t)src_col * es;
        size_t width = (size_t)cols * es, dp = (size_t)cd * es, spitch = (size_t)cs * es;
        if ((width | dp | spitch | (uintptr_t)d | (uintptr_t)sp) % 16 == 0) {
            int64_t w16 = (int64_t)width / 16, n = rows * w16;
            unsigned grid = gqe_grid_for(n, THREADS);
            if ((int64_t)(rows * (dp > spitch ? dp : spitch) / 16) < INT32_MAX)
                k_copy_words<int32_t><<<grid, THREADS>>>((uint4 *)d, (int32_t)(dp / 16), (const uint4 *)sp,
                                                         (int32_t)(spitch / 16), (int32_t)w16, (int32_t)n);
            else
                k_copy_words<int64_t><<<grid, THREADS>>>((uint4 *)d, (int64_t)(dp / 16), (const uint4 *)sp,
                                                         (int64_t)(spitch / 16), w16, n);
            LAUNCH_CHECK("copy_cols kernel (16-byte words)");
            return GQE_OK;
        }
        /* any other plain strided copy: the runtime's 2-D copy (the
         * element-wise kernel reached about a quarter of its speed) */
        CUDA_CHECK(cudaMemcpy2DAsync(d, dp, sp, spitch, width, (size_t)rows, cudaMemcpyDeviceToDevice, 0));
        return GQE_OK;
    }
    if (dst->dtype == GQE_I32)
        k_copy_cols_i32<<<gqe_grid_for(rows * cols, THREADS), THREADS>>>(gqe_i32(dst), cd, dst_col, gqe_i32(src), cs,
                                                                        src_col, cols, rows, accumulate);
    else
        k_copy_cols<<<gqe_grid_for(rows * cols, THREADS), THREADS>>>(fp(dst), cd, dst_col, fp(src), cs, src_col, cols,
                                                                    rows, accumulate);
    LAUNCH_CHECK("copy_cols kernel");
    return GQE_OK;
}
