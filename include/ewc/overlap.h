/* Fisher overlap between tasks (Kirkpatrick et al. 2017, Fig. 2C): each diagonal Fisher is
 * normalised to unit sum, and overlap = 1 - 1/2 sum_i (sqrt(f1_i) - sqrt(f2_i))^2, i.e.
 * 1 - squared Hellinger distance: 1 for identical Fishers, 0 for disjoint supports. */
#ifndef EWC_OVERLAP_H
#define EWC_OVERLAP_H

#include <stddef.h>
#include <stdio.h>

#include "ewc/error.h"

/* Overlap of two diagonal Fishers of N parameters (each normalised here; an all-zero Fisher
 * gives overlap 0). Computed in float64. */
double overlap_fisher(const float *f1, const float *f2, size_t n);

/* Read every task's Fisher from the checkpoint at PATH and print the (tasks x tasks) overlap
 * matrix to OUT as CSV with a header. Errors name the file. */
EwcStatus overlap_print(const char *path, FILE *out);

#endif
