/* The trainer's collective operations: one data-parallel SGD step, evaluation, and the diagonal
 * Fisher, all built on the same shard / gather / own-rows pattern (see dist.h). */
#include "ewc/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/diverge.h"
#include "ewc/layer.h"
#include "ewc/optim.h"
#include "ewc/rng.h"
#include "ewc/tile.h"

static void *alloc_floats(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

/* --reduce fixed: the layers whose forward and backward calls may span several micro-batches
 * (fixsum.h): every layer when the micro-batch is a multiple of the BLAS row quantum, else
 * those tile_probe_calls finds exact (e.g. OpenBLAS's SkylakeX kernels take another path for
 * small products), intersected over the ranks. Collective. */
static EwcStatus merged_layers(const ModelShape *s, const Config *cfg, int quantum, MPI_Comm comm,
                               int *merged) {
    int m = cfg->micro_batch > 0 ? cfg->micro_batch : fixsum_default_micro(cfg->batch);
    int mask = quantum > 0 && m % quantum == 0 ? (1 << s->n_layers) - 1
                                               : tile_probe_calls(s, cfg->batch, m);
    int v[2] = {mask < 0 ? 0 : mask, mask >= 0}; /* out of memory on any rank fails every rank */
    if (MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_BAND, comm) != MPI_SUCCESS) {
        ewc_error_set("MPI_Allreduce of the merged layers failed");
        return EWC_EMPI;
    }
    if (!v[1]) {
        ewc_error_set("out of memory probing the BLAS calls (%zu parameters)", s->n_params);
        return EWC_ENOMEM;
    }
    *merged = v[0];
    return EWC_OK;
}

