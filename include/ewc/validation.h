/* validation.h: the held-out validation split: a fixed seeded subset of the training samples,
 * moved out of the training split before training, so the training order and the Fisher never
 * see it. The subset is drawn from (seed, RNG_VALIDATION_SPLIT) only: the same images for every
 * task (each evaluated under its task's permutation) and for any rank count. */
#ifndef EWC_VALIDATION_H
#define EWC_VALIDATION_H

#include <stdint.h>

#include "ewc/dataset.h"
#include "ewc/error.h"

/* The original indices of the N held-out samples among the first TOTAL training samples, in
 * increasing order, into OUT (n): the first N entries of the permutation of 0..TOTAL-1 drawn
 * from (SEED, RNG_VALIDATION_SPLIT). Requires 0 <= N <= TOTAL. Pure, not collective;
 * EWC_ENOMEM if the permutation cannot be allocated. */
EwcStatus validation_indices(int *out, int n, int total, uint64_t seed);

/* Move the N held-out samples (validation_indices) of D->train into D->val (allocated here,
 * freed by dataset_free); D->train keeps the other samples in their original order. N = 0
 * leaves D untouched. EWC_EINVAL naming --validation unless N < D->train.n. Not collective
 * (every rank computes the same split). */
EwcStatus validation_split(Dataset *d, int n, uint64_t seed);

#endif
