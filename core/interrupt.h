/* A request to stop, set from a signal handler and polled by computations
 * that can run long (a model's forward and backward, layer by layer), so a
 * SIGTERM is acted on within about one layer's work rather than a whole step
 * or evaluation. Polling costs a load; nothing changes while none is set. */
#ifndef GQE_INTERRUPT_H
#define GQE_INTERRUPT_H

/* Async-signal-safe. sig > 0 is the signal's number. */
void gqe_interrupt_request(int sig);
/* The pending signal's number, or 0. */
int gqe_interrupt_pending(void);
void gqe_interrupt_clear(void);

#endif
