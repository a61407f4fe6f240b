build-cuda/core/ops.o: core/ops.c core/backend.h core/ops.h core/tensor.h \
 core/error.h core/op_list.h core/profile.h
core/backend.h:
core/ops.h:
core/tensor.h:
core/error.h:
core/op_list.h:
core/profile.h:
