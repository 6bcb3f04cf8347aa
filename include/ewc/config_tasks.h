/* The task-family and scenario flags of the configuration (--task-family, --scenario,
 * --classes-per-task, --class-order, --angles, --joint): their names, the checks that span
 * several flags, and the values that depend on the data (the number of split tasks). */
#ifndef EWC_CONFIG_TASKS_H
#define EWC_CONFIG_TASKS_H

#include "ewc/config.h"
#include "ewc/error.h"

#define CONFIG_TASKS_SPLIT_DEFAULT_K 2 /* --classes-per-task default for split */

extern const char *const config_family_names[];      /* "permuted", "split", "rotated", NULL */
extern const char *const config_scenario_names[];    /* "domain", "task", "class", NULL */
extern const char *const config_class_order_names[]; /* "natural", "seeded", NULL */

/* After the flags of ARGV were applied to C: check the family flags against each other and
 * settle what the command line fixes (EWC_EINVAL with a one-line message naming the flag):
 * - --classes-per-task and --class-order only with split, --angles only with rotated;
 * - split: classes_per_task defaults to 2; without --tasks in ARGV, tasks = 0 ("as many as
 *   the classes allow", settled by config_tasks_resolve once the data are loaded);
 * - rotated: --angles is a list of finite numbers (degrees), rewritten in a canonical form
 *   (shortest round-trip decimals, comma-separated) so the same angles compare equal on resume;
 *   without --tasks the number of angles is the number of tasks, with it they must agree.
 * Not collective. */
EwcStatus config_tasks_check(Config *c, int argc, char **argv);

/* With the data's class count N_CLASSES: split's tasks = N_CLASSES / K when 0, and
 * tasks * K <= N_CLASSES (EWC_EINVAL naming --tasks and --classes-per-task otherwise). */
EwcStatus config_tasks_resolve(Config *c, int n_classes);

/* Width of the output layer of resolved C on data of N_CLASSES classes: the classes of one task
 * for one shared head (domain), tasks x that for the task and class scenarios (tasks.h). */
int config_tasks_outputs(const Config *c, int n_classes);

/* Parse the angle list S (already checked) into ANGLES (room for MAX); returns the count, or -1
 * if S is not a list of finite numbers. */
int config_tasks_parse_angles(const char *s, double *angles, int max);

#endif
