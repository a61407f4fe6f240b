/* Every numeric op of gqe, forward and backward, as a function over tensors.
 * Each call checks shapes/dtypes/devices, then dispatches to the backend of
 * its tensors (core/cpu, kernels/). All tensors of one call share a device.
 *
 * Conventions:
 *  - "R" is a row count: the product of all but the named trailing dims.
 *  - Backward ops ACCUMULATE (+=) into every gradient they write, except
 *    where a comment says "overwrites"; callers zero gradients first.
 *  - Float tensors are f32 on the CPU; the CUDA backend also takes bf16
 *    activations where its comment says so. Indices are i32.
 */
#ifndef GQE_OPS_H
#define GQE_OPS_H

#include "tensor.h"

/* ---- elementwise and reductions -------------------------------------- */
gqe_status gqe_fill(gqe_tensor *t, float value);
gqe_status gqe_scale(gqe_tensor *t, float alpha);                 /* t *= alpha */
gqe_status gqe_axpy(gqe_tensor *y, float alpha, const gqe_tensor *x); /* y += alpha x */
gqe_status gqe_add(gqe_tensor *out, const gqe_tensor *a, const gqe_tensor *b); /* out = a + b (out may alias) */
gqe_status gqe_sumsq(const gqe_tensor *t, double *out);          /* host result: sum of squares */
gqe_status gqe_sum(const gqe_tensor *t, double *out);            /* host result: sum */
/* dst[r, dst_col + c] (+)= src[r, src_col + c], r < R, c < cols;
 * dst (R, Cd) and src (R, Cs) are 2-D views. Used for concat and split.
 * The two float dtypes may differ: the values are converted to dst's. */
gqe_status gqe_copy_cols(gqe_tensor *dst, int64_t dst_col, const gqe_tensor *src,
                         int64_t src_col, int64_t cols, bool accumulate);

/* ---- matmul ----------------------------------------------------------- */
/* C (M,N) = alpha * op(A) op(B) + beta * C. All three are 2-D views;
 * A is stored (M,K), or (K,M) when trans_a; B is (K,N), or (N,K) when trans_b.
 * A linear layer y = x W^T is gqe_matmul(y, x, W, false, true, 1, 0). */
gqe_status gqe_matmul(gqe_tensor *c, const gqe_tensor *a, const gqe_tensor *b,
                      bool trans_a, bool trans_b, float alpha, float beta);

/* ---- embedding -------------------------------------------------------- */
/* out (R, D) = table[ids[r]]; ids (R) i32 in [0, V). */
gqe_status gqe_embedding_forward(gqe_tensor *out, const gqe_tensor *table, const gqe_tensor *ids);
gqe_status gqe_embedding_backward(gqe_tensor *dtable, const gqe_tensor *dout, const gqe_tensor *ids);

/* ---- RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) ---- */
/* x, out (R, D); w (D); rstd (R) saved for backward. */
gqe_status gqe_rmsnorm_forward(gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *x,
                               const gqe_tensor *w, float eps);
/* dx_copy (R, D), optional (NULL): receives dx after the accumulation, in
 * its own dtype (mixed precision keeps a bf16 copy of the f32 residual
 * gradient for the next matmuls; writing it here saves a pass over dx). */
gqe_status gqe_rmsnorm_backward(gqe_tensor *dx, gqe_tensor *dw, const gqe_tensor *dout,
                                const gqe_tensor *x, const gqe_tensor *w, const gqe_tensor *rstd,
                                gqe_tensor *dx_copy);
/* Residual add fused with the next norm: sum = a + b, then
 * out = rmsnorm(sum) as gqe_rmsnorm_forward computes it from sum. sum, a, b
 * (R, D); sum may be a. */
gqe_status gqe_add_rmsnorm_forward(gqe_tensor *sum, gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *a,
                                   const gqe_tensor *b, const gqe_tensor *w, float eps);

/* ---- activations ------------------------------------------------------ */
/* GELU, exact (erf) form: out = x * Phi(x). Same shapes. Both activation
 * backwards OVERWRITE dx: an activation's input gradient has one source, and
 * skipping the zero fill saves a pass over the MLP's widest buffer. */
gqe_status gqe_gelu_forward(gqe_tensor *out, const gqe_tensor *x);
/* out, when not NULL, also receives gelu(x): a caller that recomputes the
 * activation for its weight gradient gets it from the same pass. */
gqe_status gqe_gelu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout, gqe_tensor *out);
/* SwiGLU: x (R, 2H) holds [gate | up]; out (R, H) = silu(gate) * up. */
gqe_status gqe_swiglu_forward(gqe_tensor *out, const gqe_tensor *x);
gqe_status gqe_swiglu_backward(gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout);

/* ---- RoPE (rotate-half), in place ------------------------------------ */
/* x (B, T, H, D), D even; position of row t is pos_offset + t; pair (i, i+D/2)
 * rotated by angle pos * theta^(-2i/D). Backward applies the inverse rotation
 * to dx in place (it overwrites: the gradient of a rotation is a rotation). */
gqe_status gqe_rope_forward(gqe_tensor *x, float theta, int64_t pos_offset);
gqe_status gqe_rope_backward(gqe_tensor *dx, float theta, int64_t pos_offset);

/* ---- attention (flash-style: saves out and log-sum-exp only) --------- */
/* q (B, T, Hq, D); k, v (B, S, Hkv, D); out (B, T, Hq, D); lse (B, Hq, T) f32.
 * Hq % Hkv == 0 and query head h reads KV head h / (Hq / Hkv).
 * When causal, query row t sits at absolute position t + (S - T) and sees
 * keys s <= that position (S > T is a KV cache). Scores are scaled by scale.
 * No (T, S) buffer is kept: backward recomputes scores from lse. */
gqe_status gqe_attention_forward(gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q,
                                 const gqe_tensor *k, const gqe_tensor *v, bool causal, float scale);
/* Backward: dq, dk, dv accumulate (+=) when accumulate is true and are
 * overwritten when it is false (the first writer of a zeroed gradient skips
 * the zero fill; cuDNN's kernels then write them directly). */
gqe_status gqe_attention_backward(gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv,
                                  const gqe_tensor *dout, const gqe_tensor *q, const gqe_tensor *k,
                                  const gqe_tensor *v, const gqe_tensor *out, const gqe_tensor *lse,
                                  bool causal, float scale, bool accumulate);

/* ---- cross-entropy ---------------------------------------------------- */
/* logits (R, V); targets (R) i32, a negative target is ignored (loss 0).
 * losses (R) = logsumexp(logits[r]) - logits[r, targets[r]]. */
gqe_status gqe_cross_entropy_forward(gqe_tensor *losses, const gqe_tensor *logits, const gqe_tensor *targets);
/* dlogits (R, V) OVERWRITES with scale * (softmax(logits) - onehot(target));
 * ignored rows get 0. dlogits may be the same tensor as logits. */
gqe_status gqe_cross_entropy_backward(gqe_tensor *dlogits, const gqe_tensor *logits,
                                      const gqe_tensor *targets, float scale);

/* ---- routing (GQE.md steps 3-5) --------------------------------------- */
typedef enum gqe_score_fn { GQE_SCORE_SOFTMAX = 0, GQE_SCORE_SIGMOID = 1 } gqe_score_fn;
/* logits (R, G, M) -> probs (R, G, M) = softmax over m (or sigmoid);
 * idx (R, G, k) i32 = top-k of probs + bias (bias (G, M), or NULL), in
 * descending order, ties to the lower index; topv (R, G, k) = probs at idx. */
gqe_status gqe_router_topk(gqe_tensor *probs, gqe_tensor *idx, gqe_tensor *topv,
                           const gqe_tensor *logits, gqe_score_fn fn, const gqe_tensor *bias);
/* dlogits += J^T dprobs: softmax p*(dp - sum p dp); sigmoid dp*s*(1-s). */
gqe_status gqe_router_score_backward(gqe_tensor *dlogits, const gqe_tensor *probs,
                                     const gqe_tensor *dprobs, gqe_score_fn fn);
/* Random routing: for row r, group g, k distinct experts of M drawn uniformly
 * from Philox(seed, stream) at element r*G+g; ordered as drawn. topv = 1/k. */
gqe_status gqe_router_random(gqe_tensor *idx, gqe_tensor *topv, int64_t M, uint64_t seed, uint64_t stream);
/* Hash routing: first expert = hash(token id, g) mod M, then the next k-1
 * experts cyclically. tokens (R) i32. topv = 1/k. */
gqe_status gqe_router_hash(gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens, int64_t M);
/* dprobs (R,G,M) += scatter of dtopv (R,G,k) to idx. */
gqe_status gqe_router_scatter_probs(gqe_tensor *dprobs, const gqe_tensor *dtopv, const gqe_tensor *idx);
/* Load statistics over all R rows: counts (G, M) = #{(r, j): idx[r,g,j] = m},
 * psum (G, M) = sum_r q[r,g,m] with q = probs, or probs normalised over m
 * when normalise (sigmoid router). Both f32, overwritten. */
gqe_status gqe_router_stats(gqe_tensor *counts, gqe_tensor *psum, const gqe_tensor *idx,
                            const gqe_tensor *probs, bool normalise);
/* Aux-loss gradient: dprobs[r,g,m] += coef[g,m] (coef (G, M)), or, when
 * normalise, the same pushed through q = probs / sum_m probs. */
gqe_status gqe_router_aux_backward(gqe_tensor *dprobs, const gqe_tensor *probs,
                                   const gqe_tensor *coef, bool normalise);
/* slots (R, G*k, D), slot g*k + j = Q[r, g*M + idx[r,g,j]]; Q (R, G*M, D). */
gqe_status gqe_gather_slots(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx);
/* The gather followed by rope_forward on slots, in one pass: slots
 * (B, T, G*k, D) with B*T = R rows of idx, positions pos_offset + t. */
gqe_status gqe_gather_slots_rope(gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx,
                                 float theta, int64_t pos_offset);
/* dq (R, G*M, D) += dslots scattered back to the chosen experts. */
gqe_status gqe_scatter_slots(gqe_tensor *dq, const gqe_tensor *dslots, const gqe_tensor *idx);

/* ---- output slots (GQE.md step 6) ------------------------------------- */
/* Slot B: out (R, D) = sum_s w[r,s] o[r,s], w (R, S) = P / max(sum_s P, eps)
 * saved for backward; o (R, S, D), P (R, S). */
gqe_status gqe_slot_mix_forward(gqe_tensor *out, gqe_tensor *w, const gqe_tensor *o,
                                const gqe_tensor *p, float eps);
/* do += w dout; dP += dout . (o - out) / max(sum P, eps) (or dout . o / eps
 * when the clamp is active). */
gqe_status gqe_slot_mix_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout,
                                 const gqe_tensor *o, const gqe_tensor *p, const gqe_tensor *out,
                                 const gqe_tensor *w, float eps);
/* weighted_concat: out (R, S, D) = P[r,s] * o[r,s]. */
gqe_status gqe_slot_scale_forward(gqe_tensor *out, const gqe_tensor *o, const gqe_tensor *p);
/* do += P dout; dP += dout . o */
gqe_status gqe_slot_scale_backward(gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout,
                                   const gqe_tensor *o, const gqe_tensor *p);
/* Shared head: out (R, 1, D) = mean over g of x (R, G, D); backward dx += dout / G. */
gqe_status gqe_group_mean_forward(gqe_tensor *out, const gqe_tensor *x);
gqe_status gqe_group_mean_backward(gqe_tensor *dx, const gqe_tensor *dout);

/* ---- optimizer updates over flat f32 buffers --------------------------- */
/* AdamW (decoupled decay), step counts from 1:
 * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p). Both updates read the
 * gradient as grad_scale * g: a global-norm clip folds into the update
 * instead of costing its own pass over the gradients (1 = none). */
gqe_status gqe_adamw_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *m, gqe_tensor *v,
                            float lr, float beta1, float beta2, float eps, float wd, int64_t step, float grad_scale);
/* SGD with momentum (PyTorch convention, dampening 0):
 * g' = g + wd p; buf = momentum buf + g' (buf = g' at step 1); p -= lr * (nesterov ? g' + momentum buf : buf). */
gqe_status gqe_sgd_update(gqe_tensor *p, const gqe_tensor *g, gqe_tensor *buf, float lr,
                          float momentum, float wd, bool nesterov, int64_t step, float grad_scale);

#endif
