build-cuda/core/cpu/cpu_matmul.o: core/cpu/cpu_matmul.c core/cpu/cpu.h \
 core/backend.h core/ops.h core/tensor.h core/error.h core/op_list.h \
 core/op_list.h /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h
core/cpu/cpu.h:
core/backend.h:
core/ops.h:
core/tensor.h:
core/error.h:
core/op_list.h:
core/op_list.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
