/* The fixed-point arithmetic of --reduce fixed (fixsum.h): conversion against llrint in every
 * instruction-set variant, exponent and headroom edge cases (zero, subnormal, huge, NaN/inf),
 * the GEMM bound against a float64 product, the stated error bound of a one-rank round against
 * a long-double sum of the same float32 micro-batch gradients, and the auto rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/fixsum.h"
#include "ewc/rng.h"

static float urand(uint32_t which, uint64_t i) { return rng_uniform(5, RNG_INIT, 9000 + which, 0, i); }

static void test_headroom_exponent(void **state) {
    (void)state;
    assert_int_equal(fixsum_headroom(0), 0);
    assert_int_equal(fixsum_headroom(1), 0);
    assert_int_equal(fixsum_headroom(2), 1);
    assert_int_equal(fixsum_headroom(3), 2);
    assert_int_equal(fixsum_headroom(4), 2);
    assert_int_equal(fixsum_headroom(5), 3);
    assert_int_equal(fixsum_headroom(1024), 10);
    assert_int_equal(fixsum_headroom(1025), 11);
    for (int t = 1; t < 5000; t++) { /* 2^(h-1) < t <= 2^h */
        int h = fixsum_headroom(t);
        assert_true((1LL << h) >= t && (h == 0 || (1LL << (h - 1)) < t));
    }
    /* 2^E >= 2 B, and E is the smallest such exponent plus at most one */
    static const double bounds[] = {1.0, 0.75, 1.5, 2.0, 1e-30, 3e38, 1e60, 0x1p-149, 0x1p-140,
                                    12345.678};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        int e = fixsum_exponent(bounds[i]);
        assert_true(ldexp(1.0, e) >= 2.0 * bounds[i]);
        assert_true(ldexp(1.0, e - 2) <= bounds[i] || e == FIXSUM_EMIN);
    }
    assert_int_equal(fixsum_exponent(0.0), FIXSUM_EMIN);
    assert_int_equal(fixsum_exponent(0x1p-160), FIXSUM_EMIN);
    assert_int_equal(fixsum_exponent(-1.0), FIXSUM_EMIN);
}

/* Reference conversion: llrint in the default rounding mode (nearest, ties to even). */
static int64_t ref_round(float x, int shift) { return llrint(ldexp((double)x, shift)); }

/* Every variant the CPU has gives llrint's result, ties to even included, and counts and masks
 * values beyond the limit, NaN and inf. */
static void test_add_floats(void **state) {
    (void)state;
    enum { N = 4099 };
    float *x = malloc(N * sizeof(float));
    int64_t *acc = malloc(N * sizeof(int64_t)), *want = malloc(N * sizeof(int64_t));
    assert_non_null(x);
    assert_non_null(acc);
    assert_non_null(want);
    int variants = 0;
    static const int shifts[] = {0, 3, 20, 40, 61, -5, 150};
    for (int isa = 0; isa < 3; isa++) {
        for (size_t si = 0; si < sizeof shifts / sizeof shifts[0]; si++) {
            int shift = shifts[si], lim = 60;
            double lim_v = ldexp(1.0, lim);
            for (int i = 0; i < N; i++) {
                /* random magnitudes over 2^-30 .. 2^30 times the scale's range, both signs,
                 * half-integers (ties) and exact integers */
                float u = urand(1, (uint64_t)i), v = urand(2, (uint64_t)i);
                int ex = (int)(v * 60.0f) - 30;
                float val = (u - 0.5f) * ldexpf(1.0f, ex);
                if (i % 7 == 0) val = ldexpf((float)((i % 1001) - 500) + 0.5f, -shift); /* a tie */
                if (i % 11 == 0) val = ldexpf((float)(i - 2000), -shift);
                if (fabs(ldexp((double)val, shift)) > lim_v)
                    val = copysignf((float)ldexp(0.75 * lim_v, -shift), val);
                x[i] = val;
                acc[i] = want[i] = (int64_t)i * 1000003 - 7;
            }
            x[1] = 0.0f;
            x[2] = -0.0f;
            x[3] = ldexpf(1.0f, lim - shift);  /* exactly the limit: allowed */
            x[4] = -ldexpf(1.0f, lim - shift);
            int n_bad = 0;
            if (shift < 100) { /* beyond the limit, NaN, inf: masked and counted */
                x[5] = ldexpf(1.0f, lim + 1 - shift);
                x[6] = NAN;
                x[7] = -INFINITY;
                n_bad = 3;
            }
            for (int i = 0; i < N; i++)
                if (!(i >= 5 && i <= 7 && n_bad)) want[i] += ref_round(x[i], shift);
            long long bad = fixsum_add_floats_isa(isa, acc, x, N, shift, lim, 0);
            if (bad < 0) break; /* the CPU lacks this variant */
            assert_int_equal(bad, n_bad);
            for (int i = 0; i < N; i++)
                if (acc[i] != want[i])
                    fail_msg("isa %d shift %d: element %d (%.9g): %lld, want %lld", isa, shift, i,
                             (double)x[i], (long long)acc[i], (long long)want[i]);
            if (si == 0) variants++;
        }
    }
    assert_true(variants >= 1);
    /* the public entry point agrees too */
    memset(acc, 0, N * sizeof(int64_t));
    x[5] = 1.0f;
    x[6] = -2.5f;
    x[7] = 3.5f;
    assert_int_equal(fixsum_add_floats(acc, x, 8, 0, 62, 0), 0);
    assert_int_equal(acc[5], 1);
    assert_int_equal(acc[6], -2);
    assert_int_equal(acc[7], 4);
    /* ASSIGN overwrites whatever was there */
    for (int i = 0; i < 8; i++) acc[i] = 12345;
    x[5] = NAN;
    assert_int_equal(fixsum_add_floats(acc, x, 8, 0, 62, 1), 1);
    assert_int_equal(acc[5], 0);
    assert_int_equal(acc[6], -2);
    assert_int_equal(acc[7], 4);
    free(x);
    free(acc);
    free(want);
}

/* Subnormal floats convert exactly when the scale brings them into range (no FTZ here). */
static void test_subnormals(void **state) {
    (void)state;
    float x[4] = {0x1p-149f, -0x1p-140f, 0x1.8p-130f, 0x1p-126f};
    int64_t acc[4] = {0, 0, 0, 0};
    int e = fixsum_exponent(0x1p-126), shift = 62 - e;
    assert_int_equal(fixsum_add_floats(acc, x, 4, shift, 62, 0), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(acc[i], ref_round(x[i], shift));
    assert_true(acc[0] != 0);
    assert_true(ldexp((double)acc[0], -shift) == (double)x[0]);
}

/* The bound dominates every element of d^T x (and of (d)^T (x*x) with SQUARE), is attained
 * for a rank-one nonnegative case, and turns NaN/inf into inf. */
static void test_gemm_bound(void **state) {
    (void)state;
    enum { K = 37, DOUT = 23, COLS = 41 };
    float d[K * DOUT], x[K * COLS];
    double colsum[DOUT];
    for (int sq = 0; sq < 2; sq++) {
        for (int i = 0; i < K * DOUT; i++) d[i] = (urand(3, (uint64_t)i) - (sq ? 0.0f : 0.5f)) * 3.0f;
        for (int i = 0; i < K * COLS; i++) x[i] = (urand(4, (uint64_t)i) - 0.5f) * 100.0f;
        double b = fixsum_gemm_bound(d, DOUT, x, COLS, K, DOUT, COLS, sq, colsum), mx = 0.0;
        for (int i = 0; i < DOUT; i++)
            for (int c = 0; c < COLS; c++) {
                double g = 0.0;
                for (int k = 0; k < K; k++) {
                    double xv = x[k * COLS + c];
                    g += (double)d[k * DOUT + i] * (sq ? xv * xv : xv);
                }
                mx = fabs(g) > mx ? fabs(g) : mx;
            }
        assert_true(b >= mx);
        assert_true(b < 1e3 * mx); /* not absurdly loose */
    }
    for (int i = 0; i < K * DOUT; i++) d[i] = 1.0f;
    for (int i = 0; i < K * COLS; i++) x[i] = 2.0f;
    assert_true(fixsum_gemm_bound(d, DOUT, x, COLS, K, DOUT, COLS, 0, colsum) == 2.0 * K);
    assert_true(fixsum_gemm_bound(d, DOUT, x, COLS, 0, DOUT, COLS, 0, colsum) == 0.0);
    x[5] = NAN;
    assert_true(isinf(fixsum_gemm_bound(d, DOUT, x, COLS, K, DOUT, COLS, 0, colsum)));
    x[5] = 2.0f;
    d[7] = -INFINITY;
    assert_true(isinf(fixsum_gemm_bound(d, DOUT, x, COLS, K, DOUT, COLS, 0, colsum)));
    d[7] = NAN;
    assert_true(isinf(fixsum_gemm_bound(d, DOUT, x, COLS, K, DOUT, COLS, 0, colsum)));
}

/* ---- one rank: a round through fixsum_add / fixsum_finish against long double ------------------ */

typedef struct {
    ModelShape s;
    Activations a;
    float *dl[MODEL_MAX_LAYERS];
    float *in_sq, *loss;
    int n;
} Round;

/* A 2-layer net's activations and deltas for N samples: magnitudes spread over 2^-SPREAD .. 2^SPREAD
 * per sample, so micro-batch gradients differ widely in size. */
static void round_init(Round *r, int n, int spread) {
    static const int hidden[1] = {19};
    assert_int_equal(model_shape_init(&r->s, 33, hidden, 1, 7), EWC_OK);
    assert_int_equal(model_acts_alloc(&r->a, &r->s, n), EWC_OK);
    r->n = n;
    for (int l = 0; l < r->s.n_layers; l++) {
        int din = r->s.dims[l], dout = r->s.dims[l + 1];
        r->dl[l] = malloc((size_t)n * dout * sizeof(float));
        assert_non_null(r->dl[l]);
        for (int k = 0; k < n; k++) {
            float scale = ldexpf(1.0f, (int)(urand(10, (uint64_t)k) * 2 * spread) - spread);
            for (int c = 0; c < din; c++)
                r->a.act[l][(size_t)k * (din + 1) + c] = urand(11 + l, (uint64_t)k * 1000 + c);
            for (int i = 0; i < dout; i++)
                r->dl[l][(size_t)k * dout + i] = scale * (urand(20 + l, (uint64_t)k * 1000 + i) - 0.5f);
        }
    }
    r->in_sq = malloc((size_t)n * 34 * sizeof(float));
    r->loss = malloc((size_t)n * sizeof(float));
    assert_non_null(r->in_sq);
    assert_non_null(r->loss);
    for (int k = 0; k < n; k++) r->loss[k] = urand(30, (uint64_t)k);
}

static void round_free(Round *r) {
    for (int l = 0; l < r->s.n_layers; l++) free(r->dl[l]);
    model_acts_free(&r->a);
    free(r->in_sq);
    free(r->loss);
}

/* The sum of the stated error bound's terms for layer L, element I, over NR rounds of N samples
 * in micro-batches of MU; REF gets the long-double sum of the float32 micro-batch products. */
static double round_reference(const Round *r, int l, int mu, int fisher, size_t i, int nr,
                              long double *ref, double *bound_term) {
    int din = r->s.dims[l], dout = r->s.dims[l + 1], ld = din + 1, M = (r->n + mu - 1) / mu;
    int row = (int)(i / (size_t)ld), col = (int)(i % (size_t)ld);
    long double sum = 0.0L;
    double term = 0.0;
    float *g = malloc((size_t)dout * ld * sizeof(float)), *xs = malloc((size_t)mu * ld * sizeof(float));
    double *colsum = malloc((size_t)dout * sizeof(double)), bmax = 0.0;
    for (int j = 0; j < M; j++) {
        int k0 = j * mu, k1 = k0 + mu < r->n ? k0 + mu : r->n;
        const float *x = r->a.act[l] + (size_t)k0 * ld;
        if (fisher) {
            for (size_t q = 0; q < (size_t)(k1 - k0) * ld; q++) xs[q] = x[q] * x[q];
            x = xs;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dout, ld, k1 - k0, 1.0f,
                    r->dl[l] + (size_t)k0 * dout, dout, x, ld, 0.0f, g, ld);
        sum += g[(size_t)row * ld + col];
        double b = fixsum_gemm_bound(r->dl[l] + (size_t)k0 * dout, dout, r->a.act[l] + (size_t)k0 * ld,
                                     ld, k1 - k0, dout, ld, fisher, colsum);
        bmax = b > bmax ? b : bmax;
    }
    int h = fixsum_headroom(M), e = fixsum_exponent(bmax);
    term = M * ldexp(1.0, e + h - 63) * (1 + 0x1p-23);
    *ref = sum * nr;
    *bound_term = term * nr;
    free(g);
    free(xs);
    free(colsum);
    return bmax;
}

/* |fixed - sum_j G_j| <= 2^-24 (1 + 2^-28) |sum| + (1 + 2^-23) M 2^(E + h - 63) per element (header of
 * fixsum.h), checked on every element against a long-double sum of the same float32 products,
 * for gradients and the Fisher, one round and three; and the loss sum is the sample-order sum. */
static void test_round_error_bound(void **state) {
    (void)state;
    static const int mus[] = {1, 5, 16, 64};
    for (size_t mi = 0; mi < sizeof mus / sizeof mus[0]; mi++)
        for (int fisher = 0; fisher < 2; fisher++)
            for (int nr = 1; nr <= 3; nr += 2) {
                Round r;
                round_init(&r, 100, 12);
                FixSum f;
                Dist d;
                memset(&d, 0, sizeof d);
                assert_int_equal(fixsum_init(&f, MPI_COMM_SELF, &r.s, mus[mi], 100, 1), EWC_OK);
                for (int k = 0; k < nr; k++)
                    assert_int_equal(fixsum_add(&f, &d, &r.s, &r.a, r.dl, r.n, fisher, r.in_sq,
                                                fisher ? NULL : r.loss), EWC_OK);
                double lsum = 0.0;
                for (int k = 0; k < r.n; k++) lsum += r.loss[k];
                if (!fisher) assert_true(fabs(f.loss - lsum) <= 1e-12 * lsum);
                float *out = malloc(r.s.n_params * sizeof(float));
                assert_int_equal(fixsum_finish(&f, &d, out), EWC_OK);
                double worst = 0.0;
                for (int l = 0; l < r.s.n_layers; l++) {
                    size_t cnt = r.s.offset[l + 1] - r.s.offset[l];
                    for (size_t i = 0; i < cnt; i += 1 + i % 3) {
                        long double ref;
                        double term;
                        round_reference(&r, l, mus[mi], fisher, i, nr, &ref, &term);
                        double got = out[r.s.offset[l] + i];
                        double err = fabs((double)((long double)got - ref));
                        double tol = 0x1p-24 * (1 + 0x1p-28) * fabs((double)ref) + term + 1e-300;
                        if (err > tol)
                            fail_msg("mu %d fisher %d rounds %d layer %d element %zu: %.17g vs "
                                     "%.17Lg, error %.3g > bound %.3g", mus[mi], fisher, nr, l, i,
                                     got, ref, err, tol);
                        worst = err / tol > worst ? err / tol : worst;
                    }
                }
                assert_true(worst <= 1.0);
                free(out);
                fixsum_free(&f);
                round_free(&r);
            }
}

/* An all-zero round sums to +0 everywhere; a NaN or inf delta is EWC_ENAN with a message, and the
 * next round starts afresh. */
static void test_round_edge_cases(void **state) {
    (void)state;
    Round r;
    round_init(&r, 40, 3);
    FixSum f;
    Dist d;
    memset(&d, 0, sizeof d);
    assert_int_equal(fixsum_init(&f, MPI_COMM_SELF, &r.s, 8, 40, 1), EWC_OK);
    float *out = malloc(r.s.n_params * sizeof(float));
    float **saved = malloc(sizeof(float *) * (size_t)r.s.n_layers);
    for (int l = 0; l < r.s.n_layers; l++) {
        size_t len = (size_t)r.n * r.s.dims[l + 1];
        saved[l] = malloc(len * sizeof(float));
        memcpy(saved[l], r.dl[l], len * sizeof(float));
        memset(r.dl[l], 0, len * sizeof(float));
    }
    assert_int_equal(fixsum_add(&f, &d, &r.s, &r.a, r.dl, r.n, 0, r.in_sq, NULL), EWC_OK);
    assert_int_equal(fixsum_finish(&f, &d, out), EWC_OK);
    for (size_t i = 0; i < r.s.n_params; i++) assert_true(out[i] == 0.0f && !signbit(out[i]));
    /* huge but finite: gradients near 1e37 sum without overflow (bound beyond float range) */
    for (int l = 0; l < r.s.n_layers; l++)
        for (size_t i = 0; i < (size_t)r.n * r.s.dims[l + 1]; i++) r.dl[l][i] = saved[l][i] * 1e36f;
    assert_int_equal(fixsum_add(&f, &d, &r.s, &r.a, r.dl, r.n, 0, r.in_sq, NULL), EWC_OK);
    assert_int_equal(fixsum_finish(&f, &d, out), EWC_OK);
    for (size_t i = 0; i < r.s.n_params; i++) assert_true(isfinite(out[i]));
    /* a NaN delta, then an inf input */
    r.dl[1][17] = NAN;
    ewc_error_clear();
    assert_int_equal(fixsum_add(&f, &d, &r.s, &r.a, r.dl, r.n, 0, r.in_sq, NULL), EWC_ENAN);
    assert_non_null(strstr(ewc_error_message(), "not finite"));
    r.dl[1][17] = 0.0f;
    r.a.act[0][40] = INFINITY;
    assert_int_equal(fixsum_add(&f, &d, &r.s, &r.a, r.dl, r.n, 1, r.in_sq, NULL), EWC_ENAN);
    r.a.act[0][40] = 0.5f;
    /* a float overflow inside a micro-batch GEMM (finite bound, inf product): detected */
    for (int l = 0; l < r.s.n_layers; l++) memcpy(r.dl[l], saved[l], (size_t)r.n * r.s.dims[l + 1] * sizeof(float));
    for (int k = 0; k < r.n; k++) r.dl[0][(size_t)k * r.s.dims[1]] = 3e38f;
    for (int k = 0; k < r.n; k++) r.a.act[0][(size_t)k * 34] = 1.0f;
    assert_int_equal(fixsum_add(&f, &d, &r.s, &r.a, r.dl, r.n, 0, r.in_sq, NULL), EWC_OK);
    ewc_error_clear();
    assert_int_equal(fixsum_finish(&f, &d, out), EWC_ENAN);
    assert_non_null(strstr(ewc_error_message(), "beyond its bound"));
    for (int l = 0; l < r.s.n_layers; l++) free(saved[l]);
    free(saved);
    free(out);
    fixsum_free(&f);
    round_free(&r);
}

/* The auto rule: the crossovers stated in fixsum.h, and no dependence on anything but the shape
 * and the batch; resolve_config fills the concrete mode and the micro-batch. */
static void test_choose(void **state) {
    (void)state;
    static const int widths[][2] = {{400, 400}, {1000, 1000}, {2000, 2000}};
    static const int cross[] = {890, 1343, 2094};
    for (int i = 0; i < 3; i++) {
        ModelShape s;
        assert_int_equal(model_shape_init(&s, 784, widths[i], 2, 10), EWC_OK);
        assert_int_equal(fixsum_choose(&s, cross[i] - 1), REDUCE_EXACT);
        assert_int_equal(fixsum_choose(&s, cross[i]), REDUCE_FIXED);
        assert_int_equal(fixsum_choose(&s, 100), REDUCE_EXACT);
        assert_int_equal(fixsum_choose(&s, 4096), REDUCE_FIXED);
    }
    ModelShape s;
    assert_int_equal(model_shape_init(&s, 784, widths[0], 2, 10), EWC_OK);
    assert_true(fixsum_exact_bytes_per_sample(&s) == 4.0 * (401 + 401 + 400 + 400 + 10 + 1));
    Config c;
    config_defaults(&c);
    assert_int_equal(c.reduce, REDUCE_AUTO);
    fixsum_resolve_config(&c, 784, 10);
    assert_int_equal(c.reduce, REDUCE_EXACT);
    assert_int_equal(c.micro_batch, 0);
    config_defaults(&c);
    c.batch = 1000;
    fixsum_resolve_config(&c, 784, 10);
    assert_int_equal(c.reduce, REDUCE_FIXED);
    assert_int_equal(c.micro_batch, 84); /* 12 micro-batches: even over 2 and 4 ranks */
    config_defaults(&c);
    c.batch = 1000;
    c.reduce = REDUCE_ALLREDUCE;
    fixsum_resolve_config(&c, 784, 10);
    assert_int_equal(c.reduce, REDUCE_ALLREDUCE);
    c.reduce = REDUCE_FIXED;
    c.micro_batch = 33;
    fixsum_resolve_config(&c, 784, 10);
    assert_int_equal(c.micro_batch, 33);
}

/* The largest share of a batch over P ranks, as fixsum_rows gives it to each rank. */
static int share_by_rows(int batch, int micro, int p) {
    FixSum f;
    memset(&f, 0, sizeof f);
    f.micro = micro;
    f.size = p;
    int most = 0;
    for (f.rank = 0; f.rank < p; f.rank++) {
        int b, e;
        fixsum_rows(&f, batch, &b, &e);
        most = e - b > most ? e - b : most;
    }
    return most;
}

/* The default micro-batch is the most even of 96, 84, 72 over 2 and 4 ranks (larger on ties),
 * checked against the ranks' rows as fixsum_rows hands them out. */
static void test_default_micro(void **state) {
    (void)state;
    assert_int_equal(fixsum_default_micro(1000), 84);
    assert_int_equal(fixsum_default_micro(4096), 96);
    for (int batch = 1; batch <= 5000; batch += batch < 300 ? 1 : 7) {
        int got = fixsum_default_micro(batch);
        double cost[3], best = INFINITY;
        int pick = -1;
        for (int i = 0; i < 3; i++) {
            int m = 96 - 12 * i;
            double c2 = share_by_rows(batch, m, 2) * 2.0 / batch;
            double c4 = share_by_rows(batch, m, 4) * 4.0 / batch;
            cost[i] = c2 > c4 ? c2 : c4;
            if (cost[i] < best) {
                best = cost[i];
                pick = m;
            }
        }
        if (got != pick)
            fail_msg("batch %d: default %d, the most even is %d (costs %.4f %.4f %.4f)", batch,
                     got, pick, cost[0], cost[1], cost[2]);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headroom_exponent), cmocka_unit_test(test_add_floats),
        cmocka_unit_test(test_subnormals),        cmocka_unit_test(test_gemm_bound),
        cmocka_unit_test(test_round_error_bound), cmocka_unit_test(test_round_edge_cases),
        cmocka_unit_test(test_choose),            cmocka_unit_test(test_default_micro),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}
