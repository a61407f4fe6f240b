build-cuda/core/tensor.o: core/tensor.c core/tensor.h core/error.h \
 core/backend.h core/ops.h core/op_list.h
core/tensor.h:
core/error.h:
core/backend.h:
core/ops.h:
core/op_list.h:
