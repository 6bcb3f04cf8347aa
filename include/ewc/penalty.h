/* The continual-learning penalty as ONE quadratic, whatever the number of finished tasks:
 *   sum_t lambda/2 sum_i F_t,i (theta_i - anchor_t,i)^2
 *     = lambda/2 sum_i (A_i theta_i^2 - 2 B_i theta_i + C_i),
 *   A = sum_t F_t,  B = sum_t F_t anchor_t,  C = sum_t F_t anchor_t^2,
 * so memory and step cost do not grow with the number of tasks. F_t = 1 for L2; online EWC
 * keeps one running Fisher F <- gamma F + F_new anchored at the latest solution. SI and MAS
 * keep A = 2 sum_t Omega_t anchored at the latest solution (the papers' and their reference
 * code's penalty lambda sum_i Omega_i (theta_i - anchor_i)^2, without the 1/2 of EWC). */
#ifndef EWC_PENALTY_H
#define EWC_PENALTY_H

#include <stddef.h>

#include "ewc/config.h"
#include "ewc/error.h"

typedef struct {
    Method method;
    double lambda, gamma;
    int tasks_done;
    size_t n;   /* parameters */
    float *a;   /* (n) A: sum of Fishers (ewc), running Fisher (online-ewc), task count (l2) */
    double *b;  /* (n) B: the matching Fisher-weighted anchors, in float64 because A theta - B
                 * cancels near the anchor */
    double c;   /* sum_i C_i, only for the penalty's value */
} Penalty;

/* A, B zero; nothing to pull towards until the first task is added. NULL arrays for sgd. */
EwcStatus penalty_init(Penalty *p, Method method, double lambda, double gamma, size_t n);
void penalty_free(Penalty *p);

/* Fold in a finished task: its Fisher FISHER (n; the SI or MAS importance Omega for si and mas;
 * ignored for l2, may be NULL for sgd) and its solution ANCHOR (n). */
void penalty_add_task(Penalty *p, const float *fisher, const float *anchor);

/* lambda/2 sum_i (A_i theta_i^2 - 2 B_i theta_i + C_i), in float64 (0 before any task). */
double penalty_value(const Penalty *p, const float *theta);

/* GRAD (n) += lambda (A theta - B), the penalty's gradient (for tests and naive paths; the
 * trainer uses the fused update in optim.h). */
void penalty_add_gradient(const Penalty *p, const float *theta, float *grad);

/* Largest A_i (for the lr * lambda * max(F) >= 2 stability warning). */
float penalty_max_a(const Penalty *p);

/* Whether the penalty is active (a method with a penalty and at least one finished task). */
int penalty_active(const Penalty *p);

#endif
