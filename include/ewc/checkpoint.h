/* checkpoint.h: the HDF5 checkpoint of a run (layout in README.md, "Checkpoint"): the model,
 * optimizer and penalty state, position in the sequence, metrics, and per finished task its
 * anchor, Fisher and permutation. Written atomically by rank 0; read by every rank. */
#ifndef EWC_CHECKPOINT_H
#define EWC_CHECKPOINT_H

#include "ewc/error.h"
#include "ewc/train.h"

#define CHECKPOINT_FORMAT_VERSION 2 /* 2: --validation, --patience, --val-every (and
                                     * their data), the BLAS core and row quantum */
#define CHECKPOINT_FORMAT_OLDEST 1  /* version 1 files load as runs without those flags */
#define CHECKPOINT_NAME "checkpoint.h5"

/* Per-task data handed to checkpoint_save when a task has just finished. */
typedef struct {
    int task;             /* index of the finished task */
    const float *anchor;  /* (n_params) theta* of the task */
    const float *fisher;  /* (n_params) its raw diagonal Fisher */
    FisherKind kind;
    int samples;          /* samples the Fisher averaged over */
    const char *measure;  /* what FISHER holds: "fisher", "si" or "mas" (the importance of
                           * --method si / mas); NULL means "fisher" */
} TaskRecord;

/* The importance measure a run of METHOD stores per task: "si", "mas", else "fisher". */
const char *checkpoint_measure_name(Method method);

/* Write PATH (replacing it atomically) with T's state; NEW_TASK (may be NULL) adds a finished
 * task, and the tasks already recorded in the previous PATH are carried over. Rank 0 only. */
EwcStatus checkpoint_save(const Trainer *t, const char *path, const TaskRecord *new_task);

/* Restore T (already initialised from the same config) from PATH. Refuses a checkpoint whose
 * experiment config differs, naming the flag. Every rank calls it. */
EwcStatus checkpoint_load(Trainer *t, const char *path);

#endif
