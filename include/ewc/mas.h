/* mas.h: Memory Aware Synapses (Aljundi et al., ECCV 2018): a parameter's importance is the
 * mean over a task's training samples of |d ||f(x)||_2^2 / d theta|, f(x) the network's output
 * (the logits: the output of the learned function, before any softmax, as in the authors'
 * code), restricted to the task's outputs (tasks.h: its head in the task scenario, the classes
 * seen so far in the class scenario, all outputs in the domain scenario). Per-sample absolute gradients without a per-sample loop: for weight W_l[j][k] the
 * per-sample gradient is delta_sj a_sk, so sum_s |delta_sj a_sk| = (|Delta|^T |A|)[j][k], one
 * GEMM per layer on absolute values (the Fisher's trick with squares, see train.h). */
#ifndef EWC_MAS_H
#define EWC_MAS_H

#include "ewc/error.h"
#include "ewc/train.h"

/* MAS importance of TASK at the current parameters into OMEGA (n_params, slab layout): the
 * mean over N of the task's training samples (0 = all of them; the same fixed random subset as
 * the Fisher's, RNG_FISHER_ORDER) of the absolute per-sample gradient of ||logits||^2. Reduced
 * like the Fisher, so identical on every rank and, with the exact or fixed reduction, the same
 * for any rank count. *USED gets the number of samples. Collective. */
EwcStatus mas_importance(Trainer *t, int task, int n, float *omega, int *used);

#endif
