/* Layer kernels on row-major batches: linear ([W | b] with a trailing-1 input column), ReLU
 * with inverted dropout, and softmax cross-entropy. Backward kernels accumulate where they
 * produce parameter gradients. Shapes: n samples, in/out features. */
#ifndef EWC_LAYER_H
#define EWC_LAYER_H

#include <stdint.h>

/* Flush subnormal floats to zero (FTZ/DAZ) in this thread. Tiny deltas late in training would
 * otherwise take x86's microcode slow path; it is part of the arithmetic, so every program that
 * must reproduce ewc-train's numbers (the trainer's ranks, benchmarks) calls it first. */
void layer_flush_subnormals(void);

/* out (n, ldo) = in (n, din + 1) . wb^T, where wb is (dout, din + 1) and in's last column is 1.
 * Only the first dout columns of out are written. */
void linear_forward(float *out, int ldo, const float *in, const float *wb, int n, int din,
                    int dout);

/* din (n, din) = dout (n, dout) . W, where W is the first din columns of wb (dout, din + 1).
 * Overwrites din (it is a fresh delta, not an accumulation). */
void linear_backward_input(float *din_, const float *dout_, const float *wb, int n, int din,
                           int dout);

/* dwb[rows r0..r1) (r1 - r0, din + 1) += dout[:, r0..r1)^T (n, r1 - r0) . in (n, din + 1).
 * Rows outside [r0, r1) are not touched, so ranks can each compute their own rows. */
void linear_backward_params(float *dwb, const float *dout_, const float *in, int n, int din,
                            int dout, int r0, int r1);

/* Per-sample squared-gradient sums for the Fisher: fwb[rows] += (s[:, rows])^T . (in * in),
 * where s (n, dout) already holds the (weighted) squared deltas. IN2 (n, din + 1) is scratch
 * that receives in * in (its last column stays 1). */
void linear_fisher_params(float *fwb, const float *s, const float *in, float *in2, int n, int din,
                          int dout, int r0, int r1);

/* ReLU in place on h (n, ld) columns 0..d-1, then inverted dropout with drop probability P
 * (keep with probability 1 - P, scale kept units by 1 / (1 - P)). The keep decision for unit j
 * of sample i is drawn from (seed, RNG_DROPOUT, task, epoch, (pos0 + i, layer, j)), so it is
 * the same on every rank. P = 0 disables dropout. RELU = 0 skips the ReLU (input dropout). */
void relu_dropout_forward(float *h, int n, int d, int ld, int relu, float p, uint64_t seed,
                          uint32_t task, uint32_t epoch, uint64_t pos0, int layer);

/* delta (n, d) *= ReLU'(.) / (1 - P) as seen from the post-activation h (n, ld): a unit with
 * h > 0 was active and kept; every other unit gets a zero gradient. */
void relu_dropout_backward(float *delta, const float *h, int n, int d, int ld, float p);

/* Softmax of logits (n, c) into prob, per-sample loss -log p(y) into loss (n), and
 * delta (n, c) = (prob - onehot(y)) * scale. Returns the number of correct argmax predictions. */
int softmax_ce_forward_backward(float *prob, float *loss, float *delta, const float *logits,
                                const uint8_t *y, int n, int c, float scale);

/* Row-wise softmax only (evaluation and Fisher). Returns the number of argmax == y (y may be
 * NULL, then 0). */
int softmax_forward(float *prob, const float *logits, const uint8_t *y, int n, int c);

/* The same over active output units only (tasks.h): row i's softmax, loss and argmax see
 * units [lo[i], hi[i]) of its c logits; prob and delta are 0 outside them. y[i] is the output
 * unit of row i's label (inside its range). With lo = 0, hi = c for every row these compute
 * bit for bit what the two functions above do. */
int softmax_ce_active_forward_backward(float *prob, float *loss, float *delta, const float *logits,
                                       const int *y, const int *lo, const int *hi, int n, int c,
                                       float scale);
int softmax_active_forward(float *prob, const float *logits, const int *y, const int *lo,
                           const int *hi, int n, int c);

#endif
