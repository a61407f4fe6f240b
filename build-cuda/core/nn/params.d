build-cuda/core/nn/params.o: core/nn/params.c core/nn/params.h \
 core/nn/../tensor.h core/nn/../error.h core/nn/../ops.h \
 core/nn/../tensor.h core/nn/../op_list.h core/nn/../rng.h
core/nn/params.h:
core/nn/../tensor.h:
core/nn/../error.h:
core/nn/../ops.h:
core/nn/../tensor.h:
core/nn/../op_list.h:
core/nn/../rng.h:
