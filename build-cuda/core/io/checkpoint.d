build-cuda/core/io/checkpoint.o: core/io/checkpoint.c \
 core/io/../checkpoint.h core/io/../nn/lm.h core/io/../nn/attn.h \
 core/io/../nn/params.h core/io/../nn/../tensor.h \
 core/io/../nn/../error.h core/io/../nn/../rng.h core/io/../optim.h \
 core/io/../tensor.h core/io/../nn/params.h core/io/../safetensors.h
core/io/../checkpoint.h:
core/io/../nn/lm.h:
core/io/../nn/attn.h:
core/io/../nn/params.h:
core/io/../nn/../tensor.h:
core/io/../nn/../error.h:
core/io/../nn/../rng.h:
core/io/../optim.h:
core/io/../tensor.h:
core/io/../nn/params.h:
core/io/../safetensors.h:
