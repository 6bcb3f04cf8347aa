/* earlystop.h: early stopping of a task on its validation accuracy: the best-so-far state
 * (parameters, accuracy, step, checks without improvement) and one record per finished task.
 * Pure bookkeeping, not collective: the caller evaluates the validation accuracy (identical on
 * every rank) and the checkpoint stores this state, so a resume continues it bit for bit. */
#ifndef EWC_EARLYSTOP_H
#define EWC_EARLYSTOP_H

#include <stddef.h>

#include "ewc/error.h"

/* How one task ended. */
typedef struct {
    long long steps_trained;  /* steps of the task actually run */
    long long best_step;      /* steps of the task run at its best check (0: no check) */
    double best_accuracy;     /* validation accuracy of the task at that check (-1: no check) */
    int stopped_early;        /* 1 if it ended before --epochs */
} EarlyStopRecord;

typedef struct {
    int patience;             /* checks without improvement that end a task; 0 = off */
    size_t n_params;
    float *best;              /* (n_params) parameters at the best check, model.h slab layout */
    double best_accuracy;     /* of the current task so far; -1 before its first check */
    long long best_step;      /* task steps run at the best check (0: no check yet) */
    int bad_checks;           /* checks since the last improvement */
    EarlyStopRecord *rec;     /* (tasks) filled for each finished task */
} EarlyStop;

/* Allocate for N_PARAMS parameters and TASKS tasks; PATIENCE 0 allocates nothing (every other
 * call is then a no-op). The state starts as at the beginning of a task. */
EwcStatus earlystop_init(EarlyStop *e, int patience, size_t n_params, int tasks);
void earlystop_free(EarlyStop *e);

/* Reset the best-so-far state for a new task (the best slab is zeroed, so its content is a
 * function of the run's position only). */
void earlystop_begin_task(EarlyStop *e);

/* A check after STEP steps of the current task with validation accuracy ACC of PARAMS: a strict
 * improvement copies PARAMS into the best slab and clears the counter, otherwise the counter
 * grows. Returns 1 when the counter has reached the patience (the task should end), else 0. */
int earlystop_check(EarlyStop *e, double acc, long long step, const float *params);

/* End task TASK after STEPS_TRAINED of its MAX_STEPS steps: fill its record, and if the best
 * check is not the current state (an earlier check, or no check at the last step) copy the best
 * parameters into PARAMS. Returns 1 if PARAMS was restored, else 0. */
int earlystop_finish_task(EarlyStop *e, int task, long long steps_trained, long long max_steps,
                          float *params);

#endif
