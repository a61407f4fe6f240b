/* Philox 4x32-10 (Salmon et al., SC'11), the one definition of gqe's
 * random numbers: core/rng.c calls it on the host and kernels/ on the
 * device, so (seed, counter) names the same four words everywhere. The key
 * is the seed; the counter holds (element index, stream), so any element is
 * computable on its own. Header-only so that nvcc can inline it into
 * kernels. */
#ifndef GQE_PHILOX_H
#define GQE_PHILOX_H
#include <stdint.h>

#ifdef __CUDACC__
#define GQE_PHILOX_FN static inline __host__ __device__
#else
#define GQE_PHILOX_FN static inline
#endif
#ifdef __CUDA_ARCH__   /* the device pass only: host compilers know no such pragma */
#define GQE_PHILOX_UNROLL _Pragma("unroll")
#else
#define GQE_PHILOX_UNROLL
#endif

GQE_PHILOX_FN void gqe_philox4x32_block(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter_lo, c1 = (uint32_t)(counter_lo >> 32);
    uint32_t c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    GQE_PHILOX_UNROLL
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* Element i of stream (seed, stream): word i % 4 of counter i / 4. The word
 * is picked by selects, not indexing, so a kernel keeps out in registers. */
GQE_PHILOX_FN uint32_t gqe_philox_u32_at(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t out[4];
    gqe_philox4x32_block(seed, stream, i / 4, out);
    uint32_t r = out[0];
    if ((i & 3) == 1) r = out[1];
    else if ((i & 3) == 2) r = out[2];
    else if ((i & 3) == 3) r = out[3];
    return r;
}

#endif
