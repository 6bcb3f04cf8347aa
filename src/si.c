/* Synaptic Intelligence's per-task state and importance (si.h); the per-step accumulation is
 * fused into the optimizer's pass (optim.c, adam.c). */
#include "ewc/si.h"

#include <stdlib.h>
#include <string.h>

EwcStatus si_init(Si *s, size_t n, double xi) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->xi = xi;
    s->w = calloc(n ? n : 1, sizeof(float));
    s->start = calloc(n ? n : 1, sizeof(float));
    if (!s->w || !s->start) {
        si_free(s);
        ewc_error_set("out of memory for the SI path integral (%zu parameters)", n);
        return EWC_ENOMEM;
    }
    return EWC_OK;
}

void si_free(Si *s) {
    free(s->w);
    free(s->start);
    memset(s, 0, sizeof *s);
}

void si_begin_task(Si *s, const float *theta) {
    if (!s->w) return;
    memset(s->w, 0, s->n * sizeof(float));
    memcpy(s->start, theta, s->n * sizeof(float));
}

void si_importance(const Si *s, const float *theta, float *omega) {
    for (size_t i = 0; i < s->n; i++) {
        double d = (double)theta[i] - s->start[i];
        double o = s->w[i] / (d * d + s->xi);
        omega[i] = o > 0.0 ? (float)o : 0.0f;
    }
}