EwcStatus trainer_init(Trainer *t, const Config *cfg, const Dataset *data, MPI_Comm comm) {
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    t->data = data;
    t->dim = data->train.dim;
    EwcStatus st = tasks_init(&t->tasks, cfg, data);
    if (st) return st;
    t->classes = t->tasks.outputs;
    t->perm = t->tasks.perm;
    if ((st = model_shape_init(&t->shape, t->dim, cfg->hidden, cfg->n_hidden, t->classes))) {
        tasks_free(&t->tasks);
        return st;
    }
    t->reduce = cfg->reduce == REDUCE_AUTO ? fixsum_choose(&t->shape, cfg->batch) : cfg->reduce;
    /* the exact reduction splits products only on the BLAS tile grid (tile.h); so does the
     * evaluation, which the fixed one must keep rank-count independent too */
    int quantum = 1;
    if (t->reduce != REDUCE_ALLREDUCE) {
        quantum = tile_probe_quantum(&t->shape, cfg->batch);
        int q_oom[2] = {quantum, quantum < 0}; /* out of memory on any rank fails every rank */
        if (quantum <= 0) q_oom[0] = cfg->batch; /* no exact split: whole batches per rank */
        /* ranks may differ only on heterogeneous nodes; the largest quantum is then the safest */
        if (MPI_Allreduce(MPI_IN_PLACE, q_oom, 2, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS) {
            ewc_error_set("MPI_Allreduce of the BLAS row quantum failed");
            tasks_free(&t->tasks);
            return EWC_EMPI;
        }
        if (q_oom[1]) {
            ewc_error_set("out of memory probing the BLAS tile grid (%zu parameters)",
                          t->shape.n_params);
            tasks_free(&t->tasks);
            return EWC_ENOMEM;
        }
        quantum = q_oom[0];
    }
    if ((st = dist_init(&t->dist, comm, &t->shape, quantum))) {
        tasks_free(&t->tasks);
        return st;
    }
    int merged = 0;
    if (t->reduce == REDUCE_FIXED &&
        ((st = merged_layers(&t->shape, cfg, quantum, comm, &merged)) ||
         (st = fixsum_init(&t->fix, comm, &t->shape, cfg->micro_batch, cfg->batch, merged)))) {
        dist_free(&t->dist);
        tasks_free(&t->tasks);
        return st;
    }
    size_t np = t->shape.n_params;
    int L = t->shape.n_layers, maxdim = 0, T = cfg->tasks;
    for (int l = 0; l < L; l++) maxdim = t->shape.dims[l] > maxdim ? t->shape.dims[l] : maxdim;

    t->params = alloc_floats(np);
    t->grad = alloc_floats(np);
    if (cfg->momentum > 0) t->mom = calloc(np, sizeof(float));
    long long n_order = cfg->joint ? t->tasks.joint_n : data->train.n;
    t->order = malloc((size_t)(n_order ? n_order : 1) * sizeof(int));
    if (cfg->joint && !(t->order_task = malloc((size_t)n_order * sizeof(int)))) goto nomem;
    int rows = cfg->batch > TRAIN_EVAL_CHUNK ? cfg->batch : TRAIN_EVAL_CHUNK;
    t->row_y = malloc((size_t)rows * sizeof(int));
    t->row_lo = malloc((size_t)rows * sizeof(int));
    t->row_hi = malloc((size_t)rows * sizeof(int));
    t->row_task = malloc((size_t)rows * sizeof(int));
    t->train_x = malloc((size_t)data->train.n * t->dim); /* optional: NULL means gather */
    t->train_x_task = -1;
    t->in_sq = alloc_floats((size_t)cfg->batch * (maxdim + 1));
    t->initial_acc = calloc((size_t)T, sizeof(double));
    t->acc = calloc((size_t)T * T, sizeof(double));
    if (cfg->validation > 0 && !(t->val_acc = calloc((size_t)T * T, sizeof(double)))) goto nomem;
    if ((st = earlystop_init(&t->es, cfg->patience, np, T))) goto fail;
    if (!t->params || !t->grad || (cfg->momentum > 0 && !t->mom) || !t->order ||
        !t->row_y || !t->row_lo || !t->row_hi || !t->row_task || !t->in_sq || !t->initial_acc ||
        !t->acc)
        goto nomem;
    for (int l = 0; l < L; l++)
        if (!(t->fisher_sq[l] = alloc_floats((size_t)cfg->batch * t->shape.dims[l + 1])))
            goto nomem;
    if ((st = model_acts_alloc(&t->acts, &t->shape, cfg->batch))) goto fail;
    if ((st = model_acts_alloc(&t->eval, &t->shape, TRAIN_EVAL_CHUNK))) goto fail;
    if ((st = penalty_init(&t->pen, cfg->method, cfg->lambda, cfg->gamma, np))) goto fail;
    if (cfg->optimizer == OPTIMIZER_ADAM &&
        (st = adam_init(&t->adam, np, cfg->adam_beta1, cfg->adam_beta2, cfg->adam_eps)))
        goto fail;
    if (cfg->method == METHOD_SI && (st = si_init(&t->si, np, cfg->si_xi))) goto fail;
    model_init_params(t->params, &t->shape, cfg->seed, (ModelInit)cfg->init);
    si_begin_task(&t->si, t->params);
    return EWC_OK;
nomem:
    ewc_error_set("out of memory allocating the trainer (%zu parameters)", np);
    st = EWC_ENOMEM;
fail:
    trainer_free(t);
    return st;
}

void trainer_free(Trainer *t) {
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) free(t->fisher_sq[l]);
    tasks_free(&t->tasks); /* owns t->perm */
    free(t->params);
    free(t->grad);
    free(t->mom);
    free(t->order);
    free(t->order_task);
    free(t->row_y);
    free(t->row_lo);
    free(t->row_hi);
    free(t->row_task);
    free(t->train_x);
    free(t->in_sq);
    free(t->initial_acc);
    free(t->acc);
    free(t->val_acc);
    earlystop_free(&t->es);
    free(t->curve);
    model_acts_free(&t->acts);
    model_acts_free(&t->eval);
    penalty_free(&t->pen);
    adam_free(&t->adam);
    si_free(&t->si);
    dist_free(&t->dist);
    fixsum_free(&t->fix);
    memset(t, 0, sizeof *t);
}

void trainer_begin_epoch(Trainer *t, int task, int epoch) {
    const TaskSet *ts = &t->tasks;
    if (t->train_x && t->train_x_task != task && !ts->joint) {
        tasks_transform_images(ts, task, t->train_x, t->data->train.x, (size_t)t->data->train.n);
        t->train_x_task = task;
    }
    int n = trainer_task_samples(t, task);
    rng_permutation(t->order, n, t->cfg->seed, RNG_EPOCH_ORDER, (uint32_t)task, (uint32_t)epoch);
    /* positions in the task's sample list (or the joint list) to training-set indices */
    for (int i = 0; ts->joint && i < n; i++)
        tasks_joint_sample(ts, t->order[i], &t->order_task[i], &t->order[i]);
    if (!ts->joint && ts->train_idx)
        for (int i = 0; i < n; i++) t->order[i] = ts->train_idx[task][t->order[i]];
}

int trainer_task_samples(const Trainer *t, int task) {
    return t->tasks.joint ? (int)t->tasks.joint_n : t->tasks.n_train[task];
}

int trainer_task_steps_per_epoch(const Trainer *t, int task) {
    return (trainer_task_samples(t, task) + t->cfg->batch - 1) / t->cfg->batch;
}

int trainer_steps_per_epoch(const Trainer *t) {
    int m = 0;
    for (int k = 0; k < t->cfg->tasks; k++) {
        int s = trainer_task_steps_per_epoch(t, k);
        m = s > m ? s : m;
    }
    return m;
}

#define FILL_AHEAD 4 /* rows prefetched ahead when filling a batch */

/* Pixels in [0, 255] as floats in [0, 1]; restrict lets the compiler vectorise across the byte
 * and float pointers. */
static void pixels_to_unit(float *restrict out, const uint8_t *restrict x, int d) {
    for (int k = 0; k < d; k++) out[k] = (float)x[k] * (1.0f / 255.0f);
}

/* trainer_fill_input with, for --joint, the task of each row in ROW_TASK (else NULL). */
static void fill_rows(const Trainer *t, Activations *a, const Split *split, int task,
                      const int *idx, const int *row_task, int first, int r0, int r1) {
    int d = t->dim;
    if (split == &t->data->train && task == t->train_x_task && !row_task) { /* a copy */
        for (int i = r0; i < r1; i++) {
            /* rows are random in a large buffer: fetch a few rows ahead, not one line at a time */
            if (i + FILL_AHEAD < r1) {
                const uint8_t *next = t->train_x + (size_t)(idx ? idx[i + FILL_AHEAD]
                                                                : first + i + FILL_AHEAD) * d;
                for (int k = 0; k < d; k += 64) __builtin_prefetch(next + k);
            }
            pixels_to_unit(a->act[0] + (size_t)i * (d + 1),
                           t->train_x + (size_t)(idx ? idx[i] : first + i) * d, d);
        }
        return;
    }
    for (int i = r0; i < r1; i++) {
        const uint8_t *x = split->x + (size_t)(idx ? idx[i] : first + i) * d;
        tasks_fill_row(&t->tasks, row_task ? row_task[i] : task, a->act[0] + (size_t)i * (d + 1), x);
    }
}

void trainer_fill_input(const Trainer *t, Activations *a, const Split *split, int task,
                        const int *idx, int first, int r0, int r1) {
    fill_rows(t, a, split, task, idx, NULL, first, r0, r1);
}

/* Rows [r0, r1) of t->row_y, row_lo, row_hi for samples of SPLIT (as in fill_rows): the output
 * unit of each label and the active units, with tasks up to SEEN seen (tasks.h). */
static void fill_labels(Trainer *t, const Split *split, int task, const int *idx,
                        const int *row_task, int first, int r0, int r1, int seen) {
    for (int i = r0; i < r1; i++) {
        int k = row_task ? row_task[i] : task;
        t->row_y[i] = tasks_unit(&t->tasks, k, split->y[idx ? idx[i] : first + i]);
        tasks_active(&t->tasks, k, seen, &t->row_lo[i], &t->row_hi[i]);
    }
}

