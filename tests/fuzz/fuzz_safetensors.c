/* libFuzzer target: any byte string given to the safetensors parser must
 * either load (and then be self-consistent) or fail with a message; never
 * crash, leak, or read outside the buffer. */
#include "safetensors.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gqe_st_file f;
    if (gqe_safetensors_parse(data, size, "fuzz", &f) != GQE_OK) {
        if (f.count != 0 || f.names != NULL || strlen(gqe_last_error()) == 0) abort();
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < f.count; i++) {
        if (gqe_st_get(&f, f.names[i]) != &f.tensors[i]) abort();   /* sorted, unique */
        if (i && strcmp(f.names[i - 1], f.names[i]) >= 0) abort();
        total += gqe_tensor_nbytes(&f.tensors[i]);
        volatile unsigned char sink = 0;  /* touch every byte: ASan checks the sizes */
        const unsigned char *p = gqe_tensor_data(&f.tensors[i]);
        for (size_t j = 0; j < gqe_tensor_nbytes(&f.tensors[i]); j++) sink ^= p[j];
        (void)sink;
    }
    for (int i = 0; i < f.meta_count; i++)
        if (gqe_st_meta(&f, f.meta_keys[i]) == NULL) abort();
    if (total > size * 2) abort();  /* I64 narrows, so data never grows */
    gqe_st_file_free(&f);
    return 0;
}
