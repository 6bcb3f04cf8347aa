/* Tests of the counter-based generator: permutations are permutations, deterministic per key and
 * different across keys, uniform (chi-square), and rng_uniform is a 24-bit uniform in [0, 1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/rng.h"

static int *perm_alloc(int n) {
    int *p = malloc((size_t)n * sizeof *p);
    assert_non_null(p);
    return p;
}

static void assert_is_permutation(const int *perm, int n) {
    unsigned char *seen = calloc((size_t)n, 1);
    assert_non_null(seen);
    for (int i = 0; i < n; i++) {
        if (perm[i] < 0 || perm[i] >= n) fail_msg("perm[%d] = %d outside [0, %d)", i, perm[i], n);
        if (seen[perm[i]]) fail_msg("value %d appears twice (n = %d)", perm[i], n);
        seen[perm[i]] = 1;
    }
    free(seen);
}

static void test_permutation_is_permutation(void **state) {
    const int sizes[] = {1, 2, 3, 784, 60000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        int *p = perm_alloc(n);
        for (uint32_t task = 0; task < 3; task++) {
            rng_permutation(p, n, 12345, RNG_TASK_PERM, task, 0);
            assert_is_permutation(p, n);
        }
        free(p);
    }
    /* n = 0 writes nothing */
    int guard = -7;
    rng_permutation(&guard, 0, 1, RNG_TASK_PERM, 0, 0);
    assert_int_equal(guard, -7);
}

