/* Task permutations: full (rng_permutation of every pixel) or partial (a random derangement of a
 * random subset of round(F * dim) pixels), as documented in include/ewc/permute.h. */
#include "ewc/permute.h"

#include <math.h>
#include <stdlib.h>

#include "ewc/rng.h"

int permute_subset_size(int dim, double fraction) {
    return (int)lround(fraction * (double)dim);
}

static int has_fixed_point(const int *p, int n) {
    for (int i = 0; i < n; i++)
        if (p[i] == i) return 1;
    return 0;
}

EwcStatus permute_task(int *perm, int dim, double fraction, uint64_t seed, int task) {
    if (dim < 1 || !(fraction >= 0.0 && fraction <= 1.0)) {
        ewc_error_set("permute_task: bad arguments (dim %d, fraction %g)", dim, fraction);
        return EWC_EINVAL;
    }
    if (fraction == 1.0) {
        rng_permutation(perm, dim, seed, RNG_TASK_PERM, (uint32_t)task, 0);
        return EWC_OK;
    }
    int m = permute_subset_size(dim, fraction);
    for (int i = 0; i < dim; i++) perm[i] = i;
    if (m < 2) return EWC_OK;
    int *subset = malloc((size_t)dim * sizeof(int)), *sigma = malloc((size_t)m * sizeof(int));
    if (!subset || !sigma) {
        free(subset);
        free(sigma);
        ewc_error_set("out of memory for a permutation of %d pixels", dim);
        return EWC_ENOMEM;
    }
    /* the first m entries of a uniform permutation are a uniform m-subset (in random order) */
    rng_permutation(subset, dim, seed, RNG_PERM_SUBSET, (uint32_t)task, 0);
    /* a uniform derangement by rejection: each attempt succeeds with probability about 1/e */
    uint32_t attempt = 1;
    do rng_permutation(sigma, m, seed, RNG_PERM_SUBSET, (uint32_t)task, attempt++);
    while (has_fixed_point(sigma, m));
    for (int i = 0; i < m; i++) perm[subset[i]] = subset[sigma[i]];
    free(subset);
    free(sigma);
    return EWC_OK;
}
