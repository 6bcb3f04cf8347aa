/* Data parallelism over an MPI communicator: which samples and which parameter rows each rank
 * owns, the collectives that combine them, and agreement on errors so no rank is left waiting.
 *
 * Three reductions (--reduce), and a rule between the first two:
 *  exact     each rank runs forward/backward for its shard of the batch; activations
 *            and deltas are all-gathered, and each rank computes the FULL-batch gradient of its
 *            own contiguous range of parameter rows, one GEMM per layer with K = batch size;
 *            one MPI_Allgatherv assembles the slab. Every gradient element is then the same
 *            dot product, in the same order, whatever the number of ranks. Sample shards and
 *            row ranges start on multiples of the BLAS row quantum (tile.h), so the split
 *            products are bitwise those of one call: results are bit-identical for any rank
 *            count.
 *  fixed     (fixsum.h) the batch is cut into micro-batches of m samples (--micro-batch, a
 *            function of the configuration only); each is computed whole by one rank, its
 *            float32 gradient turned into int64 fixed point with a per-layer exponent every rank
 *            derives from one MPI_Allreduce(MAX) of bounds, summed over ranks by an integer
 *            ring reduce-scatter and all-gathered as float32: bit-identical for any rank count.
 *            Error per element <= 2^-24 (1 + 2^-28) |g| + (1 + 2^-23) M 2^(E + h - 63) (M
 *            micro-batches, h = ceil(log2 M), 2^E > 2 max|micro-batch gradient| of the layer).
 *  allreduce each rank computes the gradient of its shard; one MPI_Allreduce sums the slab.
 *            Results agree across rank counts only to rounding.
 *  auto      (default) exact or fixed from the model and the batch only, never the rank count
 *            (fixsum_choose): fixed iff B s >= 12 n, i.e. when exact would receive at least 4/3
 *            of fixed's bytes (the margin pays for fixed's int64 conversions).
 *
 * Bytes each rank receives per step (B samples, n parameters, p ranks, s bytes of activations,
 * deltas and loss per sample, fixsum_exact_bytes_per_sample; counted in Dist.bytes):
 *   exact     (B s + 4 n)(p - 1)/p          grows with the batch
 *   fixed     (8 (n + 1) + 4 n)(p - 1)/p    1.5x allreduce, independent of the batch
 *   allreduce 8 n (p - 1)/p                 (ring: reduce-scatter + all-gather of float32) */
#ifndef EWC_DIST_H
#define EWC_DIST_H

#include <mpi.h>

#include "ewc/error.h"
#include "ewc/model.h"

typedef struct {
    MPI_Comm comm; /* not owned */
    int rank, size;
    int quantum;            /* shard and row-range boundaries are multiples of this */
    int row_begin, row_end; /* this rank's parameter rows (exact reduction) */
    int *slab_counts;       /* (size) floats of the slab owned by each rank */
    int *slab_displs;       /* (size) their offsets */
    int *counts, *displs;   /* (size) scratch for row gathers */
    long long bytes;        /* bytes this rank received in the gradient and activation
                             * collectives so far, counted for bandwidth-optimal algorithms
                             * (all-gather: all but its own part; allreduce: reduce-scatter +
                             * all-gather), for benchmarks; fixsum.c adds its own */
} Dist;

/* Split the parameter rows of S into SIZE contiguous ranges of near-equal parameter counts,
 * with boundaries at multiples of QUANTUM rows within each layer. Not collective. */
EwcStatus dist_init(Dist *d, MPI_Comm comm, const ModelShape *s, int quantum);
void dist_free(Dist *d);

/* The contiguous share [*begin, *end) of N rows for RANK: whole blocks of d->quantum rows
 * (the last block may be partial), near-equal block counts per rank. */
void dist_shard(const Dist *d, int n, int rank, int *begin, int *end);

/* In-place all-gather of a row-sharded matrix BUF (n, ld): rank r's rows are
 * dist_shard(d, n, r). Collective. */
EwcStatus dist_allgather_rows(Dist *d, float *buf, int n, int ld);

/* In-place all-gather of the slab: each rank contributes its rows [row_begin, row_end).
 * Collective. */
EwcStatus dist_allgather_slab(Dist *d, float *slab);

/* In-place sum of N floats (allreduce mode). Collective. */
EwcStatus dist_allreduce_sum(Dist *d, float *buf, size_t n);

/* In-place sum of N 64-bit integers: exact, hence independent of the rank count. Collective. */
EwcStatus dist_allreduce_i64(MPI_Comm comm, long long *buf, int n);

/* Combine every rank's status: all ranks return the status of the lowest failing rank, and
 * *REPORTER (may be NULL) is set on that rank only, so exactly one rank prints the message.
 * Call after each phase that can fail on one rank only, so no rank is left waiting in a later
 * collective. Collective. */
EwcStatus dist_agree(MPI_Comm comm, EwcStatus local, int *reporter);

#endif