/* Zero this rank's gradient rows, or every row in allreduce mode. */
static void zero_rows(float *slab, const Trainer *t, int r0, int r1) {
    if (r1 <= r0) return;
    size_t lo = model_row_offset(&t->shape, r0);
    size_t hi = r1 < t->shape.n_rows ? model_row_offset(&t->shape, r1) : t->shape.n_params;
    memset(slab + lo, 0, (hi - lo) * sizeof(float));
}

/* After rows [s0, s1) of A's activations and SQ (the per-layer matrices that play the role of
 * deltas) are computed on this rank, accumulate into SLAB the sum over all N batch rows:
 * exact mode gathers and computes own parameter rows; allreduce mode computes every row from
 * the shard and leaves the cross-rank sum to the caller. FISHER selects the squared inputs. */
static EwcStatus reduce_batch(Trainer *t, Activations *a, float **sq, float *slab, int n, int s0,
                              int s1, int fisher) {
    const ModelShape *s = &t->shape;
    int L = s->n_layers, exact = t->reduce == REDUCE_EXACT;
    EwcStatus st;
    if (t->reduce == REDUCE_FIXED) /* sums of this rank's micro-batches, fixsum_finish ends them */
        return fixsum_add(&t->fix, &t->dist, s, a, sq, n, fisher, t->in_sq, fisher ? NULL : a->loss);
    if (exact) {
        for (int l = 1; l < L; l++)
            if ((st = dist_allgather_rows(&t->dist, a->act[l], n, s->dims[l] + 1))) return st;
        for (int l = 0; l < L; l++)
            if ((st = dist_allgather_rows(&t->dist, sq[l], n, s->dims[l + 1]))) return st;
        s0 = 0;
        s1 = n;
    }
    int rb = exact ? t->dist.row_begin : 0, re = exact ? t->dist.row_end : s->n_rows;
    for (int l = 0; l < L; l++) {
        int r0 = rb - s->row0[l], r1 = re - s->row0[l], din = s->dims[l], dout = s->dims[l + 1];
        r0 = r0 < 0 ? 0 : r0;
        r1 = r1 > dout ? dout : r1;
        if (r1 <= r0) continue;
        const float *in = a->act[l] + (size_t)s0 * (din + 1);
        const float *d = sq[l] + (size_t)s0 * dout;
        if (fisher)
            linear_fisher_params(slab + s->offset[l], d, in, t->in_sq, s1 - s0, din, dout, r0, r1);
        else
            linear_backward_params(slab + s->offset[l], d, in, s1 - s0, din, dout, r0, r1);
    }
    return EWC_OK;
}

/* Sum of the per-sample losses of the batch in sample order, identical on every rank. */
static EwcStatus batch_loss(Trainer *t, float *loss, int n, int s0, int s1, double *out) {
    double sum = 0.0;
    if (t->reduce == REDUCE_FIXED) {
        sum = t->fix.loss; /* summed by micro-batch in fixsum_add */
    } else if (t->reduce == REDUCE_EXACT) {
        EwcStatus st = dist_allgather_rows(&t->dist, loss, n, 1);
        if (st) return st;
        for (int i = 0; i < n; i++) sum += loss[i];
    } else {
        for (int i = s0; i < s1; i++) sum += loss[i];
        if (t->dist.size > 1 &&
            MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, t->dist.comm) != MPI_SUCCESS) {
            ewc_error_set("MPI_Allreduce of the loss failed");
            return EWC_EMPI;
        }
    }
    *out = sum;
    return EWC_OK;
}

EwcStatus trainer_step(Trainer *t, int task, int epoch, int step, double *loss) {
    const Config *c = t->cfg;
    const ModelShape *s = &t->shape;
    Activations *a = &t->acts;
    int L = s->n_layers, pos0 = step * c->batch;
    int n_task = trainer_task_samples(t, task);
    int n = n_task - pos0 < c->batch ? n_task - pos0 : c->batch;
    const int *idx = t->order + pos0, *rtask = t->order_task ? t->order_task + pos0 : NULL;
    int s0, s1, exact = t->reduce == REDUCE_EXACT, fixed = t->reduce == REDUCE_FIXED;
    dist_shard(&t->dist, n, t->dist.rank, &s0, &s1);
    if (fixed) fixsum_rows(&t->fix, n, &s0, &s1); /* this rank's micro-batches */
    EwcStatus st;

    /* exact mode needs every row of the input for the weight gradients of layer 0 */
    int f0 = exact ? 0 : s0, f1 = exact ? n : s1;
    fill_rows(t, a, &t->data->train, task, idx, rtask, 0, f0, f1);
    if (c->dropout_input > 0)
        relu_dropout_forward(a->act[0] + (size_t)f0 * (t->dim + 1), f1 - f0, t->dim, t->dim + 1,
                             0, (float)c->dropout_input, c->seed, (uint32_t)task, (uint32_t)epoch,
                             (uint64_t)pos0 + (uint64_t)f0, 0);
    fill_labels(t, &t->data->train, task, idx, rtask, 0, s0, s1, task);

    Dropout drop = {(float)c->dropout, c->seed, (uint32_t)task, (uint32_t)epoch, (uint64_t)pos0};
    const ModelCalls *calls = trainer_calls(t); /* fixed: per micro-batch where needed */
    model_forward(a, s, t->params, s0, s1, &drop, calls);
    softmax_ce_active_forward_backward(a->prob + (size_t)s0 * t->classes, a->loss + s0,
                                       a->delta[L - 1] + (size_t)s0 * t->classes,
                                       a->logits + (size_t)s0 * t->classes, t->row_y + s0,
                                       t->row_lo + s0, t->row_hi + s0, s1 - s0, t->classes,
                                       1.0f / (float)n);
    model_backward_deltas(a, s, t->params, s0, s1, (float)c->dropout, calls);

    zero_rows(t->grad, t, exact ? t->dist.row_begin : 0, exact ? t->dist.row_end : s->n_rows);
    if ((st = reduce_batch(t, a, a->delta, t->grad, n, s0, s1, 0))) return st;
    st = trainer_reduce_slab(t, t->grad);
    if (st) return st;

    double sum;
    if ((st = batch_loss(t, a->loss, n, s0, s1, &sum))) return st;
    *loss = sum / n;
    /* never apply an update from a non-finite loss; the bound is checked by the caller */
    if (!isfinite(*loss)) return diverge_check(*loss, t->classes, task, epoch, step);
    /* the output rows of inactive heads must not move (tasks.h) */
    float *const slabs[4] = {t->params, t->mom, t->adam.m, t->adam.v};
    if ((st = tasks_freeze(&t->tasks, s, task, slabs, 4))) return st;
    /* --method si: the path integral is accumulated in the same pass (t->si.w, else NULL); the
     * frozen rows have a zero data gradient, so they add nothing to it */
    if (c->optimizer == OPTIMIZER_ADAM)
        adam_step_si(&t->adam, t->params, t->grad, &t->pen, (float)c->lr, c->penalty_step,
                     t->si.w);
    else
        optim_step_si(t->params, t->grad, t->mom, &t->pen, (float)c->lr, (float)c->momentum,
                      c->penalty_step, t->si.w);
    tasks_thaw(&t->tasks, s, task, slabs, 4);
    return EWC_OK;
}

EwcStatus trainer_evaluate(Trainer *t, int task, double *accuracy) {
    return trainer_evaluate_split(t, &t->data->test, task, accuracy);
}

EwcStatus trainer_evaluate_split(Trainer *t, const Split *test, int task, double *accuracy) {
    Activations *a = &t->eval;
    int s0, s1, q = t->dist.quantum;
    /* chunks of whole quanta, so every split of the test set falls on the tile grid */
    int chunk = TRAIN_EVAL_CHUNK / q * q > 0 ? TRAIN_EVAL_CHUNK / q * q : TRAIN_EVAL_CHUNK;
    const int *list;
    int total = tasks_samples(&t->tasks, t->data, test, task, &list);
    dist_shard(&t->dist, total, t->dist.rank, &s0, &s1);
    long long correct = 0;
    for (int first = s0; first < s1; first += chunk) {
        int n = s1 - first < chunk ? s1 - first : chunk;
        const int *idx = list ? list + first : NULL;
        trainer_fill_input(t, a, test, task, idx, first, 0, n);
        fill_labels(t, test, task, idx, NULL, first, 0, n, t->task);
        model_forward(a, &t->shape, t->params, 0, n, NULL, NULL);
        correct += softmax_active_forward(a->prob, a->logits, t->row_y, t->row_lo, t->row_hi, n,
                                          t->classes);
    }
    EwcStatus st = t->dist.size > 1 ? dist_allreduce_i64(t->dist.comm, &correct, 1) : EWC_OK;
    if (st) return st;
    *accuracy = total ? (double)correct / total : 0.0;
    return EWC_OK;
}

