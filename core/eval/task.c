/* Building and reading multiple-choice tasks (core/eval.h). */
#include "eval.h"
#include "file.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(void **buf, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 1;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *nb = realloc(*buf, (size_t)c * elem);
    if (!nb) return 0;
    *buf = nb;
    *cap = c;
    return 1;
}

void gqe_mc_task_free(gqe_mc_task *t) {
    free(t->ex); free(t->tok); free(t->choice_len); free(t->choice_bytes);
    memset(t, 0, sizeof *t);
}

gqe_status gqe_mc_task_add(gqe_mc_task *t, const int32_t *ctx, int64_t nctx, int nchoices,
                           const int32_t *const *choice, const int64_t *choice_len,
                           const int64_t *choice_bytes, int label) {
    int64_t idx = t->n;
    if (nctx < 1) return gqe_fail(GQE_ERR_FORMAT, "example %lld: empty context (nothing to condition the choices on)", (long long)idx);
    if (nchoices < 1) return gqe_fail(GQE_ERR_FORMAT, "example %lld: no choices", (long long)idx);
    if (label < 0 || label >= nchoices)
        return gqe_fail(GQE_ERR_FORMAT, "example %lld: label %d is out of range for %d choices (0..%d)",
                        (long long)idx, label, nchoices, nchoices - 1);
    int64_t total = nctx;
    for (int c = 0; c < nchoices; c++) {
        if (choice_len[c] < 1) return gqe_fail(GQE_ERR_FORMAT, "example %lld: choice %d is empty", (long long)idx, c);
        total += choice_len[c];
    }
    int64_t cap2 = t->choice_cap;
    if (!grow((void **)&t->ex, &t->cap, t->n + 1, sizeof *t->ex) ||
        !grow((void **)&t->tok, &t->tok_cap, t->ntok + total, sizeof *t->tok) ||
        !grow((void **)&t->choice_len, &t->choice_cap, t->nchoice + nchoices, sizeof *t->choice_len) ||
        !grow((void **)&t->choice_bytes, &cap2, t->nchoice + nchoices, sizeof *t->choice_bytes))
        return gqe_fail(GQE_ERR_NOMEM, "task: out of memory");
    gqe_mc_example *e = &t->ex[t->n++];
    *e = (gqe_mc_example){nctx, nchoices, label, t->ntok, t->nchoice};
    memcpy(t->tok + t->ntok, ctx, (size_t)nctx * sizeof *ctx);
    t->ntok += nctx;
    for (int c = 0; c < nchoices; c++) {
        memcpy(t->tok + t->ntok, choice[c], (size_t)choice_len[c] * sizeof *ctx);
        t->ntok += choice_len[c];
        t->choice_len[t->nchoice] = choice_len[c];
        t->choice_bytes[t->nchoice] = choice_bytes ? choice_bytes[c] : 0;
        t->nchoice++;
    }
    return GQE_OK;
}

#define HEADER_INTS 256

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

