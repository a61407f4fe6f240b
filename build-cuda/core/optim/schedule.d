build-cuda/core/optim/schedule.o: core/optim/schedule.c core/optim.h \
 core/tensor.h core/error.h core/nn/params.h core/nn/../tensor.h
core/optim.h:
core/tensor.h:
core/error.h:
core/nn/params.h:
core/nn/../tensor.h:
