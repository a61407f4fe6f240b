build-cuda/core/optim/config.o: core/optim/config.c core/optim.h \
 core/tensor.h core/error.h core/nn/params.h core/nn/../tensor.h
core/optim.h:
core/tensor.h:
core/error.h:
core/nn/params.h:
core/nn/../tensor.h:
