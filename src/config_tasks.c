/* The task-family and scenario flags: names for config.c's flag table, the checks across
 * them, the canonical angle list, and the split task count that depends on the data. */
#include "ewc/config_tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANGLES_MAX 1000 /* = the largest --tasks */

const char *const config_family_names[] = {"permuted", "split", "rotated", NULL};
const char *const config_scenario_names[] = {"domain", "task", "class", NULL};
const char *const config_class_order_names[] = {"natural", "seeded", NULL};

_Static_assert(sizeof(TaskFamily) == sizeof(int) && sizeof(Scenario) == sizeof(int) &&
                   sizeof(ClassOrder) == sizeof(int),
               "enum fields must be int-sized");

int config_tasks_parse_angles(const char *s, double *angles, int max) {
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        if (*p == '\0' || *p == ',' || *p == ' ' || (*p >= '\t' && *p <= '\r')) return -1;
        double a = strtod(p, &end);
        if (end == p || !isfinite(a) || (*end != ',' && *end != '\0') || n == max) return -1;
        angles[n++] = a + 0.0; /* -0 reads as 0 */
        if (*end == '\0') return n;
        p = end + 1;
    }
}

/* Shortest decimal that reads back as V: fixed-point when it has at most 17 decimals
 * ("60", "7.5"), else "%.*g". */
static void shortest(double v, char *buf, size_t size) {
    for (int d = 0; d <= 17 && fabs(v) < 1e15; d++) {
        snprintf(buf, size, "%.*f", d, v);
        if (strtod(buf, NULL) == v) return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Whether FLAG (e.g. "--tasks") appears in ARGV as a flag (a value never starts with "--"). */
static int given(int argc, char **argv, const char *flag) {
    size_t n = strlen(flag);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], flag, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '=')) return 1;
    return 0;
}

EwcStatus config_tasks_check(Config *c, int argc, char **argv) {
    const char *fam = config_family_names[c->task_family];
    if (c->task_family != FAMILY_SPLIT && c->classes_per_task) {
        ewc_error_set("--classes-per-task %d: only with --task-family split (a %s task has all "
                      "the classes)", c->classes_per_task, fam);
        return EWC_EINVAL;
    }
    if (c->task_family != FAMILY_SPLIT && c->class_order != CLASS_ORDER_NATURAL) {
        ewc_error_set("--class-order %s: only with --task-family split",
                      config_class_order_names[c->class_order]);
        return EWC_EINVAL;
    }
    if (c->task_family != FAMILY_ROTATED && c->angles[0]) {
        ewc_error_set("--angles: only with --task-family rotated (this run is %s)", fam);
        return EWC_EINVAL;
    }
    if (c->joint && c->method != METHOD_SGD) {
        ewc_error_set("--joint: trains all tasks at once, so there is no earlier task to protect:"
                      " use --method sgd (got --method %s)", config_method_name(c->method));
        return EWC_EINVAL;
    }
    if (c->joint && c->patience) {
        ewc_error_set("--patience %d: not with --joint (early stopping checks one task)",
                      c->patience);
        return EWC_EINVAL;
    }
    int tasks_given = given(argc, argv, "--tasks");
    if (c->task_family == FAMILY_SPLIT) {
        if (!c->classes_per_task) c->classes_per_task = CONFIG_TASKS_SPLIT_DEFAULT_K;
        if (!tasks_given) c->tasks = 0; /* config_tasks_resolve: classes / K */
    }
    if (c->task_family == FAMILY_ROTATED && c->angles[0]) {
        double *a = malloc(ANGLES_MAX * sizeof *a);
        if (!a) {
            ewc_error_set("out of memory parsing --angles");
            return EWC_ENOMEM;
        }
        int n = config_tasks_parse_angles(c->angles, a, ANGLES_MAX);
        if (n < 0) {
            char shown[64];
            snprintf(shown, sizeof shown, "%.60s", c->angles);
            ewc_error_set("--angles: expected comma-separated finite numbers (degrees), at most "
                          "%d, got \"%s\"", ANGLES_MAX, shown);
            free(a);
            return EWC_EINVAL;
        }
        if (tasks_given && n != c->tasks) {
            ewc_error_set("--angles: %d angles for --tasks %d (give one angle per task, or leave "
                          "out --tasks)", n, c->tasks);
            free(a);
            return EWC_EINVAL;
        }
        c->tasks = n;
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            char num[40];
            shortest(a[i], num, sizeof num);
            len += (size_t)snprintf(c->angles + len, sizeof c->angles - len, "%s%s", i ? "," : "",
                                    num);
        }
        free(a);
        if (len >= sizeof c->angles) {
            ewc_error_set("--angles: the list is too long");
            return EWC_EINVAL;
        }
    }
    return EWC_OK;
}

EwcStatus config_tasks_resolve(Config *c, int n_classes) {
    if (c->task_family != FAMILY_SPLIT) return EWC_OK;
    int k = c->classes_per_task;
    if (k > n_classes) {
        ewc_error_set("--classes-per-task %d: the data in %s have only %d classes", k, c->data_dir,
                      n_classes);
        return EWC_EINVAL;
    }
    if (c->tasks == 0) c->tasks = n_classes / k;
    if ((long)c->tasks * k > n_classes) {
        ewc_error_set("--tasks %d with --classes-per-task %d needs %ld classes, but the data in %s"
                      " have %d", c->tasks, k, (long)c->tasks * k, c->data_dir, n_classes);
        return EWC_EINVAL;
    }
    return EWC_OK;
}

int config_tasks_outputs(const Config *c, int n_classes) {
    int k = c->task_family == FAMILY_SPLIT ? c->classes_per_task : n_classes;
    return c->scenario == SCENARIO_DOMAIN ? k : c->tasks * k;
}
