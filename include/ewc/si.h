/* si.h: Synaptic Intelligence (Zenke, Poole & Ganguli 2017): during a task, the per-parameter
 * path integral w = -sum over steps of g * delta (g the data-loss gradient, delta the update
 * taken), accumulated inside the optimizer's step (optim.h, adam.h); at the task's end the
 * importance Omega = max(0, w / ((theta_end - theta_start)^2 + xi)). */
#ifndef EWC_SI_H
#define EWC_SI_H

#include <stddef.h>

#include "ewc/error.h"

typedef struct {
    size_t n;     /* parameters */
    double xi;    /* --si-xi, the damping of the squared total change */
    float *w;     /* (n) path integral of the current task (slab layout of model.h) */
    float *start; /* (n) theta at the current task's start */
} Si;

/* Zeroed state for N parameters; XI > 0. Not collective. */
EwcStatus si_init(Si *s, size_t n, double xi);
void si_free(Si *s);

/* Start a task at THETA (n): w = 0, start = theta. */
void si_begin_task(Si *s, const float *theta);

/* The finished task's importance at THETA (n), its parameters at the end:
 * OMEGA (n) = max(0, w / ((theta - start)^2 + xi)), computed in float64 and rounded once.
 * A negative w (a parameter whose moves raised the loss, e.g. by momentum overshoot or noise)
 * carries no evidence of importance, and would make the penalty push away from the anchor:
 * it is clipped to 0, as Zenke's reference code clips its importance with a ReLU. */
void si_importance(const Si *s, const float *theta, float *omega);

#endif
