#include "error.h"
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_message[1024];

gqe_status gqe_fail(gqe_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

const char *gqe_last_error(void) { return last_message[0] ? last_message : "no error"; }
void gqe_clear_error(void) { last_message[0] = 0; }

const char *gqe_status_name(gqe_status s) {
    static const char *names[] = {"ok", "invalid argument", "shape mismatch", "out of memory",
                                  "I/O error", "bad format", "device error", "database error",
                                  "non-finite number", "interrupted"};
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "unknown error";
}
