build-cuda/core/cpu/cpu_rope.o: core/cpu/cpu_rope.c core/cpu/cpu.h \
 core/backend.h core/ops.h core/tensor.h core/error.h core/op_list.h \
 core/op_list.h
core/cpu/cpu.h:
core/backend.h:
core/ops.h:
core/tensor.h:
core/error.h:
core/op_list.h:
core/op_list.h:
