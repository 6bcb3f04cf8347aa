/* The trainer's collective operations: one data-parallel SGD step, evaluation, and the diagonal
 * Fisher, all built on the same shard / gather / own-rows pattern (see dist.h). */
#include "ewc/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/layer.h"
#include "ewc/optim.h"
#include "ewc/permute.h"
#include "ewc/rng.h"
#include "ewc/tile.h"

static void *alloc_floats(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

EwcStatus trainer_init(Trainer *t, const Config *cfg, const Dataset *data, MPI_Comm comm) {
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    t->data = data;
    t->dim = data->train.dim;
    t->classes = data->n_classes;
    EwcStatus st = model_shape_init(&t->shape, t->dim, cfg->hidden, cfg->n_hidden, t->classes);
    if (st) return st;
    /* the exact reduction splits products only on the BLAS tile grid (tile.h) */
    int quantum = 1;
    if (cfg->reduce == REDUCE_EXACT) {
        quantum = tile_probe_quantum(&t->shape, cfg->batch);
        if (quantum == 0) quantum = cfg->batch; /* no exact split: whole batches per rank */
        /* ranks may differ only on heterogeneous nodes; the largest quantum is then the safest */
        if (MPI_Allreduce(MPI_IN_PLACE, &quantum, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS) {
            ewc_error_set("MPI_Allreduce of the BLAS row quantum failed");
            return EWC_EMPI;
        }
    }
    if ((st = dist_init(&t->dist, comm, &t->shape, quantum))) return st;
    size_t np = t->shape.n_params;
    int L = t->shape.n_layers, maxdim = 0, T = cfg->tasks;
    for (int l = 0; l < L; l++) maxdim = t->shape.dims[l] > maxdim ? t->shape.dims[l] : maxdim;

    t->params = alloc_floats(np);
    t->grad = alloc_floats(np);
    if (cfg->momentum > 0) t->mom = calloc(np, sizeof(float));
    t->perm = calloc((size_t)T, sizeof *t->perm);
    t->ybuf = malloc((size_t)cfg->batch);
    t->order = malloc((size_t)data->train.n * sizeof(int));
    t->train_x = malloc((size_t)data->train.n * t->dim); /* optional: NULL means gather */
    t->train_x_task = -1;
    t->in_sq = alloc_floats((size_t)cfg->batch * (maxdim + 1));
    t->initial_acc = calloc((size_t)T, sizeof(double));
    t->acc = calloc((size_t)T * T, sizeof(double));
    if (cfg->validation > 0 && !(t->val_acc = calloc((size_t)T * T, sizeof(double)))) goto nomem;
    if ((st = earlystop_init(&t->es, cfg->patience, np, T))) goto fail;
    if (!t->params || !t->grad || (cfg->momentum > 0 && !t->mom) || !t->perm || !t->ybuf ||
        !t->order || !t->in_sq || !t->initial_acc || !t->acc)
        goto nomem;
    for (int l = 0; l < L; l++)
        if (!(t->fisher_sq[l] = alloc_floats((size_t)cfg->batch * t->shape.dims[l + 1])))
            goto nomem;
    for (int k = 0; k < T; k++) {
        if (!(t->perm[k] = malloc((size_t)t->dim * sizeof(int)))) goto nomem;
        if ((st = permute_task(t->perm[k], t->dim, cfg->permute_fraction, cfg->seed, k))) goto fail;
    }
    if ((st = model_acts_alloc(&t->acts, &t->shape, cfg->batch))) goto fail;
    if ((st = model_acts_alloc(&t->eval, &t->shape, TRAIN_EVAL_CHUNK))) goto fail;
    if ((st = penalty_init(&t->pen, cfg->method, cfg->lambda, cfg->gamma, np))) goto fail;
    if (cfg->optimizer == OPTIMIZER_ADAM &&
        (st = adam_init(&t->adam, np, cfg->adam_beta1, cfg->adam_beta2, cfg->adam_eps)))
        goto fail;
    if (cfg->method == METHOD_SI && (st = si_init(&t->si, np, cfg->si_xi))) goto fail;
    model_init_params(t->params, &t->shape, cfg->seed);
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
    if (t->perm)
        for (int k = 0; k < t->cfg->tasks; k++) free(t->perm[k]);
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) free(t->fisher_sq[l]);
    free(t->perm);
    free(t->params);
    free(t->grad);
    free(t->mom);
    free(t->ybuf);
    free(t->order);
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
    memset(t, 0, sizeof *t);
}

/* X (n, d) under permutation PERM into OUT (n, d): out[i][k] = x[i][perm[k]]. */
static void permute_images(uint8_t *out, const uint8_t *x, const int *perm, size_t n, int d) {
    for (size_t i = 0; i < n; i++, out += d, x += d)
        for (int k = 0; k < d; k++) out[k] = x[perm[k]];
}

void trainer_begin_epoch(Trainer *t, int task, int epoch) {
    if (t->train_x && t->train_x_task != task) {
        permute_images(t->train_x, t->data->train.x, t->perm[task], (size_t)t->data->train.n,
                       t->dim);
        t->train_x_task = task;
    }
    rng_permutation(t->order, t->data->train.n, t->cfg->seed, RNG_EPOCH_ORDER, (uint32_t)task,
                    (uint32_t)epoch);
}

int trainer_steps_per_epoch(const Trainer *t) {
    return (t->data->train.n + t->cfg->batch - 1) / t->cfg->batch;
}

#define FILL_AHEAD 4 /* rows prefetched ahead when filling a batch */

/* Pixels in [0, 255] as floats in [0, 1]; restrict lets the compiler vectorise across the byte
 * and float pointers. */
static void pixels_to_unit(float *restrict out, const uint8_t *restrict x, int d) {
    for (int k = 0; k < d; k++) out[k] = (float)x[k] * (1.0f / 255.0f);
}

void trainer_fill_input(const Trainer *t, Activations *a, const Split *split, int task,
                        const int *idx, int first, int r0, int r1) {
    int d = t->dim;
    const int *perm = t->perm[task];
    if (split == &t->data->train && task == t->train_x_task) { /* already permuted: a copy */
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
        float *row = a->act[0] + (size_t)i * (d + 1);
        for (int k = 0; k < d; k++) row[k] = (float)x[perm[k]] * (1.0f / 255.0f);
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
    int L = s->n_layers, exact = t->cfg->reduce == REDUCE_EXACT;
    EwcStatus st;
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
    if (t->cfg->reduce == REDUCE_EXACT) {
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
    int n = t->data->train.n - pos0 < c->batch ? t->data->train.n - pos0 : c->batch;
    const int *idx = t->order + pos0;
    int s0, s1, exact = c->reduce == REDUCE_EXACT;
    dist_shard(&t->dist, n, t->dist.rank, &s0, &s1);
    EwcStatus st;

    /* exact mode needs every row of the input for the weight gradients of layer 0 */
    int f0 = exact ? 0 : s0, f1 = exact ? n : s1;
    trainer_fill_input(t, a, &t->data->train, task, idx, 0, f0, f1);
    if (c->dropout_input > 0)
        relu_dropout_forward(a->act[0] + (size_t)f0 * (t->dim + 1), f1 - f0, t->dim, t->dim + 1,
                             0, (float)c->dropout_input, c->seed, (uint32_t)task, (uint32_t)epoch,
                             (uint64_t)pos0 + (uint64_t)f0, 0);
    for (int i = s0; i < s1; i++) t->ybuf[i] = t->data->train.y[idx[i]];

    Dropout drop = {(float)c->dropout, c->seed, (uint32_t)task, (uint32_t)epoch, (uint64_t)pos0};
    model_forward(a, s, t->params, s0, s1, &drop);
    softmax_ce_forward_backward(a->prob + (size_t)s0 * t->classes, a->loss + s0,
                                a->delta[L - 1] + (size_t)s0 * t->classes,
                                a->logits + (size_t)s0 * t->classes, t->ybuf + s0, s1 - s0,
                                t->classes, 1.0f / (float)n);
    model_backward_deltas(a, s, t->params, s0, s1, (float)c->dropout);

    zero_rows(t->grad, t, exact ? t->dist.row_begin : 0, exact ? t->dist.row_end : s->n_rows);
    if ((st = reduce_batch(t, a, a->delta, t->grad, n, s0, s1, 0))) return st;
    st = exact ? dist_allgather_slab(&t->dist, t->grad)
               : dist_allreduce_sum(&t->dist, t->grad, s->n_params);
    if (st) return st;

    double sum;
    if ((st = batch_loss(t, a->loss, n, s0, s1, &sum))) return st;
    *loss = sum / n;
    if (!isfinite(*loss)) {
        ewc_error_set("training diverged: loss is %g at task %d, epoch %d, step %d (lower --lr"
                      " or --lambda, or use --penalty-step implicit)", *loss, task, epoch, step);
        return EWC_ENAN;
    }
    /* --method si: the path integral is accumulated in the same pass (t->si.w, else NULL) */
    if (c->optimizer == OPTIMIZER_ADAM)
        adam_step_si(&t->adam, t->params, t->grad, &t->pen, (float)c->lr, c->penalty_step,
                     t->si.w);
    else
        optim_step_si(t->params, t->grad, t->mom, &t->pen, (float)c->lr, (float)c->momentum,
                      c->penalty_step, t->si.w);
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
    dist_shard(&t->dist, test->n, t->dist.rank, &s0, &s1);
    long long correct = 0;
    for (int first = s0; first < s1; first += chunk) {
        int n = s1 - first < chunk ? s1 - first : chunk;
        trainer_fill_input(t, a, test, task, NULL, first, 0, n);
        model_forward(a, &t->shape, t->params, 0, n, NULL);
        correct += softmax_forward(a->prob, a->logits, test->y + first, n, t->classes);
    }
    EwcStatus st = t->dist.size > 1 ? dist_allreduce_i64(t->dist.comm, &correct, 1) : EWC_OK;
    if (st) return st;
    *accuracy = test->n ? (double)correct / test->n : 0.0;
    return EWC_OK;
}

/* Per-sample squared deltas SQ[l] (rows s0..s1) for the Fisher kind, from the forward pass
 * already in A. Expected: sum over classes k of p_k * (delta_l for label k)^2, one backward
 * pass per class. */
static void fisher_deltas(Trainer *t, Activations *a, FisherKind kind, int task, const int *idx,
                          int s0, int s1) {
    const ModelShape *s = &t->shape;
    int L = s->n_layers, C = t->classes;
    softmax_forward(a->prob + (size_t)s0 * C, a->logits + (size_t)s0 * C, NULL, s1 - s0, C);
    int n_pass = kind == FISHER_EXPECTED ? C : 1;
    for (int l = 0; l < L; l++) memset(t->fisher_sq[l] + (size_t)s0 * s->dims[l + 1], 0,
                                       (size_t)(s1 - s0) * s->dims[l + 1] * sizeof(float));
    for (int k = 0; k < n_pass; k++) {
        for (int i = s0; i < s1; i++) {
            const float *p = a->prob + (size_t)i * C;
            float *d = a->delta[L - 1] + (size_t)i * C;
            int y = k;
            if (kind == FISHER_EMPIRICAL) {
                y = t->data->train.y[idx[i]];
            } else if (kind == FISHER_SAMPLED) {
                /* inverse-CDF draw of y ~ p(.|x), keyed by the sample's index in the dataset */
                float u = rng_uniform(t->cfg->seed, RNG_FISHER_LABEL, (uint32_t)task, 0,
                                      (uint64_t)idx[i]);
                float cum = 0.0f;
                for (y = 0; y < C - 1; y++)
                    if (u < (cum += p[y])) break;
            }
            for (int j = 0; j < C; j++) d[j] = p[j] - (j == y ? 1.0f : 0.0f);
        }
        model_backward_deltas(a, s, t->params, s0, s1, 0.0f);
        for (int l = 0; l < L; l++) {
            int w = s->dims[l + 1];
            for (int i = s0; i < s1; i++) {
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
    int N = t->data->train.n, exact = c->reduce == REDUCE_EXACT;
    if (n <= 0 || n > N) n = N;
    /* which samples: a fixed random subset (all of them when n = N), in chunks of --batch */
    int *idx = malloc((size_t)N * sizeof(int));
    if (!idx) {
        ewc_error_set("out of memory for the Fisher's sample order");
        return EWC_ENOMEM;
    }
    rng_permutation(idx, N, c->seed, RNG_FISHER_ORDER, (uint32_t)task, 0);
    memset(fisher, 0, s->n_params * sizeof(float));
    EwcStatus st = EWC_OK;
    for (int first = 0; first < n; first += c->batch) {
        int m = n - first < c->batch ? n - first : c->batch, s0, s1;
        dist_shard(&t->dist, m, t->dist.rank, &s0, &s1);
        trainer_fill_input(t, a, &t->data->train, task, idx + first, 0, exact ? 0 : s0,
                           exact ? m : s1);
        model_forward(a, s, t->params, s0, s1, NULL);
        fisher_deltas(t, a, kind, task, idx + first, s0, s1);
        if ((st = reduce_batch(t, a, t->fisher_sq, fisher, m, s0, s1, 1))) goto done;
    }
    st = exact ? dist_allgather_slab(&t->dist, fisher)
               : dist_allreduce_sum(&t->dist, fisher, s->n_params);
    if (st) goto done;
    float inv = 1.0f / (float)n;
    for (size_t i = 0; i < s->n_params; i++) fisher[i] *= inv;
    *used = n;
done:
    free(idx);
    return st;
}

EwcStatus trainer_reduce_rows(Trainer *t, Activations *a, float **sq, float *slab, int n, int s0,
                              int s1) {
    return reduce_batch(t, a, sq, slab, n, s0, s1, 0);
}

EwcStatus trainer_reduce_slab(Trainer *t, float *slab) {
    return t->cfg->reduce == REDUCE_EXACT ? dist_allgather_slab(&t->dist, slab)
                                          : dist_allreduce_sum(&t->dist, slab, t->shape.n_params);
}
