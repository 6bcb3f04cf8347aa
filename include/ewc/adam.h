/* adam.h: the Adam optimizer (--optimizer adam): its state (first and second moments, step
 * count) and one fused update of the parameter slab, with the penalty combined as in optim.h. */
#ifndef EWC_ADAM_H
#define EWC_ADAM_H

#include <stddef.h>

#include "ewc/error.h"
#include "ewc/penalty.h"

typedef struct {
    size_t n;                  /* parameters */
    double beta1, beta2, eps;  /* --adam-beta1, --adam-beta2, --adam-eps */
    float *m, *v;              /* (n) first and second moments, slab layout of model.h */
    long long t;               /* steps since the last reset (for the bias correction) */
} Adam;

/* Allocate zeroed moments for N parameters; BETA1, BETA2 in [0, 1), EPS > 0 (checked by
 * config.c). Not collective. */
EwcStatus adam_init(Adam *a, size_t n, double beta1, double beta2, double eps);
void adam_free(Adam *a);

/* Zero the moments and the step count: the state of a freshly created optimizer (the trainer
 * does this at the start of every task). */
void adam_reset(Adam *a);

/* One update of THETA (n) from the data gradient GRAD (n), step size LR; t += 1 first, then per i
 *   g = grad (+ lambda (A theta - B) with an explicit penalty)
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   mhat = m / (1 - b1^t);  vhat = v / (1 - b2^t);  s = lr / (sqrt(vhat) + eps)
 *   no penalty or explicit:  theta -= s mhat
 *   implicit:  theta = (theta - s mhat + s lambda B) / (1 + s lambda A)   (float64)
 * (the exact proximal step of the quadratic under the diagonal metric 1/s: stable for any
 * lambda; with s = lr and mhat = grad it is optim.h's implicit step). Float32 otherwise, with
 * 1 - b^t computed in float64 once per step. PEN may be inactive. */
void adam_step(Adam *a, float *theta, const float *grad, const Penalty *pen, float lr,
               PenaltyStep mode);

/* The same step, and when SI_W (n) is not NULL, in the same pass, SI's path integral (si.h):
 * si_w -= grad * (theta_new - theta_old) with GRAD the data gradient. */
void adam_step_si(Adam *a, float *theta, const float *grad, const Penalty *pen, float lr,
                  PenaltyStep mode, float *si_w);

#endif
