build-cuda/core/io/safetensors_write.o: core/io/safetensors_write.c \
 core/safetensors.h core/tensor.h core/error.h
core/safetensors.h:
core/tensor.h:
core/error.h:
