/* The held-out validation split: draw the subset from the seed, copy it out of the training
 * split, and compact the remaining training samples in their original order. */
#include "ewc/validation.h"

#include <stdlib.h>
#include <string.h>

#include "ewc/rng.h"

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

EwcStatus validation_indices(int *out, int n, int total, uint64_t seed) {
    if (n <= 0) return EWC_OK;
    int *perm = malloc((size_t)total * sizeof *perm);
    if (!perm) {
        ewc_error_set("out of memory for the --validation split of %d samples", n);
        return EWC_ENOMEM;
    }
    rng_permutation(perm, total, seed, RNG_VALIDATION_SPLIT, 0, 0);
    memcpy(out, perm, (size_t)n * sizeof *out);
    free(perm);
    qsort(out, (size_t)n, sizeof *out, cmp_int);
    return EWC_OK;
}

EwcStatus validation_split(Dataset *d, int n, uint64_t seed) {
    Split *tr = &d->train, *va = &d->val;
    if (n == 0) return EWC_OK;
    if (n < 0 || n >= tr->n) {
        ewc_error_set("--validation %d: must be less than the %d training samples", n, tr->n);
        return EWC_EINVAL;
    }
    EwcStatus st = EWC_ENOMEM;
    size_t dim = (size_t)tr->dim;
    int *idx = malloc((size_t)n * sizeof *idx);
    uint8_t *held = calloc((size_t)tr->n, 1);
    va->x = malloc((size_t)n * dim);
    va->y = malloc((size_t)n);
    if (!idx || !held || !va->x || !va->y) {
        ewc_error_set("out of memory for the --validation split of %d samples", n);
        goto fail;
    }
    if ((st = validation_indices(idx, n, tr->n, seed))) goto fail;
    va->n = n;
    va->dim = tr->dim;
    for (int i = 0; i < n; i++) {
        memcpy(va->x + (size_t)i * dim, tr->x + (size_t)idx[i] * dim, dim);
        va->y[i] = tr->y[idx[i]];
        held[idx[i]] = 1;
    }
    /* compact the rest in place: the destination never passes the source */
    int m = 0;
    for (int i = 0; i < tr->n; i++) {
        if (held[i]) continue;
        if (m != i) {
            memcpy(tr->x + (size_t)m * dim, tr->x + (size_t)i * dim, dim);
            tr->y[m] = tr->y[i];
        }
        m++;
    }
    tr->n = m;
    free(idx);
    free(held);
    return EWC_OK;
fail:
    free(idx);
    free(held);
    free(va->x);
    free(va->y);
    memset(va, 0, sizeof *va);
    return st;
}
