#ifndef GQE_FILE_H
#define GQE_FILE_H
/* Whole-file reads for the core's loaders (text data, token shards, task
 * files, tokenizer files): one place that refuses directories, checks the
 * size and the read, and names the file in every error. */
#include <stddef.h>
#include "error.h"

/* Reads path into a malloc'd buffer with one extra zero byte after its len
 * bytes (so text can be used as a C string). what names the file's role in
 * the message when it cannot be opened ("text data", "shard", ...); hint,
 * which may be "", is appended to that message. The caller frees *out. */
gqe_status gqe_file_read(const char *path, const char *what, const char *hint, unsigned char **out, size_t *len);

#endif
