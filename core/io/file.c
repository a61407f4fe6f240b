#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

gqe_status gqe_file_read(const char *path, const char *what, const char *hint, unsigned char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return gqe_fail(GQE_ERR_IO, "%s: cannot open %s: %s%s", path, what, strerror(errno), hint);
    gqe_status s = GQE_OK;
    long size = -1;
    /* fopen succeeds on a directory, and ftell then reports LONG_MAX. */
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        s = gqe_fail(GQE_ERR_IO, "%s: not a regular file (a directory?)", path);
    if (s == GQE_OK && (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0))
        s = gqe_fail(GQE_ERR_IO, "%s: cannot determine the size: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    if (s == GQE_OK && !(buf = malloc((size_t)size + 1))) s = gqe_fail(GQE_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
    if (s == GQE_OK && fread(buf, 1, (size_t)size, f) != (size_t)size)
        s = gqe_fail(GQE_ERR_IO, "%s: read failed: %s", path, ferror(f) ? strerror(errno) : "file shrank while reading");
    fclose(f);
    if (s != GQE_OK) { free(buf); return s; }
    buf[size] = 0;
    *out = buf;
    *len = (size_t)size;
    return GQE_OK;
}
