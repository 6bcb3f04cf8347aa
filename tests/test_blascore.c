/* Tests for the OpenBLAS core choice: levels and candidate order, the pick rule, the CPU level
 * against the compiler's own cpuid checks, the SGEMM self-test against deliberately wrong
 * kernels, and the modes that never re-execute (an environment setting, keep, a bad name). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cmocka.h>

#include "ewc/blascore.h"

static void test_core_levels(void **state) {
    (void)state;
    assert_int_equal(blascore_core_level("SkylakeX"), BLASCORE_AVX512);
    assert_int_equal(blascore_core_level("cooperlake"), BLASCORE_AVX512); /* any case */
    assert_int_equal(blascore_core_level("HASWELL"), BLASCORE_AVX2);
    assert_int_equal(blascore_core_level("Zen"), BLASCORE_AVX2);
    assert_int_equal(blascore_core_level("Sandybridge"), BLASCORE_AVX);
    assert_int_equal(blascore_core_level("Prescott"), BLASCORE_SSE3);
    assert_int_equal(blascore_core_level("Bogus"), 0);
    assert_int_equal(blascore_core_level(""), 0);
}

static void test_candidates_newest_first_above_the_loaded_level(void **state) {
    (void)state;
    const char *c[4];
    assert_int_equal(blascore_candidates(BLASCORE_SSE3, BLASCORE_AVX512, c), 3);
    assert_string_equal(c[0], "SkylakeX");
    assert_string_equal(c[1], "Haswell");
    assert_string_equal(c[2], "Sandybridge");
    for (int i = 0; i < 3; i++) assert_int_equal(blascore_core_level(c[i]), BLASCORE_AVX512 - i);
    assert_int_equal(blascore_candidates(BLASCORE_AVX2, BLASCORE_AVX512, c), 1);
    assert_string_equal(c[0], "SkylakeX");
    assert_int_equal(blascore_candidates(BLASCORE_AVX512, BLASCORE_AVX512, c), 0);
    assert_int_equal(blascore_candidates(BLASCORE_AVX512, BLASCORE_AVX2, c), 0);
    assert_int_equal(blascore_candidates(0, BLASCORE_AVX2, c), 3); /* unknown loaded core */
    assert_string_equal(c[2], "Prescott");
    assert_int_equal(blascore_candidates(0, 0, c), 0); /* not x86-64: nothing to try */
}

static BlasProbe probe(const char *core, int passed, double gflops) {
    BlasProbe p = {.passed = passed, .gflops = gflops};
    strcpy(p.core, core);
    p.level = blascore_core_level(core);
    return p;
}

static void test_pick_rule(void **state) {
    (void)state;
    /* the Xeon: Prescott 31, SkylakeX 127, Haswell 76 */
    BlasProbe a[] = {probe("Prescott", 1, 31), probe("SkylakeX", 1, 127), probe("Haswell", 1, 76)};
    assert_int_equal(blascore_pick(a, 3), 1);
    /* a failing candidate is never chosen, however fast */
    a[1].passed = 0;
    assert_int_equal(blascore_pick(a, 3), 2);
    /* nothing clearly faster than the loaded core: keep it */
    BlasProbe b[] = {probe("Sandybridge", 1, 118), probe("SkylakeX", 1, 122),
                     probe("Haswell", 1, 126)};
    assert_int_equal(blascore_pick(b, 3), 0);
    /* the newer level wins within BLASCORE_NEAR of the fastest, the faster one beyond it */
    BlasProbe c[] = {probe("Prescott", 1, 50), probe("SkylakeX", 1, 200), probe("Haswell", 1, 210)};
    assert_int_equal(blascore_pick(c, 3), 1);
    c[2].gflops = 240;
    assert_int_equal(blascore_pick(c, 3), 2);
    /* a failing loaded core: any passing candidate beats it */
    BlasProbe d[] = {probe("Prescott", 0, 0), probe("SkylakeX", 0, 0), probe("Haswell", 1, 20)};
    assert_int_equal(blascore_pick(d, 3), 2);
    d[2].passed = 0;
    assert_int_equal(blascore_pick(d, 3), 0);
    assert_int_equal(blascore_pick(d, 1), 0);
}

