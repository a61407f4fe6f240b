/* libFuzzer target: llm.c shard images through the shard checker and, when
 * they pass, through the row sampler with a batch shape taken from the
 * input, so out-of-range starts would show up as ASan reports. */
#include "data.h"
#include "data/kinds.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy to malloc'd memory: the reader always hands the parser such a
     * buffer, aligned for uint16 tokens. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    const uint16_t *tok;
    int64_t n;
    int64_t vocab = size > 13 ? 1 + (buf[12] | (buf[13] << 8)) : 50257;
    if (gqe_shard_parse(buf, size, "fuzz.bin", vocab, &tok, &n) == GQE_OK) {
        for (int64_t i = 0; i < n; i++) if (tok[i] >= vocab) abort();
        int64_t B = size > 14 ? 1 + buf[14] % 4 : 1, T = size > 15 ? 1 + buf[15] % 16 : 1;
        gqe_token_segment seg = {tok, n};
        gqe_token_split sp = {.segs = &seg, .nseg = 1, .width = 2, .total = n, .label = "fuzz.bin"};
        int32_t tk[4 * 16], tg[4 * 16];
        for (int64_t index = 0; index < 3; index++)
            if (gqe_token_split_batch(&sp, 1, GQE_SPLIT_TRAIN, index, B, T, tk, tg) == GQE_OK)
                for (int64_t i = 0; i < B * T; i++) if (tk[i] >= vocab || tg[i] >= vocab) abort();
    }
    free(buf);
    return 0;
}
