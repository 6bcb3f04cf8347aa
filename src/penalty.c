/* Running sums that make the EWC / L2 / online-EWC penalty one quadratic (see penalty.h). */
#include "ewc/penalty.h"

#include <stdlib.h>
#include <string.h>

EwcStatus penalty_init(Penalty *p, Method method, double lambda, double gamma, size_t n) {
    memset(p, 0, sizeof *p);
    p->method = method;
    p->lambda = lambda;
    p->gamma = gamma;
    p->n = n;
    if (method == METHOD_SGD) return EWC_OK;
    p->a = calloc(n, sizeof *p->a);
    p->b = calloc(n, sizeof *p->b);
    if (!p->a || !p->b) {
        penalty_free(p);
        ewc_error_set("out of memory for the penalty's running sums (%zu parameters)", n);
        return EWC_ENOMEM;
    }
    return EWC_OK;
}

void penalty_free(Penalty *p) {
    free(p->a);
    free(p->b);
    p->a = NULL;
    p->b = NULL;
}

void penalty_add_task(Penalty *p, const float *fisher, const float *anchor) {
    p->tasks_done++;
    if (p->method == METHOD_SGD) return;
    double c = 0.0;
    if (p->method == METHOD_ONLINE_EWC || p->method == METHOD_SI || p->method == METHOD_MAS) {
        /* one running Fisher, one anchor: B and C are rebuilt from the new anchor. SI and MAS
         * (as their reference code): the importances summed over tasks, the latest anchor, and
         * the papers' penalty c sum_i Omega_i (theta_i - anchor_i)^2, i.e. A gets 2 Omega */
        float g = p->method == METHOD_ONLINE_EWC ? (float)p->gamma : 1.0f;
        float k = p->method == METHOD_ONLINE_EWC ? 1.0f : 2.0f;
        for (size_t i = 0; i < p->n; i++) {
            p->a[i] = g * p->a[i] + k * fisher[i];
            p->b[i] = (double)p->a[i] * anchor[i];
            c += p->b[i] * anchor[i];
        }
        p->c = c;
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        float f = p->method == METHOD_L2 ? 1.0f : fisher[i];
        p->a[i] += f;
        double fb = (double)f * anchor[i];
        p->b[i] += fb;
        c += fb * anchor[i];
    }
    p->c += c;
}

double penalty_value(const Penalty *p, const float *theta) {
    if (!penalty_active(p)) return 0.0;
    double s = 0.0;
    for (size_t i = 0; i < p->n; i++) {
        double th = theta[i];
        s += (double)p->a[i] * th * th - 2.0 * p->b[i] * th;
    }
    return 0.5 * p->lambda * (s + p->c);
}

void penalty_add_gradient(const Penalty *p, const float *theta, float *grad) {
    if (!penalty_active(p)) return;
    for (size_t i = 0; i < p->n; i++)
        grad[i] += (float)(p->lambda * ((double)p->a[i] * theta[i] - p->b[i]));
}

float penalty_max_a(const Penalty *p) {
    float m = 0.0f;
    if (!p->a) return m;
    for (size_t i = 0; i < p->n; i++) m = p->a[i] > m ? p->a[i] : m;
    return m;
}

int penalty_active(const Penalty *p) { return p->method != METHOD_SGD && p->tasks_done > 0; }
