/* A backend is one table of functions with the signatures of core/ops.h plus
 * memory primitives. core/ops.c validates arguments and calls the table of the
 * tensors' device; it never branches on the device otherwise. A new backend is
 * a new folder that fills one of these tables. */
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

    /* ops: same meaning as the gqe_* function of the same name */
    gqe_status (*fill)(gqe_tensor *t, float value);
    gqe_status (*scale)(gqe_tensor *t, float alpha);
    gqe_status (*axpy)(gqe_tensor *y, float alpha, const gqe_tensor *x);
    gqe_status (*add)(gqe_tensor *out, const gqe_tensor *a, const gqe_tensor *b);
    gqe_status (*sumsq)(const gqe_tensor *t, double *out);
    gqe_status (*sum)(const gqe_tensor *t, double *out);
    gqe_status (*copy_cols)(gqe_tensor *dst, int64_t dst_col, const gqe_tensor *src,
                            int64_t src_col, int64_t cols, bool accumulate);
    gqe_status (*matmul)(gqe_tensor *c, const gqe_tensor *a, const gqe_tensor *b,
                         bool trans_a, bool trans_b, float alpha, float beta);
    gqe_status (*embedding_forward)(gqe_tensor *out, const gqe_tensor *table, const gqe_tensor *ids);
    gqe_status (*embedding_backward)(gqe_tensor *dtable, const gqe_tensor *dout, const gqe_tensor *ids);
    gqe_status (*rmsnorm_forward)(gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *x,
                                  const gqe_tensor *w, float eps);
    gqe_status (*rmsnorm_backward)(gqe_tensor *dx, gqe_tensor *dw, const gqe_tensor *dout,
                                   const gqe_tensor *x, const gqe_tensor *w, const gqe_tensor *rstd,
                                   gqe_tensor *dx_copy);
    gqe_status (*add_rmsnorm_forward)(gqe_tensor *sum, gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *a,
                                      const gqe_tensor *b, const gqe_tensor *w, float eps);
    gqe_status (*gelu_forward)(gqe_tensor *out, const gqe_tensor *x);
    gqe_status (*gelu_backward)(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout, gqe_tensor *out);
    gqe_status (*swiglu_forward)(gqe_tensor *out, const gqe_tensor *x);
    gqe_status (*swiglu_backward)(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout);
    gqe_status (*rope_forward)(gqe_tensor *x, float theta, int64_t pos_offset);
    gqe_status (*rope_backward)(gqe_tensor *dx, float theta, int64_t pos_offset);
    gqe_status (*attention_forward)(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                    const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale);
    gqe_status (*attention_backward)(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                     const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                     const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                     bool causal, float scale, bool accumulate);
    gqe_status (*cross_entropy_forward)(gqe_tensor *losses, const gqe_tensor *logits, const gqe_tensor *targets);
    gqe_status (*cross_entropy_backward)(gqe_tensor *dlogits, const gqe_tensor *logits,
                                         const gqe_tensor *targets, float scale);
    gqe_status (*router_topk)(gqe_tensor *probs, gqe_tensor *idx, gqe_tensor *topv,
                              const gqe_tensor *logits, gqe_score_fn fn, const gqe_tensor *bias);
    gqe_status (*router_score_backward)(gqe_tensor *dlogits, const gqe_tensor *probs,
                                        const gqe_tensor *dprobs, gqe_score_fn fn);
    gqe_status (*router_random)(gqe_tensor *idx, gqe_tensor *topv, int64_t M, uint64_t seed, uint64_t stream);
    gqe_status (*router_hash)(gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens, int64_t M);
    gqe_status (*router_scatter_probs)(gqe_tensor *dprobs, const gqe_tensor *dtopv, const gqe_tensor *idx);
    gqe_status (*router_stats)(gqe_tensor *counts, gqe_tensor *psum, const gqe_tensor *idx,
                               const gqe_tensor *probs, bool normalise);
    gqe_status (*router_aux_backward)(gqe_tensor *dprobs, const gqe_tensor *probs,
                                      const gqe_tensor *coef, bool normalise);
    gqe_status (*gather_slots)(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx);
    gqe_status (*gather_slots_rope)(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx,
                                    float theta, int64_t pos_offset);
    gqe_status (*scatter_slots)(gqe_tensor *dq, const gqe_tensor *dslots, const gqe_tensor *idx);
    gqe_status (*slot_mix_forward)(gqe_tensor *out, gqe_tensor *w, const gqe_tensor *o,
                                   const gqe_tensor *p, float eps);
    gqe_status (*slot_mix_backward)(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout,
                                    const gqe_tensor *o, const gqe_tensor *p, const gqe_tensor *out,
                                    const gqe_tensor *w, float eps);
    gqe_status (*slot_scale_forward)(gqe_tensor *out, const gqe_tensor *o, const gqe_tensor *p);
    gqe_status (*slot_scale_backward)(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout,
                                      const gqe_tensor *o, const gqe_tensor *p);
    gqe_status (*group_mean_forward)(gqe_tensor *out, const gqe_tensor *x);
    gqe_status (*group_mean_backward)(gqe_tensor *dx, const gqe_tensor *dout);
    gqe_status (*adamw_update)(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *m, gqe_tensor *v,
                               float lr, float beta1, float beta2, float eps, float wd, int64_t step, float grad_scale);
    gqe_status (*sgd_update)(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *buf, float lr,
                             float momentum, float wd, bool nesterov, int64_t step, float grad_scale);
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

#endif
