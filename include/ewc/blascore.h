/* blascore.h: run on the fastest OpenBLAS kernel set ("core") that is correct on this CPU.
 * OpenBLAS picks its core once, when it loads (from OPENBLAS_CORETYPE, else from cpuid), so
 * another core means running the program again: before MPI_Init each process self-tests and
 * times the candidates in child processes, then re-executes itself with OPENBLAS_CORETYPE set.
 *
 * --blas-core auto (default): when OpenBLAS runs an older instruction set than the CPU offers
 *     (AVX-512 > AVX2+FMA > AVX > SSE3, from cpuid and XGETBV), try one core per better level,
 *     newest first, in a child process each (a crash or a hang only rejects that candidate);
 *     switch to one only if its SGEMM self-test passes and it is clearly faster (BLASCORE_GAIN)
 *     than the loaded one. OPENBLAS_CORETYPE set by the user or the site is never overridden.
 * --blas-core keep: the core OpenBLAS loaded.
 * --blas-core NAME: that core (e.g. SkylakeX, Haswell, Sandybridge), overriding the variable;
 *     a core that this OpenBLAS lacks or that fails the self-test is an error.
 * In every mode the core actually used is self-tested again at the model's real shapes once
 * the data are loaded (blascore_selftest), and all ranks must agree on it (blascore_agree). */
#ifndef EWC_BLASCORE_H
#define EWC_BLASCORE_H

#include <mpi.h>

#include "ewc/config.h"
#include "ewc/error.h"
#include "ewc/model.h"

#define BLASCORE_NAME_MAX 32
#define BLASCORE_GAIN 1.10     /* a candidate must be this much faster than the loaded core */
#define BLASCORE_NEAR 0.90     /* ...and is preferred to a faster, older one within this ratio */
#define BLASCORE_MAX_PROBES 6

/* Instruction-set levels of x86-64 SGEMM kernels; 0 = unknown or another architecture. */
enum { BLASCORE_SSE3 = 1, BLASCORE_AVX, BLASCORE_AVX2, BLASCORE_AVX512 };

/* One timed and self-tested core. */
typedef struct {
    char core[BLASCORE_NAME_MAX]; /* as OpenBLAS reports it */
    int level;                    /* blascore_core_level(core) */
    int passed;                   /* the self-test passed */
    double gflops;                /* SGEMM speed at the model's shapes, 1 thread */
    char note[96];                /* why it failed ("" when it passed) */
} BlasProbe;

/* The outcome, recorded in summary.json and the checkpoint. */
typedef struct {
    char core[BLASCORE_NAME_MAX];    /* the core this process runs on */
    char initial[BLASCORE_NAME_MAX]; /* the core OpenBLAS loaded before any choice */
    char reason[512];                /* one human-readable line: why this core, what was tried */
    double seconds;                  /* time spent choosing (probes and self-tests) */
    double selftest_seconds;         /* time of the last self-test at the real shapes */
} BlasCore;

/* ---- pure logic (unit-tested) ----------------------------------------------------------- */

/* The instruction-set level this CPU and OS support (cpuid, XGETBV). */
int blascore_cpu_level(void);

/* Level of an OpenBLAS core NAME (case-insensitive), 0 if unknown. */
int blascore_core_level(const char *name);

/* Candidates better than CURRENT_LEVEL up to CPU_LEVEL, newest first, one representative core
 * per level, into OUT (room for 4). Returns their number. */
int blascore_candidates(int current_level, int cpu_level, const char **out);

/* Which of N probes to run on: P[0] is the loaded core, P[1..] candidates. Among passing
 * candidates at least BLASCORE_GAIN times faster than P[0] (any passing one if P[0] failed), the
 * highest level within BLASCORE_NEAR of the fastest of them; else 0 (keep P[0]). */
int blascore_pick(const BlasProbe *p, int n);

/* ---- measurement -------------------------------------------------------------------------- */

/* A row-major SGEMM with alpha = 1: C (m, n) = beta C + op(A) (m, k) . op(B) (k, n). */
typedef void (*BlasGemm)(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc);
void blascore_sgemm(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc);

/* Run every SGEMM the trainer makes for S at BATCH (forward, input and weight gradients of each
 * layer, with its transpositions, leading dimensions and accumulation), plus evaluation chunks,
 * one-sample and odd shards, and unaligned row ranges, through GEMM, and check sampled entries
 * (first, last, random rows and columns, so edge tiles too) against float64 dot products with
 * the bound |error| <= (K + 2) u sum |a b|, u = 2^-24. *WORST gets the largest error/bound seen.
 * EWC_EBLAS with a message naming the product if any entry is off. Local. */
EwcStatus blascore_selftest(BlasGemm gemm, const ModelShape *s, int batch, double *worst);

/* SGEMM GFLOP/s of one training step's products for S at min(BATCH, 128) rows, best of a few
 * repetitions, in process CPU time (so other jobs on the node do not sway it), with the BLAS
 * thread count in force. Local. */
double blascore_time(const ModelShape *s, int batch);

/* ---- the choice --------------------------------------------------------------------------- */

/* Before MPI_Init: whether this process is a probe child (then call blascore_probe_main and
 * return its value from main). */
int blascore_is_probe(void);
int blascore_probe_main(const Config *cfg);

/* Before MPI_Init, in every process: apply CFG->blas_core. May not return: it re-executes the
 * program (same argv) on a better core. Fills OUT; errors (a forced core missing or failing,
 * a loaded core failing with nothing better) are returned for main to agree on after
 * MPI_Init. The model shape is assumed to read 784 pixels and 10 classes here; the real one is
 * checked later by blascore_verify. Local. */
EwcStatus blascore_choose(const Config *cfg, char **argv, BlasCore *out);

/* After the data are loaded: self-test the running core at the real shape S and BATCH (updates
 * B->selftest_seconds), then check that every rank runs the same core; a disagreement is an
 * error naming the ranks' hosts and cores. *REPORTER (may be NULL) is set on the one rank that
 * should print the error, as by dist_agree. Collective. */
EwcStatus blascore_verify(BlasCore *b, const ModelShape *s, int batch, MPI_Comm comm,
                          int *reporter);

#endif
