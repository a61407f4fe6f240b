/* Where a step's time goes, per op: with GQE_PROFILE=1 in the environment
 * every op waits for its device before and after running, and its wall time
 * is added to a table printed to stderr at exit. The waits slow the run
 * down; the table is for finding hot ops, not for throughput numbers. */
#ifndef GQE_PROFILE_H
#define GQE_PROFILE_H
#include "backend.h"
#include <stdio.h>

bool gqe_profile_enabled(void);
/* Brackets one op: begin returns the start time (after a device wait). */
double gqe_profile_begin(const gqe_backend *be);
void gqe_profile_end(const gqe_backend *be, const char *op, double t0);
/* The table so far, slowest op first. */
void gqe_profile_report(FILE *f);
#endif
