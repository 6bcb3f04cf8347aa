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

#define OVERLAP_MAX_LAYERS 64

/* Per-layer overlaps: F1 and F2 hold LAYERS consecutive segments of LEN[l] floats each (layer l's
 * [W | b]); OUT[l] = overlap_fisher of segment l, i.e. each layer's Fisher normalised within it. */
void overlap_per_layer(const float *f1, const float *f2, const size_t *len, int layers,
                       double *out);

/* Read every task's Fisher from the checkpoint at PATH and print to OUT the long CSV
 * task_a,task_b,layer,overlap for every pair a < b: layer = 1..L (layer 1 = input -> first hidden,
 * L = the output layer, each normalised within the layer), then layer = "all" (the whole network,
 * as in overlap_print). Needs at least 2 finished tasks. Errors name the file. Rank 0 only. */
EwcStatus overlap_print_layers(const char *path, FILE *out);

#endif
