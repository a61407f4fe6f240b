build-cuda/core/nn/arena.o: core/nn/arena.c core/nn/arena.h \
 core/nn/../tensor.h core/nn/../error.h
core/nn/arena.h:
core/nn/../tensor.h:
core/nn/../error.h:
