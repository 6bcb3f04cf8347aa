/* Tests for the early-stopping bookkeeping: strict improvements keep the best parameters, the
 * counter ends a task after exactly --patience checks without improvement (ties do not count
 * as improvements), the task's end restores the best parameters only when they are not the
 * current ones, the records, and --patience 0 changing nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "ewc/earlystop.h"

#define NP 7

static void fill(float *p, float v) {
    for (int i = 0; i < NP; i++) p[i] = v + (float)i;
}

static void test_stops_after_patience_and_restores(void **state) {
    (void)state;
    EarlyStop e;
    assert_int_equal(earlystop_init(&e, 3, NP, 2), EWC_OK);
    float p[NP], want[NP];
    /* accuracies at steps 10, 20, ...: best 0.6 at step 20, then a tie and two drops */
    static const double acc[] = {0.5, 0.6, 0.6, 0.55, 0.59};
    static const int stop[] = {0, 0, 0, 0, 1};
    for (int i = 0; i < 5; i++) {
        fill(p, (float)(100 * i));
        if (i == 1) memcpy(want, p, sizeof p);
        int s = earlystop_check(&e, acc[i], 10 * (i + 1), p);
        if (s != stop[i]) fail_msg("check %d: stop %d, expected %d", i, s, stop[i]);
    }
    assert_true(e.best_accuracy == 0.6);
    assert_int_equal(e.best_step, 20);
    assert_int_equal(e.bad_checks, 3);
    fill(p, 999.0f);
    assert_int_equal(earlystop_finish_task(&e, 0, 50, 100, p), 1);
    assert_memory_equal(p, want, sizeof p);
    assert_int_equal(e.rec[0].steps_trained, 50);
    assert_int_equal(e.rec[0].best_step, 20);
    assert_true(e.rec[0].best_accuracy == 0.6);
    assert_int_equal(e.rec[0].stopped_early, 1);

    /* the next task starts afresh: its first check is always an improvement */
    earlystop_begin_task(&e);
    assert_true(e.best_accuracy < 0);
    assert_int_equal(e.bad_checks, 0);
    fill(p, 1.0f);
    assert_int_equal(earlystop_check(&e, 0.0, 5, p), 0);
    assert_int_equal(e.best_step, 5);
    earlystop_free(&e);
}

/* The best check is the last one: nothing to restore, and a run to --epochs is not early. */
static void test_no_restore_when_best_is_current(void **state) {
    (void)state;
    EarlyStop e;
    assert_int_equal(earlystop_init(&e, 2, NP, 1), EWC_OK);
    float p[NP], keep[NP];
    fill(p, 1.0f);
    assert_int_equal(earlystop_check(&e, 0.3, 4, p), 0);
    fill(p, 2.0f);
    assert_int_equal(earlystop_check(&e, 0.7, 8, p), 0);
    memcpy(keep, p, sizeof p);
    assert_int_equal(earlystop_finish_task(&e, 0, 8, 8, p), 0);
    assert_memory_equal(p, keep, sizeof p);
    assert_int_equal(e.rec[0].stopped_early, 0);

    /* steps after the last check that were never checked: the best check wins */
    earlystop_begin_task(&e);
    fill(p, 3.0f);
    memcpy(keep, p, sizeof p);
    assert_int_equal(earlystop_check(&e, 0.7, 8, p), 0);
    fill(p, 4.0f);
    assert_int_equal(earlystop_finish_task(&e, 0, 10, 10, p), 1);
    assert_memory_equal(p, keep, sizeof p);
    earlystop_free(&e);
}

static void test_patience_zero_is_off(void **state) {
    (void)state;
    EarlyStop e;
    assert_int_equal(earlystop_init(&e, 0, NP, 3), EWC_OK);
    assert_null(e.best);
    assert_null(e.rec);
    float p[NP], keep[NP];
    fill(p, 5.0f);
    memcpy(keep, p, sizeof p);
    for (int i = 0; i < 10; i++) assert_int_equal(earlystop_check(&e, 0.1, i + 1, p), 0);
    earlystop_begin_task(&e);
    assert_int_equal(earlystop_finish_task(&e, 0, 10, 20, p), 0);
    assert_memory_equal(p, keep, sizeof p);
    earlystop_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stops_after_patience_and_restores),
        cmocka_unit_test(test_no_restore_when_best_is_current),
        cmocka_unit_test(test_patience_zero_is_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
