/* Tests of the task-family flags (config_tasks.h): defaults that keep permuted runs as before,
 * split's classes per task and data-dependent task count, rotated angle lists (canonical form,
 * task count), the errors across flags (naming the flag), and the JSON and resume diffs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ewc/config.h"
#include "ewc/config_tasks.h"

#define MAX_ARGS 32

static EwcStatus parse_list(Config *c, const char *const *args) {
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "ewc-train";
    for (; *args && argc <= MAX_ARGS; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    ewc_error_clear();
    return config_parse(c, argc, argv);
}
#define PARSE(c, ...) parse_list(c, (const char *const[]){__VA_ARGS__, NULL})

/* The status is EWC_EINVAL and the message names FLAG. */
static void assert_error_names(EwcStatus st, const char *flag) {
    assert_int_equal(st, EWC_EINVAL);
    if (!strstr(ewc_error_message(), flag))
        fail_msg("message \"%s\" does not name %s", ewc_error_message(), flag);
}

static void test_defaults_are_the_old_runs(void **state) {
    (void)state;
    Config c;
    assert_int_equal(PARSE(&c, "--quiet"), EWC_OK);
    assert_int_equal(c.task_family, FAMILY_PERMUTED);
    assert_int_equal(c.scenario, SCENARIO_DOMAIN);
    assert_int_equal(c.classes_per_task, 0);
    assert_int_equal(c.class_order, CLASS_ORDER_NATURAL);
    assert_string_equal(c.angles, "");
    assert_int_equal(c.joint, 0);
    assert_int_equal(c.tasks, 3);
    assert_int_equal(config_tasks_resolve(&c, 10), EWC_OK);
    assert_int_equal(c.tasks, 3);
    char json[16384];
    assert_true(config_to_json(&c, json, sizeof json) < sizeof json);
    assert_non_null(strstr(json, "\"task_family\":\"permuted\",\"scenario\":\"domain\","
                                 "\"classes_per_task\":0,\"class_order\":\"natural\","
                                 "\"angles\":\"\",\"joint\":false"));
}

static void test_split_tasks_and_classes(void **state) {
    (void)state;
    Config c;
    assert_int_equal(PARSE(&c, "--task-family", "split", "--scenario", "class"), EWC_OK);
    assert_int_equal(c.classes_per_task, 2);
    assert_int_equal(c.tasks, 0); /* settled by the data */
    assert_int_equal(config_tasks_resolve(&c, 10), EWC_OK);
    assert_int_equal(c.tasks, 5);
    assert_int_equal(PARSE(&c, "--task-family=split", "--classes-per-task", "3"), EWC_OK);
    assert_int_equal(config_tasks_resolve(&c, 10), EWC_OK);
    assert_int_equal(c.tasks, 3); /* 10 / 3: class 9 is not used */
    assert_int_equal(PARSE(&c, "--task-family", "split", "--tasks", "2", "--class-order",
                           "seeded"), EWC_OK);
    assert_int_equal(config_tasks_resolve(&c, 10), EWC_OK);
    assert_int_equal(c.tasks, 2);
    assert_int_equal(c.class_order, CLASS_ORDER_SEEDED);
    assert_int_equal(PARSE(&c, "--task-family", "split", "--tasks", "6"), EWC_OK);
    assert_error_names(config_tasks_resolve(&c, 10), "--classes-per-task");
    assert_int_equal(PARSE(&c, "--task-family", "split", "--classes-per-task", "11"), EWC_OK);
    assert_error_names(config_tasks_resolve(&c, 10), "--classes-per-task");
    /* "--tasks" given as a value of another flag is not --tasks */
    assert_int_equal(PARSE(&c, "--task-family", "split", "--out=--tasks"), EWC_OK);
    assert_int_equal(c.tasks, 0);
}

