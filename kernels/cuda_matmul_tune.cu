/* The fastest algorithm per shape for bf16 matmuls, chosen by timing.
 *
 * cublasGemmEx's pick is not always the fastest kernel cuBLAS has: for
 * several training shapes one of cuBLASLt's heuristic algorithms is 3-12%
 * faster, while for others (the LM head's dgrad) cuBLASLt's first heuristic
 * is 9% slower than GemmEx's pick (kernels/NOTES.md, "cuBLASLt's other
 * algorithms"). So the first call of each key times GemmEx and up to 8 of
 * cuBLASLt's algorithms on the call's own operands and keeps the fastest;
 * later calls of the key go straight to it. Tuning never fails the op: a key
 * whose tuning or cuBLASLt call goes wrong uses GemmEx from then on.
 * f32 matmuls never tune: the parity tests need GemmEx's plain fp32.
 * Everything runs on the default stream, the one cublasGemmEx uses (the
 * handle has no stream set), in the workspace cuBLAS runs in. */
#include "cuda_matmul_tune.cuh"
#include <cublasLt.h>
#include <math.h>
#include <mutex>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { MAX_ALGOS = 8, CACHE_SLOTS = 256, ROUNDS = 2, CALLS = 3 };
/* An algorithm must beat the best so far by this fraction to replace it, so
 * that noise between near-equal kernels keeps GemmEx's pick (a tie). */
#define TIE_MARGIN 0.01f

static cublasStatus_t raw_gemm_ex(const gqe_gemm_call *g) {
    return cublasGemmEx(g->h, g->opa, g->opb, g->m, g->n, g->k, &g->alpha, g->a, g->tab, g->lda, g->b, g->tab,
                        g->ldb, &g->beta, g->c, g->tc, g->ldc, g->ct, CUBLAS_GEMM_DEFAULT);
}

static gqe_status gemm_ex(const gqe_gemm_call *g) {
    cublasStatus_t cs = raw_gemm_ex(g);
    if (cs != CUBLAS_STATUS_SUCCESS)   /* row-major M, N are cuBLAS's n, m */
        return gqe_fail(GQE_ERR_DEVICE, "cublasGemmEx(M=%d N=%d K=%d) failed at %s:%d: %s", g->n, g->m, g->k,
                        __FILE__, __LINE__, gqe_cublas_status_str(cs));
    return GQE_OK;
}

/* GQE_CUDA_GEMM_TUNE=0 (or off, no, false) keeps every matmul on GemmEx. */
static bool tune_enabled(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *e = getenv("GQE_CUDA_GEMM_TUNE");
        bool off = e && (strcmp(e, "0") == 0 || strcasecmp(e, "off") == 0 || strcasecmp(e, "no") == 0 ||
                         strcasecmp(e, "false") == 0);
        cached = off ? 0 : 1;
    }
    return cached == 1;
}

/* ---- the cache ------------------------------------------------------------
 * Everything the choice depends on. The leading dimensions follow from the
 * shape and transposes (rows are contiguous); cuBLASLt's algorithms also
 * depend on the operands' alignment, so each address's class is part of it. */
struct gemm_key {
    int m, n, k;
    cublasOperation_t opa, opb;
    cudaDataType_t tc;
    bool beta0;
    uint32_t align_a, align_b, align_c;
};

/* A key's choice; with use_lt, the descriptors and algo run its cuBLASLt call. */
struct gemm_entry {
    bool used, use_lt;
    gemm_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

static std::mutex g_lock;   /* guards all below */
static gemm_entry g_cache[CACHE_SLOTS];
static cublasLtHandle_t g_lt;
static int g_lt_state;      /* 0 not tried, 1 created, -1 failed */

/* The largest power of two <= 256 dividing the address, in bytes. */
static uint32_t align_of(const void *p) {
    uint32_t r = 1;
    while (r < 256 && (uintptr_t)p % (2 * r) == 0) r *= 2;
    return r;
}

static gemm_key key_of(const gqe_gemm_call *g) {
    gemm_key k;
    k.m = g->m; k.n = g->n; k.k = g->k;
    k.opa = g->opa; k.opb = g->opb;
    k.tc = g->tc;
    k.beta0 = g->beta == 0.0f;
    k.align_a = align_of(g->a); k.align_b = align_of(g->b); k.align_c = align_of(g->c);
    return k;
}

static bool key_eq(const gemm_key *x, const gemm_key *y) {
    return x->m == y->m && x->n == y->n && x->k == y->k && x->opa == y->opa && x->opb == y->opb && x->tc == y->tc &&
           x->beta0 == y->beta0 && x->align_a == y->align_a && x->align_b == y->align_b && x->align_c == y->align_c;
}

static uint32_t key_hash(const gemm_key *k) {   /* FNV-1a over the fields */
    const uint64_t v[] = {(uint64_t)k->m, (uint64_t)k->n, (uint64_t)k->k, (uint64_t)k->opa, (uint64_t)k->opb,
                          (uint64_t)k->tc, (uint64_t)k->beta0, k->align_a, k->align_b, k->align_c};
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) h = (h ^ v[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* The key's slot, found or free (linear probing); NULL when the table is full. */
static gemm_entry *slot_for(const gemm_key *k) {
    uint32_t h = key_hash(k);
    for (uint32_t i = 0; i < CACHE_SLOTS; i++) {
        gemm_entry *e = &g_cache[(h + i) % CACHE_SLOTS];
        if (!e->used || key_eq(&e->key, k)) return e;
    }
    return NULL;
}

/* ---- cuBLASLt -------------------------------------------------------------- */
static bool lt_handle(void) {
    if (g_lt_state == 0) g_lt_state = cublasLtCreate(&g_lt) == CUBLAS_STATUS_SUCCESS ? 1 : -1;
    return g_lt_state == 1;
}

/* The key goes back to GemmEx; its descriptors are freed. */
static void drop_lt(gemm_entry *e) {
    if (e->lc) cublasLtMatrixLayoutDestroy(e->lc);
    if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
    if (e->la) cublasLtMatrixLayoutDestroy(e->la);
    if (e->desc) cublasLtMatmulDescDestroy(e->desc);
    e->lc = e->lb = e->la = NULL;
    e->desc = NULL;
    e->use_lt = false;
}

/* The GemmEx call in cuBLASLt's terms: the same operands, transposes,
 * leading dimensions and compute type (32F with f32 scales for bf16); C and
 * D are one matrix. */
static bool describe(gemm_entry *e, const gqe_gemm_call *g) {
    bool na = g->opa == CUBLAS_OP_N, nb = g->opb == CUBLAS_OP_N;
    return cublasLtMatmulDescCreate(&e->desc, g->ct, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &g->opa, sizeof g->opa) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &g->opb, sizeof g->opb) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&e->la, g->tab, na ? g->m : g->k, na ? g->k : g->m, g->lda) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&e->lb, g->tab, nb ? g->k : g->n, nb ? g->n : g->k, g->ldb) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&e->lc, g->tc, g->m, g->n, g->ldc) == CUBLAS_STATUS_SUCCESS;
}

/* Up to MAX_ALGOS of cuBLASLt's algorithms for the key that fit cuBLAS's
 * workspace and the operands' actual alignment (cuBLASLt assumes 256 bytes
 * unless told). Returns how many, 0 on any failure. */
static int heuristics(const gemm_entry *e, size_t ws_bytes, cublasLtMatmulHeuristicResult_t *res) {
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return 0;
    uint64_t ws = ws_bytes;
    const gemm_key *k = &e->key;
    struct { cublasLtMatmulPreferenceAttributes_t attr; const void *v; size_t n; } set[] = {
        {CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k->align_a, sizeof k->align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k->align_b, sizeof k->align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k->align_c, sizeof k->align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->align_c, sizeof k->align_c},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof set / sizeof *set; i++)
        ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, set[i].attr, set[i].v, set[i].n) == CUBLAS_STATUS_SUCCESS;
    int n = 0;
    if (!ok || cublasLtMatmulAlgoGetHeuristic(g_lt, e->desc, e->la, e->lb, e->lc, e->lc, pref, MAX_ALGOS, res, &n) !=
                   CUBLAS_STATUS_SUCCESS)
        n = 0;
    cublasLtMatmulPreferenceDestroy(pref);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= ws_bytes) res[kept++] = res[i];
    return kept;
}

static cublasStatus_t lt_matmul(const gemm_entry *e, const cublasLtMatmulAlgo_t *algo, const gqe_gemm_call *g) {
    size_t ws_bytes;
    void *ws = gqe_cuda_cublas_workspace(&ws_bytes);
    return cublasLtMatmul(g_lt, e->desc, &g->alpha, g->a, e->la, g->b, e->lb, &g->beta, g->c, e->lc, g->c, e->lc,
                          algo, ws, ws_bytes, 0);
}

/* ---- timing ------------------------------------------------------------------ */
/* cuBLASLt's algo, or GemmEx where algo is NULL. */
static cublasStatus_t run_candidate(const gemm_entry *e, const cublasLtMatmulAlgo_t *algo, const gqe_gemm_call *g) {
    return algo ? lt_matmul(e, algo, g) : raw_gemm_ex(g);
}

/* Milliseconds a call: one warm-up, then the best of ROUNDS rounds of CALLS
 * calls. Negative on any failure. */
