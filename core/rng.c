#include "rng.h"
#include <math.h>

/* Philox 4x32-10 (Salmon et al., SC'11): the key is the seed, the counter
 * holds (element index, stream), so any element is computable on its own. */
void gqe_philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter_lo, c1 = (uint32_t)(counter_lo >> 32);
    uint32_t c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
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

void gqe_rng_init(gqe_rng *r, uint64_t seed) { r->seed = seed; r->offset = 0; }

uint32_t gqe_rng_u32_at(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t out[4];
    gqe_philox4x32(seed, stream, i / 4, out);
    return out[i % 4];
}

static float u32_to_uniform(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

float gqe_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t i) {
    return u32_to_uniform(gqe_rng_u32_at(seed, stream, i));
}

/* Box-Muller on the pair (2i, 2i+1) of the stream, using its cosine branch. */
float gqe_rng_normal_at(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t out[4];
    gqe_philox4x32(seed, stream, i / 2, out);
    int h = (int)(i % 2) * 2;
    double u1 = ((double)out[h] + 1.0) / 4294967296.0;  /* (0, 1] */
    double u2 = (double)out[h + 1] / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t gqe_rng_u32(gqe_rng *r) { return gqe_rng_u32_at(r->seed, 0, r->offset++); }
float gqe_rng_uniform(gqe_rng *r) { return u32_to_uniform(gqe_rng_u32(r)); }
float gqe_rng_normal(gqe_rng *r) { return gqe_rng_normal_at(r->seed, 1, r->offset++); }
