build-cuda/core/nn/lm_decode.o: core/nn/lm_decode.c core/nn/lm_internal.h \
 core/nn/lm.h core/nn/attn.h core/nn/params.h core/nn/../tensor.h \
 core/nn/../error.h core/nn/../rng.h core/nn/arena.h core/nn/../ops.h \
 core/nn/../tensor.h core/nn/../op_list.h
core/nn/lm_internal.h:
core/nn/lm.h:
core/nn/attn.h:
core/nn/params.h:
core/nn/../tensor.h:
core/nn/../error.h:
core/nn/../rng.h:
core/nn/arena.h:
core/nn/../ops.h:
core/nn/../tensor.h:
core/nn/../op_list.h:
