/* Counter-based random numbers (Philox4x32-10 from Random123): every draw is a pure function of
 * (seed, purpose, a, b, index), so results never depend on the rank count or call order. */
#ifndef EWC_RNG_H
#define EWC_RNG_H

#include <stdint.h>

/* What a draw is for; part of the key so streams for different purposes never overlap. */
typedef enum {
    RNG_INIT = 1,      /* a = layer, index = parameter index within the layer */
    RNG_TASK_PERM,     /* a = task: the pixel permutation */
    RNG_EPOCH_ORDER,   /* a = task, b = epoch: the order of training samples */
    RNG_DROPOUT,       /* a = task, b = epoch, index = (sample position, layer, unit) */
    RNG_FISHER_LABEL,  /* a = task, index = sample: label drawn from the model (sampled Fisher) */
    RNG_FISHER_ORDER,  /* a = task: which training samples the Fisher averages over */
    RNG_VALIDATION_SPLIT = 7, /* a = b = 0: which training samples are held out (validation.h) */
    RNG_PERM_SUBSET = 8, /* a = task, b = 0: the pixels a partial permutation moves; b = 1 + k:
                           attempt k at rearranging them (permute.h) */
    RNG_CLASS_ORDER = 9 /* a = b = 0: the seeded class order of split tasks (tasks.h) */
} RngPurpose;

/* Four independent 32-bit words for counter (a, b, index) under key (seed, purpose). */
void rng_words(uint32_t out[4], uint64_t seed, RngPurpose purpose, uint32_t a, uint32_t b,
               uint64_t index);

/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float rng_uniform(uint64_t seed, RngPurpose purpose, uint32_t a, uint32_t b, uint64_t index);

/* A uniformly random permutation of 0..n-1 (Fisher-Yates; draw i uses counter index i, with
 * unbiased rejection sampling). */
void rng_permutation(int *perm, int n, uint64_t seed, RngPurpose purpose, uint32_t a, uint32_t b);

#endif
