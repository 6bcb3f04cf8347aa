/* Layer kernels: linear layers as single SGEMM calls on [W | b], ReLU with inverted dropout,
 * softmax cross-entropy. Every per-sample result depends only on that sample's row, which is
 * what lets the exact reduction (dist.c) shard samples without changing any bit. */
#include "ewc/layer.h"

#include <cblas.h>
#include <math.h>

#include "ewc/rng.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

void layer_flush_subnormals(void) {
#if defined(__SSE__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ | DAZ */
#endif
}

void linear_forward(float *out, int ldo, const float *in, const float *wb, int n, int din,
                    int dout) {
    if (n == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, dout, din + 1, 1.0f, in, din + 1, wb,
                din + 1, 0.0f, out, ldo);
}

void linear_backward_input(float *din_, const float *dout_, const float *wb, int n, int din,
                           int dout) {
    if (n == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, din, dout, 1.0f, dout_, dout, wb,
                din + 1, 0.0f, din_, din);
}

void linear_backward_params(float *dwb, const float *dout_, const float *in, int n, int din,
                            int dout, int r0, int r1) {
    if (r1 <= r0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, din + 1, n, 1.0f, dout_ + r0,
                dout, in, din + 1, 1.0f, dwb + (size_t)r0 * (din + 1), din + 1);
}

void linear_fisher_params(float *fwb, const float *s, const float *in, float *in2, int n, int din,
                          int dout, int r0, int r1) {
    size_t len = (size_t)n * (din + 1);
    for (size_t i = 0; i < len; i++) in2[i] = in[i] * in[i];
    linear_backward_params(fwb, s, in2, n, din, dout, r0, r1);
}

void relu_dropout_forward(float *h, int n, int d, int ld, int relu, float p, uint64_t seed,
                          uint32_t task, uint32_t epoch, uint64_t pos0, int layer) {
    for (int i = 0; i < n; i++) {
        float *row = h + (size_t)i * ld;
        if (relu)
            for (int j = 0; j < d; j++) row[j] = row[j] > 0.0f ? row[j] : 0.0f; /* inlined, unlike fmaxf */
        if (p <= 0.0f) continue;
        /* keep unit j iff its uniform draw is >= p; four units per Philox call */
        float scale = 1.0f / (1.0f - p);
        uint32_t threshold = (uint32_t)ldexp((double)p, 32);
        uint64_t base = ((pos0 + (uint64_t)i) << 24) | ((uint64_t)layer << 18);
        for (int j = 0; j < d; j += 4) {
            uint32_t w[4];
            rng_words(w, seed, RNG_DROPOUT, task, epoch, base | (uint64_t)(j >> 2));
            for (int k = 0; k < 4 && j + k < d; k++)
                row[j + k] = w[k] >= threshold ? row[j + k] * scale : 0.0f;
        }
    }
}

/* Branch-free (a select, not a jump): whether a ReLU is active is a coin flip the branch
 * predictor loses, and this loop is otherwise a tenth of a training step. */
static void relu_mask_row(float *restrict drow, const float *restrict hrow, int d, float scale) {
    for (int j = 0; j < d; j++) drow[j] *= hrow[j] > 0.0f ? scale : 0.0f;
}

void relu_dropout_backward(float *delta, const float *h, int n, int d, int ld, float p) {
    float scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    for (int i = 0; i < n; i++) relu_mask_row(delta + (size_t)i * d, h + (size_t)i * ld, d, scale);
}

/* Stable softmax of one row; returns log of the normaliser relative to the max, and the max. */
static void softmax_row(float *prob, const float *z, int c, float *zmax, double *logsum) {
    float m = z[0];
    for (int k = 1; k < c; k++) m = z[k] > m ? z[k] : m;
    double s = 0.0;
    for (int k = 0; k < c; k++) {
        prob[k] = expf(z[k] - m);
        s += prob[k];
    }
    float inv = (float)(1.0 / s);
    for (int k = 0; k < c; k++) prob[k] *= inv;
    *zmax = m;
    /* cppcheck-suppress invalidFunctionArg ; c >= 1 and the max's term is expf(0) = 1, so s >= 1 */
    *logsum = log(s);
}

static int argmax(const float *v, int c) {
    int best = 0;
    for (int k = 1; k < c; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

int softmax_ce_forward_backward(float *prob, float *loss, float *delta, const float *logits,
                                const uint8_t *y, int n, int c, float scale) {
    int correct = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * c;
        float *p = prob + (size_t)i * c;
        float m;
        double logsum;
        softmax_row(p, z, c, &m, &logsum);
        loss[i] = (float)((double)m + logsum - (double)z[y[i]]);
        correct += argmax(z, c) == y[i];
        float *d = delta + (size_t)i * c;
        for (int k = 0; k < c; k++) d[k] = (p[k] - (k == y[i] ? 1.0f : 0.0f)) * scale;
    }
    return correct;
}

int softmax_forward(float *prob, const float *logits, const uint8_t *y, int n, int c) {
    int correct = 0;
    for (int i = 0; i < n; i++) {
        float m;
        double logsum;
        softmax_row(prob + (size_t)i * c, logits + (size_t)i * c, c, &m, &logsum);
        if (y) correct += argmax(logits + (size_t)i * c, c) == y[i];
    }
    return correct;
}

int softmax_ce_active_forward_backward(float *prob, float *loss, float *delta, const float *logits,
                                       const int *y, const int *lo, const int *hi, int n, int c,
                                       float scale) {
    int correct = 0;
    for (int i = 0; i < n; i++) {
        int a = lo[i], m_ = hi[i] - lo[i];
        const float *z = logits + (size_t)i * c + a;
        float *p = prob + (size_t)i * c, *d = delta + (size_t)i * c;
        float m;
        double logsum;
        for (int k = 0; k < c; k++) p[k] = d[k] = 0.0f;
        softmax_row(p + a, z, m_, &m, &logsum);
        int yi = y[i] - a;
        loss[i] = (float)((double)m + logsum - (double)z[yi]);
        correct += argmax(z, m_) == yi;
        for (int k = 0; k < m_; k++) d[a + k] = (p[a + k] - (k == yi ? 1.0f : 0.0f)) * scale;
    }
    return correct;
}

int softmax_active_forward(float *prob, const float *logits, const int *y, const int *lo,
                           const int *hi, int n, int c) {
    int correct = 0;
    for (int i = 0; i < n; i++) {
        int a = lo[i], m_ = hi[i] - lo[i];
        const float *z = logits + (size_t)i * c + a;
        float *p = prob + (size_t)i * c, m;
        double logsum;
        for (int k = 0; k < c; k++) p[k] = 0.0f;
        softmax_row(p + a, z, m_, &m, &logsum);
        if (y) correct += argmax(z, m_) == y[i] - a;
    }
    return correct;
}
