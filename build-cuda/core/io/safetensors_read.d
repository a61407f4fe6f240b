build-cuda/core/io/safetensors_read.o: core/io/safetensors_read.c \
 core/safetensors.h core/tensor.h core/error.h
core/safetensors.h:
core/tensor.h:
core/error.h:
