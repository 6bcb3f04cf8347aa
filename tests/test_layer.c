/* Tests of the layer kernels against naive float64 loops: linear forward/backward/Fisher, ReLU
 * with inverted dropout (rates, scaling, determinism, row-split independence), and softmax
 * cross-entropy (values, finite-difference gradient, huge logits, correct count). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/layer.h"
#include "testutil.h"

#define SENTINEL (-4242.5f)

static float *alloc_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    return p;
}

/* Random (n, din + 1) input with the trailing column set to 1. */
static float *random_input(TestRng *r, int n, int din) {
    float *in = alloc_floats((size_t)n * (din + 1));
    trng_fill(r, in, (size_t)n * (din + 1), -1.0, 1.0);
    for (int i = 0; i < n; i++) in[(size_t)i * (din + 1) + din] = 1.0f;
    return in;
}

/* ---- linear ------------------------------------------------------------------------------- */

static void check_linear_forward(int n, int din, int dout, uint64_t seed) {
    TestRng r = {seed};
    int ldo = dout + 3;
    float *in = random_input(&r, n, din);
    float *wb = alloc_floats((size_t)dout * (din + 1));
    trng_fill(&r, wb, (size_t)dout * (din + 1), -1.0, 1.0);
    float *out = alloc_floats((size_t)n * ldo);
    /* stale NaNs in the written columns must not leak (beta = 0 overwrites) */
    for (size_t k = 0; k < (size_t)n * ldo; k++) out[k] = (int)(k % ldo) < dout ? NAN : SENTINEL;

    linear_forward(out, ldo, in, wb, n, din, dout);

    for (int i = 0; i < n; i++) {
        for (int k = 0; k < dout; k++) {
            double ref = 0.0, mag = 0.0;
            for (int j = 0; j <= din; j++) {
                double t = (double)in[(size_t)i * (din + 1) + j] * wb[(size_t)k * (din + 1) + j];
                ref += t;
                mag += fabs(t);
            }
            assert_close_at(out[(size_t)i * ldo + k], ref, (din + 1) * FLT_EPSILON * mag,
                            i * dout + k);
        }
        for (int k = dout; k < ldo; k++) assert_true(out[(size_t)i * ldo + k] == SENTINEL);
    }
    free(in);
    free(wb);
    free(out);
}

static void test_linear_forward(void **state) {
    check_linear_forward(5, 6, 4, 11);
    check_linear_forward(37, 65, 23, 12);
    check_linear_forward(1, 1, 1, 13);
}

static void check_linear_backward_input(int n, int din, int dout, uint64_t seed) {
    TestRng r = {seed};
    float *dout_ = alloc_floats((size_t)n * dout);
    float *wb = alloc_floats((size_t)dout * (din + 1));
    float *din_ = alloc_floats((size_t)n * din);
    trng_fill(&r, dout_, (size_t)n * dout, -1.0, 1.0);
    trng_fill(&r, wb, (size_t)dout * (din + 1), -1.0, 1.0);
    /* a fresh delta: whatever was in the buffer (even NaN) must not leak into the result */
    for (size_t k = 0; k < (size_t)n * din; k++) din_[k] = NAN;

    linear_backward_input(din_, dout_, wb, n, din, dout);

    for (int i = 0; i < n; i++)
        for (int j = 0; j < din; j++) {
            double ref = 0.0, mag = 0.0;
            for (int k = 0; k < dout; k++) {
                double t = (double)dout_[(size_t)i * dout + k] * wb[(size_t)k * (din + 1) + j];
                ref += t;
                mag += fabs(t);
            }
            assert_close_at(din_[(size_t)i * din + j], ref, dout * FLT_EPSILON * mag + 1e-30,
                            i * din + j);
        }
    free(dout_);
    free(wb);
    free(din_);
}

static void test_linear_backward_input(void **state) {
    check_linear_backward_input(5, 6, 4, 21);
    check_linear_backward_input(29, 70, 33, 22);
}

/* Naive float64 reference for rows [r0, r1) of dwb after one call, for either the gradient
 * (square = 0: sum_s d[s][i] x[s][j]) or the Fisher (square = 1: sum_s d[s][i] x[s][j]^2).
 * REF and MAG are (dout, din + 1); MAG sums the absolute terms for the tolerance. */
static void naive_param_grad(double *ref, double *mag, const float *d, const float *in, int n,
                             int din, int dout, int square) {
    for (int i = 0; i < dout; i++)
        for (int j = 0; j <= din; j++) {
            double s = 0.0, m = 0.0;
            for (int k = 0; k < n; k++) {
                double x = in[(size_t)k * (din + 1) + j];
                double t = (double)d[(size_t)k * dout + i] * (square ? x * x : x);
                s += t;
                m += fabs(t);
            }
            ref[(size_t)i * (din + 1) + j] = s;
            mag[(size_t)i * (din + 1) + j] = m;
        }
}

static void check_backward_params(int n, int din, int dout, int r0, int r1, uint64_t seed) {
    TestRng r = {seed};
    size_t nw = (size_t)dout * (din + 1);
    float *d = alloc_floats((size_t)n * dout);
    float *in = random_input(&r, n, din);
    float *dwb = alloc_floats(nw), *base = alloc_floats(nw);
    double *ref = malloc(nw * sizeof *ref), *mag = malloc(nw * sizeof *mag);
    assert_non_null(ref);
    assert_non_null(mag);
    trng_fill(&r, d, (size_t)n * dout, -1.0, 1.0);
    trng_fill(&r, base, nw, -1.0, 1.0);
    for (size_t k = 0; k < nw; k++) {
        int row = (int)(k / (din + 1));
        if (row < r0 || row >= r1) base[k] = SENTINEL;
    }
    memcpy(dwb, base, nw * sizeof *dwb);
    naive_param_grad(ref, mag, d, in, n, din, dout, 0);

    for (int call = 1; call <= 2; call++) {
        linear_backward_params(dwb, d, in, n, din, dout, r0, r1);
        for (size_t k = 0; k < nw; k++) {
            int row = (int)(k / (din + 1));
            if (row < r0 || row >= r1) {
                if (dwb[k] != SENTINEL)
                    fail_msg("row %d outside [%d, %d) was touched", row, r0, r1);
                continue;
            }
            double want = base[k] + call * ref[k];
            double tol = (n + 2) * FLT_EPSILON * (fabs(base[k]) + call * mag[k]);
            assert_close_at(dwb[k], want, tol, k);
        }
    }
    free(d);
    free(in);
    free(dwb);
    free(base);
    free(ref);
    free(mag);
}

static void test_linear_backward_params(void **state) {
    check_backward_params(9, 5, 7, 2, 5, 31);   /* interior rows */
    check_backward_params(9, 5, 7, 0, 7, 32);   /* all rows */
    check_backward_params(9, 5, 7, 6, 7, 33);   /* last row only */
    check_backward_params(9, 5, 7, 3, 3, 34);   /* empty range: nothing may change */
    check_backward_params(41, 66, 30, 11, 29, 35);
}

static void check_fisher_params(int n, int din, int dout, int r0, int r1, uint64_t seed) {
    TestRng r = {seed};
    size_t nw = (size_t)dout * (din + 1), nin = (size_t)n * (din + 1);
    float *s = alloc_floats((size_t)n * dout);
    float *in = random_input(&r, n, din);
    float *in_copy = alloc_floats(nin), *in2 = alloc_floats(nin);
    float *fwb = alloc_floats(nw), *base = alloc_floats(nw);
    double *ref = malloc(nw * sizeof *ref), *mag = malloc(nw * sizeof *mag);
    assert_non_null(ref);
    assert_non_null(mag);
    trng_fill(&r, s, (size_t)n * dout, 0.0, 1.0); /* weighted squared deltas are >= 0 */
    trng_fill(&r, base, nw, 0.0, 1.0);
    for (size_t k = 0; k < nw; k++)
        if ((int)(k / (din + 1)) < r0 || (int)(k / (din + 1)) >= r1) base[k] = SENTINEL;
    for (size_t k = 0; k < nin; k++) in2[k] = 1e30f;
    memcpy(fwb, base, nw * sizeof *fwb);
    memcpy(in_copy, in, nin * sizeof *in);
    naive_param_grad(ref, mag, s, in, n, din, dout, 1);

    linear_fisher_params(fwb, s, in, in2, n, din, dout, r0, r1);

    assert_memory_equal(in, in_copy, nin * sizeof *in);
    for (size_t k = 0; k < nin; k++) {
        double want = (k % (din + 1)) == (size_t)din ? 1.0 : (double)in[k] * in[k];
        assert_close_at(in2[k], want, FLT_EPSILON * want, k);
    }
    for (int i = 0; i < dout; i++) {
        for (int j = 0; j <= din; j++) {
            size_t k = (size_t)i * (din + 1) + j;
            if (i < r0 || i >= r1) {
                assert_true(fwb[k] == SENTINEL);
                continue;
            }
            assert_close_at(fwb[k], base[k] + ref[k], (n + 2) * FLT_EPSILON * (base[k] + mag[k]),
                            k);
        }
        if (i >= r0 && i < r1) {
            /* the bias column is the plain sum of the weights s[:, i] */
            double bias = 0.0;
            for (int t = 0; t < n; t++) bias += s[(size_t)t * dout + i];
            size_t k = (size_t)i * (din + 1) + din;
            assert_close_at(fwb[k], base[k] + bias, (n + 2) * FLT_EPSILON * (base[k] + bias), k);
        }
    }
    free(s);
    free(in);
    free(in_copy);
    free(in2);
    free(fwb);
    free(base);
    free(ref);
    free(mag);
}

static void test_linear_fisher_params(void **state) {
    check_fisher_params(8, 5, 6, 1, 4, 41);
    check_fisher_params(8, 5, 6, 0, 6, 42);
    check_fisher_params(33, 50, 21, 7, 20, 43);
}

/* ---- ReLU and dropout --------------------------------------------------------------------- */

static void test_relu_forward_no_dropout(void **state) {
    TestRng r = {51};
    int n = 4, d = 6, ld = 8;
    float h[4 * 8], orig[4 * 8];
    trng_fill(&r, orig, sizeof orig / sizeof *orig, -1.0, 1.0);
    for (int i = 0; i < n; i++) {
        orig[i * ld + d] = 1.0f;
        orig[i * ld + d + 1] = SENTINEL;
    }

    memcpy(h, orig, sizeof h);
    relu_dropout_forward(h, n, d, ld, 1, 0.0f, 7, 1, 2, 0, 1);
    int negatives = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) {
            float x = orig[i * ld + j];
            negatives += x < 0.0f;
            assert_true(h[i * ld + j] == (x > 0.0f ? x : 0.0f));
        }
        assert_true(h[i * ld + d] == 1.0f); /* columns >= d are not touched */
        assert_true(h[i * ld + d + 1] == SENTINEL);
    }
    assert_true(negatives > 0 && negatives < n * d); /* the data exercised both branches */

    /* no ReLU, no dropout: the identity, negatives included */
    memcpy(h, orig, sizeof h);
    relu_dropout_forward(h, n, d, ld, 0, 0.0f, 7, 1, 2, 0, 0);
    assert_memory_equal(h, orig, sizeof h);
}

static void test_relu_backward(void **state) {
    TestRng r = {52};
    int n = 5, d = 7, ld = 8;
    float h[5 * 8], delta[5 * 7], orig[5 * 7];
    trng_fill(&r, h, sizeof h / sizeof *h, -1.0, 1.0);
    for (int k = 0; k < n * ld; k += 5) h[k] = 0.0f; /* exact zeros count as inactive */
    trng_fill(&r, orig, sizeof orig / sizeof *orig, -2.0, 2.0);
    const float ps[] = {0.0f, 0.5f, 0.3f};
    for (size_t t = 0; t < sizeof ps / sizeof *ps; t++) {
        float p = ps[t];
        memcpy(delta, orig, sizeof delta);
        relu_dropout_backward(delta, h, n, d, ld, p);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) {
                double want = h[i * ld + j] > 0.0f ? orig[i * d + j] / (1.0 - p) : 0.0;
                assert_close_at(delta[i * d + j], want, 2.0 * FLT_EPSILON * fabs(want), i * d + j);
            }
    }
}

#define DROP_N 200
#define DROP_D 503 /* not a multiple of 4 */
#define DROP_LD (DROP_D + 1)

static float *drop_input(void) {
    TestRng r = {53};
    float *h = alloc_floats((size_t)DROP_N * DROP_LD);
    trng_fill(&r, h, (size_t)DROP_N * DROP_LD, 0.5, 1.5); /* positive: ReLU keeps them all */
    for (int i = 0; i < DROP_N; i++) h[(size_t)i * DROP_LD + DROP_D] = 1.0f;
    return h;
}

static float *dropped(const float *h, float p, uint64_t seed, uint32_t task, uint32_t epoch,
                      uint64_t pos0, int layer) {
    float *out = alloc_floats((size_t)DROP_N * DROP_LD);
    memcpy(out, h, (size_t)DROP_N * DROP_LD * sizeof *out);
    relu_dropout_forward(out, DROP_N, DROP_D, DROP_LD, 1, p, seed, task, epoch, pos0, layer);
    return out;
}

static void check_dropout_rate(float p) {
    float *h = drop_input();
    float *out = dropped(h, p, 99, 2, 3, 1000, 1);
    double q = 1.0 - p;
    long kept = 0, pairs = 0, both = 0;
    for (int i = 0; i < DROP_N; i++) {
        const float *x = h + (size_t)i * DROP_LD, *y = out + (size_t)i * DROP_LD;
        for (int j = 0; j < DROP_D; j++) {
            if (y[j] != 0.0f) {
                kept++;
                /* a kept unit is scaled by 1 / (1 - p), to float rounding */
                assert_close_at(y[j], x[j] / q, 2.0 * FLT_EPSILON * x[j] / q, i * DROP_D + j);
            }
            if (j + 1 < DROP_D) {
                pairs++;
                both += y[j] != 0.0f && y[j + 1] != 0.0f;
            }
        }
        assert_true(y[DROP_D] == 1.0f); /* the trailing-1 column is not a unit */
    }
    double units = (double)DROP_N * DROP_D;
    assert_close(kept, units * q, 5.0 * sqrt(units * p * q));
    /* neighbours (often from the same Philox call) must be independent: P(both) = q^2 */
    assert_close(both, pairs * q * q, 6.0 * sqrt(pairs * q * q * (1.0 - q * q)));
    free(h);
    free(out);
}

static void test_dropout_rate_and_scale(void **state) {
    check_dropout_rate(0.5f);
    check_dropout_rate(0.3f);
    check_dropout_rate(0.9f);

    /* p = 0.5 scales by exactly 2 */
    float *h = drop_input();
    float *out = dropped(h, 0.5f, 5, 0, 0, 0, 2);
    for (size_t k = 0; k < (size_t)DROP_N * DROP_LD; k++)
        assert_true(out[k] == 0.0f || out[k] == (k % DROP_LD == DROP_D ? 1.0f : 2.0f * h[k]));
    free(out);

    /* p = 0 is the identity on positive inputs */
    out = dropped(h, 0.0f, 5, 0, 0, 0, 2);
    assert_memory_equal(out, h, (size_t)DROP_N * DROP_LD * sizeof *h);
    free(out);
    free(h);
}

/* Fraction of units whose keep decision differs between two dropped copies. */
static double mask_difference(const float *a, const float *b) {
    long diff = 0;
    for (int i = 0; i < DROP_N; i++)
        for (int j = 0; j < DROP_D; j++)
            diff += (a[(size_t)i * DROP_LD + j] != 0.0f) != (b[(size_t)i * DROP_LD + j] != 0.0f);
    return (double)diff / ((double)DROP_N * DROP_D);
}

