/* The CPU backend's table: core/ops.c dispatches here for GQE_CPU tensors. */
#include "cpu.h"

const gqe_backend gqe_cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc, .release = cpu_release, .upload = cpu_upload, .download = cpu_download,
    .copy = cpu_copy, .convert = cpu_convert, .synchronize = cpu_synchronize,
    /* every op of core/op_list.h: .fill = cpu_fill, ... */
#define GQE_OP(name, params) .name = cpu_##name,
#include "op_list.h"
};
