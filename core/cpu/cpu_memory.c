/* Host memory for the CPU backend: 64-byte aligned so rows vectorise and
 * OpenBLAS gets aligned panels. */
#include "cpu.h"
#include <stdlib.h>

gqe_status cpu_alloc(void **ptr, size_t nbytes) {
    size_t n = (nbytes + 63) & ~(size_t)63;   /* aligned_alloc wants a multiple */
    *ptr = aligned_alloc(64, n ? n : 64);
    if (!*ptr) return gqe_fail(GQE_ERR_NOMEM, "cpu: cannot allocate %zu bytes", nbytes);
    return GQE_OK;
}

void cpu_release(void *ptr) { free(ptr); }

gqe_status cpu_upload(void *dst, const void *src, size_t nbytes) {
    if (nbytes) memcpy(dst, src, nbytes);
    return GQE_OK;
}

gqe_status cpu_download(void *dst, const void *src, size_t nbytes) {
    if (nbytes) memcpy(dst, src, nbytes);
    return GQE_OK;
}

/* memmove: views of one storage may overlap. */
gqe_status cpu_copy(void *dst, const void *src, size_t nbytes) {
    if (nbytes) memmove(dst, src, nbytes);
    return GQE_OK;
}

gqe_status cpu_convert(gqe_tensor *dst, const gqe_tensor *src) {
    int64_t n = gqe_tensor_numel(src);
    if (dst->dtype == src->dtype) return cpu_copy(gqe_tensor_data(dst), gqe_tensor_data(src), gqe_tensor_nbytes(src));
    if (dst->dtype == GQE_BF16 && src->dtype == GQE_F32) {
        uint16_t *d = gqe_tensor_data(dst);
        const float *s = gqe_f32(src);
        #pragma omp parallel for if (n > 65536)
        for (int64_t i = 0; i < n; i++) d[i] = gqe_f32_to_bf16(s[i]);
        return GQE_OK;
    }
    if (dst->dtype == GQE_F32 && src->dtype == GQE_BF16) {
        float *d = gqe_f32(dst);
        const uint16_t *s = gqe_tensor_data(src);
        #pragma omp parallel for if (n > 65536)
        for (int64_t i = 0; i < n; i++) d[i] = gqe_bf16_to_f32(s[i]);
        return GQE_OK;
    }
    return gqe_fail(GQE_ERR_SHAPE, "convert: cpu converts between f32 and bf16 only, not %s to %s",
                    gqe_dtype_name(src->dtype), gqe_dtype_name(dst->dtype));
}

gqe_status cpu_synchronize(void) { return GQE_OK; }

int64_t cpu_find_bad_index(const int32_t *v, int64_t n, int64_t hi) {
    for (int64_t i = 0; i < n; i++)
        if (v[i] < 0 || v[i] >= hi) return i;
    return -1;
}