static void test_rotated_angles(void **state) {
    (void)state;
    Config c;
    assert_int_equal(PARSE(&c, "--task-family", "rotated", "--angles", "0,60.0,1.2e2,-7.50"),
                     EWC_OK);
    assert_string_equal(c.angles, "0,60,120,-7.5");
    assert_int_equal(c.tasks, 4);
    double a[8];
    assert_int_equal(config_tasks_parse_angles(c.angles, a, 8), 4);
    assert_true(a[1] == 60.0 && a[3] == -7.5);
    assert_int_equal(config_tasks_parse_angles(c.angles, a, 3), -1); /* too many */
    assert_int_equal(PARSE(&c, "--task-family", "rotated", "--angles", "0,90", "--tasks", "2"),
                     EWC_OK);
    assert_int_equal(PARSE(&c, "--task-family", "rotated"), EWC_OK);
    assert_int_equal(c.tasks, 3);
    assert_string_equal(c.angles, ""); /* evenly spaced, tasks.h */
    static const char *const bad[] = {"0,,90", "0,90,", "nan", "1e999", "0, 90", ",0", "90deg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_error_names(PARSE(&c, "--task-family", "rotated", "--angles", bad[i]), "--angles");
    assert_error_names(PARSE(&c, "--task-family", "rotated", "--angles", "0,90", "--tasks", "3"),
                       "--angles");
}

static void test_flag_combinations(void **state) {
    (void)state;
    Config c;
    assert_error_names(PARSE(&c, "--classes-per-task", "2"), "--classes-per-task");
    assert_error_names(PARSE(&c, "--task-family", "rotated", "--classes-per-task", "2"),
                       "--classes-per-task");
    assert_error_names(PARSE(&c, "--class-order", "seeded"), "--class-order");
    assert_error_names(PARSE(&c, "--task-family", "split", "--angles", "0"), "--angles");
    assert_error_names(PARSE(&c, "--joint", "--method", "ewc"), "--joint");
    assert_error_names(PARSE(&c, "--joint", "--validation", "10", "--patience", "2"),
                       "--patience");
    assert_error_names(PARSE(&c, "--scenario", "multi"), "--scenario");
    assert_error_names(PARSE(&c, "--task-family", "split", "--classes-per-task", "257"),
                       "--classes-per-task");
    assert_int_equal(PARSE(&c, "--joint", "--scenario", "task"), EWC_OK);
    assert_int_equal(c.joint, 1);
}

/* Every family flag is an experiment flag: a resume with another value is refused by name. */
static void test_experiment_diff(void **state) {
    (void)state;
    Config a, b;
    assert_int_equal(PARSE(&a, "--task-family", "split", "--scenario", "task"), EWC_OK);
    assert_int_equal(PARSE(&b, "--task-family", "split", "--scenario", "class"), EWC_OK);
    assert_string_equal(config_experiment_diff(&a, &b), "--scenario");
    assert_int_equal(PARSE(&b, "--task-family", "split", "--scenario", "task",
                           "--classes-per-task", "1"), EWC_OK);
    assert_string_equal(config_experiment_diff(&a, &b), "--classes-per-task");
    assert_int_equal(PARSE(&b, "--task-family", "split", "--scenario", "task", "--class-order",
                           "seeded"), EWC_OK);
    assert_string_equal(config_experiment_diff(&a, &b), "--class-order");
    assert_int_equal(PARSE(&b, "--task-family", "split", "--scenario", "task", "--joint"),
                     EWC_OK);
    assert_string_equal(config_experiment_diff(&a, &b), "--joint");
    assert_int_equal(PARSE(&a, "--task-family", "rotated", "--angles", "0,90"), EWC_OK);
    assert_int_equal(PARSE(&b, "--task-family", "rotated", "--angles", "0,90.0"), EWC_OK);
    assert_null(config_experiment_diff(&a, &b)); /* the same angles, written differently */
    assert_int_equal(PARSE(&b, "--task-family", "rotated", "--angles", "0,45"), EWC_OK);
    assert_string_equal(config_experiment_diff(&a, &b), "--angles");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_the_old_runs),
        cmocka_unit_test(test_split_tasks_and_classes),
        cmocka_unit_test(test_rotated_angles),
        cmocka_unit_test(test_flag_combinations),
        cmocka_unit_test(test_experiment_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
