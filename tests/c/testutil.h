/* Shared helpers for the C unit tests (cmocka). */
#ifndef GQE_TESTUTIL_H
#define GQE_TESTUTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include "tensor.h"
#include "ops.h"
#include "rng.h"

/* Fails the test with the core's message when a call does not return GQE_OK. */
#define CHECK_OK(expr) do { gqe_status _s = (expr); if (_s != GQE_OK) \
    fail_msg("%s -> %s: %s", #expr, gqe_status_name(_s), gqe_last_error()); } while (0)

/* A new f32 CPU tensor of normal(0, std) values from (seed, stream). */
static inline gqe_tensor tu_randn(int ndim, const int64_t *shape, float std, uint64_t seed) {
    gqe_tensor t;
    CHECK_OK(gqe_tensor_new(&t, GQE_F32, GQE_CPU, ndim, shape));
    float *p = gqe_f32(&t);
    for (int64_t i = 0; i < gqe_tensor_numel(&t); i++) p[i] = std * gqe_rng_normal_at(seed, 7, (uint64_t)i);
    return t;
}

/* max |a - b| / max(max |b|, tiny): the relative error the tests bound. */
static inline double tu_rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || isnan(d)) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

#define ASSERT_CLOSE(a, b, n, tol) do { double _e = tu_rel_err((a), (b), (n)); \
    if (!(_e <= (tol))) fail_msg("%s vs %s: relative error %.3g > %.3g", #a, #b, _e, (double)(tol)); } while (0)

#endif
