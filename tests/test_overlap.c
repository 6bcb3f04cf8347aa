/* Tests for the Fisher overlap (Kirkpatrick et al. 2017, Fig. 2C) against hand-computed values
 * and a float64 evaluation of 1 - 1/2 sum (sqrt(f1/|f1|) - sqrt(f2/|f2|))^2. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ewc/overlap.h"

static void test_identical_and_scaled_fishers_overlap_fully(void **state) {
    (void)state;
    float f[5] = {0.1f, 2.0f, 0.0f, 3.5f, 1e-3f}, g[5];
    for (int i = 0; i < 5; i++) g[i] = 7.0f * f[i]; /* normalisation removes the scale */
    assert_true(fabs(overlap_fisher(f, f, 5) - 1.0) < 1e-12);
    assert_true(fabs(overlap_fisher(f, g, 5) - 1.0) < 1e-6);
}

static void test_disjoint_supports_do_not_overlap(void **state) {
    (void)state;
    float f[4] = {1, 2, 0, 0}, g[4] = {0, 0, 3, 4};
    assert_true(fabs(overlap_fisher(f, g, 4)) < 1e-12);
}

static void test_known_value_and_symmetry(void **state) {
    (void)state;
    /* f = (1, 0) and g = (1/2, 1/2): 1 - 1/2 ((1 - sqrt(.5))^2 + .5) = sqrt(.5) */
    float f[2] = {1, 0}, g[2] = {1, 1};
    assert_true(fabs(overlap_fisher(f, g, 2) - sqrt(0.5)) < 1e-7);
    assert_true(overlap_fisher(f, g, 2) == overlap_fisher(g, f, 2));
}

static void test_random_fishers_match_float64_formula(void **state) {
    (void)state;
    enum { N = 1000 };
    float f[N], g[N];
    double s1 = 0, s2 = 0, d = 0;
    srand(3);
    for (int i = 0; i < N; i++) {
        f[i] = (float)rand() / (float)RAND_MAX * (i % 3 == 0 ? 10.0f : 0.01f);
        g[i] = (float)rand() / (float)RAND_MAX;
        s1 += f[i];
        s2 += g[i];
    }
    for (int i = 0; i < N; i++) d += pow(sqrt(f[i] / s1) - sqrt(g[i] / s2), 2);
    double expect = 1.0 - 0.5 * d, got = overlap_fisher(f, g, N);
    assert_true(fabs(got - expect) < 1e-9);
    assert_true(got > 0.0 && got < 1.0);
}

static void test_all_zero_fisher_gives_zero(void **state) {
    (void)state;
    float f[3] = {0, 0, 0}, g[3] = {1, 2, 3};
    assert_true(overlap_fisher(f, g, 3) == 0.0);
    assert_true(overlap_fisher(g, f, 3) == 0.0);
}

/* Independent float64 reference: layer l has W (out, in) and b (out), stored separately. */
static double layer_overlap_ref(const float *w1, const float *b1, const float *w2, const float *b2,
                                int out, int in) {
    double s1 = 0, s2 = 0, d = 0;
    for (int r = 0; r < out; r++) {
        for (int c = 0; c < in; c++) {
            s1 += w1[r * in + c];
            s2 += w2[r * in + c];
        }
        s1 += b1[r];
        s2 += b2[r];
    }
    for (int r = 0; r < out; r++) {
        for (int c = 0; c < in; c++)
            d += pow(sqrt(w1[r * in + c] / s1) - sqrt(w2[r * in + c] / s2), 2);
        d += pow(sqrt(b1[r] / s1) - sqrt(b2[r] / s2), 2);
    }
    return 1.0 - 0.5 * d;
}

static void test_per_layer_overlap_matches_float64_reference(void **state) {
    (void)state;
    /* a 7-5-4-3 network: layers [W|b] of 5 x 8, 4 x 6 and 3 x 5, laid out [W rows | b] */
    enum { L = 3 };
    const int dims[L + 1] = {7, 5, 4, 3};
    size_t len[L], n = 0;
    for (int l = 0; l < L; l++) n += len[l] = (size_t)dims[l + 1] * (dims[l] + 1);
    float *f1 = malloc(n * sizeof(float)), *f2 = malloc(n * sizeof(float));
    float w1[64], b1[8], w2[64], b2[8];
    assert_non_null(f1);
    assert_non_null(f2);
    srand(11);
    for (size_t i = 0; i < n; i++) {
        f1[i] = (float)rand() / (float)RAND_MAX * (i % 5 == 0 ? 50.0f : 1.0f);
        f2[i] = (float)rand() / (float)RAND_MAX * (i % 7 == 0 ? 0.0f : 3.0f);
    }
    double got[L];
    overlap_per_layer(f1, f2, len, L, got);
    size_t off = 0;
    for (int l = 0; l < L; l++) {
        int out = dims[l + 1], in = dims[l];
        /* segment l is laid out row by row as W[r, :] then b[r] (as in the model slab; any order
         * would do, the overlap sums over its elements): split it into W and b */
        for (int r = 0; r < out; r++) {
            for (int c = 0; c < in; c++) {
                w1[r * in + c] = f1[off + (size_t)r * (in + 1) + c];
                w2[r * in + c] = f2[off + (size_t)r * (in + 1) + c];
            }
            b1[r] = f1[off + (size_t)r * (in + 1) + in];
            b2[r] = f2[off + (size_t)r * (in + 1) + in];
        }
        double ref = layer_overlap_ref(w1, b1, w2, b2, out, in);
        if (fabs(got[l] - ref) > 1e-9) fail_msg("layer %d: %.12f vs %.12f", l + 1, got[l], ref);
        assert_true(ref > 0.0 && ref < 1.0);
        off += len[l];
    }
    /* scaling one layer changes neither its own overlap (normalised within the layer) nor the
     * others', but it does change the whole-network overlap */
    double whole = overlap_fisher(f1, f2, n), again[L];
    for (size_t i = len[0]; i < len[0] + len[1]; i++) f1[i] *= 100.0f;
    overlap_per_layer(f1, f2, len, L, again);
    for (int l = 0; l < L; l++) assert_true(fabs(again[l] - got[l]) < 1e-6);
    assert_true(fabs(overlap_fisher(f1, f2, n) - whole) > 1e-3);
    free(f1);
    free(f2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_and_scaled_fishers_overlap_fully),
        cmocka_unit_test(test_disjoint_supports_do_not_overlap),
        cmocka_unit_test(test_known_value_and_symmetry),
        cmocka_unit_test(test_random_fishers_match_float64_formula),
        cmocka_unit_test(test_all_zero_fisher_gives_zero),
        cmocka_unit_test(test_per_layer_overlap_matches_float64_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
