/* A fully connected ReLU network (MLP): the layout of its parameters in one float slab,
 * initialisation, and forward/backward over a batch of samples.
 *
 * Layer l maps dims[l] inputs to dims[l+1] outputs. Its parameters are ONE row-major matrix
 * [W | b] of shape (out, in + 1): row i holds W[i][0..in-1] followed by b[i], so W is (out, in)
 * with a row stride of in + 1, and h = W x + b is the single product [W | b] [x; 1].
 * Activations therefore carry a trailing 1 (shape (n, in + 1)), and the weight gradient
 * d[W | b] = delta^T [x | 1] includes the bias gradient in its last column.
 * Layers follow each other in the slab, so the whole slab is a list of "rows"; the exact
 * data-parallel reduction hands each rank a contiguous range of rows (see dist.h).
 * Gradients, momentum, anchors and Fishers use this same layout. */
#ifndef EWC_MODEL_H
#define EWC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ewc/error.h"

#define MODEL_MAX_LAYERS 17 /* CONFIG_MAX_HIDDEN hidden layers + the output layer */

typedef struct {
    int n_layers;                      /* L linear layers */
    int dims[MODEL_MAX_LAYERS + 1];    /* dims[0] = inputs, dims[L] = classes */
    size_t offset[MODEL_MAX_LAYERS + 1]; /* layer l's [W|b] at slab + offset[l]; offset[L] = n_params */
    int row0[MODEL_MAX_LAYERS + 1];    /* global index of layer l's first row; row0[L] = n_rows */
    size_t n_params;
    int n_rows;                        /* sum of dims[1..L] */
} ModelShape;

/* Shape of an MLP with N_HIDDEN hidden layers of widths HIDDEN. EWC_EINVAL if a width is < 1 or
 * the slab would not fit in memory-addressable sizes. */
EwcStatus model_shape_init(ModelShape *s, int inputs, const int *hidden, int n_hidden, int classes);

/* Offset in the slab of the first parameter of global row R (row R of layer l, l found by row0). */
size_t model_row_offset(const ModelShape *s, int row);

/* Initial parameters (--init; the order of its names in config.c):
 *   MODEL_INIT_HE     He-uniform, W ~ U(-sqrt(6/in), sqrt(6/in)), b = 0;
 *   MODEL_INIT_TORCH  PyTorch's nn.Linear default, W and b ~ U(-1/sqrt(in), 1/sqrt(in)).
 * Every value is drawn from (seed, RNG_INIT, layer, element index): identical on every rank.
 * PARAMS: (n_params). */
typedef enum { MODEL_INIT_HE, MODEL_INIT_TORCH } ModelInit;
void model_init_params(float *params, const ModelShape *s, uint64_t seed, ModelInit init);

/* Per-batch work space for a rank's shard of N samples (activations, masks, deltas) and, for
 * the exact reduction, the gathered full batch. Owned by the trainer; see model.c. */
typedef struct {
    int cap;            /* samples the buffers hold */
    float *act[MODEL_MAX_LAYERS];   /* act[l]: (cap, dims[l] + 1) input of layer l, last column 1 */
    float *delta[MODEL_MAX_LAYERS]; /* delta[l]: (cap, dims[l+1]) dLoss/d(pre-activation of layer l) */
    float *logits;      /* (cap, classes) */
    float *prob;        /* (cap, classes) softmax */
    float *loss;        /* (cap) per-sample cross-entropy */
} Activations;

/* Buffers for CAP samples; the trailing-1 column of every act[l] is set here, once. */
EwcStatus model_acts_alloc(Activations *a, const ModelShape *s, int cap);
void model_acts_free(Activations *a);

/* Hidden-layer dropout for one batch: unit j of buffer row i is keyed by (seed, task, epoch,
 * position pos0 + i in the epoch's sample order), so masks do not depend on the rank. */
typedef struct {
    float p;          /* drop probability on hidden activations, 0 = off */
    uint64_t seed;
    uint32_t task, epoch;
    uint64_t pos0;
} Dropout;

/* How the forward and input-gradient products of a range of rows are cut into SGEMM calls:
 * layer l's in calls of rows[l] rows counted from the range's first row (the last call may be
 * shorter), or in one call where rows[l] is 0. A NULL ModelCalls is one call per layer. The
 * fixed-point reduction needs one call per micro-batch in the layers where a longer call
 * could round differently (fixsum.h). */
typedef struct {
    int rows[MODEL_MAX_LAYERS];
} ModelCalls;

/* Forward rows [i0, i1) of the batch in A (act[0] rows already filled) up to the logits.
 * DROP may be NULL (evaluation); CALLS may be NULL (one call per layer). */
void model_forward(Activations *a, const ModelShape *s, const float *params, int i0, int i1,
                   const Dropout *drop, const ModelCalls *calls);

/* Given delta[L-1] for rows [i0, i1), propagate deltas down to delta[0] (P: hidden dropout;
 * CALLS as for model_forward). */
void model_backward_deltas(Activations *a, const ModelShape *s, const float *params, int i0,
                           int i1, float p, const ModelCalls *calls);

/* grad rows [row_begin, row_end) (global row numbering) += the sum over batch rows [i0, i1)
 * of the per-sample gradients, from A's activations and deltas. */
void model_backward_params(float *grad, const Activations *a, const ModelShape *s, int i0,
                           int i1, int row_begin, int row_end);

#endif
