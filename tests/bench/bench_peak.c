/* bench_peak: this core's float32 peak, measured rather than taken from a data sheet (clock
 * boost and virtual machines make nominal figures unreliable): 12 independent multiply-add
 * chains per vector width the CPU has, enough to cover FMA latency times the number of FMA
 * pipes. Peak = flops / time; SGEMM GFLOP/s over it is the kernels' efficiency. */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ewc/blascore.h"

#define CHAINS 12

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: other jobs do not count */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float sink;

/* Each returns the flops done in ITERS rounds of CHAINS vector multiply-adds. */
static double run_sse(long iters) {
    __m128 acc[CHAINS], m = _mm_set1_ps(0.99999f), a = _mm_set1_ps(1e-6f);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm_add_ps(_mm_mul_ps(acc[j], m), a);
    float out[4];
    for (int j = 1; j < CHAINS; j++) acc[0] = _mm_add_ps(acc[0], acc[j]);
    _mm_storeu_ps(out, acc[0]);
    sink = out[0];
    return (double)iters * CHAINS * 4 * 2;
}

__attribute__((target("avx"))) static double run_avx(long iters) {
    __m256 acc[CHAINS], m = _mm256_set1_ps(0.99999f), a = _mm256_set1_ps(1e-6f);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_add_ps(_mm256_mul_ps(acc[j], m), a);
    float out[8];
    for (int j = 1; j < CHAINS; j++) acc[0] = _mm256_add_ps(acc[0], acc[j]);
    _mm256_storeu_ps(out, acc[0]);
    sink = out[0];
    return (double)iters * CHAINS * 8 * 2;
}

__attribute__((target("avx2,fma"))) static double run_fma256(long iters) {
    __m256 acc[CHAINS], m = _mm256_set1_ps(0.99999f), a = _mm256_set1_ps(1e-6f);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, a);
    float out[8];
    for (int j = 1; j < CHAINS; j++) acc[0] = _mm256_add_ps(acc[0], acc[j]);
    _mm256_storeu_ps(out, acc[0]);
    sink = out[0];
    return (double)iters * CHAINS * 8 * 2;
}

__attribute__((target("avx512f"))) static double run_fma512(long iters) {
    __m512 acc[CHAINS], m = _mm512_set1_ps(0.99999f), a = _mm512_set1_ps(1e-6f);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, a);
    for (int j = 1; j < CHAINS; j++) acc[0] = _mm512_add_ps(acc[0], acc[j]);
    sink = _mm512_reduce_add_ps(acc[0]);
    return (double)iters * CHAINS * 16 * 2;
}

/* Best GFLOP/s of 5 runs of about 0.1 s each. */
static double measure(double (*run)(long)) {
    long iters = 1 << 16;
    double best = 0;
    for (;;) { /* size the run */
        double t0 = now();
        run(iters);
        if (now() - t0 > 0.02) break;
        iters *= 2;
    }
    iters *= 5;
    for (int r = 0; r < 5; r++) {
        double t0 = now(), flops = run(iters), gf = flops / (now() - t0) * 1e-9;
        best = gf > best ? gf : best;
    }
    return best;
}

int main(int argc, char **argv) {
    int json = argc > 1 && strcmp(argv[1], "--json") == 0, level = blascore_cpu_level();
    static const struct {
        const char *name;
        int level;
        double (*run)(long);
    } widths[] = {{"sse (4 lanes, mul+add)", BLASCORE_SSE3, run_sse},
                  {"avx (8 lanes, mul+add)", BLASCORE_AVX, run_avx},
                  {"avx2+fma (8 lanes, fma)", BLASCORE_AVX2, run_fma256},
                  {"avx-512 (16 lanes, fma)", BLASCORE_AVX512, run_fma512}};
    double peak = 0;
    if (json) printf("{\"cpu_level\": %d, \"peaks\": {", level);
    for (int i = 0, first = 1; i < 4; i++) {
        if (widths[i].level > level) continue;
        double gf = measure(widths[i].run);
        peak = gf > peak ? gf : peak;
        if (json) printf("%s\"%s\": %.1f", first ? "" : ", ", widths[i].name, gf);
        else printf("%-26s %8.1f GFLOP/s per core\n", widths[i].name, gf);
        first = 0;
    }
    if (json) printf("}, \"peak\": %.1f}\n", peak);
    else printf("%-26s %8.1f GFLOP/s per core\n", "peak (the widest)", peak);
    return 0;
}
