/* Data parallelism: sample shards, parameter-row ownership, and the collectives that combine
 * them (see dist.h for why the exact reduction gathers activations instead of gradients). */
#include "ewc/dist.h"

#include <stdlib.h>
#include <string.h>

void dist_shard(const Dist *d, int n, int rank, int *begin, int *end) {
    long long q = d->quantum, blocks = (n + q - 1) / q;
    long long b0 = blocks * rank / d->size, b1 = blocks * (rank + 1) / d->size;
    *begin = (int)(b0 * q < n ? b0 * q : n);
    *end = (int)(b1 * q < n ? b1 * q : n);
}

/* Whether parameter row ROW may start a rank's range: a layer start or a multiple of Q rows
 * into its layer. */
static int row_is_boundary(const ModelShape *s, int row, int q) {
    int l = 0;
    while (l + 1 < s->n_layers && row >= s->row0[l + 1]) l++;
    return (row - s->row0[l]) % q == 0;
}

EwcStatus dist_init(Dist *d, MPI_Comm comm, const ModelShape *s, int quantum) {
    memset(d, 0, sizeof *d);
    d->comm = comm;
    d->quantum = quantum > 0 ? quantum : 1;
    if (MPI_Comm_rank(comm, &d->rank) != MPI_SUCCESS || MPI_Comm_size(comm, &d->size) != MPI_SUCCESS) {
        ewc_error_set("MPI_Comm_rank/size failed");
        return EWC_EMPI;
    }
    int p = d->size;
    d->slab_counts = calloc((size_t)p, sizeof(int));
    d->slab_displs = calloc((size_t)p, sizeof(int));
    d->counts = calloc((size_t)p, sizeof(int));
    d->displs = calloc((size_t)p, sizeof(int));
    if (!d->slab_counts || !d->slab_displs || !d->counts || !d->displs) {
        dist_free(d);
        ewc_error_set("out of memory");
        return EWC_ENOMEM;
    }
    /* Rank r's rows end at the first allowed boundary at or past r+1 / p of the parameters, so
     * each rank's GEMMs do a near-equal share of the flops. */
    int row = 0;
    for (int r = 0; r < p; r++) {
        int first = row;
        size_t target = s->n_params * (size_t)(r + 1) / (size_t)p;
        while (row < s->n_rows && (r == p - 1 || model_row_offset(s, row) < target ||
                                   !row_is_boundary(s, row, d->quantum)))
            row++;
        size_t lo = model_row_offset(s, first);
        size_t hi = row < s->n_rows ? model_row_offset(s, row) : s->n_params;
        if (first == s->n_rows) lo = hi = s->n_params;
        d->slab_displs[r] = (int)lo;
        d->slab_counts[r] = (int)(hi - lo);
        if (r == d->rank) {
            d->row_begin = first;
            d->row_end = row;
        }
    }
    return EWC_OK;
}

void dist_free(Dist *d) {
    free(d->slab_counts);
    free(d->slab_displs);
    free(d->counts);
    free(d->displs);
    memset(d, 0, sizeof *d);
}

EwcStatus dist_allgather_rows(Dist *d, float *buf, int n, int ld) {
    if (d->size == 1) return EWC_OK;
    for (int r = 0; r < d->size; r++) {
        int b, e;
        dist_shard(d, n, r, &b, &e);
        d->counts[r] = (e - b) * ld;
        d->displs[r] = b * ld;
    }
    if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, d->counts, d->displs, MPI_FLOAT,
                       d->comm) != MPI_SUCCESS) {
        ewc_error_set("MPI_Allgatherv of activations failed");
        return EWC_EMPI;
    }
    d->bytes += 4 * ((long long)n * ld - d->counts[d->rank]);
    return EWC_OK;
}

EwcStatus dist_allgather_slab(Dist *d, float *slab) {
    if (d->size == 1) return EWC_OK;
    if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, slab, d->slab_counts, d->slab_displs,
                       MPI_FLOAT, d->comm) != MPI_SUCCESS) {
        ewc_error_set("MPI_Allgatherv of the gradient slab failed");
        return EWC_EMPI;
    }
    long long total = 0;
    for (int r = 0; r < d->size; r++) total += d->slab_counts[r];
    d->bytes += 4 * (total - d->slab_counts[d->rank]);
    return EWC_OK;
}

EwcStatus dist_allreduce_sum(Dist *d, float *buf, size_t n) {
    if (d->size == 1) return EWC_OK;
    if (MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, d->comm) != MPI_SUCCESS) {
        ewc_error_set("MPI_Allreduce of the gradient slab failed");
        return EWC_EMPI;
    }
    d->bytes += 2 * 4 * ((long long)n - (long long)n / d->size);
    return EWC_OK;
}

EwcStatus dist_allreduce_i64(MPI_Comm comm, long long *buf, int n) {
    if (MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_LONG_LONG, MPI_SUM, comm) != MPI_SUCCESS) {
        ewc_error_set("MPI_Allreduce of counts failed");
        return EWC_EMPI;
    }
    return EWC_OK;
}

EwcStatus dist_agree(MPI_Comm comm, EwcStatus local, int *reporter) {
    int size, rank;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    if (reporter) *reporter = local != EWC_OK;
    if (size == 1) return local;
    /* the lowest failing rank wins: encode (rank, status) so MIN picks it */
    int mine = local == EWC_OK ? size * 16 : rank * 16 + (int)local, first;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) {
        ewc_error_set("MPI_Allreduce of error status failed");
        return EWC_EMPI;
    }
    if (first == size * 16) return EWC_OK;
    if (reporter) *reporter = first / 16 == rank;
    if (local == EWC_OK) ewc_error_set("rank %d failed (see its message)", first / 16);
    return (EwcStatus)(first % 16);
}
