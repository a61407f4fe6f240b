#include "rng.h"
#include "philox.h"
#include <math.h>

void gqe_philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]) {
    gqe_philox4x32_block(seed, counter_hi, counter_lo, out);
}

void gqe_rng_init(gqe_rng *r, uint64_t seed) { r->seed = seed; r->offset = 0; }

uint32_t gqe_rng_u32_at(uint64_t seed, uint64_t stream, uint64_t i) {
    return gqe_philox_u32_at(seed, stream, i);
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
