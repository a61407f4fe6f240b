/* Multiple-choice evaluation: each example is a context and several
 * choices (token ids); a choice's score is the model's log-likelihood of
 * its tokens after the context. acc counts the examples whose true choice
 * has the highest sum of log-probs; acc_norm divides each sum by the
 * choice's length in bytes first (lm-evaluation-harness's acc_norm).
 *
 * Task files in llm.c's eval format (dev/data/hellaswag.py): a header of
 * 256 int32 (magic 20240522, version 1, example count, longest example in
 * bytes), then per example a uint16 stream: 65535, the example's size in
 * bytes, its index, the label, the number of choices, the context length
 * and tokens, then each choice's length and tokens. */
#ifndef GQE_EVAL_H
#define GQE_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "nn/lm.h"
#include "tok.h"

#define GQE_EVAL_MAGIC 20240522
#define GQE_EVAL_VERSION 1

typedef struct gqe_mc_example {
    int64_t nctx;
    int nchoices;
    int label;
    int64_t tok_off;       /* context tokens, then each choice's, in the task's pool */
    int64_t choice_off;    /* this example's first entry in the per-choice arrays */
} gqe_mc_example;

typedef struct gqe_mc_task {
    gqe_mc_example *ex;
    int64_t n, cap;
    int32_t *tok; int64_t ntok, tok_cap;
    int64_t *choice_len;    /* tokens per choice */
    int64_t *choice_bytes;  /* bytes per choice (acc_norm); 0 until measured */
    int64_t nchoice, choice_cap;
} gqe_mc_task;

typedef struct gqe_mc_summary { int64_t n; double acc, acc_norm; } gqe_mc_summary;

void gqe_mc_task_free(gqe_mc_task *t);
/* Appends one example; choice_bytes may be NULL (measure later). */
gqe_status gqe_mc_task_add(gqe_mc_task *t, const int32_t *ctx, int64_t nctx, int nchoices,
                           const int32_t *const *choice, const int64_t *choice_len,
                           const int64_t *choice_bytes, int label);
/* Reads an llm.c eval file (path names it in messages). */
gqe_status gqe_mc_task_read_llmc(gqe_mc_task *t, const char *path);
gqe_status gqe_mc_task_parse_llmc(gqe_mc_task *t, const void *buf, size_t len, const char *label);
/* Fills choice_bytes from the tokens: their decoded length with tok, or one
 * byte per token (byte-level models) when tok is NULL. */
gqe_status gqe_mc_task_measure(gqe_mc_task *t, const gqe_tokenizer *tok);
/* Every token id below vocab, or an error naming label, example and id. */
gqe_status gqe_mc_task_check_vocab(const gqe_mc_task *t, int64_t vocab, const char *label);

/* Scores every choice with forwards of shape (B, T): rows are context +
 * choice, left-truncated to T + 1 tokens as lm-evaluation-harness does;
 * only context is cut: a choice longer than T tokens is an error, never
 * scored on part of its tokens. An example's choices are adjacent rows. logprob (one per choice, may be NULL) receives
 * the sums. */
gqe_status gqe_mc_score(gqe_lm *lm, const gqe_mc_task *t, int64_t B, int64_t T, double *logprob, gqe_mc_summary *out);

#endif