static void test_dropout_determinism(void **state) {
    float *h = drop_input();
    float *ref = dropped(h, 0.5f, 99, 2, 3, 1000, 1);
    float *same = dropped(h, 0.5f, 99, 2, 3, 1000, 1);
    assert_memory_equal(ref, same, (size_t)DROP_N * DROP_LD * sizeof *ref);
    free(same);

    /* changing any part of the key gives an unrelated mask: about half the units differ */
    float *other[] = {
        dropped(h, 0.5f, 100, 2, 3, 1000, 1), /* seed */
        dropped(h, 0.5f, 99, 1, 3, 1000, 1),  /* task */
        dropped(h, 0.5f, 99, 2, 4, 1000, 1),  /* epoch */
        dropped(h, 0.5f, 99, 2, 3, 1001, 1),  /* position */
        dropped(h, 0.5f, 99, 2, 3, 1000, 2),  /* layer */
    };
    for (size_t k = 0; k < sizeof other / sizeof *other; k++) {
        double f = mask_difference(ref, other[k]);
        if (f < 0.45 || f > 0.55) fail_msg("key change %zu: %.3f of the mask differs", k, f);
        free(other[k]);
    }
    free(ref);
    free(h);
}

static void test_dropout_row_split(void **state) {
    float *h = drop_input();
    float *whole = dropped(h, 0.3f, 17, 4, 1, 5000, 3);
    const int splits[] = {1, 37, 100, DROP_N - 1};
    for (size_t t = 0; t < sizeof splits / sizeof *splits; t++) {
        int k = splits[t];
        float *parts = alloc_floats((size_t)DROP_N * DROP_LD);
        memcpy(parts, h, (size_t)DROP_N * DROP_LD * sizeof *parts);
        relu_dropout_forward(parts, k, DROP_D, DROP_LD, 1, 0.3f, 17, 4, 1, 5000, 3);
        relu_dropout_forward(parts + (size_t)k * DROP_LD, DROP_N - k, DROP_D, DROP_LD, 1, 0.3f, 17,
                             4, 1, 5000 + (uint64_t)k, 3);
        assert_memory_equal(parts, whole, (size_t)DROP_N * DROP_LD * sizeof *parts);
        free(parts);
    }
    free(whole);
    free(h);
}

/* ---- softmax cross-entropy ---------------------------------------------------------------- */

/* Stable float64 log-sum-exp of one row. */
static double logsumexp(const double *z, int c) {
    double m = z[0], s = 0.0;
    for (int k = 1; k < c; k++) m = z[k] > m ? z[k] : m;
    for (int k = 0; k < c; k++) s += exp(z[k] - m);
    /* cppcheck-suppress invalidFunctionArg ; c >= 1 and the max's term is exp(0) = 1, so s >= 1 */
    return m + log(s);
}

/* Mean cross-entropy over n rows, in float64. */
static double mean_ce(const double *z, const uint8_t *y, int n, int c) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += logsumexp(z + (size_t)i * c, c) - z[(size_t)i * c + y[i]];
    return s / n;
}

/* Runs softmax_ce_forward_backward with scale 1/n and checks it row by row against float64. */
static void check_softmax_ce(const float *logits, const uint8_t *y, int n, int c) {
    size_t nc = (size_t)n * c;
    float *prob = alloc_floats(nc), *delta = alloc_floats(nc), *loss = alloc_floats(n);
    float *prob2 = alloc_floats(nc);
    float scale = 1.0f / (float)n;
    int correct = softmax_ce_forward_backward(prob, loss, delta, logits, y, n, c, scale);

    int want_correct = 0;
    for (int i = 0; i < n; i++) {
        double z[64];
        assert_true(c <= 64);
        int best = 0;
        for (int k = 0; k < c; k++) {
            z[k] = logits[(size_t)i * c + k];
            if (z[k] > z[best]) best = k;
        }
        want_correct += best == y[i];
        double lse = logsumexp(z, c), sum = 0.0;
        for (int k = 0; k < c; k++) {
            float p = prob[(size_t)i * c + k], d = delta[(size_t)i * c + k];
            assert_true(isfinite(p) && isfinite(d));
            double pref = exp(z[k] - lse);
            sum += p;
            assert_close_at(p, pref, 4e-6 * pref + 1e-30, i * c + k);
            double dref = (pref - (k == y[i])) * scale;
            assert_close_at(d, dref, 4e-6 * scale, i * c + k);
        }
        assert_close_at(sum, 1.0, 1e-6, i);
        double lref = lse - z[y[i]];
        assert_true(isfinite(loss[i]));
        assert_close_at(loss[i], lref, 1e-6 * fmax(1.0, fabs(lref)), i);
    }
    assert_int_equal(correct, want_correct);

    /* the softmax-only path agrees, and counts the same hits (none without labels) */
    assert_int_equal(softmax_forward(prob2, logits, y, n, c), want_correct);
    assert_memory_equal(prob2, prob, nc * sizeof *prob);
    assert_int_equal(softmax_forward(prob2, logits, NULL, n, c), 0);
    free(prob);
    free(prob2);
    free(delta);
    free(loss);
}