gqe_status gqe_mc_task_parse_llmc(gqe_mc_task *t, const void *buf, size_t len, const char *label) {
    const unsigned char *b = buf;
    if (len < HEADER_INTS * 4)
        return gqe_fail(GQE_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte header of an llm.c eval file", label, len, HEADER_INTS * 4);
    int32_t h[4];
    memcpy(h, b, sizeof h);
    if (h[0] != GQE_EVAL_MAGIC)
        return gqe_fail(GQE_ERR_FORMAT, "%s: magic number %d, expected %d (not an llm.c eval file%s)", label, h[0], GQE_EVAL_MAGIC,
                        h[0] == 20240520 ? "; this is a token shard" : "");
    if (h[1] != GQE_EVAL_VERSION) return gqe_fail(GQE_ERR_FORMAT, "%s: version %d, expected %d (uint16 tokens)", label, h[1], GQE_EVAL_VERSION);
    if (h[2] < 0) return gqe_fail(GQE_ERR_FORMAT, "%s: negative example count %d", label, h[2]);
    size_t pos = HEADER_INTS * 4;
    int32_t *scratch = NULL;
    int32_t **choice = NULL;
    int64_t *clen = NULL;
    gqe_status s = GQE_OK;
    for (int32_t i = 0; i < h[2] && s == GQE_OK; i++) {
        if (pos + 10 > len) { s = gqe_fail(GQE_ERR_FORMAT, "%s: truncated: example %d of %d starts past the end of the file", label, i, h[2]); break; }
        uint16_t start = rd16(b + pos), nbytes = rd16(b + pos + 2), label_ = rd16(b + pos + 6), nc = rd16(b + pos + 8);
        if (start != 65535) { s = gqe_fail(GQE_ERR_FORMAT, "%s: example %d at byte %zu does not start with 65535 (corrupt file)", label, i, pos); break; }
        if (nbytes < 12 || pos + nbytes > len) {
            s = gqe_fail(GQE_ERR_FORMAT, "%s: truncated: example %d claims %u bytes but %zu remain", label, i, nbytes, len - pos);
            break;
        }
        const unsigned char *e = b + pos, *end = b + pos + nbytes;
        const unsigned char *p = e + 10;
        free(scratch); free(choice); free(clen);
        scratch = malloc(nbytes / 2 * sizeof *scratch);
        choice = malloc((nc ? nc : 1) * sizeof *choice);
        clen = malloc((nc ? nc : 1) * sizeof *clen);
        if (!scratch || !choice || !clen) { s = gqe_fail(GQE_ERR_NOMEM, "%s: out of memory", label); break; }
        int64_t k = 0, nctx = -1;
        for (int part = -1; part < (int)nc && s == GQE_OK; part++) {
            if (p + 2 > end) { s = gqe_fail(GQE_ERR_FORMAT, "%s: example %d is shorter than its %d choices need", label, i, nc); break; }
            uint16_t n = rd16(p);
            p += 2;
            if (p + 2 * (size_t)n > end) { s = gqe_fail(GQE_ERR_FORMAT, "%s: example %d: a length of %u tokens runs past the example's %u bytes", label, i, n, nbytes); break; }
            if (part < 0) nctx = n; else { choice[part] = scratch + k; clen[part] = n; }
            for (uint16_t j = 0; j < n; j++, p += 2) scratch[k++] = rd16(p);
        }
        if (s != GQE_OK) break;
        if (p != end) { s = gqe_fail(GQE_ERR_FORMAT, "%s: example %d: %td bytes left over after its choices", label, i, end - p); break; }
        s = gqe_mc_task_add(t, scratch, nctx, nc, (const int32_t *const *)choice, clen, NULL, label_);
        if (s != GQE_OK) {
            char msg[256];   /* gqe_fail writes the buffer it would read */
            snprintf(msg, sizeof msg, "%s", gqe_last_error());
            s = gqe_fail(GQE_ERR_FORMAT, "%s: %s", label, msg);
        }
        pos += nbytes;
    }
    if (s == GQE_OK && pos != len) s = gqe_fail(GQE_ERR_FORMAT, "%s: %zu bytes after the %d examples the header announces", label, len - pos, h[2]);
    free(scratch); free(choice); free(clen);
    return s;
}

gqe_status gqe_mc_task_read_llmc(gqe_mc_task *t, const char *path) {
    unsigned char *buf;
    size_t n;
    GQE_TRY(gqe_file_read(path, "task file", "", &buf, &n));
    gqe_status s = gqe_mc_task_parse_llmc(t, buf, n, path);
    free(buf);
    return s;
}

gqe_status gqe_mc_task_measure(gqe_mc_task *t, const gqe_tokenizer *tok) {
    for (int64_t i = 0; i < t->n; i++) {
        const gqe_mc_example *e = &t->ex[i];
        int64_t off = e->tok_off + e->nctx;
        for (int c = 0; c < e->nchoices; c++) {
            int64_t j = e->choice_off + c, bytes = 0;
            for (int64_t k = 0; k < t->choice_len[j]; k++) {
                size_t len = 1;
                if (tok && !gqe_tok_token(tok, t->tok[off + k], &len))
                    return gqe_fail(GQE_ERR_ARG, "example %lld: token %d is outside the tokenizer's vocabulary (%lld)",
                                    (long long)i, t->tok[off + k], (long long)gqe_tok_vocab(tok));
                bytes += (int64_t)len;
            }
            t->choice_bytes[j] = bytes;
            off += t->choice_len[j];
        }
    }
    return GQE_OK;
}

gqe_status gqe_mc_task_check_vocab(const gqe_mc_task *t, int64_t vocab, const char *label) {
    for (int64_t i = 0; i < t->n; i++) {
        const gqe_mc_example *e = &t->ex[i];
        int64_t n = e->nctx;
        for (int c = 0; c < e->nchoices; c++) n += t->choice_len[e->choice_off + c];
        for (int64_t k = 0; k < n; k++)
            if (t->tok[e->tok_off + k] < 0 || t->tok[e->tok_off + k] >= vocab)
                return gqe_fail(GQE_ERR_ARG, "%s: example %lld holds token %d, outside the model's vocabulary of %lld "
                                "(a task tokenized for another model?)", label, (long long)i, t->tok[e->tok_off + k], (long long)vocab);
    }
    return GQE_OK;
}
