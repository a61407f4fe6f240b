build-cuda/core/nn/attn.o: core/nn/attn.c core/nn/attn_internal.h \
 core/nn/attn.h core/nn/params.h core/nn/../tensor.h core/nn/../error.h \
 core/nn/../rng.h core/nn/arena.h core/nn/../ops.h core/nn/../tensor.h \
 core/nn/../op_list.h
core/nn/attn_internal.h:
core/nn/attn.h:
core/nn/params.h:
core/nn/../tensor.h:
core/nn/../error.h:
core/nn/../rng.h:
core/nn/arena.h:
core/nn/../ops.h:
core/nn/../tensor.h:
core/nn/../op_list.h:
