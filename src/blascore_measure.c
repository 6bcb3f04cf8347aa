/* The measurements behind the OpenBLAS core choice (blascore.h): an SGEMM self-test at the
 * trainer's shapes against float64 dot products, and the SGEMM speed of one training step. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ewc/blascore.h"
#include "ewc/rng.h"
#include "ewc/train.h"

void blascore_sgemm(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* CPU time, not wall time: on a busy node other processes must not decide the kernel choice */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One product as the trainer calls it: C (m, n) = beta C + op(A) . op(B), row-major. */
typedef struct {
    const char *what; /* for the error message */
    int ta, tb, m, n, k, lda, ldb, ldc;
    const float *a, *b;
    float beta;
    float *c;
} Product;

static double elem_a(const Product *p, int i, int q) {
    return p->ta ? p->a[(size_t)q * p->lda + i] : p->a[(size_t)i * p->lda + q];
}
static double elem_b(const Product *p, int q, int j) {
    return p->tb ? p->b[(size_t)j * p->ldb + q] : p->b[(size_t)q * p->ldb + j];
}

/* Error of entry (i, j) over its bound; C0 is the entry before the product. */
static double entry_error(const Product *p, int i, int j, float c0) {
    double ref = p->beta != 0.0f ? (double)p->beta * c0 : 0.0, mag = fabs(ref);
    for (int q = 0; q < p->k; q++) {
        double t = elem_a(p, i, q) * elem_b(p, q, j);
        ref += t;
        mag += fabs(t);
    }
    double bound = (p->k + 2) * ldexp(1.0, -24) * mag + 1e-30;
    return fabs((double)p->c[(size_t)i * p->ldc + j] - ref) / bound;
}

#define CHECK_LINES 4 /* rows checked whole: first, last, two random; the same for columns */

/* Run P through GEMM and check rows {0, m-1, 2 random} and columns {0, n-1, 2 random} whole.
 * The entries are saved first, so accumulation (beta = 1) is checked too. */
static EwcStatus check_product(BlasGemm gemm, const Product *p, uint32_t salt, float *saved,
                               double *worst) {
    int rows[CHECK_LINES] = {0, p->m - 1}, cols[CHECK_LINES] = {0, p->n - 1};
    for (int r = 2; r < CHECK_LINES; r++) {
        rows[r] = (int)(rng_uniform(7, RNG_INIT, 2000, salt, (uint64_t)r) * p->m);
        cols[r] = (int)(rng_uniform(7, RNG_INIT, 2001, salt, (uint64_t)r) * p->n);
    }
    size_t s = 0;
    for (int r = 0; r < CHECK_LINES; r++) {
        for (int j = 0; j < p->n; j++) saved[s++] = p->c[(size_t)rows[r] * p->ldc + j];
        for (int i = 0; i < p->m; i++) saved[s++] = p->c[(size_t)i * p->ldc + cols[r]];
    }
    gemm(p->ta, p->tb, p->m, p->n, p->k, p->a, p->lda, p->b, p->ldb, p->beta, p->c, p->ldc);
    s = 0;
    for (int r = 0; r < CHECK_LINES; r++) {
        for (int j = 0; j < p->n; j++) {
            double e = entry_error(p, rows[r], j, saved[s++]);
            if (!(e <= 1.0)) goto wrong;
            *worst = e > *worst ? e : *worst;
        }
        for (int i = 0; i < p->m; i++) {
            double e = entry_error(p, i, cols[r], saved[s++]);
            if (!(e <= 1.0)) goto wrong;
            *worst = e > *worst ? e : *worst;
        }
    }
    return EWC_OK;
wrong:
    ewc_error_set("SGEMM self-test failed on %s (%s%s, %d x %d x %d): a result is outside the "
                  "float32 rounding bound", p->what, p->ta ? "T" : "N", p->tb ? "T" : "N", p->m,
                  p->n, p->k);
    return EWC_EBLAS;
}

/* Buffers big enough for every product of S at up to N rows. */
typedef struct {
    float *x, *w, *d, *c, *saved;
} Buffers;

static void buffers_free(Buffers *b) {
    free(b->x);
    free(b->w);
    free(b->d);
    free(b->c);
    free(b->saved);
}

