/* The CUDA backend table, device memory (a caching allocator) and the few
 * process-wide things every op shares: the cuBLAS handle and the bad-index
 * flag. Everything runs on the default stream, so ops are ordered and
 * synchronous copies see finished results. */
#include "common.cuh"
#include <mutex>
#include <unordered_map>
#include <vector>
#include <stdio.h>

/* ---- caching allocator ----------------------------------------------------
 * Sizes round up to a class (four classes per power of two, so at most 25%
 * slack; 2 MiB steps above 64 MiB); released blocks go to their class's free list and come back on the
 * next request of that class. A training loop that allocates the same shapes
 * each step therefore calls cudaMalloc only during its first step. */
namespace {
std::mutex g_mem_lock;
std::unordered_map<void *, size_t> g_live;               /* pointer -> class bytes */
std::unordered_map<size_t, std::vector<void *>> g_free;   /* class bytes -> blocks */
size_t g_in_use, g_peak, g_reserved;                      /* bytes, in size classes */

void note_live_locked(void *p, size_t cls) {
    g_live[p] = cls;
    g_in_use += cls;
    if (g_in_use > g_peak) g_peak = g_in_use;
}

/* Blocks above 64 MiB (activation arenas, parameter buffers) come once per
 * shape, so they round to 2 MiB instead: a quarter of slack there would be
 * gigabytes. */
size_t size_class(size_t n) {
    if (n <= 512) return 512;
    const size_t big = (size_t)64 << 20, gran = (size_t)2 << 20;
    if (n > big) return (n + gran - 1) / gran * gran;
    size_t p = 512;
    while (p < n) {
        size_t step = p / 4;
        for (int i = 1; i <= 4; i++)
            if (p + step * (size_t)i >= n) return p + step * (size_t)i;
        p *= 2;
    }
    return p;
}

void free_cached_locked(void) {
    for (auto &kv : g_free)
        for (void *p : kv.second) { cudaFree(p); g_reserved -= kv.first; }
    g_free.clear();
}
} // namespace

static gqe_status cu_alloc(void **ptr, size_t nbytes) {
    size_t cls = size_class(nbytes ? nbytes : 1);
    std::lock_guard<std::mutex> lock(g_mem_lock);
    auto it = g_free.find(cls);
    if (it != g_free.end() && !it->second.empty()) {
        *ptr = it->second.back();
        it->second.pop_back();
        note_live_locked(*ptr, cls);
        return GQE_OK;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, cls);
    if (e != cudaSuccess) {
        /* Out of memory with blocks parked in the cache: give them back and retry. */
        cudaGetLastError();
        free_cached_locked();
        e = cudaMalloc(&p, cls);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return gqe_fail(e == cudaErrorMemoryAllocation ? GQE_ERR_NOMEM : GQE_ERR_DEVICE,
                        "cudaMalloc(%zu bytes) failed: %s", cls, cudaGetErrorString(e));
    }
    g_reserved += cls;
    note_live_locked(p, cls);
    *ptr = p;
    return GQE_OK;
}

static void cu_release(void *ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(g_mem_lock);
    auto it = g_live.find(ptr);
    if (it == g_live.end()) return;   /* not ours: never hand foreign memory to cudaFree */
    g_free[it->second].push_back(ptr);
    g_in_use -= it->second;
    g_live.erase(it);
}

void gqe_cuda_memory_stats(gqe_memory_stats *out, bool reset_peak) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    out->in_use = g_in_use;
    out->peak = g_peak;
    out->reserved = g_reserved;
    if (reset_peak) g_peak = g_in_use;
}

gqe_status gqe_cuda_scratch(void **p, size_t nbytes) { return cu_alloc(p, nbytes); }
void gqe_cuda_scratch_free(void *p) { cu_release(p); }

static gqe_status cu_upload(void *dst, const void *src, size_t n) {
    if (n) CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
    return GQE_OK;
}
static gqe_status cu_download(void *dst, const void *src, size_t n) {
    if (n) CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
    return GQE_OK;
}
static gqe_status cu_copy(void *dst, const void *src, size_t n) {
    if (n && dst != src) CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice));
    return GQE_OK;
}

/* ---- the bad-index flag ---------------------------------------------------- */
static int *g_flag = NULL;

int *gqe_cuda_flag_ptr(void) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    if (!g_flag) {
        if (cudaMalloc(&g_flag, sizeof(int)) != cudaSuccess || cudaMemset(g_flag, 0, sizeof(int)) != cudaSuccess) {
            cudaGetLastError();
            g_flag = NULL;
        }
    }
    return g_flag;
}

