/* Tests of the task permutations: the full one is the old rng_permutation bit for bit; a partial
 * one is a permutation that moves exactly round(F * dim) pixels (none when that is 0 or 1), is a
 * pure function of (seed, task), and picks its pixels evenly. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ewc/permute.h"
#include "ewc/rng.h"

enum { DIM = 784 };

static void assert_is_permutation(const int *p, int n) {
    char *seen = calloc((size_t)n, 1);
    assert_non_null(seen);
    for (int i = 0; i < n; i++) {
        assert_true(p[i] >= 0 && p[i] < n);
        assert_false(seen[p[i]]);
        seen[p[i]] = 1;
    }
    free(seen);
}

static int moved(const int *p, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += p[i] != i;
    return k;
}

static void test_full_fraction_is_the_old_permutation(void **state) {
    (void)state;
    int a[DIM], b[DIM];
    for (uint64_t seed = 1; seed <= 3; seed++)
        for (int task = 0; task < 5; task++) {
            assert_int_equal(permute_task(a, DIM, 1.0, seed, task), EWC_OK);
            rng_permutation(b, DIM, seed, RNG_TASK_PERM, (uint32_t)task, 0);
            assert_memory_equal(a, b, sizeof a);
        }
}

static void test_zero_fraction_is_the_identity(void **state) {
    (void)state;
    int p[DIM];
    for (int task = 0; task < 3; task++) {
        memset(p, 0xff, sizeof p);
        assert_int_equal(permute_task(p, DIM, 0.0, 7, task), EWC_OK);
        for (int i = 0; i < DIM; i++) assert_int_equal(p[i], i);
    }
}

static void test_subset_size_rounds(void **state) {
    (void)state;
    assert_int_equal(permute_subset_size(DIM, 0.05), 39); /* 39.2 */
    assert_int_equal(permute_subset_size(DIM, 0.1), 78);  /* 78.4 */
    assert_int_equal(permute_subset_size(DIM, 0.5), 392);
    assert_int_equal(permute_subset_size(DIM, 0.999), 783); /* 783.216 */
    assert_int_equal(permute_subset_size(DIM, 1.0), DIM);
    assert_int_equal(permute_subset_size(10, 0.25), 3); /* 2.5 rounds away from zero */
    assert_int_equal(permute_subset_size(10, 0.0), 0);
}

static void test_partial_moves_exactly_the_subset(void **state) {
    (void)state;
    static const double fr[] = {0.001, 0.0013, 0.0026, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8,
                                0.99, 0.9999};
    int p[DIM];
    for (size_t f = 0; f < sizeof fr / sizeof fr[0]; f++)
        for (int task = 0; task < 4; task++) {
            int m = (int)lround(fr[f] * DIM);
            assert_int_equal(permute_task(p, DIM, fr[f], 3, task), EWC_OK);
            assert_is_permutation(p, DIM);
            /* 0.001 -> m = 1 and 0.0013 -> m = 1: one pixel cannot move alone; 0.0026 -> 2 */
            int expect = m >= 2 ? m : 0;
            if (moved(p, DIM) != expect)
                fail_msg("fraction %g task %d: %d pixels moved, expected %d", fr[f], task,
                         moved(p, DIM), expect);
        }
}

static void test_deterministic_and_distinct_per_task_and_seed(void **state) {
    (void)state;
    int a[DIM], b[DIM], c[DIM], d[DIM];
    assert_int_equal(permute_task(a, DIM, 0.2, 11, 2), EWC_OK);
    assert_int_equal(permute_task(b, DIM, 0.2, 11, 2), EWC_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(permute_task(c, DIM, 0.2, 11, 3), EWC_OK);
    assert_int_equal(permute_task(d, DIM, 0.2, 12, 2), EWC_OK);
    assert_true(memcmp(a, c, sizeof a) != 0);
    assert_true(memcmp(a, d, sizeof a) != 0);
    /* tasks pick different subsets: two random 157-subsets of 784 share about 31 pixels */
    int both = 0;
    for (int i = 0; i < DIM; i++) both += a[i] != i && c[i] != i;
    assert_true(both > 5 && both < 100);
}

static void test_subsets_are_uniform(void **state) {
    (void)state;
    /* dim 5, F = 0.6: m = 3, so each pixel moves with probability 3/5; the derangements of 3
     * elements are the two 3-cycles, each with probability 1/2 */
    enum { N = 4000, D = 5 };
    int count[D] = {0}, cycle_up = 0, p[D];
    for (int task = 0; task < N; task++) {
        assert_int_equal(permute_task(p, D, 0.6, 5, task), EWC_OK);
        assert_int_equal(moved(p, D), 3);
        int first = -1;
        for (int i = 0; i < D; i++)
            if (p[i] != i) {
                count[i]++;
                if (first < 0) first = i;
            }
        /* from the smallest moved pixel, does the cycle go to the next larger moved pixel? */
        int next = -1;
        for (int i = first + 1; i < D && next < 0; i++)
            if (p[i] != i) next = i;
        cycle_up += p[first] == next;
    }
    for (int i = 0; i < D; i++) /* binomial sd = sqrt(4000 * .6 * .4) = 31: allow 5 sd */
        if (abs(count[i] - N * 3 / 5) > 155) fail_msg("pixel %d moved %d times of %d", i, count[i], N);
    assert_true(abs(cycle_up - N / 2) < 160); /* sd 32 */
}

static void test_bad_arguments(void **state) {
    (void)state;
    int p[4];
    assert_int_equal(permute_task(p, 4, 1.5, 1, 0), EWC_EINVAL);
    assert_int_equal(permute_task(p, 4, -0.1, 1, 0), EWC_EINVAL);
    assert_int_equal(permute_task(p, 4, NAN, 1, 0), EWC_EINVAL);
    assert_int_equal(permute_task(p, 0, 0.5, 1, 0), EWC_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_fraction_is_the_old_permutation),
        cmocka_unit_test(test_zero_fraction_is_the_identity),
        cmocka_unit_test(test_subset_size_rounds),
        cmocka_unit_test(test_partial_moves_exactly_the_subset),
        cmocka_unit_test(test_deterministic_and_distinct_per_task_and_seed),
        cmocka_unit_test(test_subsets_are_uniform),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