/* Per-sample squared deltas SQ[l] (rows s0..s1) for the Fisher kind, from the forward pass
 * already in A, over each row's active outputs [row_lo, row_hi) (tasks.h: log p(y|x) is the
 * softmax over those). Expected: sum over active classes k of p_k * (delta_l for label k)^2,
 * one backward pass per class. KEY: the sample keys of the sampled labels. */
static void fisher_deltas(Trainer *t, Activations *a, FisherKind kind, int task, const int *key,
                          int s0, int s1) {
    const ModelShape *s = &t->shape;
    int L = s->n_layers, C = t->classes, k0 = C, k1 = 0;
    const int *lo = t->row_lo, *hi = t->row_hi;
    softmax_active_forward(a->prob + (size_t)s0 * C, a->logits + (size_t)s0 * C, NULL, lo + s0,
                           hi + s0, s1 - s0, C);
    for (int i = s0; i < s1; i++) { /* the passes: every row's active classes */
        k0 = lo[i] < k0 ? lo[i] : k0;
        k1 = hi[i] > k1 ? hi[i] : k1;
    }
    if (kind != FISHER_EXPECTED) k1 = k0 + 1;
    for (int l = 0; l < L; l++) memset(t->fisher_sq[l] + (size_t)s0 * s->dims[l + 1], 0,
                                       (size_t)(s1 - s0) * s->dims[l + 1] * sizeof(float));
    for (int k = k0; k < k1; k++) {
        for (int i = s0; i < s1; i++) {
            const float *p = a->prob + (size_t)i * C;
            float *d = a->delta[L - 1] + (size_t)i * C;
            int y = k;
            if (kind == FISHER_EMPIRICAL) {
                y = t->row_y[i];
            } else if (kind == FISHER_SAMPLED) {
                /* inverse-CDF draw of y ~ p(.|x), keyed by the sample's index in the dataset */
                float u = rng_uniform(t->cfg->seed, RNG_FISHER_LABEL, (uint32_t)task, 0,
                                      (uint64_t)key[i]);
                float cum = 0.0f;
                for (y = lo[i]; y < hi[i] - 1; y++)
                    if (u < (cum += p[y])) break;
            }
            for (int j = 0; j < C; j++) d[j] = 0.0f;
            if (y < lo[i] || y >= hi[i]) continue; /* expected: not one of this row's classes */
            for (int j = lo[i]; j < hi[i]; j++) d[j] = p[j] - (j == y ? 1.0f : 0.0f);
        }
        model_backward_deltas(a, s, t->params, s0, s1, 0.0f, trainer_calls(t));
        for (int l = 0; l < L; l++) {
            int w = s->dims[l + 1];
            for (int i = s0; i < s1; i++) {
                if (kind == FISHER_EXPECTED && (k < lo[i] || k >= hi[i])) continue;
                float wgt = kind == FISHER_EXPECTED ? a->prob[(size_t)i * C + k] : 1.0f;
                const float *d = a->delta[l] + (size_t)i * w;
                float *q = t->fisher_sq[l] + (size_t)i * w;
                for (int j = 0; j < w; j++) q[j] += wgt * d[j] * d[j];
            }
        }
    }
}

