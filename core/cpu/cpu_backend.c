/* The CPU backend's table: core/ops.c dispatches here for GQE_CPU tensors. */
#include "cpu.h"

const gqe_backend gqe_cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc, .release = cpu_release, .upload = cpu_upload, .download = cpu_download,
    .copy = cpu_copy, .convert = cpu_convert, .synchronize = cpu_synchronize,
    .fill = cpu_fill, .scale = cpu_scale, .axpy = cpu_axpy, .add = cpu_add,
    .sumsq = cpu_sumsq, .sum = cpu_sum, .copy_cols = cpu_copy_cols, .matmul = cpu_matmul,
    .embedding_forward = cpu_embedding_forward, .embedding_backward = cpu_embedding_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward, .rmsnorm_backward = cpu_rmsnorm_backward,
    .add_rmsnorm_forward = cpu_add_rmsnorm_forward,
    .gelu_forward = cpu_gelu_forward, .gelu_backward = cpu_gelu_backward,
    .swiglu_forward = cpu_swiglu_forward, .swiglu_backward = cpu_swiglu_backward,
    .rope_forward = cpu_rope_forward, .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward, .attention_backward = cpu_attention_backward,
    .cross_entropy_forward = cpu_cross_entropy_forward, .cross_entropy_backward = cpu_cross_entropy_backward,
    .router_topk = cpu_router_topk, .router_score_backward = cpu_router_score_backward,
    .router_random = cpu_router_random, .router_hash = cpu_router_hash,
    .router_scatter_probs = cpu_router_scatter_probs, .router_stats = cpu_router_stats,
    .router_aux_backward = cpu_router_aux_backward,
    .gather_slots = cpu_gather_slots, .gather_slots_rope = cpu_gather_slots_rope,
    .scatter_slots = cpu_scatter_slots,
    .slot_mix_forward = cpu_slot_mix_forward, .slot_mix_backward = cpu_slot_mix_backward,
    .slot_scale_forward = cpu_slot_scale_forward, .slot_scale_backward = cpu_slot_scale_backward,
    .group_mean_forward = cpu_group_mean_forward, .group_mean_backward = cpu_group_mean_backward,
    .adamw_update = cpu_adamw_update, .sgd_update = cpu_sgd_update,
};
