/* run.h: the task sequence: epochs and steps, the evaluation schedule, the Fisher and penalty
 * at each task end, progress lines, output files and checkpoints. */
#ifndef EWC_RUN_H
#define EWC_RUN_H

#include "ewc/error.h"
#include "ewc/train.h"

/* Settle the settings of C that depend on DATA (loaded, validation split made): split's task
 * count (config_tasks.h) and --reduce auto (fixsum.h), so the summary and checkpoints record
 * what runs. Every program that builds a Trainer from flags calls it before trainer_init.
 * EWC_EINVAL naming the flag if the data cannot hold the tasks. Not collective. */
EwcStatus run_resolve_config(Config *c, const Dataset *data);

/* Train all tasks (continuing from T's position, e.g. after checkpoint_load). Rank 0 writes the
 * outputs into t->cfg->out_dir and prints progress. Collective. */
EwcStatus run_sequence(Trainer *t);

#endif
