/* The tasks of a sequence (tasks.h): per-task input transforms (permutation, rotation), sample
 * lists of split tasks, the label-to-output map and active outputs of each scenario, and the
 * frozen output rows of inactive heads. */
#include "ewc/tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/config_tasks.h"
#include "ewc/permute.h"
#include "ewc/rng.h"

/* cos and sin of DEGREES, exact for multiples of 90 (where the library's are off by 1e-17). */
static void cos_sin_degrees(double degrees, double *c, double *s) {
    double q = degrees / 90.0;
    if (q == floor(q) && fabs(q) < 1e15) {
        static const double cs[4][2] = {{1, 0}, {0, 1}, {-1, 0}, {0, -1}};
        long k = (long)fmod(q, 4.0);
        k = (k + 4) % 4;
        *c = cs[k][0];
        *s = cs[k][1];
        return;
    }
    double r = degrees * (M_PI / 180.0);
    *c = cos(r);
    *s = sin(r);
}

void tasks_rotation_taps(RotateTap *taps, int side, double degrees) {
    double cs, sn, mid = (side - 1) / 2.0;
    cos_sin_degrees(degrees, &cs, &sn);
    for (int r = 0; r < side; r++)
        for (int c = 0; c < side; c++) {
            /* (dx, dy) with y up; the content turns counter-clockwise, so the source point is
             * the output point turned clockwise */
            double dx = c - mid, dy = mid - r;
            double sx = cs * dx + sn * dy, sy = -sn * dx + cs * dy;
            double col = mid + sx, row = mid - sy;
            /* snap to the grid what is a grid point up to rounding */
            if (fabs(col - nearbyint(col)) < 1e-9) col = nearbyint(col);
            if (fabs(row - nearbyint(row)) < 1e-9) row = nearbyint(row);
            double r0 = floor(row), c0 = floor(col), fr = row - r0, fc = col - c0;
            RotateTap *t = &taps[r * side + c];
            const double w[4] = {(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc};
            for (int k = 0; k < 4; k++) {
                double rr = r0 + (k >> 1), cc = c0 + (k & 1);
                int inside = rr >= 0 && rr < side && cc >= 0 && cc < side && w[k] != 0.0;
                t->src[k] = inside ? (int32_t)(rr * side + cc) : -1;
                t->w[k] = inside ? w[k] : 0.0;
            }
        }
}

static inline uint8_t rotate_pixel(const uint8_t *x, const RotateTap *t) {
    double v = 0.0;
    for (int k = 0; k < 4; k++)
        if (t->src[k] >= 0) v += t->w[k] * x[t->src[k]];
    v = floor(v + 0.5);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

void tasks_rotate_image(uint8_t *out, const uint8_t *x, const RotateTap *taps, int dim) {
    for (int k = 0; k < dim; k++) out[k] = rotate_pixel(x, &taps[k]);
}

/* Indices of the samples of SPLIT whose class is one of task T's, into a new list. */
static EwcStatus split_list(const TaskSet *ts, const Split *split, int t, int **idx, int *n) {
    int m = 0;
    for (int i = 0; i < split->n; i++) m += ts->unit[(size_t)t * ts->classes + split->y[i]] >= 0;
    *idx = malloc((size_t)(m ? m : 1) * sizeof(int));
    if (!*idx) return EWC_ENOMEM;
    m = 0;
    for (int i = 0; i < split->n; i++)
        if (ts->unit[(size_t)t * ts->classes + split->y[i]] >= 0) (*idx)[m++] = i;
    *n = m;
    return EWC_OK;
}

EwcStatus tasks_init(TaskSet *ts, const Config *c, const Dataset *data) {
    memset(ts, 0, sizeof *ts);
    int T = c->tasks, C = data->n_classes;
    EwcStatus st = EWC_OK;
    ts->family = c->task_family;
    ts->scenario = c->scenario;
    ts->tasks = T;
    ts->classes = C;
    ts->dim = data->train.dim;
    ts->joint = c->joint;
    ts->per_task = ts->family == FAMILY_SPLIT ? c->classes_per_task : C;
    int K = ts->per_task;
    if (T < 1 || K < 1 || (ts->family == FAMILY_SPLIT && (long)T * K > C)) {
        ewc_error_set("--tasks %d with %d classes per task: the data have %d classes", T, K, C);
        return EWC_EINVAL;
    }
    ts->outputs = config_tasks_outputs(c, C); /* K for domain, T * K otherwise */
    if (ts->family == FAMILY_ROTATED) {
        ts->side = (int)lround(sqrt((double)ts->dim));
        if (ts->side * ts->side != ts->dim) {
            ewc_error_set("--task-family rotated: the images in %s have %d pixels, not a square",
                          c->data_dir, ts->dim);
            return EWC_EINVAL;
        }
    }
    ts->perm = calloc((size_t)T, sizeof *ts->perm);
    ts->task_class = malloc((size_t)T * K * sizeof(int));
    ts->unit = malloc((size_t)T * C * sizeof(int));
    ts->n_train = malloc((size_t)T * sizeof(int));
    ts->n_test = malloc((size_t)T * sizeof(int));
    ts->n_val = malloc((size_t)T * sizeof(int));
    ts->joint_off = malloc((size_t)(T + 1) * sizeof(long long));
    if (!ts->perm || !ts->task_class || !ts->unit || !ts->n_train || !ts->n_test || !ts->n_val ||
        !ts->joint_off)
        goto nomem;

    /* classes of each task and the output unit of each (task, class) */
    int *order = malloc((size_t)C * sizeof(int));
    if (!order) goto nomem;
    if (ts->family == FAMILY_SPLIT && c->class_order == CLASS_ORDER_SEEDED)
        rng_permutation(order, C, c->seed, RNG_CLASS_ORDER, 0, 0);
    else
        for (int y = 0; y < C; y++) order[y] = y;
    for (size_t i = 0; i < (size_t)T * C; i++) ts->unit[i] = -1;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) {
            int y = ts->family == FAMILY_SPLIT ? order[t * K + j] : j;
            ts->task_class[(size_t)t * K + j] = y;
            ts->unit[(size_t)t * C + y] = ts->scenario == SCENARIO_DOMAIN ? j : t * K + j;
        }
    free(order);

    /* input transforms */
    for (int t = 0; t < T; t++) {
        if (!(ts->perm[t] = malloc((size_t)ts->dim * sizeof(int)))) goto nomem;
        if (ts->family == FAMILY_PERMUTED) {
            if ((st = permute_task(ts->perm[t], ts->dim, c->permute_fraction, c->seed, t))) goto fail;
        } else {
            for (int k = 0; k < ts->dim; k++) ts->perm[t][k] = k;
        }
    }
    if (ts->family == FAMILY_ROTATED) {
        ts->angle = malloc((size_t)T * sizeof(double));
        ts->rot = calloc((size_t)T, sizeof *ts->rot);
        if (!ts->angle || !ts->rot) goto nomem;
        if (c->angles[0]) {
            if (config_tasks_parse_angles(c->angles, ts->angle, T) != T) {
                ewc_error_set("--angles \"%.60s\": expected %d angles", c->angles, T);
                st = EWC_EINVAL;
                goto fail;
            }
        } else {
            for (int t = 0; t < T; t++) ts->angle[t] = 180.0 * t / T;
        }
        for (int t = 0; t < T; t++) {
            if (!(ts->rot[t] = malloc((size_t)ts->dim * sizeof(RotateTap)))) goto nomem;
            tasks_rotation_taps(ts->rot[t], ts->side, ts->angle[t]);
        }
    }

    /* samples of each task */
    if (ts->family == FAMILY_SPLIT) {
        ts->train_idx = calloc((size_t)T, sizeof(int *));
        ts->test_idx = calloc((size_t)T, sizeof(int *));
        ts->val_idx = calloc((size_t)T, sizeof(int *));
        if (!ts->train_idx || !ts->test_idx || !ts->val_idx) goto nomem;
    }
    ts->joint_off[0] = 0;
    for (int t = 0; t < T; t++) {
        ts->n_train[t] = data->train.n;
        ts->n_test[t] = data->test.n;
        ts->n_val[t] = data->val.n;
        if (ts->family == FAMILY_SPLIT &&
            (split_list(ts, &data->train, t, &ts->train_idx[t], &ts->n_train[t]) ||
             split_list(ts, &data->test, t, &ts->test_idx[t], &ts->n_test[t]) ||
             split_list(ts, &data->val, t, &ts->val_idx[t], &ts->n_val[t])))
            goto nomem;
        if (ts->n_train[t] == 0) {
            ewc_error_set("task %d (classes %d..) has no training samples in %s (see "
                          "--train-samples and --validation)", t, ts->task_class[(size_t)t * K],
                          c->data_dir);
            st = EWC_EINVAL;
            goto fail;
        }
        ts->joint_off[t + 1] = ts->joint_off[t] + ts->n_train[t];
    }
    ts->joint_n = ts->joint_off[T];
    if (ts->joint && ts->joint_n > 2000000000LL) {
        ewc_error_set("--joint: %lld samples over all tasks is too many (at most 2e9)",
                      ts->joint_n);
        st = EWC_EINVAL;
        goto fail;
    }
    return EWC_OK;
nomem:
    ewc_error_set("out of memory building the tasks");
    st = EWC_ENOMEM;
fail:
    tasks_free(ts);
    return st;
}

void tasks_free(TaskSet *ts) {
    for (int t = 0; t < ts->tasks; t++) {
        if (ts->perm) free(ts->perm[t]);
        if (ts->rot) free(ts->rot[t]);
        if (ts->train_idx) free(ts->train_idx[t]);
        if (ts->test_idx) free(ts->test_idx[t]);
        if (ts->val_idx) free(ts->val_idx[t]);
    }
    free(ts->perm);
    free(ts->rot);
    free(ts->angle);
    free(ts->train_idx);
    free(ts->test_idx);
    free(ts->val_idx);
    free(ts->task_class);
    free(ts->unit);
    free(ts->n_train);
    free(ts->n_test);
    free(ts->n_val);
    free(ts->joint_off);
    free(ts->frozen);
    memset(ts, 0, sizeof *ts);
}

void tasks_transform_images(const TaskSet *ts, int task, uint8_t *out, const uint8_t *x,
                            size_t n) {
    int d = ts->dim;
    if (ts->family == FAMILY_SPLIT) {
        memcpy(out, x, n * (size_t)d);
        return;
    }
    for (size_t i = 0; i < n; i++, out += d, x += d) {
        if (ts->family == FAMILY_ROTATED) {
            tasks_rotate_image(out, x, ts->rot[task], d);
        } else {
            const int *perm = ts->perm[task];
            for (int k = 0; k < d; k++) out[k] = x[perm[k]];
        }
    }
}

void tasks_fill_row(const TaskSet *ts, int task, float *row, const uint8_t *x) {
    int d = ts->dim;
    if (ts->family == FAMILY_ROTATED) {
        const RotateTap *taps = ts->rot[task];
        for (int k = 0; k < d; k++) row[k] = (float)rotate_pixel(x, &taps[k]) * (1.0f / 255.0f);
    } else if (ts->family == FAMILY_SPLIT) {
        for (int k = 0; k < d; k++) row[k] = (float)x[k] * (1.0f / 255.0f);
    } else {
        const int *perm = ts->perm[task];
        for (int k = 0; k < d; k++) row[k] = (float)x[perm[k]] * (1.0f / 255.0f);
    }
}

int tasks_samples(const TaskSet *ts, const Dataset *data, const Split *split, int task,
                  const int **idx) {
    *idx = NULL;
    if (split == &data->train) {
        if (ts->train_idx) *idx = ts->train_idx[task];
        return ts->n_train[task];
    }
    if (split == &data->test) {
        if (ts->test_idx) *idx = ts->test_idx[task];
        return ts->n_test[task];
    }
    if (split == &data->val) {
        if (ts->val_idx) *idx = ts->val_idx[task];
        return ts->n_val[task];
    }
    return split->n; /* another split (tests): every sample */
}

int tasks_unit(const TaskSet *ts, int task, int y) {
    return y >= 0 && y < ts->classes ? ts->unit[(size_t)task * ts->classes + y] : -1;
}

void tasks_active(const TaskSet *ts, int task, int seen, int *lo, int *hi) {
    int K = ts->per_task;
    if (ts->joint) seen = ts->tasks - 1;
    seen = seen < 0 ? 0 : seen >= ts->tasks ? ts->tasks - 1 : seen;
    switch (ts->scenario) {
    case SCENARIO_TASK:
        *lo = task * K;
        *hi = (task + 1) * K;
        break;
    case SCENARIO_CLASS:
        *lo = 0;
        *hi = (seen + 1) * K;
        break;
    default:
        *lo = 0;
        *hi = K;
    }
}

void tasks_joint_sample(const TaskSet *ts, long long g, int *task, int *idx) {
    int lo = 0, hi = ts->tasks - 1; /* the task t with joint_off[t] <= g < joint_off[t + 1] */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ts->joint_off[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    int i = (int)(g - ts->joint_off[lo]);
    *task = lo;
    *idx = ts->train_idx ? ts->train_idx[lo][i] : i;
}

/* Output rows [0, lo) and [hi, outputs) of the last layer are frozen during TASK. */
static void frozen_rows(const TaskSet *ts, int task, int *lo, int *hi) {
    if (ts->joint) {
        *lo = 0;
        *hi = ts->outputs;
        return;
    }
    tasks_active(ts, task, task, lo, hi);
}

EwcStatus tasks_freeze(TaskSet *ts, const ModelShape *s, int task, float *const *slabs,
                       int n_slabs) {
    int lo, hi, L = s->n_layers, w = s->dims[L - 1] + 1;
    frozen_rows(ts, task, &lo, &hi);
    size_t rows = (size_t)lo + (size_t)(ts->outputs - hi), need = rows * w * n_slabs;
    if (rows == 0) return EWC_OK;
    if (need > ts->frozen_cap) {
        float *f = realloc(ts->frozen, need * sizeof(float));
        if (!f) {
            ewc_error_set("out of memory for the frozen output rows");
            return EWC_ENOMEM;
        }
        ts->frozen = f;
        ts->frozen_cap = need;
    }
    float *dst = ts->frozen;
    for (int k = 0; k < n_slabs; k++) {
        if (!slabs[k]) continue;
        const float *out = slabs[k] + s->offset[L - 1];
        memcpy(dst, out, (size_t)lo * w * sizeof(float));
        dst += (size_t)lo * w;
        memcpy(dst, out + (size_t)hi * w, (size_t)(ts->outputs - hi) * w * sizeof(float));
        dst += (size_t)(ts->outputs - hi) * w;
    }
    return EWC_OK;
}

void tasks_thaw(const TaskSet *ts, const ModelShape *s, int task, float *const *slabs,
                int n_slabs) {
    int lo, hi, L = s->n_layers, w = s->dims[L - 1] + 1;
    frozen_rows(ts, task, &lo, &hi);
    if (lo == 0 && hi == ts->outputs) return;
    const float *src = ts->frozen;
    for (int k = 0; k < n_slabs; k++) {
        if (!slabs[k]) continue;
        float *out = slabs[k] + s->offset[L - 1];
        memcpy(out, src, (size_t)lo * w * sizeof(float));
        src += (size_t)lo * w;
        memcpy(out + (size_t)hi * w, src, (size_t)(ts->outputs - hi) * w * sizeof(float));
        src += (size_t)(ts->outputs - hi) * w;
    }
}
