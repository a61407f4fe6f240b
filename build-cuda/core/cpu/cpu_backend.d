build-cuda/core/cpu/cpu_backend.o: core/cpu/cpu_backend.c core/cpu/cpu.h \
 core/backend.h core/ops.h core/tensor.h core/error.h core/op_list.h \
 core/op_list.h
core/cpu/cpu.h:
core/backend.h:
core/ops.h:
core/tensor.h:
core/error.h:
core/op_list.h:
core/op_list.h:
