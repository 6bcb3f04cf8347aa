/* Shared helpers for the MPI CMocka tests (tests/test_mpi_*.c).
 *
 * Every rank runs every test; only rank 0 prints CMocka's output (the others send stdout and
 * stderr to /dev/null). Tests are "compute, then agree": all collectives run first, each rank
 * records its own failed checks with MT_EXPECT (which prints the failing rank's message to
 * that rank's real stderr) and MT_AGREE(ok) then combines the flags with MPI_Allreduce and
 * asserts on every rank. A failure on any rank thus fails the test on all ranks together, so
 * the ranks stay in step for the next test, and the process exits non-zero (mpirun fails).
 * A watchdog alarm kills a rank that hangs, which makes mpirun abort the whole job. */
#ifndef EWC_MPITEST_H
#define EWC_MPITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ewc/dataset.h"
#include "ewc/model.h"
#include "ewc/rng.h"

static int mt_rank, mt_size;
static FILE *mt_err; /* this rank's real stderr, for MT_EXPECT messages */

/* MPI_Init, rank/size, quiet ranks > 0, and a watchdog of SECONDS. */
static inline void mt_init(int *argc, char ***argv, unsigned seconds) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mt_size);
    mt_err = stderr;
    if (mt_rank > 0) {
        int fd = dup(fileno(stderr));
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (f) mt_err = f;
        if (!freopen("/dev/null", "w", stdout) || (f && !freopen("/dev/null", "w", stderr)))
            fprintf(mt_err, "rank %d: cannot silence stdout/stderr\n", mt_rank);
    }
    alarm(seconds);
}

/* MPI_Finalize; the exit status for main: 1 if any test failed (the same on every rank). */
static inline int mt_finish(int failed) {
    if (mt_err != stderr) fclose(mt_err);
    MPI_Finalize();
    return failed ? 1 : 0;
}

/* Record a failed check on this rank (OK is an int lvalue) without leaving the test. */
#define MT_EXPECT(ok, cond, ...)                                                               \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(mt_err, "rank %d/%d: %s:%d: check failed: %s: ", mt_rank, mt_size,       \
                    __FILE__, __LINE__, #cond);                                                \
            fprintf(mt_err, __VA_ARGS__);                                                      \
            fputc('\n', mt_err);                                                               \
            fflush(mt_err);                                                                    \
            (ok) = 0;                                                                          \
        }                                                                                      \
    } while (0)

/* 1 iff OK is non-zero on every rank of COMM. Collective. */
static inline int mt_all(int ok, MPI_Comm comm) {
    int all = 0, mine = ok != 0;
    if (MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) return 0;
    return all;
}

/* Agree on the per-rank flags over the world and fail the test on every rank if any failed. */
#define MT_AGREE(ok)                                                                           \
    do {                                                                                       \
        int mt_all_ok_ = mt_all((ok), MPI_COMM_WORLD);                                         \
        if (!mt_all_ok_ && mt_rank == 0)                                                       \
            print_error("a check failed on some rank (messages above name the rank)\n");      \
        assert_true(mt_all_ok_);                                                               \
    } while (0)

/* A communicator holding world rank 0 alone (MPI_COMM_NULL on the other ranks). Collective. */
static inline MPI_Comm mt_solo_comm(void) {
    MPI_Comm c = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, mt_rank == 0 ? 0 : MPI_UNDEFINED, 0, &c);
    return c;
}

/* Whether buffer BUF (BYTES) is bitwise the same as rank 0's copy. Collective over COMM. */
static inline int mt_same_as_root(const void *buf, size_t bytes, MPI_Comm comm) {
    unsigned char tmp[1 << 16];
    int rank, ok = 1;
    MPI_Comm_rank(comm, &rank);
    for (size_t off = 0; off < bytes; off += sizeof tmp) {
        size_t len = bytes - off < sizeof tmp ? bytes - off : sizeof tmp;
        if (rank == 0) memcpy(tmp, (const unsigned char *)buf + off, len);
        MPI_Bcast(tmp, (int)len, MPI_BYTE, 0, comm);
        ok &= memcmp(tmp, (const unsigned char *)buf + off, len) == 0;
    }
    return ok;
}

/* Index of the first differing float of A and B (N), or -1 when bitwise equal. */
static inline long mt_first_diff(const float *a, const float *b, size_t n) {
    if (memcmp(a, b, n * sizeof(float)) == 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float))) return (long)i;
    return -1;
}

/* max |a - b| / max(max |b|, FLOOR) over N floats (infinity if any difference is NaN). */
static inline double mt_rel_diff(const float *a, const float *b, size_t n, double floor) {
    double d = 0.0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i], v = b[i];
        e = e < 0 ? -e : e;
        v = v < 0 ? -v : v;
        if (e != e) return INFINITY;
        if (e > d) d = e;
        if (v > m) m = v;
    }
    return d / m;
}

/* A synthetic dataset in memory: CLASSES sparse random prototypes of DIM pixels, each sample
 * its class's prototype plus noise, labels drawn at random. Same on every rank for a SEED. */
static inline int mt_synth_split(Split *sp, int n, int dim, int classes, uint64_t seed, uint32_t which) {
    sp->n = n;
    sp->dim = dim;
    sp->x = malloc((size_t)(n ? n : 1) * (size_t)dim);
    sp->y = malloc((size_t)(n ? n : 1));
    if (!sp->x || !sp->y) return 0;
    for (int s = 0; s < n; s++) {
        int y = (int)(rng_uniform(seed, RNG_INIT, 3000 + which, 0, (uint64_t)s) * (float)classes);
        sp->y[s] = (uint8_t)(y < classes ? y : classes - 1);
        for (int k = 0; k < dim; k++) {
            float u = rng_uniform(seed, RNG_INIT, 2000, (uint32_t)sp->y[s], (uint64_t)k);
            float proto = u < 0.4f ? 0.0f : 255.0f * u;
            float noise = 160.0f * (rng_uniform(seed, RNG_INIT, 4000 + which, (uint32_t)s,
                                                (uint64_t)k) - 0.5f);
            float v = proto + noise;
            sp->x[(size_t)s * dim + k] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
        }
    }
    return 1;
}

/* Fill D with N_TRAIN / N_TEST synthetic samples; 0 when out of memory (D is then freeable). */
static inline int mt_synth_dataset(Dataset *d, int n_train, int n_test, int dim, int classes,
                            uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->n_classes = classes;
    int ok = mt_synth_split(&d->train, n_train, dim, classes, seed, 0);
    return mt_synth_split(&d->test, n_test, dim, classes, seed, 1) && ok;
}

/* Float64 forward pass of one sample through the MLP S with PARAMS (model.h layout): H[0]
 * (dims[0]) holds the input; H[l] (dims[l]) gets the input of layer l (after ReLU) and
 * H[L] (dims[L]) the logits. */
static inline void mt_forward64(const ModelShape *s, const float *params, double **h) {
    int L = s->n_layers;
    for (int l = 0; l < L; l++) {
        int din = s->dims[l], dout = s->dims[l + 1];
        const float *wb = params + s->offset[l];
        for (int i = 0; i < dout; i++) {
            const float *row = wb + (size_t)i * (din + 1);
            double z = row[din];
            for (int j = 0; j < din; j++) z += (double)row[j] * h[l][j];
            h[l + 1][i] = l + 1 < L && z < 0.0 ? 0.0 : z;
        }
    }
}

/* Softmax of Z (C) into P, in float64. */
static inline void mt_softmax64(const double *z, double *p, int c) {
    double m = z[0], sum = 0.0;
    for (int k = 1; k < c; k++) m = z[k] > m ? z[k] : m;
    for (int k = 0; k < c; k++) sum += p[k] = exp(z[k] - m);
    for (int k = 0; k < c; k++) p[k] /= sum;
}

/* Buffers for mt_forward64: H[l] of dims[l] doubles, l = 0..L. NULL when out of memory. */
static inline double **mt_alloc_layers64(const ModelShape *s) {
    double **h = calloc((size_t)s->n_layers + 1, sizeof *h);
    if (!h) return NULL;
    for (int l = 0; l <= s->n_layers; l++)
        if (!(h[l] = malloc((size_t)s->dims[l] * sizeof(double)))) {
            for (int k = 0; k < l; k++) free(h[k]);
            free(h);
            return NULL;
        }
    return h;
}

static inline void mt_free_layers64(const ModelShape *s, double **h) {
    if (!h) return;
    for (int l = 0; l <= s->n_layers; l++) free(h[l]);
    free(h);
}

#endif
