/* run.h: the task sequence: epochs and steps, the evaluation schedule, the Fisher and penalty
 * at each task end, progress lines, output files and checkpoints. */
#ifndef EWC_RUN_H
#define EWC_RUN_H

#include "ewc/error.h"
#include "ewc/train.h"

/* Train all tasks (continuing from T's position, e.g. after checkpoint_load). Rank 0 writes the
 * outputs into t->cfg->out_dir and prints progress. Collective. */
EwcStatus run_sequence(Trainer *t);

#endif
