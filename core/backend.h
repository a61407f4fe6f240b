/* A backend is one table of functions with the signatures of core/ops.h plus
 * memory primitives. core/ops.c validates arguments and calls the table of the
 * tensors' device; it never branches on the device otherwise. A new backend is
 * a new folder that fills one of these tables, its op slots generated from
 * core/op_list.h as core/cpu/cpu_backend.c does. A backend that lacks an op
 * says so in its table: it defines its function's name as NULL before the
 * generated initialisers (`#define cpu_foo NULL`), and gqe_backend_supports
 * then answers false. */
#ifndef GQE_BACKEND_H
#define GQE_BACKEND_H

#include "ops.h"

typedef struct gqe_backend {
    const char *name;
    /* memory */
    gqe_status (*alloc)(void **ptr, size_t nbytes);
    void (*release)(void *ptr);
    gqe_status (*upload)(void *dst_dev, const void *src_host, size_t nbytes);
    gqe_status (*download)(void *dst_host, const void *src_dev, size_t nbytes);
    gqe_status (*copy)(void *dst_dev, const void *src_dev, size_t nbytes);
    gqe_status (*convert)(gqe_tensor *dst, const gqe_tensor *src); /* same device, dtype change */
    gqe_status (*synchronize)(void);
    /* GQE_PROFILE timing on the device's own clock: a marker placed in its
     * stream of work, and the seconds between two markers (waits for the
     * later one). NULL where the host clock is the device's clock. */
    gqe_status (*mark)(void **marker);
    double (*marks_elapsed)(void *start, void *end);
    void (*mark_free)(void *marker);

    /* ops: one slot per entry of core/op_list.h, with the meaning of the
     * gqe_* function of the same name. NULL: the backend lacks the op;
     * calling it then fails with "op <name> is not available on <backend>". */
#define GQE_OP(name, params) gqe_status (*name) params;
#include "op_list.h"
} gqe_backend;

extern const gqe_backend gqe_cpu_backend;
/* Defined by kernels/ when built with CUDA, else by core/cuda_stub.c whose
 * functions all fail with "built without CUDA". */
extern const gqe_backend gqe_cuda_backend;
/* True when the CUDA backend is compiled in and a device is present. */
bool gqe_cuda_available(void);
/* CUDA devices this process sees (CUDA_VISIBLE_DEVICES applied); 0 without
 * CUDA, a driver or a device. */
int gqe_cuda_device_count(void);
/* Device memory held by the caching allocator, in bytes of its size classes:
 * live blocks now, their peak since the last reset, and all blocks obtained
 * from cudaMalloc (live plus cached). Zeros without CUDA. */
typedef struct gqe_memory_stats { size_t in_use, peak, reserved; } gqe_memory_stats;
void gqe_cuda_memory_stats(gqe_memory_stats *out, bool reset_peak);
/* Attention calls (forward and backward) served by cuDNN's fused kernels
 * rather than gqe's own since the process started; 0 without cuDNN. */
int64_t gqe_cuda_cudnn_attention_calls(void);

const gqe_backend *gqe_backend_for(gqe_device dev);
/* Whether be implements op (its slot is set): ggml's supports_op. */
bool gqe_backend_supports(const gqe_backend *be, gqe_op_id op);

#endif
