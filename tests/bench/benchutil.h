/* Helpers shared by the benchmarks: fatal errors, the data directory, the process CPU clock,
 * the load average, and a small seeded random generator. Define BENCH_NAME before including. */
#ifndef EWC_BENCHUTIL_H
#define EWC_BENCHUTIL_H

#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ewc/dataset.h"
#include "ewc/error.h"

#include <stdlib.h>

#define MNIST_DIR "data/mnist" /* filled by data/fetch.sh mnist data/mnist; or $EWC_MNIST_DIR */

/* Print WHAT and the library's last error, then stop every rank (a benchmark has no recovery). */
_Noreturn static void die(const char *what) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *msg = ewc_error_message();
    fprintf(stderr, BENCH_NAME ": rank %d: %s%s%s\n", rank, what, msg[0] ? ": " : "", msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    abort(); /* MPI_Abort does not return; this tells the compiler and cppcheck so */
}

static int has_images(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    if (access(p, R_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    return access(p, R_OK) == 0;
}

/* MNIST where it is available (the published figures): $EWC_MNIST_DIR, else data/mnist below
 * the working directory; else the default Fashion-MNIST. */
static const char *default_data_dir(void) {
    const char *env = getenv("EWC_MNIST_DIR");
    if (env && *env && has_images(env)) return env;
    if (has_images(MNIST_DIR)) return MNIST_DIR;
    return DATASET_DEFAULT_DIR;
}

/* CPU time of this process: robust against other jobs on a shared machine. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The 1-minute load average as text ("" if unavailable), recorded with every measurement. */
static void loadavg(char *buf, size_t size) {
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f) {
        if (fgets(buf, (int)size, f)) buf[strcspn(buf, " ")] = '\0';
        fclose(f);
    }
}

/* Uniform in [0, 1) from a 64-bit LCG (synthetic penalties and roofline buffers only). */
static inline float frand01(unsigned long long *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*state >> 40) & 0xFFFFFF) / 16777216.0f;
}

#endif
