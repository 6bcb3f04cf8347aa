/* Divergence detection: a training loss that is not finite, or far above what even an untrained
 * network gives, ends the run with one line naming the task and step. Not collective: the loss
 * is identical on every rank, so every rank reaches the same verdict at the same step. */
#ifndef EWC_DIVERGE_H
#define EWC_DIVERGE_H

#include "ewc/error.h"

/* The bound is DIVERGE_FACTOR x ln(classes): ln(C) is the loss of a uniform prediction (an
 * untrained network is close to it), and a healthy run's mean batch data loss stays within a
 * small multiple of it, even on the first steps of a new task or under a strong penalty (the
 * penalty is not part of the checked loss). 100 x ln 10 = 230. */
#define DIVERGE_FACTOR 100.0

/* The loss bound for CLASSES output classes (classes >= 2). */
double diverge_bound(int classes);

/* EWC_ENAN with the one-line message if LOSS (the mean data loss of step STEP of EPOCH of TASK)
 * is not finite or exceeds diverge_bound(CLASSES); EWC_OK otherwise. */
EwcStatus diverge_check(double loss, int classes, int task, int epoch, int step);

#endif
