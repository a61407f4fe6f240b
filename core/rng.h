/* Philox 4x32-10: a counter-based generator, so (seed, counter) names the
 * same four numbers on every backend and in every thread order. */
#ifndef GQE_RNG_H
#define GQE_RNG_H
#include <stdint.h>

typedef struct gqe_rng {
    uint64_t seed;
    uint64_t offset;   /* counter position: blocks of 4 numbers consumed so far */
} gqe_rng;

void gqe_philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]);
void gqe_rng_init(gqe_rng *r, uint64_t seed);
/* Next uint32 / uniform in [0,1) / standard normal from the stream. */
uint32_t gqe_rng_u32(gqe_rng *r);
float gqe_rng_uniform(gqe_rng *r);
float gqe_rng_normal(gqe_rng *r);
/* Element i of a stream named by (seed, stream): pure function, thread safe. */
float gqe_rng_normal_at(uint64_t seed, uint64_t stream, uint64_t i);
float gqe_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t i);
uint32_t gqe_rng_u32_at(uint64_t seed, uint64_t stream, uint64_t i);
#endif
