/* Attention-core benchmark on the GPU (make bench-cuda, part a): causal,
 * bf16, head dim 64, N=16 query heads over G=8 KV heads, about 64K tokens
 * per call. "gqe" is what a GQE layer runs: one call of G*k = 8 routed slot
 * heads plus the shared query over the 8 KV heads plus their group means
 * (the shared head's K and V, joined to them by group_mean_append, which
 * the timing includes); "gqa" is dense attention with all 16 query heads.
 * Prints one JSON line per (kind, S, pass) with the median milliseconds. */
#include "backend.h"
#include "ops.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define D 64
#define G 8
#define N 16

static void die(const char *what) {
    fprintf(stderr, "bench_attention: %s: %s\n", what, gqe_last_error());
    exit(1);
}
#define OK(e) do { if ((e) != GQE_OK) die(#e); } while (0)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static gqe_tensor randn(int64_t a, int64_t b, int64_t c, int64_t d, gqe_dtype dt, uint64_t seed) {
    gqe_tensor h, t;
    OK(gqe_tensor_new4(&h, GQE_F32, GQE_CPU, a, b, c, d));
    float *p = gqe_f32(&h);
    for (int64_t i = 0; i < gqe_tensor_numel(&h); i++) p[i] = gqe_rng_normal_at(seed, 3, (uint64_t)i);
    OK(gqe_tensor_to(&t, &h, GQE_CUDA, dt));
    gqe_tensor_free(&h);
    return t;
}

static gqe_tensor zeros(int64_t a, int64_t b, int64_t c, int64_t d, gqe_dtype dt) {
    gqe_tensor t;
    OK(gqe_tensor_new4(&t, dt, GQE_CUDA, a, b, c, d));
    OK(gqe_fill(&t, 0.0f));
    return t;
}

typedef struct bufs {
    gqe_tensor q, k, v, o, lse, dq, dk, dv, dout;   /* the call's heads (gqe: G*k + 1 over G + 1) */
    gqe_tensor kp, vp, dkp, dvp;                    /* gqe: the groups' K and V before the means join */
} bufs;

static void run(bool gqe, bufs *b, bool backward) {
    float scale = 0.125f;
    if (gqe) {
        OK(gqe_group_mean_append(&b->k, &b->kp, true, 10000.0f, 0));
        OK(gqe_group_mean_append(&b->v, &b->vp, false, 10000.0f, 0));
    }
    OK(gqe_attention_forward(&b->o, &b->lse, &b->q, &b->k, &b->v, true, scale));
    if (!backward) return;
    OK(gqe_attention_backward(&b->dq, &b->dk, &b->dv, &b->dout, &b->q, &b->k, &b->v, &b->o, &b->lse, true, scale, false));
    if (gqe) {
        OK(gqe_group_mean_append_backward(&b->dkp, &b->dk, true, 10000.0f));
        OK(gqe_group_mean_append_backward(&b->dvp, &b->dv, false, 10000.0f));
    }
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (!gqe_cuda_available()) { fprintf(stderr, "bench_attention: no CUDA device\n"); return 1; }
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    /* --quick: the sizes bench/torch_baseline.py --quick measures */
    const int64_t sizes[] = {2048, 4096, 8192, 16384, 32768}, quick_sizes[] = {2048, 8192, 32768};
    int nsizes = quick ? 3 : 5;
    for (int si = 0; si < nsizes; si++) {
        int64_t S = quick ? quick_sizes[si] : sizes[si], B = 65536 / S;
        for (int kind = 0; kind < 2; kind++) {
            const char *name = kind ? "gqa" : "gqe";
            /* gqe: G*k slot heads (k = 1) and the shared query, over G
             * KV heads and their group means */
            int64_t H = kind ? N : G + 1, KV = kind ? G : G + 1;
            bufs b;
            memset(&b, 0, sizeof b);
            b.q = randn(B, S, H, D, GQE_BF16, 1);
            b.k = randn(B, S, KV, D, GQE_BF16, 2);
            b.v = randn(B, S, KV, D, GQE_BF16, 3);
            b.dout = randn(B, S, H, D, GQE_BF16, 4);
            b.o = zeros(B, S, H, D, GQE_BF16);
            b.lse = zeros(B, H, S, 0, GQE_F32);
            b.dq = zeros(B, S, H, D, GQE_BF16);
            b.dk = zeros(B, S, KV, D, GQE_BF16);
            b.dv = zeros(B, S, KV, D, GQE_BF16);
            if (!kind) {
                b.kp = randn(B, S, G, D, GQE_BF16, 5);
                b.vp = randn(B, S, G, D, GQE_BF16, 6);
                b.dkp = zeros(B, S, G, D, GQE_BF16);
                b.dvp = zeros(B, S, G, D, GQE_BF16);
            }
            for (int pass = 0; pass < 2; pass++) {
                const int iters = 15;
                double t[15];
                for (int w = 0; w < 3; w++) run(!kind, &b, pass);
                OK(gqe_backend_for(GQE_CUDA)->synchronize());
                for (int i = 0; i < iters; i++) {
                    double t0 = now();
                    run(!kind, &b, pass);
                    OK(gqe_backend_for(GQE_CUDA)->synchronize());
                    t[i] = now() - t0;
                }
                qsort(t, iters, sizeof *t, cmp);
                /* causal FLOPs: 4*D per (query, key) pair in forward, 2.5x that for fwd+bwd */
                double heads = kind ? N : G + 1;
                double flops = 4.0 * D * (double)B * heads * (double)S * (double)(S + 1) / 2 * (pass ? 3.5 : 1.0);
                printf("{\"bench\": \"attn_core\", \"impl\": \"gqe_c\", \"kind\": \"%s\", \"pass\": \"%s\", \"S\": %lld, "
                       "\"B\": %lld, \"ms\": %.4f, \"tflops\": %.1f}\n", name, pass ? "fwd+bwd" : "fwd",
                       (long long)S, (long long)B, t[iters / 2] * 1e3, flops / t[iters / 2] / 1e12);
                fflush(stdout);
            }
            gqe_tensor *all = (gqe_tensor *)&b;
            for (size_t i = 0; i < sizeof b / sizeof(gqe_tensor); i++) gqe_tensor_free(&all[i]);
        }
    }
    return 0;
}
