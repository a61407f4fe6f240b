/* safetensors files (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header naming each tensor's dtype,
 * shape and byte range, then the raw data. This is the checkpoint and golden
 * file format, so PyTorch can read what we write and we can read its files.
 *
 * Read: F32, BF16 (kept as bf16), I32, and I64 (narrowed to i32, with a range
 * check). Write: F32, BF16, I32. Every malformed input is GQE_ERR_FORMAT with
 * a message naming the file and, where there is one, the tensor. */
#ifndef GQE_SAFETENSORS_H
#define GQE_SAFETENSORS_H

#include <stddef.h>
#include "tensor.h"

typedef struct gqe_st_file {
    int count;              /* tensors, sorted by name */
    char **names;
    gqe_tensor *tensors;    /* CPU tensors owned by the file */
    int meta_count;         /* __metadata__ entries, in file order */
    char **meta_keys;
    char **meta_values;
} gqe_st_file;

/* The largest header we accept (the reference implementation's limit). */
#define GQE_ST_MAX_HEADER (100u << 20)

gqe_status gqe_safetensors_read(const char *path, gqe_st_file *out);
/* The same from a buffer holding a whole file; `label` names it in messages. */
gqe_status gqe_safetensors_parse(const void *buf, size_t len, const char *label, gqe_st_file *out);
/* NULL when absent. The tensor stays owned by the file. */
const gqe_tensor *gqe_st_get(const gqe_st_file *f, const char *name);
const char *gqe_st_meta(const gqe_st_file *f, const char *key);
/* Frees everything and zeroes *f; safe on a zeroed or already freed file. */
void gqe_st_file_free(gqe_st_file *f);

/* Writes n tensors (any device; f32, bf16 or i32) and meta_n metadata
 * strings. Names are sorted in the file and must be unique. The file appears
 * atomically: written to a temporary file created exclusively beside PATH
 * (PATH.tmpXXXXXX, mkstemp), synced, then renamed over PATH. */
gqe_status gqe_safetensors_write(const char *path, int n, const char *const *names,
                                 const gqe_tensor *const *tensors, int meta_n,
                                 const char *const *meta_keys, const char *const *meta_values);

#endif