static float time_candidate(const gemm_entry *e, const cublasLtMatmulAlgo_t *algo, const gqe_gemm_call *g,
                            cudaEvent_t t0, cudaEvent_t t1) {
    if (run_candidate(e, algo, g) != CUBLAS_STATUS_SUCCESS) return -1;
    float best = INFINITY;
    for (int r = 0; r < ROUNDS; r++) {
        if (cudaEventRecord(t0, 0) != cudaSuccess) return -1;
        for (int i = 0; i < CALLS; i++)
            if (run_candidate(e, algo, g) != CUBLAS_STATUS_SUCCESS) return -1;
        float ms = 0;
        if (cudaEventRecord(t1, 0) != cudaSuccess || cudaEventSynchronize(t1) != cudaSuccess ||
            cudaEventElapsedTime(&ms, t0, t1) != cudaSuccess)
            return -1;
        best = fminf(best, ms);
    }
    return best / CALLS;
}

/* The index in res of the fastest candidate, or -1 for GemmEx: GemmEx on a
 * tie and wherever anything failed. */
static int pick(const gemm_entry *e, const gqe_gemm_call *g, const cublasLtMatmulHeuristicResult_t *res, int n) {
    cudaEvent_t t0, t1;
    if (cudaEventCreate(&t0) != cudaSuccess) { cudaGetLastError(); return -1; }
    if (cudaEventCreate(&t1) != cudaSuccess) { cudaGetLastError(); cudaEventDestroy(t0); return -1; }
    int win = -1;
    float best = time_candidate(e, NULL, g, t0, t1);
    for (int i = 0; i < n && best >= 0; i++) {
        float t = time_candidate(e, &res[i].algo, g, t0, t1);
        if (t < 0) best = -1;
        else if (t < best * (1 - TIE_MARGIN)) { best = t; win = i; }
    }
    if (best < 0) { cudaGetLastError(); win = -1; }   /* a CUDA error must not surface in the next op */
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    return win;
}

/* Chooses e's algorithm by timing the call's own operands. With beta != 0
 * every timed call accumulates into C, so C is saved first and put back
 * after; with beta == 0 the real call that follows overwrites C (A and B
 * never alias it). No scratch for the copy: the key stays untuned. Fails
 * only where C could not be put back. */
static gqe_status tune(gemm_entry *e, const gqe_gemm_call *g) {
    cublasLtMatmulHeuristicResult_t res[MAX_ALGOS];
    size_t ws_bytes;
    gqe_cuda_cublas_workspace(&ws_bytes);
    int n = lt_handle() && describe(e, g) ? heuristics(e, ws_bytes, res) : 0;
    void *saved = NULL;
    size_t c_bytes = (size_t)g->ldc * (size_t)g->n * (g->tc == CUDA_R_16BF ? 2 : 4);
    if (n > 0 && g->beta != 0.0f) {
        if (gqe_cuda_scratch(&saved, c_bytes) != GQE_OK) n = 0;
        else if (cudaMemcpyAsync(saved, g->c, c_bytes, cudaMemcpyDeviceToDevice, 0) != cudaSuccess) {
            cudaGetLastError();
            gqe_cuda_scratch_free(saved);
            saved = NULL;
            n = 0;
        }
    }
    int win = n > 0 ? pick(e, g, res, n) : -1;
    if (win >= 0) { e->algo = res[win].algo; e->use_lt = true; }
    else drop_lt(e);
    if (saved) {
        cudaError_t ce = cudaMemcpyAsync(g->c, saved, c_bytes, cudaMemcpyDeviceToDevice, 0);
        gqe_cuda_scratch_free(saved);   /* the default stream orders its next user after the copy */
        if (ce != cudaSuccess)
            return gqe_fail(GQE_ERR_DEVICE, "matmul: putting C back after timing failed at %s:%d: %s", __FILE__,
                            __LINE__, cudaGetErrorString(ce));
    }
    return GQE_OK;
}

gqe_status gqe_cuda_gemm(const gqe_gemm_call *g) {
    if (g->tab != CUDA_R_16BF || !tune_enabled()) return gemm_ex(g);
    gemm_key k = key_of(g);
    std::lock_guard<std::mutex> lock(g_lock);
    gemm_entry *e = slot_for(&k);
    if (!e) return gemm_ex(g);   /* the table is full: untuned */
    if (!e->used) {
        e->used = true;
        e->key = k;
        GQE_TRY(tune(e, g));
    }
    if (e->use_lt) {
        if (lt_matmul(e, &e->algo, g) == CUBLAS_STATUS_SUCCESS) return GQE_OK;
        cudaGetLastError();
        drop_lt(e);   /* cuBLASLt failed: this key runs on GemmEx from now on */
    }
    return gemm_ex(g);
}
