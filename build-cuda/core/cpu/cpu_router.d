build-cuda/core/cpu/cpu_router.o: core/cpu/cpu_router.c core/cpu/cpu.h \
 core/backend.h core/ops.h core/tensor.h core/error.h core/op_list.h \
 core/op_list.h core/rng.h
core/cpu/cpu.h:
core/backend.h:
core/ops.h:
core/tensor.h:
core/error.h:
core/op_list.h:
core/op_list.h:
core/rng.h:
