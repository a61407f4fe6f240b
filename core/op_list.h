/* The op list: every numeric op of gqe, once. Each entry
 *     GQE_OP(name, (parameters))
 * declares gqe_<name> (core/ops.h), the slot <name> of every backend table
 * (core/backend.h), each backend's function for it (core/cpu/cpu.h,
 * kernels/common.cuh), the tables' initialisers and the op ids that
 * gqe_backend_supports takes. Adding an op: its entry here, its checks in
 * core/ops.c, its CPU and CUDA bodies, its tests.
 *
 * Included several times with GQE_OP defined by the includer: no include
 * guard, and GQE_OP is undefined at the end. Conventions (R, accumulation,
 * dtypes) are those of core/ops.h. */
#ifndef GQE_OP
#error "define GQE_OP(name, params) before including op_list.h"
#endif

/* ---- elementwise and reductions -------------------------------------- */
GQE_OP(fill, (gqe_tensor *t, float value))
GQE_OP(scale, (gqe_tensor *t, float alpha))                 /* t *= alpha */
GQE_OP(axpy, (gqe_tensor *y, float alpha, const gqe_tensor *x)) /* y += alpha x */
GQE_OP(add, (gqe_tensor *out, const gqe_tensor *a, const gqe_tensor *b)) /* out = a + b (out may alias) */
GQE_OP(sumsq, (const gqe_tensor *t, double *out))          /* host result: sum of squares */
GQE_OP(sum, (const gqe_tensor *t, double *out))            /* host result: sum */
/* dst[r, dst_col + c] (+)= src[r, src_col + c], r < R, c < cols;
 * dst (R, Cd) and src (R, Cs) are 2-D views. Used for concat and split.
 * The two float dtypes may differ: the values are converted to dst's. */
GQE_OP(copy_cols, (gqe_tensor *dst, int64_t dst_col, const gqe_tensor *src, int64_t src_col, int64_t cols,
       bool accumulate))

/* ---- matmul ----------------------------------------------------------- */
/* C (M,N) = alpha * op(A) op(B) + beta * C. All three are 2-D views;
 * A is stored (M,K), or (K,M) when trans_a; B is (K,N), or (N,K) when trans_b.
 * A linear layer y = x W^T is gqe_matmul(y, x, W, false, true, 1, 0). */
GQE_OP(matmul, (gqe_tensor *c, const gqe_tensor *a, const gqe_tensor *b, bool trans_a, bool trans_b,
       float alpha, float beta))

/* ---- embedding -------------------------------------------------------- */
/* out (R, D) = table[ids[r]]; ids (R) i32 in [0, V). */
GQE_OP(embedding_forward, (gqe_tensor *out, const gqe_tensor *table, const gqe_tensor *ids))
GQE_OP(embedding_backward, (gqe_tensor *dtable, const gqe_tensor *dout, const gqe_tensor *ids))

/* ---- RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) ---- */
/* x, out (R, D); w (D); rstd (R) saved for backward. */
GQE_OP(rmsnorm_forward, (gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *x, const gqe_tensor *w,
       float eps))
/* dx_copy (R, D), optional (NULL): receives dx after the accumulation, in
 * its own dtype (mixed precision keeps a bf16 copy of the f32 residual
 * gradient for the next matmuls; writing it here saves a pass over dx). */
GQE_OP(rmsnorm_backward, (gqe_tensor *dx, gqe_tensor *dw, const gqe_tensor *dout, const gqe_tensor *x,
       const gqe_tensor *w, const gqe_tensor *rstd, gqe_tensor *dx_copy))
/* Residual add fused with the next norm: sum = a + b, then
 * out = rmsnorm(sum) as gqe_rmsnorm_forward computes it from sum. sum, a, b
 * (R, D); sum may be a. */
GQE_OP(add_rmsnorm_forward, (gqe_tensor *sum, gqe_tensor *out, gqe_tensor *rstd, const gqe_tensor *a,
       const gqe_tensor *b, const gqe_tensor *w, float eps))

/* ---- activations ------------------------------------------------------ */
/* GELU, exact (erf) form: out = x * Phi(x). Same shapes. Both activation
 * backwards OVERWRITE dx: an activation's input gradient has one source, and
 * skipping the zero fill saves a pass over the MLP's widest buffer. */
GQE_OP(gelu_forward, (gqe_tensor *out, const gqe_tensor *x))
/* out, when not NULL, also receives gelu(x): a caller that recomputes the
 * activation for its weight gradient gets it from the same pass. */
GQE_OP(gelu_backward, (gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout, gqe_tensor *out))
/* SwiGLU: x (R, 2H) holds [gate | up]; out (R, H) = silu(gate) * up. */
GQE_OP(swiglu_forward, (gqe_tensor *out, const gqe_tensor *x))
GQE_OP(swiglu_backward, (gqe_tensor *dx, const gqe_tensor *x, const gqe_tensor *dout))

/* ---- RoPE (rotate-half), in place ------------------------------------ */
/* x (B, T, H, D), D even; position of row t is pos_offset + t; pair (i, i+D/2)
 * rotated by angle pos * theta^(-2i/D). Backward applies the inverse rotation
 * to dx in place (it overwrites: the gradient of a rotation is a rotation). */
GQE_OP(rope_forward, (gqe_tensor *x, float theta, int64_t pos_offset))
GQE_OP(rope_backward, (gqe_tensor *dx, float theta, int64_t pos_offset))

/* ---- attention (flash-style: saves out and log-sum-exp only) --------- */
/* q (B, T, Hq, D); k, v (B, S, Hkv, D); out (B, T, Hq, D); lse (B, Hq, T) f32.
 * Hq % Hkv == 0 and query head h reads KV head h / (Hq / Hkv).
 * When causal, query row t sits at absolute position t + (S - T) and sees
 * keys s <= that position (S > T is a KV cache). Scores are scaled by scale.
 * No (T, S) buffer is kept: backward recomputes scores from lse. */
GQE_OP(attention_forward, (gqe_tensor *out, gqe_tensor *lse, const gqe_tensor *q, const gqe_tensor *k,
       const gqe_tensor *v, bool causal, float scale))
/* Backward: dq, dk, dv accumulate (+=) when accumulate is true and are
 * overwritten when it is false (the first writer of a zeroed gradient skips
 * the zero fill; cuDNN's kernels then write them directly). */
GQE_OP(attention_backward, (gqe_tensor *dq, gqe_tensor *dk, gqe_tensor *dv, const gqe_tensor *dout,
       const gqe_tensor *q, const gqe_tensor *k, const gqe_tensor *v, const gqe_tensor *out,
       const gqe_tensor *lse, bool causal, float scale, bool accumulate))

/* ---- cross-entropy ---------------------------------------------------- */
/* logits (R, V); targets (R) i32, a negative target is ignored (loss 0).
 * losses (R) = logsumexp(logits[r]) - logits[r, targets[r]]. */
GQE_OP(cross_entropy_forward, (gqe_tensor *losses, const gqe_tensor *logits, const gqe_tensor *targets))
/* dlogits (R, V) OVERWRITES with scale * (softmax(logits) - onehot(target));
 * ignored rows get 0. dlogits may be the same tensor as logits. */
GQE_OP(cross_entropy_backward, (gqe_tensor *dlogits, const gqe_tensor *logits, const gqe_tensor *targets,
       float scale))
/* A training step's loss pass: losses as cross_entropy_forward, dlogits as
 * cross_entropy_backward and correct as argmax_correct, from one read of
 * each row (dlogits may be logits: the row is read before it is
 * overwritten). The forward pass of a step that will run backward uses it
 * instead of reading its logits once for the loss and again for the
 * gradient. */
GQE_OP(cross_entropy_fused, (gqe_tensor *dlogits, gqe_tensor *losses, gqe_tensor *correct,
       const gqe_tensor *logits, const gqe_tensor *targets, float scale))
/* Top-1 accuracy: correct (R) f32 = 1 where targets[r] >= 0 and
 * argmax_j logits[r, j] == targets[r], else 0 (ignored rows give 0); the
 * caller sums it (gqe_sum) and divides by its count of targets >= 0. The
 * argmax is the FIRST index of the row's maximum (ties go to the lowest j,
 * as torch.argmax does); NaN logits never win, and a row of NaNs only is
 * never correct. Only R floats leave the logits: no (R, V) copy. */
GQE_OP(argmax_correct, (gqe_tensor *correct, const gqe_tensor *logits, const gqe_tensor *targets))

/* ---- routing (GQE.md steps 3-5) --------------------------------------- */
/* fn is a gqe_score_fn (core/ops.h): softmax or sigmoid scores. */
/* logits (R, G, M) -> probs (R, G, M) = softmax over m (or sigmoid);
 * idx (R, G, k) i32 = top-k of probs + bias (bias (G, M), or NULL), in
 * descending order, ties to the lower index; topv (R, G, k) = probs at idx. */
GQE_OP(router_topk, (gqe_tensor *probs, gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *logits,
       gqe_score_fn fn, const gqe_tensor *bias))
/* dlogits += J^T dprobs: softmax p*(dp - sum p dp); sigmoid dp*s*(1-s). */
GQE_OP(router_score_backward, (gqe_tensor *dlogits, const gqe_tensor *probs, const gqe_tensor *dprobs,
       gqe_score_fn fn))
/* Random routing: for row r, group g, k distinct experts of M drawn uniformly
 * from Philox(seed, stream) at element r*G+g; ordered as drawn. topv = 1/k. */
GQE_OP(router_random, (gqe_tensor *idx, gqe_tensor *topv, int64_t M, uint64_t seed, uint64_t stream))
/* Hash routing: first expert = hash(token id, g) mod M, then the next k-1
 * experts cyclically. tokens (R) i32. topv = 1/k. */
GQE_OP(router_hash, (gqe_tensor *idx, gqe_tensor *topv, const gqe_tensor *tokens, int64_t M))
/* dprobs (R,G,M) += scatter of dtopv (R,G,k) to idx. */
GQE_OP(router_scatter_probs, (gqe_tensor *dprobs, const gqe_tensor *dtopv, const gqe_tensor *idx))
/* Load statistics over all R rows: counts (G, M) = #{(r, j): idx[r,g,j] = m},
 * psum (G, M) = sum_r q[r,g,m] with q = probs, or probs normalised over m
 * when normalise (sigmoid router). Both f32, overwritten. */
GQE_OP(router_stats, (gqe_tensor *counts, gqe_tensor *psum, const gqe_tensor *idx, const gqe_tensor *probs,
       bool normalise))
/* Aux-loss gradient: dprobs[r,g,m] += coef[g,m] (coef (G, M)), or, when
 * normalise, the same pushed through q = probs / sum_m probs. */
GQE_OP(router_aux_backward, (gqe_tensor *dprobs, const gqe_tensor *probs, const gqe_tensor *coef,
       bool normalise))
/* The router's whole backward in one pass, as attention's backward runs
 * it: dlogits (R, G, M) OVERWRITTEN with router_score_backward of dprobs,
 * where dprobs = router_scatter_probs of dtopv (R, G, k) at idx (R, G, k)
 * (dtopv NULL: no such term), then router_aux_backward with coef = counts
 * * coef_scale (counts (G, M) f32; NULL: no aux term). Each value is
 * rounded as when those ops run one by one from zeroed dprobs and dlogits
 * (coef a copy of counts scaled in place): the same numbers without the
 * dprobs buffer, its fill and five more launches. */
GQE_OP(router_backward, (gqe_tensor *dlogits, const gqe_tensor *dtopv, const gqe_tensor *idx,
       const gqe_tensor *probs, const gqe_tensor *counts, float coef_scale, gqe_score_fn fn, bool normalise))
/* slots (R, H, D), H >= G*k: slot g*k + j = Q[r, g*M + idx[r,g,j]]; Q (R,
 * G*M, D). Heads past G*k are left as they are: the attention call of
 * variant gqe puts the shared query there (GQE.md step 6 C). */
GQE_OP(gather_slots, (gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx))
/* The gather followed by rope_forward on every head of slots, in one pass:
 * slots (B, T, H, D), H >= G*k, with B*T = R rows of idx, positions
 * pos_offset + t; heads past G*k are turned in place (the shared query,
 * written there unturned). */
GQE_OP(gather_slots_rope, (gqe_tensor *slots, const gqe_tensor *q, const gqe_tensor *idx, float theta,
       int64_t pos_offset))
/* dq (R, G*M, D) += the first G*k heads of dslots (R, H, D), H >= G*k,
 * scattered back to the chosen experts. */
GQE_OP(scatter_slots, (gqe_tensor *dq, const gqe_tensor *dslots, const gqe_tensor *idx))
/* The GQE layer's input-projection gradients side by side, for one matmul
 * over its q, k, v, router and shared-query weights: dy (R, W) OVERWRITES
 * with [dq (G*M*D) | dk (G*D) | dv (G*D) | dlogits (G*M) | dqs (D)], where
 *   dq  = scatter_slots of rope_backward(dslots), zero at unchosen experts,
 *   dk  = group_mean_append_backward(dk, rope),
 *   dv  = group_mean_append_backward(dv, no rope),
 *   dqs = rope_backward(dslots' shared head),
 * each value rounded where those ops round when they run one by one (then
 * copy_cols into dy): the same numbers, from one read of each input instead
 * of a fill, five in-place passes and five copies. The inputs are left as
 * they are. idx (R, G, k); dslots (B, T, H, D) with B*T = R. With the
 * shared head (shared true, the attention call's layout): H > G*k, head
 * G*k the shared query's gradient (heads after it, copies that carry
 * none, are ignored), and dk, dv (B, T, G + 1, D), their last head that of
 * the group means. Without it H = G*k, dk and dv have G heads, and dy no
 * dqs columns. D even. dlogits (R, G*M) or NULL (no learned router), and
 * then dy has no columns for it. RoPE positions start at 0; rope false: no
 * rotation. */
GQE_OP(qkv_grad_pack, (gqe_tensor *dy, const gqe_tensor *dslots, const gqe_tensor *idx, const gqe_tensor *dk,
       const gqe_tensor *dv, const gqe_tensor *dlogits, bool shared, int64_t M, bool rope, float theta))

/* ---- output slots (GQE.md step 6) ------------------------------------- */
/* Slot B and o_proj's input of variant gqe, in one pass: cat (R, S+2, D)
 * OVERWRITTEN with [o's first S heads | mix | o's head S], mix = sum_s
 * w[r,s] o[r,s], w (R, S) = P / max(sum_s P, eps) saved for backward. P
 * (R, S); o (R, H, D), H > S: the attention call's output, the shared
 * head at S (heads after it, its copies, are not read). */
GQE_OP(slot_mix_forward, (gqe_tensor *cat, gqe_tensor *w, const gqe_tensor *o, const gqe_tensor *p, float eps))
/* Its backward from dcat (R, S+2, D), dmix its head S: d_o (R, H, D)
 * OVERWRITTEN with dcat's heads + w dmix in heads < S, dcat's head S+1 in
 * head S, zeros after (the shared head's copies carry no gradient); dP
 * (R, S) OVERWRITTEN with dmix . (o - mix) / max(sum P, eps), or dmix . o
 * / eps when the clamp is active. cat is the forward's. */
GQE_OP(slot_mix_backward, (gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dcat, const gqe_tensor *o,
       const gqe_tensor *p, const gqe_tensor *cat, const gqe_tensor *w, float eps))
/* weighted_concat: out (R, S, D) = P[r,s] * o[r,s]. */
GQE_OP(slot_scale_forward, (gqe_tensor *out, const gqe_tensor *o, const gqe_tensor *p))
/* do += P dout; dP += dout . o */
GQE_OP(slot_scale_backward, (gqe_tensor *d_o, gqe_tensor *dp, const gqe_tensor *dout, const gqe_tensor *o,
       const gqe_tensor *p))
/* The shared head's keys or values beside the groups', for one attention
 * call over G + 1 KV heads (the routed slots' and the shared head's):
 * out (B, T, G+1, D) = [y | mean_g y], y = x (B, T, G, D) turned by RoPE
 * at positions pos_offset + t when rope (D even), else x. The mean is of
 * y as stored. */
GQE_OP(group_mean_append, (gqe_tensor *out, const gqe_tensor *x, bool rope, float theta, int64_t pos_offset))
/* Its backward: dx (B, T, G, D) OVERWRITTEN with rope_backward(dout[.., :G]
 * + dout[.., G] / G) at positions from 0 (rope), or without the rotation. */
GQE_OP(group_mean_append_backward, (gqe_tensor *dx, const gqe_tensor *dout, bool rope, float theta))

/* ---- optimizer updates over flat f32 buffers --------------------------- */
/* AdamW (decoupled decay), step counts from 1:
 * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p). Both updates read the
 * gradient as grad_scale * g: a global-norm clip folds into the update
 * instead of costing its own pass over the gradients (1 = none). */
GQE_OP(adamw_update, (gqe_tensor *p, const gqe_tensor *g, gqe_tensor *m, gqe_tensor *v, float lr, float beta1,
       float beta2, float eps, float wd, int64_t step, float grad_scale))
/* SGD with momentum (PyTorch convention, dampening 0):
 * g' = g + wd p; buf = momentum buf + g' (buf = g' at step 1); p -= lr * (nesterov ? g' + momentum buf : buf). */
GQE_OP(sgd_update, (gqe_tensor *p, const gqe_tensor *g, gqe_tensor *buf, float lr, float momentum, float wd,
       bool nesterov, int64_t step, float grad_scale))

#undef GQE_OP
