build-cuda/core/optim/optimizer.o: core/optim/optimizer.c core/optim.h \
 core/tensor.h core/error.h core/nn/params.h core/nn/../tensor.h \
 core/ops.h core/op_list.h
core/optim.h:
core/tensor.h:
core/error.h:
core/nn/params.h:
core/nn/../tensor.h:
core/ops.h:
core/op_list.h:
