/* The tasks of a continual-learning sequence: what task t does to an input image (a pixel
 * permutation, a rotation, nothing), which samples belong to it (split: those of its classes),
 * how a label maps to an output unit, and which output units are active (the scenario).
 *
 * Classes per task K: split --classes-per-task; permuted and rotated: every class (C).
 * Task t's classes: split: positions t*K..(t+1)*K-1 of the class order (natural or seeded);
 * otherwise all C classes in label order. pos(y) = position of class y within its task.
 * Output layer and the unit of label y in task t, by scenario:
 *   domain: K units, one head shared by all tasks;  unit = pos(y)
 *   task:   T*K units, head t = units [t*K, (t+1)*K); unit = t*K + pos(y)
 *   class:  T*K units, one per (task, class);        unit = t*K + pos(y)
 * Active units (the softmax, its loss, the Fisher and the argmax see only these):
 *   domain: [0, K) always;  task: head t (training and testing task t);
 *   class:  [0, (s+1)*K) where s is the last task trained or being trained ("the classes seen
 *           so far", as the active classes of van de Ven et al.'s code): training task t uses
 *           s = t; testing any task j after (or during) task t uses s = t, so a task not yet
 *           trained scores 0; the untrained model's accuracy (b_j) uses s = 0; --joint uses
 *           s = T - 1.
 * Permuted + domain is the classic permuted MNIST with one 10-way head, bit for bit as before
 * this module existed. */
#ifndef EWC_TASKS_H
#define EWC_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/error.h"
#include "ewc/model.h"

/* Bilinear taps of one rotated pixel: source pixels (-1 = outside the image, value 0) and
 * weights (summing to 1 over the pixels inside). */
typedef struct {
    int32_t src[4];
    double w[4];
} RotateTap;

typedef struct {
    TaskFamily family;
    Scenario scenario;
    int tasks, classes;   /* T; C classes in the data */
    int per_task;         /* K */
    int outputs;          /* width of the output layer */
    int dim, side;        /* pixels per image; side of the square image (rotated) */
    int joint;            /* --joint: one training stage over every task's samples */
    int **perm;           /* (T) (dim) pixel permutations; the identity for split and rotated */
    double *angle;        /* (T) rotated: degrees, counter-clockwise */
    RotateTap **rot;      /* (T) (dim) rotated: the taps of each output pixel; NULL otherwise */
    int *task_class;      /* (T, K) class at position j of task t */
    int *unit;            /* (T, C) output unit of class y in task t; -1 if y is not in task t */
    /* split: per task, the indices of its samples in the data's train / test / val splits
     * (ascending); NULL lists mean every sample of the split belongs to every task */
    int **train_idx, **test_idx, **val_idx;
    int *n_train, *n_test, *n_val; /* (T) sample counts (the split's n when the list is NULL) */
    long long joint_n;    /* --joint: sum of n_train over tasks */
    long long *joint_off; /* (T + 1) --joint: task t's samples are joint indices
                           * [joint_off[t], joint_off[t+1]) */
    float *frozen;        /* scratch for the output rows that an update must not move */
    size_t frozen_cap;
} TaskSet;

/* Build the tasks of C (tasks and classes_per_task resolved, config_tasks.h) over DATA (the
 * validation split already taken). Errors (EWC_EINVAL, one line naming the flag): a rotated
 * family on non-square images; a split task without training samples. Not collective: every
 * rank builds the same set. */
EwcStatus tasks_init(TaskSet *ts, const Config *c, const Dataset *data);
void tasks_free(TaskSet *ts);

/* Task TASK's transform of N images X (n, dim) into OUT (n, dim) (permuted: out[k] = x[perm[k]];
 * rotated: bilinear resampling; split: a copy). */
void tasks_transform_images(const TaskSet *ts, int task, uint8_t *out, const uint8_t *x, size_t n);

/* One image X (dim) under TASK's transform, as pixel / 255 into ROW (dim): the same values as
 * tasks_transform_images followed by the conversion. */
void tasks_fill_row(const TaskSet *ts, int task, float *row, const uint8_t *x);

/* Rotate one SIDE x SIDE image X by the precomputed TAPS into OUT. */
void tasks_rotate_image(uint8_t *out, const uint8_t *x, const RotateTap *taps, int dim);

/* Taps (dim = side^2) of a rotation by DEGREES counter-clockwise about the image centre
 * ((side - 1) / 2, (side - 1) / 2): output pixel (r, c) takes the bilinear interpolation of the
 * input at the point that the rotation maps onto (r, c); multiples of 90 degrees are exact
 * (cosine and sine 0 or +-1), so they move pixels without interpolation. */
void tasks_rotation_taps(RotateTap *taps, int side, double degrees);

/* Samples of TASK in SPLIT (one of DATA's train, test, val): returns their number and sets *IDX
 * to their indices in SPLIT, or to NULL when they are all of SPLIT's samples. */
int tasks_samples(const TaskSet *ts, const Dataset *data, const Split *split, int task,
                  const int **idx);

/* Output unit of class Y in TASK (-1 if Y is not one of TASK's classes). */
int tasks_unit(const TaskSet *ts, int task, int y);

/* Active output units [*LO, *HI) of TASK when tasks up to SEEN have been or are being trained
 * (see the table above; SEEN only matters for the class scenario, and is clamped to [0, T)). */
void tasks_active(const TaskSet *ts, int task, int seen, int *lo, int *hi);

/* --joint: the task and sample index (in the training split) of joint sample G. */
void tasks_joint_sample(const TaskSet *ts, long long g, int *task, int *idx);

/* The optimizer's update must not move the output rows outside TASK's active units (task
 * scenario: the other heads; class scenario: the classes not seen yet; domain: none), whatever
 * momentum, Adam's moments or the penalty would do. Save those rows of every non-NULL slab of
 * SLABS (n_slabs, each in the layout of S) before the update with tasks_freeze, restore them
 * after it with tasks_thaw (same arguments). No-op when every output is active. */
EwcStatus tasks_freeze(TaskSet *ts, const ModelShape *s, int task, float *const *slabs,
                       int n_slabs);
void tasks_thaw(const TaskSet *ts, const ModelShape *s, int task, float *const *slabs,
                int n_slabs);

#endif
