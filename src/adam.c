/* Adam: the moments' update, the bias correction and the parameter step fused into one
 * vectorisable pass over the slab, one loop per penalty mode (as in optim.c). */
#include "ewc/adam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* As in optim.c: an AVX2 clone where the CPU has it; without FMA contraction (ISO C mode) and
 * with correctly rounded sqrt and division, both clones give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#define INLINE static inline __attribute__((always_inline))
#else
#define VECTOR_CLONES
#define INLINE static inline
#endif

/* The per-step scalars, each rounded to float32 once. */
typedef struct {
    float b1, b2, c1, c2; /* beta1, beta2, 1 - beta1, 1 - beta2 */
    float bc1, bc2;       /* 1 - beta1^t, 1 - beta2^t (computed in float64) */
    float lr, eps;
} Coef;

/* Update the moments of one parameter from gradient G; returns the bias-corrected first moment
 * and sets *S to the per-coordinate step size lr / (sqrt(vhat) + eps). */
static inline float moments(float *restrict m, float *restrict v, float g, Coef k, float *s) {
    float mi = k.b1 * *m + k.c1 * g;
    float vi = k.b2 * *v + k.c2 * (g * g);
    *m = mi;
    *v = vi;
    *s = k.lr / (sqrtf(vi / k.bc2) + k.eps);
    return mi / k.bc1;
}

/* W is SI's path-integral accumulator (si.h), NULL without SI: as in optim.c, the loops are
 * inlined into one entry point with W = NULL (unchanged loops) and one with W, where each
 * parameter also does w -= grad * (theta_new - theta_old) with the data gradient. */
INLINE void adam_plain(float *restrict th, const float *restrict g, float *restrict m,
                       float *restrict v, float *restrict w, size_t n, Coef k) {
    for (size_t i = 0; i < n; i++) {
        float s, mhat = moments(&m[i], &v[i], g[i], k, &s), old = th[i];
        th[i] = old - s * mhat;
        if (w) w[i] -= g[i] * (th[i] - old);
    }
}

INLINE void adam_explicit(float *restrict th, const float *restrict g, float *restrict m,
                          float *restrict v, const float *restrict a, const double *restrict b,
                          float *restrict w, size_t n, Coef k, double lambda) {
    for (size_t i = 0; i < n; i++) {
        float old = th[i];
        float gi = g[i] + (float)(lambda * ((double)a[i] * old - b[i]));
        float s, mhat = moments(&m[i], &v[i], gi, k, &s);
        th[i] = old - s * mhat;
        if (w) w[i] -= g[i] * (th[i] - old);
    }
}

INLINE void adam_implicit(float *restrict th, const float *restrict g, float *restrict m,
                          float *restrict v, const float *restrict a, const double *restrict b,
                          float *restrict w, size_t n, Coef k, double lambda) {
    for (size_t i = 0; i < n; i++) {
        float s, mhat = moments(&m[i], &v[i], g[i], k, &s), old = th[i];
        double sl = (double)s * lambda;
        th[i] = (float)(((double)old - (double)s * mhat + sl * b[i]) / (1.0 + sl * a[i]));
        if (w) w[i] -= g[i] * (th[i] - old);
    }
}

INLINE void step(Adam *a, float *theta, const float *grad, const Penalty *pen, Coef k,
                 PenaltyStep mode, float *w) {
    if (!penalty_active(pen) || pen->lambda == 0.0)
        adam_plain(theta, grad, a->m, a->v, w, a->n, k);
    else if (mode == PENALTY_IMPLICIT)
        adam_implicit(theta, grad, a->m, a->v, pen->a, pen->b, w, a->n, k, pen->lambda);
    else
        adam_explicit(theta, grad, a->m, a->v, pen->a, pen->b, w, a->n, k, pen->lambda);
}

/* (names unique across files: clang 14 gives target_clones resolvers of static functions
 * global symbols) */
VECTOR_CLONES static void adam_update_plain(Adam *a, float *theta, const float *grad,
                                            const Penalty *pen, Coef k, PenaltyStep mode) {
    step(a, theta, grad, pen, k, mode, NULL);
}

VECTOR_CLONES static void adam_update_si(Adam *a, float *theta, const float *grad,
                                         const Penalty *pen, Coef k, PenaltyStep mode, float *w) {
    step(a, theta, grad, pen, k, mode, w);
}

EwcStatus adam_init(Adam *a, size_t n, double beta1, double beta2, double eps) {
    memset(a, 0, sizeof *a);
    a->n = n;
    a->beta1 = beta1;
    a->beta2 = beta2;
    a->eps = eps;
    a->m = calloc(n ? n : 1, sizeof(float));
    a->v = calloc(n ? n : 1, sizeof(float));
    if (!a->m || !a->v) {
        adam_free(a);
        ewc_error_set("out of memory for the Adam moments (%zu parameters)", n);
        return EWC_ENOMEM;
    }
    return EWC_OK;
}

void adam_free(Adam *a) {
    free(a->m);
    free(a->v);
    memset(a, 0, sizeof *a);
}

void adam_reset(Adam *a) {
    if (!a->m) return;
    memset(a->m, 0, a->n * sizeof(float));
    memset(a->v, 0, a->n * sizeof(float));
    a->t = 0;
}

void adam_step_si(Adam *a, float *theta, const float *grad, const Penalty *pen, float lr,
                  PenaltyStep mode, float *si_w) {
    a->t++;
    Coef k = {(float)a->beta1, (float)a->beta2, (float)(1.0 - a->beta1), (float)(1.0 - a->beta2),
              (float)(1.0 - pow(a->beta1, (double)a->t)), (float)(1.0 - pow(a->beta2, (double)a->t)),
              lr, (float)a->eps};
    if (si_w)
        adam_update_si(a, theta, grad, pen, k, mode, si_w);
    else
        adam_update_plain(a, theta, grad, pen, k, mode);
}

void adam_step(Adam *a, float *theta, const float *grad, const Penalty *pen, float lr,
               PenaltyStep mode) {
    adam_step_si(a, theta, grad, pen, lr, mode, NULL);
}