gqe_status gqe_cuda_flag_check(void) {
    int *f = gqe_cuda_flag_ptr();
    if (!f) return gqe_fail(GQE_ERR_DEVICE, "cuda: could not allocate the error flag");
    int v = 0;
    CUDA_CHECK(cudaMemcpy(&v, f, sizeof v, cudaMemcpyDeviceToHost));
    if (!v) return GQE_OK;
    CUDA_CHECK(cudaMemset(f, 0, sizeof(int)));
    if (v & GQE_FLAG_EMBEDDING)
        return gqe_fail(GQE_ERR_ARG, "embedding: a token id was outside [0, vocabulary size)");
    if (v & GQE_FLAG_TARGET)
        return gqe_fail(GQE_ERR_ARG, "cross_entropy or argmax_correct: a target was >= the number of classes");
    return gqe_fail(GQE_ERR_ARG, "routing: an expert index was outside [0, M)");
}

static gqe_status cu_synchronize(void) {
    CUDA_CHECK(cudaDeviceSynchronize());
    return gqe_cuda_flag_check();
}

/* ---- markers for GQE_PROFILE: pooled timing events on the default stream -- */
static std::vector<cudaEvent_t> g_events;

static gqe_status cu_mark(void **marker) {
    cudaEvent_t e;
    {
        std::lock_guard<std::mutex> lock(g_mem_lock);
        if (!g_events.empty()) { e = g_events.back(); g_events.pop_back(); }
        else CUDA_CHECK(cudaEventCreate(&e));
    }
    CUDA_CHECK(cudaEventRecord(e, 0));
    *marker = (void *)e;
    return GQE_OK;
}
static double cu_marks_elapsed(void *start, void *end) {
    float ms = 0;
    if (cudaEventSynchronize((cudaEvent_t)end) != cudaSuccess ||
        cudaEventElapsedTime(&ms, (cudaEvent_t)start, (cudaEvent_t)end) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return 1e-3 * (double)ms;
}
static void cu_mark_free(void *marker) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    g_events.push_back((cudaEvent_t)marker);
}

/* ---- cuBLAS ------------------------------------------------------------------ */
const char *gqe_cublas_status_str(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "unknown cuBLAS status";
    }
}

static cublasHandle_t g_cublas = NULL;
static void *g_cublas_ws = NULL;
#define GQE_CUBLAS_WORKSPACE ((size_t)32 << 20)

gqe_status gqe_cuda_cublas(cublasHandle_t *h) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    if (!g_cublas) {
        cublasHandle_t nh;
        CUBLAS_CHECK(cublasCreate(&nh));
        /* A fixed workspace keeps cuBLAS from allocating inside the step. */
        CUDA_CHECK(cudaMalloc(&g_cublas_ws, GQE_CUBLAS_WORKSPACE));
        CUBLAS_CHECK(cublasSetWorkspace(nh, g_cublas_ws, GQE_CUBLAS_WORKSPACE));
        CUBLAS_CHECK(cublasSetMathMode(nh, CUBLAS_DEFAULT_MATH));
        g_cublas = nh;
    }
    *h = g_cublas;
    return GQE_OK;
}

/* ---- dtype guards ----------------------------------------------------------- */
gqe_status gqe_cuda_need_float(const gqe_tensor *t, const char *op, const char *name) {
    if (t->dtype == GQE_F32 || t->dtype == GQE_BF16) return GQE_OK;
    return gqe_fail(GQE_ERR_SHAPE, "%s: %s must be f32 or bf16, got %s", op, name, gqe_dtype_name(t->dtype));
}
gqe_status gqe_cuda_need_f32(const gqe_tensor *t, const char *op, const char *name) {
    if (t->dtype == GQE_F32) return GQE_OK;
    return gqe_fail(GQE_ERR_SHAPE, "%s: %s must be f32 on cuda, got %s", op, name, gqe_dtype_name(t->dtype));
}
gqe_status gqe_cuda_need_i32(const gqe_tensor *t, const char *op, const char *name) {
    if (t->dtype == GQE_I32) return GQE_OK;
    return gqe_fail(GQE_ERR_SHAPE, "%s: %s must be i32, got %s", op, name, gqe_dtype_name(t->dtype));
}

/* ---- availability and the table ------------------------------------------ */
extern "C" int gqe_cuda_device_count(void) {
    static int cached = -1;
    if (cached < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) { cudaGetLastError(); n = 0; } /* no driver or no device: clear and say none */
        cached = n;
    }
    return cached;
}

extern "C" bool gqe_cuda_available(void) { return gqe_cuda_device_count() > 0; }

extern "C" const gqe_backend gqe_cuda_backend = {
    /* .name */ "cuda",
    cu_alloc,
    cu_release,
    cu_upload,
    cu_download,
    cu_copy,
    gqe_cuda_convert,
    cu_synchronize,
    cu_mark,
    cu_marks_elapsed,
    cu_mark_free,
    /* every op of core/op_list.h, in list order (C++ has no designated
     * initialisers before C++20) */
#define GQE_OP(name, params) gqe_cuda_##name,
#include "op_list.h"
};
