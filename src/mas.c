/* Memory Aware Synapses' importance (mas.h): one forward and one backward pass per sample
 * chunk, absolute values of the deltas and inputs, and the trainer's exact reduction. */
#include "ewc/mas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/rng.h"

/* X (rows, cols) with row stride LD: x = |x|. */
static void abs_rows(float *x, int rows, int cols, int ld) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) x[(size_t)i * ld + j] = fabsf(x[(size_t)i * ld + j]);
}

EwcStatus mas_importance(Trainer *t, int task, int n, float *omega, int *used) {
    const ModelShape *s = &t->shape;
    const TaskSet *ts = &t->tasks;
    Activations *a = &t->acts;
    int L = s->n_layers, C = s->dims[L], N = trainer_task_samples(t, task), B = t->cfg->batch;
    int exact = t->reduce == REDUCE_EXACT, lo, hi;
    tasks_active(ts, task, task, &lo, &hi); /* f(x): the task's outputs (its head, tasks.h) */
    if (n <= 0 || n > N) n = N;
    int *idx = malloc((size_t)(N ? N : 1) * sizeof(int));
    if (!idx) {
        ewc_error_set("out of memory for the MAS importance's sample order");
        return EWC_ENOMEM;
    }
    /* the Fisher's subset: positions in the task's sample list, then training-set indices */
    rng_permutation(idx, N, t->cfg->seed, RNG_FISHER_ORDER, (uint32_t)task, 0);
    if (ts->train_idx)
        for (int i = 0; i < N; i++) idx[i] = ts->train_idx[task][idx[i]];
    memset(omega, 0, s->n_params * sizeof(float));
    EwcStatus st = EWC_OK;
    for (int first = 0; first < n; first += B) {
        int m = n - first < B ? n - first : B, s0, s1;
        trainer_chunk_rows(t, m, &s0, &s1);
        /* exact mode needs every input row for layer 0's products (as trainer_fisher) */
        int f0 = exact ? 0 : s0, f1 = exact ? m : s1;
        trainer_fill_input(t, a, &t->data->train, task, idx + first, 0, f0, f1);
        model_forward(a, s, t->params, s0, s1, NULL, trainer_calls(t));
        /* d ||z||^2 / dz = 2 z on the task's outputs (0 on other heads), then every layer */
        for (int i = s0; i < s1; i++)
            for (int j = 0; j < C; j++)
                a->delta[L - 1][(size_t)i * C + j] =
                    j >= lo && j < hi ? 2.0f * a->logits[(size_t)i * C + j] : 0.0f;
        model_backward_deltas(a, s, t->params, s0, s1, 0.0f, trainer_calls(t));
        /* |delta| and |input| (the forward pass is done with the inputs; inputs after a ReLU
         * are >= 0 already, the pixels too, but the identity does not rely on it) */
        for (int l = 0; l < L; l++) {
            int din = s->dims[l], dout = s->dims[l + 1];
            abs_rows(a->delta[l] + (size_t)s0 * dout, s1 - s0, dout, dout);
            if (l == 0) abs_rows(a->act[0] + (size_t)f0 * (din + 1), f1 - f0, din, din + 1);
            else abs_rows(a->act[l] + (size_t)s0 * (din + 1), s1 - s0, din, din + 1);
        }
        if ((st = trainer_reduce_rows(t, a, a->delta, omega, m, s0, s1))) goto done;
    }
    if ((st = trainer_reduce_slab(t, omega))) goto done;
    float inv = 1.0f / (float)n;
    for (size_t i = 0; i < s->n_params; i++) omega[i] *= inv;
    *used = n;
done:
    free(idx);
    return st;
}
