/* Tests for divergence detection: the bound is 100 x ln(classes) (checked against the natural
 * log computed as a series here), losses at or below it pass, above it and non-finite ones fail
 * with one line naming task, epoch and step, and the loss of a uniform prediction is far below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "ewc/diverge.h"
#include "testutil.h"

/* ln(x) for x >= 1 by the series 2 atanh((x-1)/(x+1)), independent of libm's log */
static double series_ln(double x) {
    double y = (x - 1) / (x + 1), term = y, sum = 0.0;
    for (int k = 1; k < 200; k += 2, term *= y * y) sum += term / k;
    return 2 * sum;
}

static void test_bound(void **state) {
    (void)state;
    assert_close(diverge_bound(10), 100 * series_ln(10), 1e-9);
    assert_close(diverge_bound(2), 100 * series_ln(2), 1e-9);
    assert_close(diverge_bound(100), 200 * series_ln(10), 1e-9); /* ln 100 = 2 ln 10 */
    /* a uniform prediction over C classes has loss ln C: 1 % of the bound */
    assert_true(series_ln(10) < diverge_bound(10) / 99);
}

static void test_healthy_losses_pass(void **state) {
    (void)state;
    double bound = diverge_bound(10);
    const double ok[] = {0.0, 1e-30, 0.5, 2.302585, 30.0, bound};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ewc_error_clear();
        if (diverge_check(ok[i], 10, 1, 0, 5) != EWC_OK) fail_msg("loss %g rejected", ok[i]);
        assert_string_equal(ewc_error_message(), "");
    }
}

static void test_blown_up_loss_fails_naming_task_and_step(void **state) {
    (void)state;
    ewc_error_clear();
    assert_int_equal(diverge_check(3.1e29, 10, 2, 1, 340), EWC_ENAN);
    const char *m = ewc_error_message();
    assert_non_null(strstr(m, "task 2, epoch 1, step 340"));
    assert_non_null(strstr(m, "3.1e+29 > bound 230"));
    assert_non_null(strstr(m, "--lr"));
    assert_null(strchr(m, '\n'));
    ewc_error_clear();
    assert_int_equal(diverge_check(nextafter(diverge_bound(10), INFINITY), 10, 0, 0, 0),
                     EWC_ENAN);
    ewc_error_clear();
}

static void test_non_finite_fails(void **state) {
    (void)state;
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        ewc_error_clear();
        assert_int_equal(diverge_check(bad[i], 10, 3, 0, 7), EWC_ENAN);
        assert_non_null(strstr(ewc_error_message(), "task 3, epoch 0, step 7: loss is "));
        assert_non_null(strstr(ewc_error_message(), i == 0 ? "NaN" : i == 1 ? "+Inf" : "-Inf"));
    }
    ewc_error_clear();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_healthy_losses_pass),
        cmocka_unit_test(test_blown_up_loss_fails_naming_task_and_step),
        cmocka_unit_test(test_non_finite_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