/* Number of positions where two permutations differ. */
static int perm_distance(const int *a, const int *b, int n) {
    int d = 0;
    for (int i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static void test_permutation_keys(void **state) {
    enum { N = 784 };
    int ref[N], again[N], other[N];
    rng_permutation(ref, N, 42, RNG_EPOCH_ORDER, 3, 5);
    rng_permutation(again, N, 42, RNG_EPOCH_ORDER, 3, 5);
    assert_memory_equal(ref, again, sizeof ref);

    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += ref[i] == i;
    assert_true(fixed < 10); /* not (close to) the identity: about 1 fixed point expected */

    struct {
        uint64_t seed;
        RngPurpose purpose;
        uint32_t a, b;
    } keys[] = {
        {43, RNG_EPOCH_ORDER, 3, 5},                 /* seed */
        {42, RNG_EPOCH_ORDER, 4, 5},                 /* task */
        {42, RNG_EPOCH_ORDER, 3, 6},                 /* epoch */
        {42, RNG_FISHER_ORDER, 3, 5},                /* purpose */
        {42ull | (1ull << 32), RNG_EPOCH_ORDER, 3, 5}, /* the seed's high word */
    };
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        rng_permutation(other, N, keys[k].seed, keys[k].purpose, keys[k].a, keys[k].b);
        assert_is_permutation(other, N);
        /* independent permutations agree in about 1 position */
        int d = perm_distance(ref, other, N);
        if (d < N - 10) fail_msg("key %zu: only %d of %d positions differ", k, d, N);
    }
}

/* Counts of every ordering of n = 5 over many keys: each of the 120 permutations equally likely,
 * and each position's value uniform over 0..4 (chi-square bounds at p ~ 1e-6). */
static void test_permutation_uniform(void **state) {
    enum { N = 5, PERMS = 120, DRAWS = 120000 };
    static long count[PERMS];
    long pos[N][N] = {{0}};
    memset(count, 0, sizeof count);
    for (int t = 0; t < DRAWS; t++) {
        int p[N];
        rng_permutation(p, N, 7, RNG_EPOCH_ORDER, (uint32_t)(t % 1000), (uint32_t)(t / 1000));
        /* Lehmer code -> index in 0..119 */
        int index = 0;
        for (int i = 0; i < N; i++) {
            int smaller = 0;
            for (int j = i + 1; j < N; j++) smaller += p[j] < p[i];
            index = index * (N - i) + smaller;
            pos[i][p[i]]++;
        }
        count[index]++;
    }
    double expect = (double)DRAWS / PERMS, chi2 = 0.0;
    for (int k = 0; k < PERMS; k++) chi2 += (count[k] - expect) * (count[k] - expect) / expect;
    /* 119 degrees of freedom: mean 119, P(chi2 > 207) ~ 1e-6 */
    if (chi2 > 207.0) fail_msg("orderings: chi2 = %.1f with 119 dof", chi2);
    for (int i = 0; i < N; i++) {
        double e = (double)DRAWS / N, c = 0.0;
        for (int v = 0; v < N; v++) c += (pos[i][v] - e) * (pos[i][v] - e) / e;
        /* 4 degrees of freedom: P(chi2 > 33.4) ~ 1e-6 */
        if (c > 33.4) fail_msg("position %d: chi2 = %.1f with 4 dof", i, c);
    }
}

static void test_uniform(void **state) {
    enum { DRAWS = 1000000 };
    double sum = 0.0, sum2 = 0.0;
    long low = 0;
    float lo = 1.0f, hi = 0.0f;
    for (int i = 0; i < DRAWS; i++) {
        float u = rng_uniform(99, RNG_DROPOUT, 1, 2, (uint64_t)i);
        if (!(u >= 0.0f && u < 1.0f)) fail_msg("draw %d = %.9g outside [0, 1)", i, u);
        float scaled = u * 0x1p24f;
        if (scaled != floorf(scaled)) fail_msg("draw %d = %.9g is not a multiple of 2^-24", i, u);
        sum += u;
        sum2 += (double)u * u;
        low += u < 0.25f;
        lo = fminf(lo, u);
        hi = fmaxf(hi, u);
    }
    double mean = sum / DRAWS, var = sum2 / DRAWS - mean * mean;
    if (fabs(mean - 0.5) > 5.0 * sqrt(1.0 / 12.0 / DRAWS)) fail_msg("mean %.6f", mean);
    if (fabs(var - 1.0 / 12.0) > 5.0 * sqrt(1.0 / 180.0 / DRAWS)) fail_msg("variance %.6f", var);
    if (fabs(low - 0.25 * DRAWS) > 5.0 * sqrt(DRAWS * 0.25 * 0.75)) fail_msg("P(u < 1/4)");
    assert_true(lo < 1e-5f && hi > 1.0f - 1e-5f);

    /* a pure function of its key and counter */
    assert_true(rng_uniform(99, RNG_DROPOUT, 1, 2, 17) == rng_uniform(99, RNG_DROPOUT, 1, 2, 17));
}

/* Changing any part of the key or counter gives different words: index bits above 32 included. */
static void test_words_key_and_counter(void **state) {
    uint32_t ref[4], w[4];
    const uint64_t index = 0x123456789aull;
    rng_words(ref, 5, RNG_INIT, 1, 2, index);
    rng_words(w, 5, RNG_INIT, 1, 2, index);
    assert_memory_equal(ref, w, sizeof ref);
    /* the four words of one draw are not copies of each other */
    assert_true(ref[0] != ref[1] && ref[1] != ref[2] && ref[2] != ref[3] && ref[0] != ref[3]);

    struct {
        uint64_t seed;
        RngPurpose purpose;
        uint32_t a, b;
        uint64_t index;
    } variants[] = {
        {6, RNG_INIT, 1, 2, index},
        {5 | (1ull << 40), RNG_INIT, 1, 2, index},
        {5, RNG_TASK_PERM, 1, 2, index},
        {5, RNG_INIT, 0, 2, index},
        {5, RNG_INIT, 1, 3, index},
        {5, RNG_INIT, 1, 2, index + 1},
        {5, RNG_INIT, 1, 2, index ^ (1ull << 32)},
        {5, RNG_INIT, 1, 2, index ^ (1ull << 55)},
    };
    for (size_t k = 0; k < sizeof variants / sizeof *variants; k++) {
        rng_words(w, variants[k].seed, variants[k].purpose, variants[k].a, variants[k].b,
                  variants[k].index);
        int same = 0;
        for (int j = 0; j < 4; j++) same += w[j] == ref[j];
        if (same) fail_msg("variant %zu shares %d words with the reference draw", k, same);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_permutation_is_permutation),
        cmocka_unit_test(test_permutation_keys),
        cmocka_unit_test(test_permutation_uniform),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_words_key_and_counter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