static EwcStatus buffers_alloc(Buffers *b, const ModelShape *s, int n) {
    int maxd = 0;
    for (int l = 0; l <= s->n_layers; l++) maxd = s->dims[l] + 1 > maxd ? s->dims[l] + 1 : maxd;
    size_t rows = (size_t)(n > maxd ? n : maxd), big = rows * maxd;
    memset(b, 0, sizeof *b);
    b->x = malloc(big * sizeof(float));
    b->w = malloc((size_t)maxd * maxd * sizeof(float));
    b->d = malloc(big * sizeof(float));
    b->c = malloc(big * sizeof(float));
    b->saved = malloc((size_t)2 * CHECK_LINES * (rows + maxd) * sizeof(float));
    if (!b->x || !b->w || !b->d || !b->c || !b->saved) {
        buffers_free(b);
        ewc_error_set("out of memory for the BLAS self-test");
        return EWC_ENOMEM;
    }
    /* activations in [0, 1) (ReLU outputs and pixels), weights and deltas in [-1/2, 1/2) */
    for (size_t i = 0; i < big; i++) {
        b->x[i] = rng_uniform(7, RNG_INIT, 1000, 0, i);
        b->d[i] = rng_uniform(7, RNG_INIT, 1001, 0, i) - 0.5f;
        b->c[i] = rng_uniform(7, RNG_INIT, 1003, 0, i) - 0.5f;
    }
    for (size_t i = 0; i < (size_t)maxd * maxd; i++)
        b->w[i] = rng_uniform(7, RNG_INIT, 1002, 0, i) - 0.5f;
    return EWC_OK;
}

/* The products of layer L at N rows, as layer.c makes them: forward x (n, k) . wb^T into an
 * output of leading dimension m + 1 (hidden layers, trailing-1 column) or m; the input gradient
 * d (n, m) . W (m, k - 1 of k); the accumulated weight gradient of rows [r0, r1). */
static int layer_products(Product *out, const ModelShape *s, const Buffers *b, int l, int n,
                          int r0, int r1) {
    int k = s->dims[l] + 1, m = s->dims[l + 1], hidden = l + 1 < s->n_layers, np = 0;
    out[np++] = (Product){"the forward product", 0, 1, n, m, k, k, k, hidden ? m + 1 : m,
                          b->x, b->w, 0.0f, b->c};
    if (l > 0)
        out[np++] = (Product){"the input gradient", 0, 0, n, k - 1, m, m, k, k - 1, b->d, b->w,
                              0.0f, b->c};
    if (r1 > r0)
        out[np++] = (Product){"the weight gradient", 1, 0, r1 - r0, k, n, m, k, k, b->d + r0,
                              b->x, 1.0f, b->c + (size_t)r0 * k};
    return np;
}

EwcStatus blascore_selftest(BlasGemm gemm, const ModelShape *s, int batch, double *worst) {
    /* the batch, evaluation chunks, a one-sample and an odd shard; the batch also with an
     * unaligned row range, as a rank's share of the weight gradient starts anywhere */
    const int ns[] = {batch, TRAIN_EVAL_CHUNK, 1, 7};
    int maxn = batch > TRAIN_EVAL_CHUNK ? batch : TRAIN_EVAL_CHUNK;
    Buffers b;
    EwcStatus st = buffers_alloc(&b, s, maxn);
    if (st) return st;
    *worst = 0.0;
    uint32_t salt = 0;
    for (int l = 0; l < s->n_layers && !st; l++) {
        int m = s->dims[l + 1];
        for (size_t v = 0; v < sizeof ns / sizeof ns[0] && !st; v++) {
            int n = ns[v], eval = n == TRAIN_EVAL_CHUNK && n != batch;
            Product p[3];
            int np = layer_products(p, s, &b, l, n, 0, eval ? 0 : m);
            for (int i = 0; i < (eval ? 1 : np) && !st; i++)
                st = check_product(gemm, &p[i], salt++, b.saved, worst);
            if (v == 0 && m > 2 && !st) {
                np = layer_products(p, s, &b, l, n, 1, m - 1);
                st = check_product(gemm, &p[np - 1], salt++, b.saved, worst);
            }
        }
    }
    buffers_free(&b);
    return st;
}

double blascore_time(const ModelShape *s, int batch) {
    int n = batch < 128 ? batch : 128;
    Buffers b;
    if (buffers_alloc(&b, s, n)) {
        ewc_error_clear();
        return 0.0;
    }
    double flops = 0.0, best = INFINITY, spent = 0.0;
    for (int l = 0; l < s->n_layers; l++)
        flops += 2.0 * n * (s->dims[l] + 1) * s->dims[l + 1] * (l > 0 ? 3 : 2);
    /* a warm-up, then the best of up to 5 repetitions within about 50 ms of CPU time */
    for (int rep = 0; rep < 6 && (rep < 3 || spent < 0.05); rep++) {
        double t0 = cpu_now();
        for (int l = 0; l < s->n_layers; l++) {
            Product p[3];
            int np = layer_products(p, s, &b, l, n, 0, s->dims[l + 1]);
            for (int i = 0; i < np; i++)
                blascore_sgemm(p[i].ta, p[i].tb, p[i].m, p[i].n, p[i].k, p[i].a, p[i].lda,
                               p[i].b, p[i].ldb, p[i].beta, p[i].c, p[i].ldc);
        }
        double dt = cpu_now() - t0;
        spent += dt;
        if (rep > 0 && dt < best) best = dt;
    }
    buffers_free(&b);
    return best > 0 && isfinite(best) ? flops / best * 1e-9 : 0.0;
}
