/* The task sequence: for each task, epochs of steps with the evaluation schedule, then the
 * test accuracy on every task, the Fisher, the penalty update, outputs and a checkpoint. */
#include "ewc/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/checkpoint.h"
#include "ewc/config_tasks.h"
#include "ewc/diverge.h"
#include "ewc/mas.h"
#include "ewc/report.h"
#include "ewc/signals.h"

static EwcStatus curve_add(Trainer *t, int task, double accuracy) {
    if (t->n_curve == t->cap_curve) {
        int cap = t->cap_curve ? 2 * t->cap_curve : 256;
        CurvePoint *c = realloc(t->curve, (size_t)cap * sizeof *c);
        if (!c) {
            ewc_error_set("out of memory for the accuracy curve");
            return EWC_ENOMEM;
        }
        t->curve = c;
        t->cap_curve = cap;
    }
    t->curve[t->n_curve++] = (CurvePoint){t->global_step, task, accuracy};
    return EWC_OK;
}

/* Evaluate tasks 0..LAST into the curve at the current global step. Collective. */
static EwcStatus curve_evaluate(Trainer *t, int last) {
    if (t->cfg->joint) last = t->cfg->tasks - 1; /* one stage trains every task */
    for (int j = 0; j <= last; j++) {
        double acc;
        EwcStatus st = trainer_evaluate(t, j, &acc);
        if (st || (st = curve_add(t, j, acc))) return st;
    }
    return EWC_OK;
}

static void format_duration(char *buf, size_t size, double seconds) {
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

/* Rank 0's files after task K-1 finished: outputs and checkpoint. Not collective. */
static EwcStatus write_outputs(Trainer *t, int k, double wall, const TaskRecord *rec) {
    const char *dir = t->cfg->out_dir;
    char path[CONFIG_PATH_MAX + 32];
    EwcStatus st;
    if ((st = report_write_accuracy(dir, t, k))) return st;
    if (t->val_acc && (st = report_write_validation(dir, t, k))) return st;
    if (t->cfg->eval_every && (st = report_write_curve(dir, t))) return st;
    if ((st = report_write_summary(dir, t, k, wall))) return st;
    snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_NAME);
    return checkpoint_save(t, path, rec);
}

/* A mid-task checkpoint at the current position (written by rank 0). Collective. */
static EwcStatus save_position(Trainer *t) {
    EwcStatus st = EWC_OK;
    if (t->dist.rank == 0) {
        char path[CONFIG_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", t->cfg->out_dir, CHECKPOINT_NAME);
        st = checkpoint_save(t, path, NULL);
    }
    return dist_agree(t->dist.comm, st, NULL);
}

/* Early stopping: check TASK's validation accuracy after STEPS of its steps; *STOP = 1 when the
 * patience has run out. Collective. */
static EwcStatus validation_check(Trainer *t, int task, long long steps, int *stop) {
    double acc;
    EwcStatus st = trainer_evaluate_split(t, &t->data->val, task, &acc);
    if (st == EWC_OK) *stop = earlystop_check(&t->es, acc, steps, t->params);
    return st;
}

/* End TASK after STEPS_TRAINED steps: with --patience, restore its best parameters (a last check
 * first if the schedule missed the task's last step); then evaluate, Fisher, penalty, outputs. */
static EwcStatus finish_task(Trainer *t, int task, float *fisher, double t_start,
                             long long steps_trained) {
    const Config *c = t->cfg;
    int T = c->tasks, used = 0, stop;
    EwcStatus st;
    if (c->patience) {
        long long max_steps = (long long)c->epochs * trainer_task_steps_per_epoch(t, task);
        if (steps_trained == max_steps && c->val_every && max_steps % c->val_every)
            if ((st = validation_check(t, task, steps_trained, &stop))) return st;
        /* the momentum belongs to the discarded trajectory after the best check: start the
         * next task from the restored point at rest, as a fresh run would */
        if (earlystop_finish_task(&t->es, task, steps_trained, max_steps, t->params) && t->mom)
            memset(t->mom, 0, t->shape.n_params * sizeof(float));
    }
    for (int j = 0; j < T; j++)
        if ((st = trainer_evaluate(t, j, &t->acc[(size_t)task * T + j]))) return st;
    for (int j = 0; j < T && t->val_acc; j++)
        if ((st = trainer_evaluate_split(t, &t->data->val, j, &t->val_acc[(size_t)task * T + j])))
            return st;
    if (c->eval_every && (t->n_curve == 0 || t->curve[t->n_curve - 1].step != t->global_step))
        if ((st = curve_evaluate(t, task))) return st;
    /* the Fisher of every task, whatever the method: the checkpoint keeps it for analysis;
     * si and mas keep their own importance instead, in the same place (TaskRecord.measure) */
    if (c->method == METHOD_SI)
        si_importance(&t->si, t->params, fisher);
    else if (c->method == METHOD_MAS)
        st = mas_importance(t, task, c->fisher_samples, fisher, &used);
    else
        st = trainer_fisher(t, task, c->fisher, c->fisher_samples, fisher, &used);
    if (st) return st;
    penalty_add_task(&t->pen, fisher, t->params);
    si_begin_task(&t->si, t->params);
    earlystop_begin_task(&t->es);
    /* Adam starts every task afresh, as continual-learning code that creates the optimizer per
     * task does; this also covers an early-stopping restore (the moments of the discarded
     * trajectory go with it). Before the checkpoint, so it holds the reset state. With
     * --adam-persist the moments and the step count carry on into the next task. */
    if (!c->adam_persist) adam_reset(&t->adam);
    t->task = task + 1;
    t->epoch = t->step = 0;
    TaskRecord rec = {task, t->params, fisher, c->fisher, used,
                      checkpoint_measure_name(c->method)};
    st = EWC_OK;
    if (t->dist.rank == 0) st = write_outputs(t, task + 1, MPI_Wtime() - t_start, &rec);
    return dist_agree(t->dist.comm, st, NULL);
}

static void warn_stability(const Trainer *t, int task) {
    const Config *c = t->cfg;
    /* Adam's per-coordinate step is not lr: the bound below is SGD's */
    if (t->dist.rank != 0 || !penalty_active(&t->pen) || c->penalty_step == PENALTY_IMPLICIT ||
        c->optimizer == OPTIMIZER_ADAM)
        return;
    double k = c->lr * c->lambda * penalty_max_a(&t->pen);
    if (k >= 2.0)
        fprintf(stderr, "ewc-train: warning: task %d: lr * lambda * max(F) = %.3g >= 2, explicit "
                "penalty steps may diverge (use --penalty-step implicit or a smaller --lambda)\n",
                task, k);
}

EwcStatus run_sequence(Trainer *t) {
    const Config *c = t->cfg;
    int T = c->tasks, E = c->epochs, spe, N;
    int root = t->dist.rank == 0, stages = c->joint ? 1 : T; /* --joint: one stage, all tasks */
    double t_start = MPI_Wtime();
    long long steps_total = 0, steps_at_start = t->global_step;
    for (int k = 0; k < stages; k++) steps_total += (long long)E * trainer_task_steps_per_epoch(t, k);
    EwcStatus st = EWC_OK;
    float *fisher = malloc(t->shape.n_params * sizeof(float));
    if (!fisher) {
        ewc_error_set("out of memory for the Fisher");
        return EWC_ENOMEM;
    }
    if (t->global_step == 0 && t->task == 0)
        for (int j = 0; j < T && !st; j++) st = trainer_evaluate(t, j, &t->initial_acc[j]);
    if (st) goto done;

    for (int task = t->task; task < stages; task++) {
        spe = trainer_task_steps_per_epoch(t, task);
        N = trainer_task_samples(t, task);
        warn_stability(t, task);
        int stop_task = 0;
        long long steps_trained = (long long)E * spe;
        for (int epoch = t->epoch; epoch < E; epoch++) {
            trainer_begin_epoch(t, task, epoch);
            double loss_sum = 0.0, e_train = t->train_seconds;
            long long e_samples = t->train_samples;
            int e_steps = 0;
            for (int step = t->step; step < spe; step++) {
                double loss, s_start = MPI_Wtime();
                if ((st = trainer_step(t, task, epoch, step, &loss))) goto done;
                if ((st = diverge_check(loss, t->classes, task, epoch, step))) goto done;
                t->train_seconds += MPI_Wtime() - s_start;
                t->train_samples += N - step * c->batch < c->batch ? N - step * c->batch : c->batch;
                t->last_loss = loss;
                loss_sum += loss;
                e_steps++;
                t->global_step++;
                t->step = step + 1;
                if (c->eval_every && t->global_step % c->eval_every == 0)
                    if ((st = curve_evaluate(t, task))) goto done;
                /* early stopping on the fixed schedule; a stop ends the task here (its end
                 * writes a checkpoint; a pending signal is seen at the next step) */
                long long task_steps = (long long)epoch * spe + step + 1;
                int check = c->val_every ? task_steps % c->val_every == 0 : step + 1 == spe;
                if (c->patience && check) {
                    if ((st = validation_check(t, task, task_steps, &stop_task))) goto done;
                    if (stop_task) {
                        steps_trained = task_steps;
                        break;
                    }
                }
                /* step boundary: the state is complete here, so a checkpoint can resume it */
                int stop = signals_stop_requested(t->dist.comm);
                if (stop || (c->checkpoint_every && t->global_step % c->checkpoint_every == 0)) {
                    if ((st = save_position(t))) goto done;
                    if (stop) {
                        if (root)
                            fprintf(stderr, "ewc-train: stopped by a signal at task %d, epoch %d, "
                                    "step %d; checkpoint written, continue with --resume\n",
                                    task, epoch, t->step);
                        st = EWC_ESTOP;
                        goto done;
                    }
                }
            }
            t->epoch = epoch + 1;
            t->step = 0;
            if (root && !c->quiet) {
                double wall = MPI_Wtime() - t_start, dt = t->train_seconds - e_train;
                long long done_steps = t->global_step - steps_at_start;
                char eta[32];
                format_duration(eta, sizeof eta,
                                done_steps ? wall / done_steps * (steps_total - t->global_step) : 0);
                printf("task %d/%d  epoch %d/%d  loss %.4f  %.0f samples/s  ETA %s\n", task + 1, T,
                       epoch + 1, E, e_steps ? loss_sum / e_steps : 0.0,
                       dt > 0 ? (t->train_samples - e_samples) / dt : 0.0, eta);
                fflush(stdout);
            }
            if (stop_task) break;
        }
        if ((st = finish_task(t, task, fisher, t_start, steps_trained))) goto done;
        if (root && !c->quiet && c->patience) {
            const EarlyStopRecord *r = &t->es.rec[task];
            printf("task %d: %s after %lld steps; best validation accuracy %.4f at step %lld%s\n",
                   task, r->stopped_early ? "stopped early" : "finished", r->steps_trained,
                   r->best_accuracy, r->best_step,
                   r->best_step != r->steps_trained ? " (parameters restored)" : "");
        }
        if (root && !c->quiet) {
            printf("after task %d:", task);
            for (int j = 0; j < T; j++) printf(" %.4f", t->acc[(size_t)task * T + j]);
            printf("\n");
            fflush(stdout);
        }
    }
done:
    free(fisher);
    return st;
}

EwcStatus run_resolve_config(Config *c, const Dataset *data) {
    EwcStatus st = config_tasks_resolve(c, data->n_classes);
    if (st) return st;
    fixsum_resolve_config(c, data->train.dim, config_tasks_outputs(c, data->n_classes));
    return EWC_OK;
}