static void test_softmax_ce_values(void **state) {
    TestRng r = {61};
    enum { N = 40, C = 10 };
    float logits[N * C];
    uint8_t y[N];
    trng_fill(&r, logits, N * C, -5.0, 5.0);
    for (int i = 0; i < N; i++) {
        /* half the labels are the argmax, so the correct count is neither 0 nor n */
        int best = 0;
        for (int k = 1; k < C; k++) best = logits[i * C + k] > logits[i * C + best] ? k : best;
        y[i] = i % 2 ? (uint8_t)best : (uint8_t)(trng_next(&r) % C);
    }
    check_softmax_ce(logits, y, N, C);
}

static void test_softmax_ce_gradient_fd(void **state) {
    TestRng r = {62};
    enum { N = 6, C = 5 };
    float logits[N * C], prob[N * C], delta[N * C], loss[N];
    double z[N * C];
    uint8_t y[N];
    trng_fill(&r, logits, N * C, -3.0, 3.0);
    for (int i = 0; i < N; i++) y[i] = (uint8_t)(trng_next(&r) % C);
    softmax_ce_forward_backward(prob, loss, delta, logits, y, N, C, 1.0f / N);

    /* mean loss from the kernel equals the float64 mean */
    double mean = 0.0;
    for (int k = 0; k < N * C; k++) z[k] = logits[k];
    for (int i = 0; i < N; i++) mean += loss[i];
    assert_close(mean / N, mean_ce(z, y, N, C), 1e-6);

    const double h = 1e-4;
    for (int k = 0; k < N * C; k++) {
        double z0 = z[k];
        z[k] = z0 + h;
        double up = mean_ce(z, y, N, C);
        z[k] = z0 - h;
        double down = mean_ce(z, y, N, C);
        z[k] = z0;
        double fd = (up - down) / (2.0 * h);
        assert_close_at(delta[k], fd, 2e-6, k);
    }
}

static void test_softmax_ce_huge_logits(void **state) {
    enum { N = 5, C = 4 };
    const float logits[N * C] = {
        1e4f, 0.0f,  -1e4f, 5.0f,         /* one dominant class */
        1e4f, 1e4f,  -1e4f, 9999.0f,      /* a tie at the top (y is not in it), a near miss */
        -1e4f, -1e4f, -1e4f, -9999.0f,    /* all very negative */
        3e4f, -3e4f, 0.0f,  2.99995e4f,   /* extreme range */
        -2e4f, 1.0f, 2.0f,  3.0f,
    };
    const uint8_t y[N] = {2, 3, 1, 1, 0}; /* includes hugely wrong labels: losses ~ 2e4, 6e4 */
    check_softmax_ce(logits, y, N, C);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_forward),
        cmocka_unit_test(test_linear_backward_input),
        cmocka_unit_test(test_linear_backward_params),
        cmocka_unit_test(test_linear_fisher_params),
        cmocka_unit_test(test_relu_forward_no_dropout),
        cmocka_unit_test(test_relu_backward),
        cmocka_unit_test(test_dropout_rate_and_scale),
        cmocka_unit_test(test_dropout_determinism),
        cmocka_unit_test(test_dropout_row_split),
        cmocka_unit_test(test_softmax_ce_values),
        cmocka_unit_test(test_softmax_ce_gradient_fd),
        cmocka_unit_test(test_softmax_ce_huge_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