EwcStatus trainer_fisher(Trainer *t, int task, FisherKind kind, int n, float *fisher, int *used) {
    const ModelShape *s = &t->shape;
    const Config *c = t->cfg;
    Activations *a = &t->acts;
    const TaskSet *ts = &t->tasks;
    int N = trainer_task_samples(t, task);
    int exact = t->reduce == REDUCE_EXACT, fixed = t->reduce == REDUCE_FIXED;
    if (n <= 0 || n > N) n = N;
    /* which samples: a fixed random subset (all of them when n = N), in chunks of --batch;
     * KEY holds positions in the task's sample list (--joint: joint indices), IDX the training
     * set indices, RTASK (--joint) the task of each */
    int *idx = malloc((size_t)N * sizeof(int)), *key = malloc((size_t)N * sizeof(int));
    int *rtask = ts->joint ? malloc((size_t)N * sizeof(int)) : NULL;
    if (!idx || !key || (ts->joint && !rtask)) {
        free(idx);
        free(key);
        free(rtask);
        ewc_error_set("out of memory for the Fisher's sample order");
        return EWC_ENOMEM;
    }
    rng_permutation(key, N, c->seed, RNG_FISHER_ORDER, (uint32_t)task, 0);
    for (int i = 0; i < N; i++) {
        if (ts->joint) tasks_joint_sample(ts, key[i], &rtask[i], &idx[i]);
        else idx[i] = ts->train_idx ? ts->train_idx[task][key[i]] : key[i];
    }
    /* the sampled labels stay keyed by the training-set index (as before split tasks existed),
     * except --joint, where one image is a sample of several tasks */
    if (!ts->joint) memcpy(key, idx, (size_t)N * sizeof(int));
    memset(fisher, 0, s->n_params * sizeof(float));
    EwcStatus st = EWC_OK;
    for (int first = 0; first < n; first += c->batch) {
        int m = n - first < c->batch ? n - first : c->batch, s0, s1;
        dist_shard(&t->dist, m, t->dist.rank, &s0, &s1);
        if (fixed) fixsum_rows(&t->fix, m, &s0, &s1); /* this rank's micro-batches */
        const int *rt = rtask ? rtask + first : NULL;
        fill_rows(t, a, &t->data->train, task, idx + first, rt, 0, exact ? 0 : s0,
                  exact ? m : s1);
        fill_labels(t, &t->data->train, task, idx + first, rt, 0, s0, s1, task);
        model_forward(a, s, t->params, s0, s1, NULL, trainer_calls(t));
        fisher_deltas(t, a, kind, task, key + first, s0, s1);
        if ((st = reduce_batch(t, a, t->fisher_sq, fisher, m, s0, s1, 1))) goto done;
    }
    st = trainer_reduce_slab(t, fisher);
    if (st) goto done;
    float inv = 1.0f / (float)n;
    for (size_t i = 0; i < s->n_params; i++) fisher[i] *= inv;
    *used = n;
done:
    free(idx);
    free(key);
    free(rtask);
    return st;
}

void trainer_chunk_rows(const Trainer *t, int n, int *s0, int *s1) {
    dist_shard(&t->dist, n, t->dist.rank, s0, s1);
    if (t->reduce == REDUCE_FIXED) fixsum_rows(&t->fix, n, s0, s1);
}

const ModelCalls *trainer_calls(const Trainer *t) {
    return t->reduce == REDUCE_FIXED ? &t->fix.calls : NULL;
}

EwcStatus trainer_reduce_rows(Trainer *t, Activations *a, float **sq, float *slab, int n, int s0,
                              int s1) {
    if (t->reduce == REDUCE_FIXED) /* no losses to sum here */
        return fixsum_add(&t->fix, &t->dist, &t->shape, a, sq, n, 0, t->in_sq, NULL);
    return reduce_batch(t, a, sq, slab, n, s0, s1, 0);
}

EwcStatus trainer_reduce_slab(Trainer *t, float *slab) {
    return t->reduce == REDUCE_FIXED ? fixsum_finish(&t->fix, &t->dist, slab)
           : t->reduce == REDUCE_EXACT ? dist_allgather_slab(&t->dist, slab)
                                       : dist_allreduce_sum(&t->dist, slab, t->shape.n_params);
}
