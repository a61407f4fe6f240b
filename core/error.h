/* Error codes and the per-thread message that explains the last failure.
 * Every fallible core function returns gqe_status; the message names the
 * problem (key, allowed values, file, offset) so callers can show it as is. */
#ifndef GQE_ERROR_H
#define GQE_ERROR_H

typedef enum gqe_status {
    GQE_OK = 0,
    GQE_ERR_ARG,      /* invalid argument or configuration */
    GQE_ERR_SHAPE,    /* tensor shapes, dtypes or devices do not agree */
    GQE_ERR_NOMEM,    /* allocation failed */
    GQE_ERR_IO,       /* file missing, unreadable, unwritable */
    GQE_ERR_FORMAT,   /* file present but corrupt or of the wrong kind */
    GQE_ERR_DEVICE,   /* CUDA / cuBLAS failure or backend not built */
    GQE_ERR_DB,       /* SQLite failure */
    GQE_ERR_NUMERIC,  /* NaN or Inf where a finite number is required */
    GQE_ERR_INTERRUPTED
} gqe_status;

/* Sets the message (printf-style) and returns code, so callers can write
 * `return gqe_fail(GQE_ERR_ARG, "model.k must be in 1..%d", m);` */
gqe_status gqe_fail(gqe_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *gqe_last_error(void);
void gqe_clear_error(void);
const char *gqe_status_name(gqe_status s);

#define GQE_TRY(expr) do { gqe_status _s = (expr); if (_s != GQE_OK) return _s; } while (0)

#endif
