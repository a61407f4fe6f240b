build-cuda/core/profile.o: core/profile.c core/profile.h core/backend.h \
 core/ops.h core/tensor.h core/error.h core/op_list.h
core/profile.h:
core/backend.h:
core/ops.h:
core/tensor.h:
core/error.h:
core/op_list.h:
