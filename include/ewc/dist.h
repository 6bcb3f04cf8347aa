/* Data parallelism over an MPI communicator: which samples and which parameter rows each rank
 * owns, the collectives that combine them, and agreement on errors so no rank is left waiting.
 *
 * Two reductions (--reduce):
 *  exact     (default) each rank runs forward/backward for its shard of the batch; activations
 *            and deltas are all-gathered, and each rank computes the FULL-batch gradient of its
 *            own contiguous range of parameter rows, one GEMM per layer with K = batch size;
 *            one MPI_Allgatherv assembles the slab. Every gradient element is then the same
 *            dot product, in the same order, whatever the number of ranks. Sample shards and
 *            row ranges start on multiples of the BLAS row quantum (tile.h), so the split
 *            products are bitwise those of one call: results are bit-identical for any rank
 *            count.
 *  allreduce each rank computes the gradient of its shard; one MPI_Allreduce sums the slab.
 *            Results agree across rank counts only to rounding. */
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
