/* The fixed-point reduction (--reduce fixed): sums of per-micro-batch weight gradients (or
 * Fisher terms) in 64-bit fixed point, so the sum over ranks is integer addition and the result
 * is bit-identical for any rank count, with traffic O(n) per step whatever the batch.
 *
 * A round (one training step, or one --batch chunk of the Fisher's samples) of N samples is cut
 * into M = ceil(N / m) micro-batches of m samples (the last may be shorter); m depends on the
 * configuration only (--micro-batch), never on the rank count. Rank r owns micro-batches
 * [M r / p, M (r + 1) / p) and runs their forward and backward passes with one GEMM call per
 * micro-batch (same shapes on every layout), so each micro-batch's float32 gradient G_j is
 * bitwise the same whichever rank computes it. Then, per layer l (one tensor [W | b]):
 *  1. bound: b_j = max_i sum_k |delta_ki| max_c |x_kc| >= max |G_j| (float64, from the deltas and
 *     inputs, before any GEMM); one MPI_Allreduce(MAX) of the per-layer bounds (max is exact)
 *     gives every rank the same B_l = max_j b_j; a non-finite B_l is EWC_ENAN.
 *  2. exponent: E_l = max(ilogb(B_l) + 2, -149), so 2^E_l >= 2 B_l > |G_j| (the factor 2
 *     covers the GEMM's rounding); headroom h = ceil(log2 M); scale 2^S_l, S_l = 62 - h - E_l.
 *  3. q_j = round-to-nearest-even(G_j 2^S_l) in int64: |q_j| <= 2^(62-h), so the sum of the
 *     M terms (and every partial sum, in any order) is <= 2^62 in magnitude: overflow is
 *     impossible by construction. A term beyond its bound (a float overflow to inf inside a
 *     GEMM, or a faulty BLAS) is counted, the step fails with EWC_ENAN on every rank.
 *  4. the int64 partial sums are added over ranks with a ring reduce-scatter, in place (integer
 *     addition is associative: the result does not depend on the order or the rank count);
 *     each rank converts its slice to float64 (q 2^-S_l), adds it to the round sum, and at the
 *     end one MPI_Allgatherv of float32 slices assembles the result on every rank.
 *
 * Error bound, per element, against the exact sum of the float32 micro-batch gradients G_j:
 *     |fixed - sum_j G_j| <= 2^-24 (1 + 2^-28) |sum_j G_j| + (1 + 2^-23) M 2^(E_l + h - 63)
 * (the last float32 rounding and the int64 to float64 one, plus half a fixed-point unit per
 * micro-batch); relative to the
 * layer's bound 2^E_l the second term is at most 2 M^2 2^-63 (2^-51 for M = 32). Each G_j is
 * itself one SGEMM over m samples, within (m + 2) 2^-24 sum_k |delta_k x_k| of the exact value.
 * The Fisher adds one float64 rounding per round (|round sum| 2^-53) before the float32 one.
 *
 * Bytes received per rank and step (bandwidth-optimal collectives, p ranks, n parameters):
 *     8 (n + 1)(p - 1)/p  (int64 reduce-scatter) + 4 n (p - 1)/p  (float32 all-gather)
 *     + 16 (L + M)(p - 1)/p (bounds and loss sums)  ~= 12 n (p - 1)/p,
 * 1.5x a float32 ring allreduce (8 n (p - 1)/p), independent of the batch. The exact reduction
 * receives (N s + 4 n)(p - 1)/p with s = fixsum_exact_bytes_per_sample(). */
#ifndef EWC_FIXSUM_H
#define EWC_FIXSUM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "ewc/config.h"
#include "ewc/dist.h"
#include "ewc/error.h"
#include "ewc/model.h"

#define FIXSUM_EMIN (-149)       /* the smallest exponent (of the smallest float32 subnormal) */

/* ---- fixed-point arithmetic (not collective) --------------------------------------------- */

/* Headroom h = ceil(log2(TERMS)) (0 for TERMS <= 1): TERMS values of at most 2^(62-h) each sum to
 * at most 2^62. */
int fixsum_headroom(int terms);

/* Exponent E for a bound B >= max |term| (float64, >= 0, finite): 2^E >= 2 B, E >= FIXSUM_EMIN. */
int fixsum_exponent(double bound);

/* ACC[i] += round-half-even(X[i] 2^SHIFT) for N floats (ACC[i] = ... with ASSIGN), where every
 * |X[i] 2^SHIFT| must be <= 2^LIM_BITS. A value beyond it (or NaN/inf) adds 0 instead and is
 * counted; returns the count. Exact integer arithmetic, vectorised. */
long long fixsum_add_floats(int64_t *acc, const float *x, size_t n, int shift, int lim_bits,
                            int assign);

/* The same with one instruction-set variant (0 generic, 1 AVX2, 2 AVX-512), for tests; -1 if the
 * CPU lacks it. fixsum_add_floats uses the best one: all give the same bits. */
long long fixsum_add_floats_isa(int isa, int64_t *acc, const float *x, size_t n, int shift,
                                int lim_bits, int assign);

/* max_i sum_k |d[k][i]| max_c |x[k][c]| over K rows: d (K, DOUT) row stride LDD, x (K, COLS)
 * row stride LDX; with SQUARE, x's values are squared first (the Fisher's inputs). COLSUM is
 * (DOUT) scratch. A bound on every |(d^T x)[i][c]|; NaN/inf inputs give +inf. */
