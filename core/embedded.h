/* Text files compiled into the binary (the Lua library, the SQL schema and
 * views), so build/gqe and build/gqe.so work from any directory. */
#ifndef GQE_EMBEDDED_H
#define GQE_EMBEDDED_H
#include <stddef.h>

typedef struct gqe_embedded_file { const char *path; const char *data; size_t len; } gqe_embedded_file;
extern const gqe_embedded_file gqe_embedded_files[];   /* ends with {NULL, NULL, 0} */
/* The file with this repository-relative path ("analysis/views.sql"), or NULL. */
const char *gqe_embedded_find(const char *path, size_t *len);
#endif
