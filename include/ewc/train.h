/* The trainer: state of one run (model, optimizer, penalty, tasks, metrics) and the collective
 * operations on it: a training step, evaluation, the Fisher, and the whole task sequence. */
#ifndef EWC_TRAIN_H
#define EWC_TRAIN_H

#include <mpi.h>
#include <stdint.h>

#include "ewc/adam.h"
#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/dist.h"
#include "ewc/earlystop.h"
#include "ewc/error.h"
#include "ewc/fixsum.h"
#include "ewc/model.h"
#include "ewc/penalty.h"
#include "ewc/si.h"
#include "ewc/tasks.h"

#define TRAIN_EVAL_CHUNK 1000 /* test samples per forward pass during evaluation */

typedef struct {
    long long step; /* global step count (over all tasks) when evaluated */
    int task;
    double accuracy;
} CurvePoint;

typedef struct {
    const Config *cfg;    /* not owned */
    const Dataset *data;  /* not owned */
    Dist dist;
    ReduceMode reduce;    /* the reduction in use: cfg->reduce, with auto resolved (fixsum.h) */
    FixSum fix;           /* --reduce fixed: the fixed-point sums (zeroed otherwise) */
    ModelShape shape;
    int dim, classes;     /* input pixels, output units (tasks.h: the scenario's outputs) */
    TaskSet tasks;        /* what each task does to inputs, labels and outputs (tasks.h) */

    float *params;        /* (n_params) theta, layout of model.h */
    float *grad;          /* (n_params) mean gradient of the current batch */
    float *mom;           /* (n_params) momentum, NULL when --momentum 0 */
    Adam adam;            /* --optimizer adam: moments and step count (NULL moments for sgd) */
    Penalty pen;          /* running sums of the finished tasks */
    Si si;                /* --method si: the current task's path integral (NULL arrays otherwise) */
    int **perm;           /* (tasks) pixel permutation of each task, (dim) each; = tasks.perm */
    uint8_t *train_x;     /* (train n, dim) the training images under task train_x_task's
                           * permutation, so a batch is a contiguous copy, not a gather; NULL
                           * if it did not fit in memory (then batches gather) */
    int train_x_task;     /* -1 before the first trainer_begin_epoch */

    Activations acts;     /* one global batch (cap = --batch) */
    Activations eval;     /* evaluation chunk (cap = TRAIN_EVAL_CHUNK) */
    float *fisher_sq[MODEL_MAX_LAYERS]; /* (batch, dims[l+1]) per-sample squared deltas */
    float *in_sq;         /* (batch, max(dims[l]) + 1) squared layer inputs */
    int *order;           /* (stage samples) training-set indices in the current epoch's order */
    int *order_task;      /* (stage samples) --joint: the task of each; NULL otherwise */
    int *row_y, *row_lo, *row_hi; /* (max(batch, eval chunk)) per batch row: output unit of the
                           * label and the active units [lo, hi) (tasks.h) */
    int *row_task;        /* (batch) --joint: per-row task of the Fisher's samples */

    /* position in the sequence */
    int task, epoch, step; /* next step to run */
    long long global_step; /* steps done over all tasks */

    /* metrics */
    double *initial_acc;  /* (tasks) accuracy of the untrained model on each task */
    double *acc;          /* (tasks, tasks) R[t][j], rows filled up to the last finished task */
    double *val_acc;      /* (tasks, tasks) the same on the validation split; NULL without it */
    EarlyStop es;         /* --patience state of the current task and records (earlystop.h) */
    CurvePoint *curve;
    int n_curve, cap_curve;
    double train_seconds; /* time in training steps only */
    long long train_samples;
    double last_loss;

    /* the BLAS (blascore.h): recorded in summary.json and the checkpoint */
    const char *blas_core;          /* OpenBLAS core in use, set by the caller (may be NULL) */
    char resumed_blas_core[32];     /* the checkpoint's, after checkpoint_load ("" if none) */
    int resumed_quantum;            /* the checkpoint's BLAS row quantum */
} Trainer;

/* Allocate and initialise a run from CFG and DATA on COMM (every rank holds the whole dataset).
 * Collective: the ranks agree on the BLAS row quantum (tile.h), so all must call it. */
EwcStatus trainer_init(Trainer *t, const Config *cfg, const Dataset *data, MPI_Comm comm);
void trainer_free(Trainer *t);

/* Draw the sample order of (task, epoch) into t->order (a permutation of the task's training
 * samples, tasks.h; --joint: of every task's samples); on a new task, transform the training
 * images into t->train_x. */
void trainer_begin_epoch(Trainer *t, int task, int epoch);

/* Training samples of TASK (split: those of its classes; --joint: of all tasks, any TASK) and
 * the steps of one of its epochs (the last batch may be partial). */
int trainer_task_samples(const Trainer *t, int task);
int trainer_task_steps_per_epoch(const Trainer *t, int task);

/* The largest number of steps in one epoch of any task (all tasks have the same unless split). */
int trainer_steps_per_epoch(const Trainer *t);

/* One optimizer step (SGD or Adam) on global batch STEP of the current epoch order; *LOSS gets the batch's mean
 * data loss (identical on every rank). EWC_ENAN if it is not finite. Collective. */
EwcStatus trainer_step(Trainer *t, int task, int epoch, int step, double *loss);

/* Test accuracy on TASK (fraction in [0, 1], identical on every rank): over TASK's test samples,
 * the argmax over its active outputs with tasks up to t->task seen (tasks.h). Collective. */
EwcStatus trainer_evaluate(Trainer *t, int task, double *accuracy);

/* The same on SPLIT (e.g. &t->data->val) under TASK's permutation. Collective. */
EwcStatus trainer_evaluate_split(Trainer *t, const Split *split, int task, double *accuracy);

/* Diagonal Fisher of TASK at the current parameters into FISHER (n_params): the mean over
 * N samples (0 = whole training set) of the squared per-sample gradient of log p(y|x), with y
 * the true label (empirical), drawn from the model (sampled) or summed over all classes
 * weighted by p(y|x) (expected). *USED gets the number of samples. Collective. */
EwcStatus trainer_fisher(Trainer *t, int task, FisherKind kind, int n, float *fisher, int *used);

/* This rank's rows [*S0, *S1) of a chunk of N samples for per-sample sums (the trainer's own
 * split: a shard, or whole micro-batches with --reduce fixed), and how the forward and
 * backward passes over them are cut into calls (NULL: one call per layer; fixsum.h). Not
 * collective. */
void trainer_chunk_rows(const Trainer *t, int n, int *s0, int *s1);
const ModelCalls *trainer_calls(const Trainer *t);

/* The reduction of trainer_step and trainer_fisher for other per-sample sums (mas.c): after
 * this rank computed rows [s0, s1) (trainer_chunk_rows) of A's activations and of the
 * delta-like matrices SQ[l] (N, dims[l+1]), SLAB += the sum over the batch's N rows of
 * SQ[l]^T [act[l] | 1] for this rank's parameter rows (exact), from its own rows (allreduce),
 * or as fixed-point sums of its micro-batches (fixed). Collective. */
EwcStatus trainer_reduce_rows(Trainer *t, Activations *a, float **sq, float *slab, int n, int s0,
                              int s1);

/* After the last trainer_reduce_rows: assemble SLAB (n_params) on every rank. Collective. */
EwcStatus trainer_reduce_slab(Trainer *t, float *slab);

/* Fill act[0] rows [r0, r1) of A with samples of SPLIT permuted by TASK's permutation: row i
 * holds sample IDX[i] (or FIRST + i when IDX is NULL), as pixel / 255. */
void trainer_fill_input(const Trainer *t, Activations *a, const Split *split, int task,
                        const int *idx, int first, int r0, int r1);

#endif
