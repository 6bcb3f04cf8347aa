/* The fused optimizer step: one loop over the parameter slab, specialised per case so the
 * common ones (plain SGD, EWC without momentum) stay simple vectorisable loops. */
#include "ewc/optim.h"

/* The penalised loops convert to float64 per element and are compute-bound at SSE2; an AVX2
 * clone is chosen at load time where the CPU has it. ISO C mode keeps FMA contraction off, so
 * both clones round identically and results do not depend on the CPU. */
#if defined(__x86_64__) && defined(__GNUC__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

VECTOR_CLONES static void sgd_plain(float *restrict th, const float *restrict g, size_t n, float lr) {
    for (size_t i = 0; i < n; i++) th[i] -= lr * g[i];
}

VECTOR_CLONES static void sgd_momentum(float *restrict th, const float *restrict g, float *restrict v, size_t n,
                         float lr, float mu) {
    for (size_t i = 0; i < n; i++) {
        v[i] = mu * v[i] + g[i];
        th[i] -= lr * v[i];
    }
}

VECTOR_CLONES static void penalised_explicit(float *restrict th, const float *restrict g, float *restrict v,
                               const float *restrict a, const double *restrict b, size_t n,
                               float lr, float mu, double lambda) {
    if (!v) {
        for (size_t i = 0; i < n; i++)
            th[i] -= lr * (g[i] + (float)(lambda * ((double)a[i] * th[i] - b[i])));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = mu * v[i] + g[i] + (float)(lambda * ((double)a[i] * th[i] - b[i]));
        th[i] -= lr * v[i];
    }
}

VECTOR_CLONES static void penalised_implicit(float *restrict th, const float *restrict g, float *restrict v,
                               const float *restrict a, const double *restrict b, size_t n,
                               float lr, float mu, double lambda) {
    double k = (double)lr * lambda;
    for (size_t i = 0; i < n; i++) {
        float step = g[i];
        if (v) step = v[i] = mu * v[i] + g[i];
        th[i] = (float)(((double)th[i] - (double)lr * step + k * b[i]) / (1.0 + k * a[i]));
    }
}

void optim_step(float *theta, const float *grad, float *mom, const Penalty *pen, float lr, float mu,
                PenaltyStep mode) {
    size_t n = pen->n;
    if (!penalty_active(pen) || pen->lambda == 0.0) {
        if (mom)
            sgd_momentum(theta, grad, mom, n, lr, mu);
        else
            sgd_plain(theta, grad, n, lr);
    } else if (mode == PENALTY_IMPLICIT) {
        penalised_implicit(theta, grad, mom, pen->a, pen->b, n, lr, mu, pen->lambda);
    } else {
        penalised_explicit(theta, grad, mom, pen->a, pen->b, n, lr, mu, pen->lambda);
    }
}
