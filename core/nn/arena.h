/* Activations saved for backward live in one allocation per input shape.
 * A layer lays its buffers out twice: once counting (no memory), then for
 * real, so the allocation happens once per shape and never inside a step. */
#ifndef GQE_ARENA_H
#define GQE_ARENA_H
#include "../tensor.h"

typedef struct gqe_arena {
    gqe_tensor buf;     /* f32 storage; i32 views share it (same width) */
    size_t used;        /* elements handed out in this pass */
    size_t cap;
    bool counting;
    gqe_device device;
} gqe_arena;

/* Starts a counting pass. */
void gqe_arena_begin(gqe_arena *a, gqe_device dev);
/* Ends the counting pass: (re)allocates when more room is needed and starts the real pass. */
gqe_status gqe_arena_commit(gqe_arena *a);
/* A view of the next block (64-element aligned); empty while counting. */
gqe_tensor gqe_arena_take(gqe_arena *a, gqe_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
void gqe_arena_free(gqe_arena *a);
#endif
