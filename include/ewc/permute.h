/* The pixel permutation of each task: a full random permutation (the classic permuted MNIST) or,
 * with --permute-fraction F < 1, a random rearrangement of a random subset of the pixels only. */
#ifndef EWC_PERMUTE_H
#define EWC_PERMUTE_H

#include <stdint.h>

#include "ewc/error.h"

/* Number of pixels a fraction F of DIM selects: round(F * DIM), halves away from zero. */
int permute_subset_size(int dim, double fraction);

/* Fill PERM (dim) with task TASK's permutation (x'[i] = x[perm[i]]), a pure function of
 * (seed, task, fraction, dim); every task, task 0 included, gets its own.
 * - FRACTION == 1: rng_permutation(RNG_TASK_PERM, a = task), a uniform permutation of all pixels
 *   (bit-identical to the runs made before --permute-fraction existed; it leaves on average one
 *   pixel in place).
 * - FRACTION in [0, 1): m = permute_subset_size(dim, fraction) positions S are drawn uniformly
 *   (the first m entries of rng_permutation(RNG_PERM_SUBSET, a = task, b = 0)), and the pixels of
 *   S are rearranged by a uniformly random derangement of S (rng_permutation(RNG_PERM_SUBSET,
 *   a = task, b = 1 + attempt), rejected until it has no fixed point). So exactly m pixels move
 *   when m >= 2, and none when m <= 1 (one pixel cannot move alone); the others stay in place.
 * Errors: EWC_EINVAL for dim < 1 or a fraction outside [0, 1]; EWC_ENOMEM. */
EwcStatus permute_task(int *perm, int dim, double fraction, uint64_t seed, int task);

#endif