static void test_cpu_level_matches_the_compilers_cpuid(void **state) {
    (void)state;
    int expect = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse3")) expect = BLASCORE_SSE3;
    if (expect && __builtin_cpu_supports("avx")) expect = BLASCORE_AVX;
    if (expect == BLASCORE_AVX && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        expect = BLASCORE_AVX2;
    if (expect == BLASCORE_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd"))
        expect = BLASCORE_AVX512;
#endif
    assert_int_equal(blascore_cpu_level(), expect);
}

/* ---- the self-test ------------------------------------------------------------------------ */

static ModelShape shape(int inputs, const int *hidden, int n_hidden, int classes) {
    ModelShape s;
    assert_int_equal(model_shape_init(&s, inputs, hidden, n_hidden, classes), EWC_OK);
    return s;
}

static void test_selftest_passes_on_the_real_blas(void **state) {
    (void)state;
    int h[] = {400, 400}, odd[] = {13, 7};
    ModelShape shapes[] = {shape(784, h, 2, 10), shape(29, odd, 2, 3), shape(50, NULL, 0, 10)};
    int batches[] = {100, 5, 1};
    for (int i = 0; i < 3; i++) {
        double worst = -1;
        assert_int_equal(blascore_selftest(blascore_sgemm, &shapes[i], batches[i], &worst), EWC_OK);
        assert_true(worst >= 0.0 && worst <= 1.0);
    }
}

/* Deliberately wrong kernels, each wrong in one way a broken SGEMM could be. */
static int wrong_kind;

static void wrong_sgemm(int ta, int tb, int m, int n, int k, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    switch (wrong_kind) {
    case 0: /* the last entry (an edge tile) off by 1 % */
        blascore_sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
        c[(size_t)(m - 1) * ldc + n - 1] *= 1.01f;
        break;
    case 1: /* accumulation ignored */
        blascore_sgemm(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c, ldc);
        break;
    case 2: /* the last term of the inner dimension dropped */
        if (k > 1) blascore_sgemm(ta, tb, m, n, k - 1, a, lda, b, ldb, beta, c, ldc);
        break;
    case 3: /* right except on odd shapes: one row of a partial tile wrong */
        blascore_sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
        if (m % 2 && m > 1) c[(size_t)(m - 1) * ldc] += 0.25f;
        break;
    }
}

static void test_selftest_rejects_wrong_kernels(void **state) {
    (void)state;
    int h[] = {400, 400};
    ModelShape s = shape(784, h, 2, 10);
    for (wrong_kind = 0; wrong_kind < 4; wrong_kind++) {
        double worst = 0;
        ewc_error_clear();
        assert_int_equal(blascore_selftest(wrong_sgemm, &s, 100, &worst), EWC_EBLAS);
        assert_non_null(strstr(ewc_error_message(), "SGEMM self-test failed on the "));
    }
    ewc_error_clear();
}

static void test_timing_is_positive(void **state) {
    (void)state;
    int h[] = {64};
    ModelShape s = shape(784, h, 1, 10);
    assert_true(blascore_time(&s, 100) > 0.0);
}

/* ---- modes that decide without re-executing -------------------------------------------------- */

static BlasCore choose(const char *mode, EwcStatus expect) {
    Config c;
    config_defaults(&c);
    snprintf(c.blas_core, sizeof c.blas_core, "%s", mode);
    char *argv[] = {"test_blascore", NULL};
    BlasCore b;
    ewc_error_clear();
    assert_int_equal(blascore_choose(&c, argv, &b), expect);
    return b;
}

static void test_environment_setting_is_never_overridden(void **state) {
    (void)state;
    /* OpenBLAS is loaded already: the variable only tells blascore that a user set it */
    const char *old = getenv("OPENBLAS_CORETYPE");
    char saved[64] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    BlasCore b = choose("auto", EWC_OK);
    assert_string_equal(b.core, openblas_get_corename());
    assert_string_equal(b.initial, b.core);
    assert_non_null(strstr(b.reason, "OPENBLAS_CORETYPE=Prescott is set in the environment"));
    if (old) setenv("OPENBLAS_CORETYPE", saved, 1);
    else unsetenv("OPENBLAS_CORETYPE");
}

static void test_keep_and_forcing_the_loaded_core(void **state) {
    (void)state;
    BlasCore b = choose("keep", EWC_OK);
    assert_string_equal(b.core, openblas_get_corename());
    assert_non_null(strstr(b.reason, "--blas-core keep"));
    char lower[BLASCORE_NAME_MAX];
    snprintf(lower, sizeof lower, "%s", openblas_get_corename());
    for (char *p = lower; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    b = choose(lower, EWC_OK); /* names are case-insensitive; no re-exec for the loaded core */
    assert_string_equal(b.core, openblas_get_corename());
    assert_non_null(strstr(b.reason, "forced"));
}

static void test_forcing_an_unknown_core_is_an_error(void **state) {
    (void)state;
    /* the probe child is this test binary again (see main) */
    choose("NoSuchCore", EWC_EBLAS);
    assert_non_null(strstr(ewc_error_message(), "--blas-core NoSuchCore: this OpenBLAS has no "
                                                "NoSuchCore kernels"));
    ewc_error_clear();
}

int main(void) {
    if (blascore_is_probe()) { /* a probe child of test_forcing_an_unknown_core_is_an_error */
        Config c;
        config_defaults(&c);
        return blascore_probe_main(&c);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core_levels),
        cmocka_unit_test(test_candidates_newest_first_above_the_loaded_level),
        cmocka_unit_test(test_pick_rule),
        cmocka_unit_test(test_cpu_level_matches_the_compilers_cpuid),
        cmocka_unit_test(test_selftest_passes_on_the_real_blas),
        cmocka_unit_test(test_selftest_rejects_wrong_kernels),
        cmocka_unit_test(test_timing_is_positive),
        cmocka_unit_test(test_environment_setting_is_never_overridden),
        cmocka_unit_test(test_keep_and_forcing_the_loaded_core),
        cmocka_unit_test(test_forcing_an_unknown_core_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
