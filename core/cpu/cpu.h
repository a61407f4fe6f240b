/* Private to core/cpu: the functions of gqe_cpu_backend and small helpers.
 * core/ops.c has already checked shapes, so these trust them; they check
 * only what depends on values (index ranges) and the f32-only rule. */
#ifndef GQE_CPU_H
#define GQE_CPU_H

/* Nothing here runs with floating-point traps enabled. Without this GCC
 * keeps clamps and selects as branches (an operation moved under one might
 * trap), and loops over cpu_expf and friends stay scalar. Values are
 * unchanged: this permits no reassociation or contraction. */
#pragma GCC optimize ("no-trapping-math")

#include "backend.h"
#include <math.h>
#include <string.h>

/* The CPU computes float ops in f32 only; bf16 exists there for storage. */
#define CPU_NEED_F32(op, t) do { if ((t) && (t)->dtype != GQE_F32) \
    return gqe_fail(GQE_ERR_SHAPE, "%s: the cpu backend computes in f32 only, got a %s tensor", \
                    (op), gqe_dtype_name((t)->dtype)); } while (0)

static inline int64_t cpu_last(const gqe_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }
/* Rows of a tensor seen as (R, last dim). */
static inline int64_t cpu_rows(const gqe_tensor *t) {
    int64_t c = cpu_last(t);
    return c ? gqe_tensor_numel(t) / c : 0;
}
/* expf for vector loops (libm's expf is a call, so loops around it stay
 * scalar): Cody-Waite reduction and cephes's degree-6 polynomial, within
 * 2 ulp of expf; subnormal results, exp(-inf) = 0, overflow to inf and NaN
 * as expf. Arithmetic and selects only, so `omp simd` loops vectorise it.
 * The scale 2^k is applied in two halves so that k stays a normal exponent. */
static inline float cpu_expf(float x) {
    const float magic = 12582912.0f;   /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x < -104.0f ? -104.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    xc = x != x ? 0.0f : xc;
    float kf = (xc * 1.44269504088896341f + magic) - magic;
    int32_t k = (int32_t)kf, k1 = k / 2, k2 = k - k1;
    float r = xc - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    return x != x ? x : y;
}

/* erfc(a) = t exp(poly(t) - a^2), t = 1 / (1 + a/2), a >= 0: Numerical
 * Recipes' erfcc, a Chebyshev fit with relative error below 1.2e-7
 * everywhere, so tails keep their digits where 1 - erf(a) would cancel.
 * Returns poly(t) and sets *t. */
static inline float cpu_erfc_poly(float a, float *t_out) {
    float t = 1.0f / (1.0f + 0.5f * a);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    *t_out = t;
    return p * t - 1.26551223f;
}

/* Phi(v), the normal CDF, within 1.5e-7 of it everywhere and with relative
 * accuracy in the lower tail: a Taylor series of erf near 0, erfc beyond
 * (no 1 + erf(x) cancellation). */
static inline float cpu_norm_cdf(float v) {
    float z = v * 0.70710678118654752440f, a = z < 0 ? -z : z, z2 = z * z;
    float s = -1.4925650358406252e-05f;
    s = s * z2 + 1.2055332981789664e-04f;
    s = s * z2 - 8.5483255082993370e-04f;
    s = s * z2 + 5.2239776254421880e-03f;
    s = s * z2 - 2.6866170645131252e-02f;
    s = s * z2 + 1.1283791670955126e-01f;
    s = s * z2 - 3.7612638903183754e-01f;
    s = s * z2 + 1.1283791670955126e+00f;
    float t, p = cpu_erfc_poly(a, &t);
    float q = t * cpu_expf(p - z2);   /* erfc(a) */
    float tail = v >= 0 ? 1.0f - 0.5f * q : 0.5f * q;
    return a < 0.5f ? 0.5f + 0.5f * (z * s) : tail;
}

/* Vector loops over spans are compiled for AVX-512 and AVX2 next to the
 * baseline and picked once at load time. Without FMA and with no reordered
 * reductions, every version gives the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_SPAN __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define CPU_SPAN __attribute__((noinline))
#endif

/* Spans of this many elements are handed to threads, big enough to hide
 * the hand-off and small enough to balance. */
#define CPU_SPAN_N 8192

/* First index in [0, n) whose value falls outside [0, hi), or -1. Runs
 * outside parallel regions so that the error message lands in the caller's
 * thread. */
int64_t cpu_find_bad_index(const int32_t *v, int64_t n, int64_t hi);

/* Sets the OpenMP thread count to the CPUs other processes leave free
 * (cpu_threads.c); cheap, call it before heavy ops. */
void cpu_threads_adapt(void);

/* memory */
gqe_status cpu_alloc(void **ptr, size_t nbytes);
void cpu_release(void *ptr);
gqe_status cpu_upload(void *dst, const void *src, size_t nbytes);
gqe_status cpu_download(void *dst, const void *src, size_t nbytes);
gqe_status cpu_copy(void *dst, const void *src, size_t nbytes);
gqe_status cpu_convert(gqe_tensor *dst, const gqe_tensor *src);
gqe_status cpu_synchronize(void);

/* cpu_<name> for every op of core/op_list.h (cpu_*.c, one file per job). */
#define GQE_OP(name, params) gqe_status cpu_##name params;
#include "op_list.h"

#endif
