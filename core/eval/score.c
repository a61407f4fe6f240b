/* Scoring multiple-choice tasks with the LM (core/eval.h). Rows of context
 * + choice are packed, whole examples at a time, into forwards of one fixed
 * shape (B, T), so a run's evaluation reuses its training arena; targets
 * are -1 except where a choice token is predicted, and the per-position
 * cross-entropy of those targets is the negative log-likelihood. */
#include "eval.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Writes row r of the batch: the last T+1 tokens of context + choice (the
 * choice is at most T tokens: only context is dropped). */
static void fill_row(const gqe_mc_task *t, const gqe_mc_example *e, int c, int64_t T, int32_t *tok, int32_t *tgt) {
    int64_t clen = t->choice_len[e->choice_off + c];
    int64_t coff = e->tok_off + e->nctx;
    for (int k = 0; k < c; k++) coff += t->choice_len[e->choice_off + k];
    int64_t n = e->nctx + clen, drop = n > T + 1 ? n - (T + 1) : 0;
    /* token i of the row (after dropping) */
    for (int64_t i = 0; i + 1 < n - drop; i++) {
        int64_t a = drop + i, b = a + 1;
        tok[i] = a < e->nctx ? t->tok[e->tok_off + a] : t->tok[coff + a - e->nctx];
        tgt[i] = b >= e->nctx ? t->tok[coff + b - e->nctx] : -1;
    }
}

gqe_status gqe_mc_score(gqe_lm *lm, const gqe_mc_task *t, int64_t B, int64_t T, double *logprob, gqe_mc_summary *out) {
    if (B < 1 || T < 1) return gqe_fail(GQE_ERR_ARG, "evaluation batch shape must be >= 1, got (%lld, %lld)", (long long)B, (long long)T);
    /* Only the context is cut: a choice scored on part of its tokens would
     * be compared with whole ones (and lose the tokens that join it to the
     * context), so one longer than the window is an error. */
    for (int64_t i = 0; i < t->n; i++)
        for (int c = 0; c < t->ex[i].nchoices; c++)
            if (t->choice_len[t->ex[i].choice_off + c] > T)
                return gqe_fail(GQE_ERR_ARG, "example %lld, choice %d: %lld tokens do not fit the model's window of %lld "
                                "(a choice is never truncated; a longer max_seq, or shorter choices)",
                                (long long)i, c, (long long)t->choice_len[t->ex[i].choice_off + c], (long long)T);
    gqe_tensor tok, tgt, losses;
    GQE_TRY(gqe_tensor_new4(&tok, GQE_I32, GQE_CPU, B, T, 0, 0));
    gqe_status s = gqe_tensor_new4(&tgt, GQE_I32, GQE_CPU, B, T, 0, 0);
    if (s != GQE_OK) { gqe_tensor_free(&tok); return s; }
    s = gqe_tensor_new4(&losses, GQE_F32, GQE_CPU, B * T, 0, 0, 0);
    if (s != GQE_OK) { gqe_tensor_free(&tok); gqe_tensor_free(&tgt); return s; }
    double *lp = logprob ? logprob : malloc((size_t)(t->nchoice ? t->nchoice : 1) * sizeof *lp);
    if (!lp) s = gqe_fail(GQE_ERR_NOMEM, "evaluation: out of memory");
    /* Rows in choice order, B at a time; an example's choices are adjacent,
     * so they mostly share a batch, and may continue into the next one. */
    int64_t ex = 0, c = 0;   /* the next row: choice c of example ex */
    for (int64_t first = 0; s == GQE_OK && first < t->nchoice; first += B) {
        int32_t *tk = gqe_i32(&tok), *tg = gqe_i32(&tgt);
        memset(tk, 0, (size_t)(B * T) * sizeof *tk);
        for (int64_t i = 0; i < B * T; i++) tg[i] = -1;
        int64_t rows = 0;
        for (; rows < B && first + rows < t->nchoice; rows++) {
            fill_row(t, &t->ex[ex], (int)c, T, tk + rows * T, tg + rows * T);
            if (++c == t->ex[ex].nchoices) c = 0, ex++;
        }
        s = gqe_lm_forward(lm, &tok, &tgt, 0.0f, NULL, NULL);
        if (s == GQE_OK) s = gqe_tensor_copy(&losses, gqe_lm_token_losses(lm));
        if (s != GQE_OK) break;
        const float *l = gqe_f32(&losses);
        for (int64_t r = 0; r < rows; r++) {
            double sum = 0;
            for (int64_t j = 0; j < T; j++)
                if (tg[r * T + j] >= 0) sum += l[r * T + j];
            lp[first + r] = -sum;
        }
    }
    int64_t correct = 0, correct_norm = 0;
    for (int64_t i = 0; s == GQE_OK && i < t->n; i++) {
        const gqe_mc_example *e = &t->ex[i];
        int best = 0, best_norm = 0;
        double bv = -INFINITY, bvn = -INFINITY;
        for (int k = 0; k < e->nchoices; k++) {
            int64_t j = e->choice_off + k;
            int64_t bytes = t->choice_bytes[j] > 0 ? t->choice_bytes[j] : t->choice_len[j];
            if (lp[j] > bv) bv = lp[j], best = k;   /* ties go to the first choice, as argmax */
            if (lp[j] / (double)bytes > bvn) bvn = lp[j] / (double)bytes, best_norm = k;
        }
        correct += best == e->label;
        correct_norm += best_norm == e->label;
    }
    if (s == GQE_OK && out) {
        out->n = t->n;
        out->acc = t->n ? (double)correct / (double)t->n : 0.0;
        out->acc_norm = t->n ? (double)correct_norm / (double)t->n : 0.0;
    }
    if (!logprob) free(lp);
    gqe_tensor_free(&tok);
    gqe_tensor_free(&tgt);
    gqe_tensor_free(&losses);
    return s;
}
