/* The fused optimizer step: one loop over the parameter slab, specialised per case so the
 * common ones (plain SGD, EWC without momentum) stay simple vectorisable loops. */
#include "ewc/optim.h"

/* The penalised loops convert to float64 per element and are compute-bound at SSE2; an AVX2
 * clone is chosen at load time where the CPU has it. ISO C mode keeps FMA contraction off, so
 * both clones round identically and results do not depend on the CPU. */
#if defined(__x86_64__) && defined(__GNUC__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#define INLINE static inline __attribute__((always_inline))
#else
#define VECTOR_CLONES
#define INLINE static inline
#endif

/* The loops below take W, SI's path-integral accumulator (si.h): when it is not NULL each
 * parameter also does w -= grad * (theta_new - theta_old), with the data gradient and the
 * update actually taken. They are inlined into two entry points, one with W = NULL (the
 * branch folds away: the loops of a run without SI are unchanged) and one with W. */
INLINE void sgd_plain(float *restrict th, const float *restrict g, float *restrict w, size_t n,
                      float lr) {
    for (size_t i = 0; i < n; i++) {
        float old = th[i];
        th[i] = old - lr * g[i];
        if (w) w[i] -= g[i] * (th[i] - old);
    }
}

INLINE void sgd_momentum(float *restrict th, const float *restrict g, float *restrict v,
                         float *restrict w, size_t n, float lr, float mu) {
    for (size_t i = 0; i < n; i++) {
        float old = th[i];
        v[i] = mu * v[i] + g[i];
        th[i] = old - lr * v[i];
        if (w) w[i] -= g[i] * (th[i] - old);
    }
}

INLINE void penalised_explicit(float *restrict th, const float *restrict g, float *restrict v,
                               const float *restrict a, const double *restrict b,
                               float *restrict w, size_t n, float lr, float mu, double lambda) {
    if (!v) {
        for (size_t i = 0; i < n; i++) {
            float old = th[i];
            th[i] = old - lr * (g[i] + (float)(lambda * ((double)a[i] * old - b[i])));
            if (w) w[i] -= g[i] * (th[i] - old);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float old = th[i];
        v[i] = mu * v[i] + g[i] + (float)(lambda * ((double)a[i] * old - b[i]));
        th[i] = old - lr * v[i];
        if (w) w[i] -= g[i] * (th[i] - old);
    }
}

INLINE void penalised_implicit(float *restrict th, const float *restrict g, float *restrict v,
                               const float *restrict a, const double *restrict b,
                               float *restrict w, size_t n, float lr, float mu, double lambda) {
    double k = (double)lr * lambda;
    for (size_t i = 0; i < n; i++) {
        float step = g[i], old = th[i];
        if (v) step = v[i] = mu * v[i] + g[i];
        th[i] = (float)(((double)old - (double)lr * step + k * b[i]) / (1.0 + k * a[i]));
        if (w) w[i] -= g[i] * (th[i] - old);
    }
}

INLINE void step(float *theta, const float *grad, float *mom, const Penalty *pen, float lr,
                 float mu, PenaltyStep mode, float *w) {
    size_t n = pen->n;
    if (!penalty_active(pen) || pen->lambda == 0.0) {
        if (mom)
            sgd_momentum(theta, grad, mom, w, n, lr, mu);
        else
            sgd_plain(theta, grad, w, n, lr);
    } else if (mode == PENALTY_IMPLICIT) {
        penalised_implicit(theta, grad, mom, pen->a, pen->b, w, n, lr, mu, pen->lambda);
    } else {
        penalised_explicit(theta, grad, mom, pen->a, pen->b, w, n, lr, mu, pen->lambda);
    }
}

/* (names unique across files: clang 14 gives target_clones resolvers of static functions
 * global symbols) */
VECTOR_CLONES static void optim_update_plain(float *theta, const float *grad, float *mom,
                                             const Penalty *pen, float lr, float mu,
                                             PenaltyStep mode) {
    step(theta, grad, mom, pen, lr, mu, mode, NULL);
}

VECTOR_CLONES static void optim_update_si(float *theta, const float *grad, float *mom,
                                          const Penalty *pen, float lr, float mu,
                                          PenaltyStep mode, float *w) {
    step(theta, grad, mom, pen, lr, mu, mode, w);
}

void optim_step(float *theta, const float *grad, float *mom, const Penalty *pen, float lr, float mu,
                PenaltyStep mode) {
    optim_update_plain(theta, grad, mom, pen, lr, mu, mode);
}

void optim_step_si(float *theta, const float *grad, float *mom, const Penalty *pen, float lr,
                   float mu, PenaltyStep mode, float *si_w) {
    if (si_w)
        optim_update_si(theta, grad, mom, pen, lr, mu, mode, si_w);
    else
        optim_update_plain(theta, grad, mom, pen, lr, mu, mode);
}
