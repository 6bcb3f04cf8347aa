/* Measuring the BLAS row quantum (see tile.h): compare one SGEMM call with the same product
 * computed in pieces, on the model's real shapes and random data. */
#include "ewc/tile.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/rng.h"

typedef enum { FORWARD, INPUT_GRAD, WEIGHT_GRAD } Product;

/* Rows [r0, r1) of one of the trainer's products (layout as in layer.c): FORWARD x (n, k) .
 * w^T (m, k) -> (n, m); INPUT_GRAD d (n, m) . w (m, k) -> (n, k); WEIGHT_GRAD d^T (m rows of
 * d (n, m)) . x (n, k) -> (m, k). "Rows" are the rows of the result. */
static void product_rows(Product p, float *c, const float *x, const float *w, const float *d,
                         int n, int m, int k, int r0, int r1) {
    if (r1 <= r0) return;
    switch (p) {
    case FORWARD:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, m, k, 1.0f,
                    x + (size_t)r0 * k, k, w, k, 0.0f, c + (size_t)r0 * m, m);
        break;
    case INPUT_GRAD:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, k, m, 1.0f,
                    d + (size_t)r0 * m, m, w, k, 0.0f, c + (size_t)r0 * k, k);
        break;
    case WEIGHT_GRAD:
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, k, n, 1.0f, d + r0, m, x, k,
                    0.0f, c + (size_t)r0 * k, k);
        break;
    }
}

/* Whether splitting product P's R result rows at multiples of Q (two ways: pieces of Q, and
 * two pieces) reproduces the unsplit result bitwise. */
static int split_is_exact(Product p, int q, float *c1, float *c2, const float *x, const float *w,
                          const float *d, int n, int m, int k) {
    int rows = p == WEIGHT_GRAD ? m : n, width = p == FORWARD ? m : k;
    size_t bytes = (size_t)rows * width * sizeof(float);
    product_rows(p, c1, x, w, d, n, m, k, 0, rows);
    for (int r = 0; r < rows; r += q) product_rows(p, c2, x, w, d, n, m, k, r, r + q < rows ? r + q : rows);
    if (memcmp(c1, c2, bytes)) return 0;
    int half = rows / (2 * q) * q;
    product_rows(p, c2, x, w, d, n, m, k, 0, half);
    product_rows(p, c2, x, w, d, n, m, k, half, rows);
    return memcmp(c1, c2, bytes) == 0;
}

/* Random operands for every product of S on N rows. */
typedef struct {
    float *x, *w, *d, *c1, *c2;
} Operands;

static void operands_free(Operands *o) {
    free(o->x);
    free(o->w);
    free(o->d);
    free(o->c1);
    free(o->c2);
}

static int operands_init(Operands *o, const ModelShape *s, int n) {
    int maxd = 0;
    for (int l = 0; l <= s->n_layers; l++) maxd = s->dims[l] + 1 > maxd ? s->dims[l] + 1 : maxd;
    size_t big = (size_t)(n > maxd ? n : maxd) * maxd;
    o->x = malloc(big * sizeof(float));
    o->w = malloc((size_t)maxd * maxd * sizeof(float));
    o->d = malloc(big * sizeof(float));
    o->c1 = malloc(big * sizeof(float));
    o->c2 = malloc(big * sizeof(float));
    if (!o->x || !o->w || !o->d || !o->c1 || !o->c2) {
        operands_free(o);
        return -1;
    }
    for (size_t i = 0; i < big; i++) {
        o->x[i] = rng_uniform(7, RNG_INIT, 1000, 0, i);
        o->d[i] = rng_uniform(7, RNG_INIT, 1001, 0, i) - 0.5f;
    }
    for (size_t i = 0; i < (size_t)maxd * maxd; i++)
        o->w[i] = rng_uniform(7, RNG_INIT, 1002, 0, i) - 0.5f;
    return 0;
}

/* Whether layer L's batch-row products (forward, and input gradient below layer 0) split at
 * multiples of Q are exact. */
static int layer_rows_split(const Operands *o, const ModelShape *s, int n, int l, int q) {
    int k = s->dims[l] + 1, m = s->dims[l + 1];
    return split_is_exact(FORWARD, q, o->c1, o->c2, o->x, o->w, o->d, n, m, k) &&
           (l == 0 || split_is_exact(INPUT_GRAD, q, o->c1, o->c2, o->x, o->w, o->d, n, m, k - 1));
}

int tile_probe_quantum(const ModelShape *s, int n) {
    static const int candidates[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256};
    Operands o;
    if (operands_init(&o, s, n)) return -1;
    int found = 0;
    for (size_t ci = 0; ci < sizeof candidates / sizeof candidates[0] && !found; ci++) {
        int q = candidates[ci], ok = 1;
        for (int l = 0; l < s->n_layers && ok; l++) {
            int k = s->dims[l] + 1, m = s->dims[l + 1];
            ok = layer_rows_split(&o, s, n, l, q) &&
                 split_is_exact(WEIGHT_GRAD, q, o.c1, o.c2, o.x, o.w, o.d, n, m, k);
        }
        if (ok) found = q;
    }
    operands_free(&o);
    return found;
}

int tile_probe_calls(const ModelShape *s, int n, int q) {
    Operands o;
    if (operands_init(&o, s, n)) return -1;
    int mask = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (layer_rows_split(&o, s, n, l, q)) mask |= 1 << l;
    operands_free(&o);
    return mask;
}
