build-cuda/core/nn/attn_config.o: core/nn/attn_config.c core/nn/attn.h \
 core/nn/params.h core/nn/../tensor.h core/nn/../error.h core/nn/../rng.h
core/nn/attn.h:
core/nn/params.h:
core/nn/../tensor.h:
core/nn/../error.h:
core/nn/../rng.h:
