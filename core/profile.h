/* Where a step's time goes, per op: with GQE_PROFILE=1 in the environment
 * each op's time is added to a table printed to stderr at exit. On a GPU
 * the time is the device's, between markers placed in its stream around
 * the op (no waits: the run keeps its pace, and gaps where the device
 * waited for the host count toward the next op); on the CPU it is the
 * wall time. Matmuls are listed per shape and dtypes. */
#ifndef GQE_PROFILE_H
#define GQE_PROFILE_H
#include "backend.h"
#include <stdio.h>

bool gqe_profile_enabled(void);
/* Brackets one op. */
typedef struct gqe_profile_token { double t0; void *marker; } gqe_profile_token;
gqe_profile_token gqe_profile_begin(const gqe_backend *be);
void gqe_profile_end(const gqe_backend *be, const char *op, gqe_profile_token start);
/* Forgets the table so far (after a warm-up: first calls load kernels). */
void gqe_profile_reset(void);
/* The table so far, slowest op first. */
void gqe_profile_report(FILE *f);
#endif
