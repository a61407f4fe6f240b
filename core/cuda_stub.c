/* Linked when gqe is built without nvcc: the CUDA table exists so dispatch
 * stays branch-free, and its allocator fails with a message saying why. */
#include "backend.h"

static gqe_status no_cuda_alloc(void **ptr, size_t nbytes) {
    (void)ptr; (void)nbytes;
    return gqe_fail(GQE_ERR_DEVICE, "gqe was built without CUDA (nvcc not found at build time)");
}
static void no_cuda_release(void *ptr) { (void)ptr; }

const gqe_backend gqe_cuda_backend = { .name = "cuda (not built)", .alloc = no_cuda_alloc, .release = no_cuda_release };
bool gqe_cuda_available(void) { return false; }
int gqe_cuda_device_count(void) { return 0; }
void gqe_cuda_memory_stats(gqe_memory_stats *out, bool reset_peak) {
    (void)reset_peak;
    out->in_use = out->peak = out->reserved = 0;
}
int64_t gqe_cuda_cudnn_attention_calls(void) { return 0; }
