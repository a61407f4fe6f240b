#include "interrupt.h"
#include <signal.h>

static volatile sig_atomic_t pending;

void gqe_interrupt_request(int sig) { pending = sig; }
int gqe_interrupt_pending(void) { return pending; }
void gqe_interrupt_clear(void) { pending = 0; }
