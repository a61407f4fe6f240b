/* What the two attention files share: the problem shape, its checks, and
 * the backward preprocessing D_i = rowsum(dO * O). */
#ifndef GQE_KERNELS_ATTENTION_CUH
#define GQE_KERNELS_ATTENTION_CUH
#include "common.cuh"

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

struct attn_shape {
    int64_t B, T, S, Hq, Hkv, D, off;  /* off = S - T: causal row t sees keys s <= t + off */
    int causal;
};

/* Fills a from q (B, T, Hq, D) and k (B, S, Hkv, D); fails on shapes no
 * kernel here handles (the message names the op). */
gqe_status gqe_cuda_attn_shape(attn_shape *a, const gqe_tensor *q, const gqe_tensor *k, bool causal, const char *op);
/* Dd (B, Hq, T) f32 = sum_d dout * out, on the stream. */
gqe_status gqe_cuda_attn_rowdot(float *Dd, const gqe_tensor *dout, const gqe_tensor *out, const attn_shape &a);
#endif
