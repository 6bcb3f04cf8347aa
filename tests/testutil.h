/* Helpers shared by the numerical unit tests: a tiny seeded generator that is independent of
 * the library's rng.c, and a tolerance assertion that reports the values when it fails.
 * Include after <cmocka.h>. */
#ifndef EWC_TESTUTIL_H
#define EWC_TESTUTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* splitmix64: good enough for test data, and not the code under test. */
typedef struct {
    uint64_t s;
} TestRng;

static inline uint64_t trng_next(TestRng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform double in [lo, hi). */
static inline double trng_uniform(TestRng *r, double lo, double hi) {
    return lo + (hi - lo) * (double)(trng_next(r) >> 11) * 0x1p-53;
}

static inline void trng_fill(TestRng *r, float *v, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) v[i] = (float)trng_uniform(r, lo, hi);
}

/* Fails (printing both values) unless |ACTUAL - EXPECTED| <= TOL; NaN always fails.
 * IDX names the element in the message (pass -1 for a scalar). */
#define assert_close_at(actual, expected, tol, idx)                                              \
    do {                                                                                         \
        double a_ = (double)(actual), e_ = (double)(expected), t_ = (double)(tol);               \
        if (!(fabs(a_ - e_) <= t_))                                                              \
            fail_msg("%s [%ld] = %.9g, expected %.9g: |diff| %.3g > tol %.3g", #actual,          \
                     (long)(idx), a_, e_, fabs(a_ - e_), t_);                                    \
    } while (0)

#define assert_close(actual, expected, tol) assert_close_at(actual, expected, tol, -1)

/* The whole file at PATH (a NUL byte after its SIZE bytes); the caller frees it. */
static inline unsigned char *slurp(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = 0;
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

#endif
