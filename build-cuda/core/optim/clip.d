build-cuda/core/optim/clip.o: core/optim/clip.c core/optim.h \
 core/tensor.h core/error.h core/nn/params.h core/nn/../tensor.h \
 core/ops.h core/op_list.h
core/optim.h:
core/tensor.h:
core/error.h:
core/nn/params.h:
core/nn/../tensor.h:
core/ops.h:
core/op_list.h:
