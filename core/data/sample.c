/* Row sampling over token streams, shared by text and shards. Row b of
 * batch `index` uses Philox block (seed, split, index*B + b), so a batch is
 * a pure function of its name and any batch can be produced on its own. */
#include "kinds.h"
#include "rng.h"
#include <stdlib.h>
#include <string.h>

static const char *split_name(gqe_split s) { return s == GQE_SPLIT_TRAIN ? "train" : "val"; }

gqe_status gqe_token_split_check(const gqe_token_split *s, const char *name, int64_t B, int64_t T) {
    int64_t need = B * (T + 1), longest = 0;
    for (int i = 0; i < s->nseg; i++) if (s->segs[i].n > longest) longest = s->segs[i].n;
    if (s->total < need)
        return gqe_fail(GQE_ERR_ARG, "%s: the %s split holds %lld tokens but one batch of B=%lld x (T+1)=%lld needs %lld",
                        s->label, name, (long long)s->total, (long long)B, (long long)(T + 1), (long long)need);
    if (longest < T + 1)
        return gqe_fail(GQE_ERR_ARG, "%s: no %s file holds T+1=%lld tokens (the longest holds %lld)",
                        s->label, name, (long long)(T + 1), (long long)longest);
    return GQE_OK;
}

static int32_t token_at(const gqe_token_split *s, const gqe_token_segment *g, int64_t i) {
    return s->width == 1 ? ((const uint8_t *)g->data)[i] : ((const uint16_t *)g->data)[i];
}

gqe_status gqe_token_split_batch(const gqe_token_split *s, uint64_t seed, gqe_split split, int64_t index,
                                 int64_t B, int64_t T, int32_t *tokens, int32_t *targets) {
    GQE_TRY(gqe_token_split_check(s, split_name(split), B, T));
    /* starts[i] = valid row starts in segments before i; a segment of n
     * tokens has n - T starts (each row needs T+1 tokens). */
    uint64_t *starts = malloc(sizeof *starts * ((size_t)s->nseg + 1));
    if (!starts) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    starts[0] = 0;
    for (int i = 0; i < s->nseg; i++)
        starts[i + 1] = starts[i] + (uint64_t)(s->segs[i].n > T ? s->segs[i].n - T : 0);
    uint64_t total = starts[s->nseg];
    for (int64_t b = 0; b < B; b++) {
        uint32_t r[4];
        gqe_philox4x32(seed, (uint64_t)split, (uint64_t)(index * B + b), r);
        uint64_t u = (uint64_t)r[0] | ((uint64_t)r[1] << 32);
        uint64_t pick = (uint64_t)(((unsigned __int128)u * total) >> 64);  /* uniform in [0, total) */
        int lo = 0, hi = s->nseg - 1;  /* last segment with starts[seg] <= pick */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (starts[mid] <= pick) lo = mid; else hi = mid - 1;
        }
        while (starts[lo + 1] <= pick) lo++;  /* skip segments with no starts */
        const gqe_token_segment *g = &s->segs[lo];
        int64_t off = (int64_t)(pick - starts[lo]);
        int32_t *tk = tokens + b * T, *tg = targets + b * T;
        for (int64_t t = 0; t < T; t++) {
            tk[t] = token_at(s, g, off + t);
            tg[t] = token_at(s, g, off + t + 1);
        }
    }
    free(starts);
    return GQE_OK;
}

void gqe_token_split_free(gqe_token_split *s) {
    free(s->segs);
    free(s->label);
    memset(s, 0, sizeof *s);
}
