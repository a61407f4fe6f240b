/* libFuzzer target: llm.c eval-file images (HellaSwag format) through the
 * task reader and, when they pass and fit a small vocabulary, through the
 * scorer with a tiny model, so a row built outside its buffers would show
 * up as an ASan report. */
#include "eval.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB 512

static gqe_lm *model(void) {
    static gqe_lm *lm;
    if (!lm) {
        gqe_lm_config c;
        gqe_lm_config_default(&c);
        c.vocab = VOCAB; c.dim = 8; c.layers = 1; c.max_seq = 8; c.mlp_hidden = 8;
        c.attn.experts = 2; c.attn.groups = 1; c.attn.head_dim = 4; c.attn.kind = GQE_ATTN_GQA; c.seed = 1;
        if (gqe_lm_create(&lm, &c, GQE_CPU) != GQE_OK) abort();
    }
    return lm;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gqe_mc_task t = {0};
    if (gqe_mc_task_parse_llmc(&t, data, size, "fuzz.bin") == GQE_OK) {
        if (gqe_mc_task_measure(&t, NULL) != GQE_OK) abort();
        if (t.n > 0 && t.n <= 8 && gqe_mc_task_check_vocab(&t, VOCAB, "fuzz.bin") == GQE_OK) {
            gqe_mc_summary s;
            int64_t B = 1 + (size > 16 ? data[16] % 4 : 0);
            if (gqe_mc_score(model(), &t, B, 8, NULL, &s) != GQE_OK) abort();
            if (s.n != t.n || s.acc < 0 || s.acc > 1 || s.acc_norm < 0 || s.acc_norm > 1) abort();
        }
    }
    gqe_mc_task_free(&t);
    return 0;
}
