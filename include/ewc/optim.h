/* SGD with optional momentum and the penalty's gradient fused into one pass over the slab. */
#ifndef EWC_OPTIM_H
#define EWC_OPTIM_H

#include <stddef.h>

#include "ewc/config.h"
#include "ewc/penalty.h"

/* One update of THETA (n) from the data gradient GRAD (n):
 *   explicit:  g = grad + lambda (A theta - B);  v = mu v + g;  theta -= lr v
 *   implicit:  v = mu v + grad;  theta = (theta - lr v + lr lambda B) / (1 + lr lambda A)
 *              (the exact proximal step of the quadratic: stable for any lambda)
 * MOM (n) is the momentum buffer, NULL when mu = 0. PEN may be inactive (plain SGD). */
void optim_step(float *theta, const float *grad, float *mom, const Penalty *pen, float lr, float mu,
                PenaltyStep mode);

/* The same step, and when SI_W (n) is not NULL, in the same pass, Synaptic Intelligence's path
 * integral (si.h): si_w -= grad * (theta_new - theta_old) per parameter, with GRAD the data
 * gradient (not the penalty's) and the update actually taken (momentum, penalty and all).
 * With SI_W = NULL it is optim_step. */
void optim_step_si(float *theta, const float *grad, float *mom, const Penalty *pen, float lr,
                   float mu, PenaltyStep mode, float *si_w);

#endif
