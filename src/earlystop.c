/* Early stopping bookkeeping: best-so-far parameters and accuracy of the current task, the
 * patience counter, and the restore of the best parameters at the task's end. */
#include "ewc/earlystop.h"

#include <stdlib.h>
#include <string.h>

EwcStatus earlystop_init(EarlyStop *e, int patience, size_t n_params, int tasks) {
    memset(e, 0, sizeof *e);
    if (patience <= 0) return EWC_OK;
    e->patience = patience;
    e->n_params = n_params;
    e->best = calloc(n_params ? n_params : 1, sizeof(float));
    e->rec = calloc((size_t)tasks, sizeof *e->rec);
    if (!e->best || !e->rec) {
        earlystop_free(e);
        ewc_error_set("out of memory for the early-stopping state (%zu parameters)", n_params);
        return EWC_ENOMEM;
    }
    earlystop_begin_task(e);
    return EWC_OK;
}

void earlystop_free(EarlyStop *e) {
    free(e->best);
    free(e->rec);
    memset(e, 0, sizeof *e);
}

void earlystop_begin_task(EarlyStop *e) {
    if (!e->patience) return;
    memset(e->best, 0, e->n_params * sizeof(float));
    e->best_accuracy = -1.0;
    e->best_step = 0;
    e->bad_checks = 0;
}

int earlystop_check(EarlyStop *e, double acc, long long step, const float *params) {
    if (!e->patience) return 0;
    if (acc > e->best_accuracy) {
        memcpy(e->best, params, e->n_params * sizeof(float));
        e->best_accuracy = acc;
        e->best_step = step;
        e->bad_checks = 0;
        return 0;
    }
    return ++e->bad_checks >= e->patience;
}

int earlystop_finish_task(EarlyStop *e, int task, long long steps_trained, long long max_steps,
                          float *params) {
    if (!e->patience) return 0;
    e->rec[task] = (EarlyStopRecord){steps_trained, e->best_step, e->best_accuracy,
                                     steps_trained < max_steps};
    if (e->best_step <= 0 || e->best_step == steps_trained) return 0;
    memcpy(params, e->best, e->n_params * sizeof(float));
    return 1;
}
