/* The MLP: parameter slab layout, He initialisation, activation buffers, and the forward and
 * backward passes over a range of batch rows, as chains of the layer kernels. */
#include "ewc/model.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/layer.h"
#include "ewc/rng.h"

EwcStatus model_shape_init(ModelShape *s, int inputs, const int *hidden, int n_hidden,
                           int classes) {
    memset(s, 0, sizeof *s);
    if (n_hidden < 0 || n_hidden + 1 > MODEL_MAX_LAYERS) {
        ewc_error_set("--hidden: at most %d hidden layers", MODEL_MAX_LAYERS - 1);
        return EWC_EINVAL;
    }
    s->n_layers = n_hidden + 1;
    s->dims[0] = inputs;
    for (int l = 0; l < n_hidden; l++) s->dims[l + 1] = hidden[l];
    s->dims[s->n_layers] = classes;
    size_t off = 0;
    int rows = 0;
    for (int l = 0; l < s->n_layers; l++) {
        if (s->dims[l] < 1 || s->dims[l + 1] < 1) {
            ewc_error_set("--hidden: layer widths must be >= 1");
            return EWC_EINVAL;
        }
        s->offset[l] = off;
        s->row0[l] = rows;
        off += (size_t)s->dims[l + 1] * (size_t)(s->dims[l] + 1);
        rows += s->dims[l + 1];
        /* MPI counts and BLAS dimensions are int: keep the whole slab addressable by int */
        if (off > (size_t)INT_MAX) {
            ewc_error_set("--hidden: the network has more than %d parameters", INT_MAX);
            return EWC_EINVAL;
        }
    }
    s->offset[s->n_layers] = off;
    s->row0[s->n_layers] = rows;
    s->n_params = off;
    s->n_rows = rows;
    return EWC_OK;
}

size_t model_row_offset(const ModelShape *s, int row) {
    int l = 0;
    while (l + 1 < s->n_layers && row >= s->row0[l + 1]) l++;
    return s->offset[l] + (size_t)(row - s->row0[l]) * (size_t)(s->dims[l] + 1);
}

void model_init_params(float *params, const ModelShape *s, uint64_t seed, ModelInit init) {
    for (int l = 0; l < s->n_layers; l++) {
        int din = s->dims[l], dout = s->dims[l + 1];
        float bound = (float)(init == MODEL_INIT_TORCH ? 1.0 / sqrt(din) : sqrt(6.0 / din));
        int bias_drawn = init == MODEL_INIT_TORCH;
        float *wb = params + s->offset[l];
        for (int i = 0; i < dout; i++)
            for (int j = 0; j <= din; j++) {
                size_t k = (size_t)i * (din + 1) + j;
                wb[k] = j == din && !bias_drawn
                            ? 0.0f
                            : bound * (2.0f * rng_uniform(seed, RNG_INIT, (uint32_t)l, 0, k) - 1.0f);
            }
    }
}

EwcStatus model_acts_alloc(Activations *a, const ModelShape *s, int cap) {
    memset(a, 0, sizeof *a);
    a->cap = cap;
    int L = s->n_layers, c = s->dims[L];
    for (int l = 0; l < L; l++) {
        int ld = s->dims[l] + 1;
        a->act[l] = malloc((size_t)cap * ld * sizeof(float));
        a->delta[l] = malloc((size_t)cap * s->dims[l + 1] * sizeof(float));
        if (!a->act[l] || !a->delta[l]) goto fail;
        for (int i = 0; i < cap; i++) a->act[l][(size_t)i * ld + ld - 1] = 1.0f;
    }
    a->logits = malloc((size_t)cap * c * sizeof(float));
    a->prob = malloc((size_t)cap * c * sizeof(float));
    a->loss = malloc((size_t)cap * sizeof(float));
    if (!a->logits || !a->prob || !a->loss) goto fail;
    return EWC_OK;
fail:
    model_acts_free(a);
    ewc_error_set("out of memory allocating activations for %d samples", cap);
    return EWC_ENOMEM;
}

void model_acts_free(Activations *a) {
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) {
        free(a->act[l]);
        free(a->delta[l]);
    }
    free(a->logits);
    free(a->prob);
    free(a->loss);
    memset(a, 0, sizeof *a);
}

/* Rows per call of layer L's products over N rows (see ModelCalls). */
static int call_rows(const ModelCalls *calls, int l, int n) {
    return calls && calls->rows[l] > 0 && calls->rows[l] < n ? calls->rows[l] : n;
}

void model_forward(Activations *a, const ModelShape *s, const float *params, int i0, int i1,
                   const Dropout *drop, const ModelCalls *calls) {
    int L = s->n_layers, n = i1 - i0;
    for (int l = 0; l < L; l++) {
        int din = s->dims[l], dout = s->dims[l + 1], step = call_rows(calls, l, n);
        int ldo = l + 1 < L ? dout + 1 : dout;
        float *out = l + 1 < L ? a->act[l + 1] : a->logits;
        for (int b = i0; b < i1; b += step) {
            int k = i1 - b < step ? i1 - b : step;
            linear_forward(out + (size_t)b * ldo, ldo, a->act[l] + (size_t)b * (din + 1),
                           params + s->offset[l], k, din, dout);
        }
        if (l + 1 < L) { /* per element, keyed by the row's position: no call boundaries */
            float p = drop ? drop->p : 0.0f;
            relu_dropout_forward(out + (size_t)i0 * ldo, n, dout, ldo, 1, p,
                                 drop ? drop->seed : 0, drop ? drop->task : 0,
                                 drop ? drop->epoch : 0, drop ? drop->pos0 + (uint64_t)i0 : 0,
                                 l + 1);
        }
    }
}

void model_backward_deltas(Activations *a, const ModelShape *s, const float *params, int i0,
                           int i1, float p, const ModelCalls *calls) {
    int n = i1 - i0;
    for (int l = s->n_layers - 1; l >= 1; l--) {
        int din = s->dims[l], dout = s->dims[l + 1], step = call_rows(calls, l, n);
        for (int b = i0; b < i1; b += step) {
            int k = i1 - b < step ? i1 - b : step;
            linear_backward_input(a->delta[l - 1] + (size_t)b * din,
                                  a->delta[l] + (size_t)b * dout, params + s->offset[l], k, din,
                                  dout);
        }
        relu_dropout_backward(a->delta[l - 1] + (size_t)i0 * din,
                              a->act[l] + (size_t)i0 * (din + 1), n, din, din + 1, p);
    }
}

void model_backward_params(float *grad, const Activations *a, const ModelShape *s, int i0,
                           int i1, int row_begin, int row_end) {
    for (int l = 0; l < s->n_layers; l++) {
        int r0 = row_begin - s->row0[l], r1 = row_end - s->row0[l];
        if (r0 < 0) r0 = 0;
        if (r1 > s->dims[l + 1]) r1 = s->dims[l + 1];
        if (r1 <= r0) continue;
        int din = s->dims[l], dout = s->dims[l + 1];
        linear_backward_params(grad + s->offset[l], a->delta[l] + (size_t)i0 * dout,
                               a->act[l] + (size_t)i0 * (din + 1), i1 - i0, din, dout, r0, r1);
    }
}
