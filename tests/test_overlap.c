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
        f[i] = (float)rand() / RAND_MAX * (i % 3 == 0 ? 10.0f : 0.01f);
        g[i] = (float)rand() / RAND_MAX;
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_and_scaled_fishers_overlap_fully),
        cmocka_unit_test(test_disjoint_supports_do_not_overlap),
        cmocka_unit_test(test_known_value_and_symmetry),
        cmocka_unit_test(test_random_fishers_match_float64_formula),
        cmocka_unit_test(test_all_zero_fisher_gives_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