double fixsum_gemm_bound(const float *d, int ldd, const float *x, int ldx, int k, int dout,
                         int cols, int square, double *colsum);

/* ---- the rules (not collective) ---------------------------------------------------------- */

/* The micro-batch --micro-batch 0 picks for a batch of BATCH samples: of 96, 84 and 72
 * (multiples of 12, the row quantum of OpenBLAS's Haswell SGEMM, so that a rank's forward and
 * backward calls merge), the one whose micro-batches split most evenly over 2 and 4 ranks (the
 * largest share of a rank over B / p, worst of p = 2, 4; the larger m on ties: fewer
 * conversions). A function of the batch only: 84 at batch 1000 (12 micro-batches, against 11
 * of 96 with a short last one: 520 rows instead of 500 on one of 2 ranks), 96 at 4096. */
int fixsum_default_micro(int batch);

/* Bytes per sample that --reduce exact all-gathers: the activations of layers 1..L-1, the
 * deltas of every layer and the loss, as float32. */
double fixsum_exact_bytes_per_sample(const ModelShape *s);

/* The reduction --reduce auto picks, from the model and the batch only (never the rank count):
 * REDUCE_FIXED when BATCH * fixsum_exact_bytes_per_sample(S) >= 12 n, i.e. when exact would
 * receive at least 4/3 of fixed's 12 n bytes per step (the margin pays for fixed's int64
 * conversions and smaller GEMMs), else REDUCE_EXACT. Crossovers: batch 890
 * for 784-400-400-10, 1343 for 784-1000-1000-10, 2094 for 784-2000-2000-10. */
ReduceMode fixsum_choose(const ModelShape *s, int batch);

/* Replace --reduce auto in C by the mode it picks for INPUTS / CLASSES, and --micro-batch 0 by
 * fixsum_default_micro when the mode is fixed, so that summary.json and the checkpoint record
 * what was run. An invalid --hidden is left for trainer_init to report. */
void fixsum_resolve_config(Config *c, int inputs, int classes);

/* ---- the collective reduction ---------------------------------------------------------------- */

typedef struct {
    MPI_Comm comm; /* not owned */
    int rank, size;
    int micro;                /* m: samples per micro-batch */
    ModelCalls calls;         /* the forward and backward calls: one over all of a rank's
                               * micro-batches in the layers where that gives bitwise the rows
                               * of one call per micro-batch (their weights are then packed once
                               * instead of once per micro-batch), else one per micro-batch */
    int max_micro;            /* micro-batches in a round of the largest size (--batch) */
    size_t n;                 /* parameters */
    int64_t *acc;             /* (n + 1) this rank's integer sums; [n] counts bound violations */
    int64_t *slice;           /* (largest count) receive buffer of the ring reduce-scatter */
    double *sum;              /* (largest count) the slice's float64 sum over the rounds */
    float *scratch;           /* (block rows, largest in + 1) one micro-batch's gradient block */
    double *colsum;           /* (largest out) scratch of fixsum_gemm_bound */
    double *red;              /* (layers + max_micro) bounds and loss sums of a round */
    int *counts, *displs;     /* (size) int64 slices of [0, n + 1) */
    int *fcounts;             /* (size) their float32 parts within [0, n) */
    int open;                 /* rounds added since the last fixsum_finish */
    long long violations;     /* bound violations in this rank's slice since the last finish */
    double loss;              /* sum of the per-sample losses of the last round (sample order) */
} FixSum;

/* Set up for S on COMM, micro-batches of MICRO samples (0: fixsum_default_micro(MAX_ROUND)),
 * rounds of at most MAX_ROUND samples; MERGED: the layers (bit l) whose forward and backward calls may span
 * several micro-batches (tile_probe_calls, agreed by every rank; 0: one call per micro-batch).
 * EWC_EINVAL if the communicator has more ranks than the model has parameters. Not collective. */
EwcStatus fixsum_init(FixSum *f, MPI_Comm comm, const ModelShape *s, int micro, int max_round,
                      int merged);
void fixsum_free(FixSum *f);

/* This rank's micro-batches of a round of N samples, as batch rows [*BEGIN, *END). */
void fixsum_rows(const FixSum *f, int n, int *begin, int *end);

/* Add one round of N samples: A's act[l] and SQ[l] (deltas, or the Fisher's weighted squared
 * deltas with FISHER = 1) hold this rank's rows (fixsum_rows); LOSS (may be NULL) its
 * per-sample losses, whose sum over the round in sample order goes to f->loss. IN_SQ is
 * (N, largest in + 1) scratch for FISHER. Adds the bytes received to D->bytes. EWC_ENAN (on every
 * rank) if a layer's bound is not finite (a NaN or inf delta or input). Collective. */
EwcStatus fixsum_add(FixSum *f, Dist *d, const ModelShape *s, const Activations *a, float **sq,
                     int n, int fisher, float *in_sq, const float *loss);

/* OUT (n) = the sum of the rounds added since the last finish, on every rank; EWC_ENAN if a
 * term broke its bound. Collective. */
EwcStatus fixsum_finish(FixSum *f, Dist *d, float *out);

#endif
