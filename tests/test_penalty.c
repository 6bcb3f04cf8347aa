/* Tests of the one-quadratic penalty (EWC, L2, online EWC) against its naive per-task definition
 * in float64: value, gradient (also against finite differences of the value), the fused running
 * sums over many tasks, the inactive sgd method and penalty_max_a. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/penalty.h"
#include "testutil.h"

#define MAX_TASKS 8

/* The finished tasks as the naive definition sees them. */
typedef struct {
    Method method;
    double lambda, gamma;
    int tasks;
    size_t n;
    float *fisher[MAX_TASKS], *anchor[MAX_TASKS];
} History;

/* Per-parameter weight and anchor of the naive penalty term for task T, as sum_t terms
 * F_t,i (theta_i - anchor_t,i)^2 (online EWC: one term, the running Fisher at the latest anchor,
 * so every earlier task has weight 0). */
static double naive_weight(const History *h, int t, size_t i) {
    switch (h->method) {
    case METHOD_L2:
        return 1.0;
    case METHOD_EWC:
        return h->fisher[t][i];
    case METHOD_ONLINE_EWC: {
        if (t != h->tasks - 1) return 0.0;
        double f = 0.0;
        for (int u = 0; u < h->tasks; u++) f = h->gamma * f + h->fisher[u][i];
        return f;
    }
    default:
        return 0.0;
    }
}

/* sum_t lambda/2 sum_i w_t,i (theta_i - anchor_t,i)^2, and in *MAG the sum of its absolute
 * terms without the cancellation (for tolerances). */
static double naive_value(const History *h, const float *theta, double *mag) {
    double v = 0.0, m = 0.0;
    for (int t = 0; t < h->tasks; t++)
        for (size_t i = 0; i < h->n; i++) {
            double w = naive_weight(h, t, i), d = (double)theta[i] - h->anchor[t][i];
            v += 0.5 * h->lambda * w * d * d;
            m += 0.5 * h->lambda * w * (fabs(theta[i]) + fabs(h->anchor[t][i])) *
                 (fabs(theta[i]) + fabs(h->anchor[t][i]));
        }
    if (mag) *mag = m;
    return v;
}

/* d/dtheta_i of the naive value, and the size of its terms in *MAG. */
static double naive_gradient(const History *h, const float *theta, size_t i, double *mag) {
    double g = 0.0, m = 0.0;
    for (int t = 0; t < h->tasks; t++) {
        double w = naive_weight(h, t, i);
        g += h->lambda * w * ((double)theta[i] - h->anchor[t][i]);
        m += h->lambda * w * (fabs(theta[i]) + fabs(h->anchor[t][i]));
    }
    *mag = m;
    return g;
}

static void history_init(History *h, Method method, double lambda, double gamma, size_t n) {
    memset(h, 0, sizeof *h);
    h->method = method;
    h->lambda = lambda;
    h->gamma = gamma;
    h->n = n;
}

/* Draw a task (Fishers in [0, 2) with some exact zeros and a few large values; anchors and
 * theta on the 1/64 grid so that theta +- 1/64 is exact for the finite differences), record it
 * and fold it into P. */
static void add_random_task(History *h, Penalty *p, TestRng *r) {
    assert_true(h->tasks < MAX_TASKS);
    float *f = malloc(h->n * sizeof *f), *a = malloc(h->n * sizeof *a);
    assert_non_null(f);
    assert_non_null(a);
    for (size_t i = 0; i < h->n; i++) {
        f[i] = (float)trng_uniform(r, 0.0, 2.0);
        if (i % 7 == 3) f[i] = 0.0f;
        if (i % 11 == 5) f[i] = 50.0f * f[i];
        a[i] = (float)(floor(trng_uniform(r, -64.0, 64.0)) / 64.0);
    }
    h->fisher[h->tasks] = f;
    h->anchor[h->tasks] = a;
    h->tasks++;
    penalty_add_task(p, f, a);
}

static void history_free(History *h) {
    for (int t = 0; t < h->tasks; t++) {
        free(h->fisher[t]);
        free(h->anchor[t]);
    }
}

static float *random_theta(TestRng *r, size_t n) {
    float *theta = malloc(n * sizeof *theta);
    assert_non_null(theta);
    for (size_t i = 0; i < n; i++) theta[i] = (float)(floor(trng_uniform(r, -96.0, 96.0)) / 64.0);
    return theta;
}

/* Value and gradient of P at THETA against the naive definition; the gradient also against
 * central differences of penalty_value (exact for a quadratic, up to rounding). REL is the
 * relative tolerance for float32 running sums. */
static void check_against_naive(const History *h, const Penalty *p, const float *theta_in,
                                double rel) {
    size_t n = h->n;
    double mag;
    double want = naive_value(h, theta_in, &mag);
    assert_close(penalty_value(p, theta_in), want, rel * mag + 1e-12);

    float *theta = malloc(n * sizeof *theta), *grad = malloc(n * sizeof *grad);
    float *base = malloc(n * sizeof *base);
    assert_non_null(theta);
    assert_non_null(grad);
    assert_non_null(base);
    TestRng r = {h->tasks * 1000 + 7};
    trng_fill(&r, base, n, -1.0, 1.0);
    memcpy(grad, base, n * sizeof *grad);
    memcpy(theta, theta_in, n * sizeof *theta);
    penalty_add_gradient(p, theta, grad);
    assert_memory_equal(theta, theta_in, n * sizeof *theta);

    const float step = 1.0f / 64.0f;
    size_t pulled = 0;
    for (size_t i = 0; i < n; i++) {
        double gmag, g = naive_gradient(h, theta, i, &gmag);
        /* GRAD is accumulated into: base + penalty gradient */
        assert_close_at(grad[i], base[i] + g, rel * gmag + 2e-7 * (fabs(base[i]) + fabs(g)), i);
        pulled += fabs(g) > 1e-3;

        float t0 = theta[i];
        theta[i] = t0 + step;
        double up = penalty_value(p, theta);
        theta[i] = t0 - step;
        double down = penalty_value(p, theta);
        theta[i] = t0;
        double fd = (up - down) / (2.0 * step);
        assert_close_at((double)grad[i] - base[i], fd, 1e-6 * fabs(fd) + 1e-6 * fabs(base[i]) +
                        1e-12 * mag, i);
    }
    assert_true(pulled > n / 2); /* the check saw a real pull on most parameters */
    free(theta);
    free(grad);
    free(base);
}

static void check_method(Method method, double lambda, double gamma, size_t n, int tasks,
                         uint64_t seed) {
    TestRng r = {seed};
    History h;
    Penalty p;
    history_init(&h, method, lambda, gamma, n);
    assert_int_equal(penalty_init(&p, method, lambda, gamma, n), EWC_OK);
    float *theta = random_theta(&r, n);
    for (int t = 0; t < tasks; t++) {
        add_random_task(&h, &p, &r);
        assert_true(penalty_active(&p));
        check_against_naive(&h, &p, theta, 2e-6 * (t + 1));
    }
    free(theta);
    history_free(&h);
    penalty_free(&p);
}

static void test_ewc(void **state) { check_method(METHOD_EWC, 3.0, 1.0, 37, 3, 81); }

static void test_l2(void **state) { check_method(METHOD_L2, 0.5, 1.0, 37, 3, 82); }

static void test_online_ewc(void **state) {
    check_method(METHOD_ONLINE_EWC, 3.0, 0.7, 37, 4, 83);
    check_method(METHOD_ONLINE_EWC, 3.0, 1.0, 37, 3, 84);
}

/* The running sums over five tasks equal the per-task sums of values and gradients. */
static void test_fused_five_tasks(void **state) {
    check_method(METHOD_EWC, 100.0, 1.0, 1000, 5, 85);
}

/* L2 ignores the Fisher it is given: F_t = 1. */
static void test_l2_ignores_fisher(void **state) {
    Penalty p;
    size_t n = 5;
    float fisher[5] = {7, 7, 7, 7, 7}, anchor[5] = {1, -1, 0.5f, 0, 2}, theta[5] = {0};
    assert_int_equal(penalty_init(&p, METHOD_L2, 2.0, 1.0, n), EWC_OK);
    penalty_add_task(&p, fisher, anchor);
    penalty_add_task(&p, fisher, anchor);
    /* 2 tasks x lambda/2 x (1 + 1 + 0.25 + 0 + 4) */
    assert_close(penalty_value(&p, theta), 2.0 * 1.0 * 6.25, 1e-12);
    assert_close(penalty_max_a(&p), 2.0, 0.0);
    penalty_free(&p);
}

/* Close to the anchor the gradient of one task keeps its relative accuracy (B is float64). */
static void test_near_anchor(void **state) {
    const Method methods[] = {METHOD_EWC, METHOD_ONLINE_EWC, METHOD_L2};
    for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
        size_t n = 64;
        TestRng r = {86};
        float *f = malloc(n * sizeof *f), *a = malloc(n * sizeof *a);
        float *theta = malloc(n * sizeof *theta), *grad = calloc(n, sizeof *grad);
        assert_true(f && a && theta && grad);
        trng_fill(&r, f, n, 0.5, 2.0);
        trng_fill(&r, a, n, -3.0, 3.0);
        double want_value = 0.0, terms = 0.0;
        for (size_t i = 0; i < n; i++) {
            theta[i] = nextafterf(nextafterf(a[i], INFINITY), INFINITY); /* 2 ulp away */
            double w = methods[m] == METHOD_L2 ? 1.0 : f[i], d = (double)theta[i] - a[i];
            want_value += 0.5 * 10.0 * w * d * d;
            terms += 0.5 * 10.0 * 4.0 * w * (double)theta[i] * theta[i]; /* |A th^2|+|2B th|+C */
        }
        Penalty p;
        assert_int_equal(penalty_init(&p, methods[m], 10.0, 0.9, n), EWC_OK);
        penalty_add_task(&p, f, a);
        penalty_add_gradient(&p, theta, grad);
        for (size_t i = 0; i < n; i++) {
            double w = methods[m] == METHOD_L2 ? 1.0 : f[i];
            double want = 10.0 * w * ((double)theta[i] - a[i]);
            assert_close_at(grad[i], want, 1e-6 * fabs(want), i);
        }
        /* the value cancels O(1) terms down to ~1e-11: float64 rounding of the terms only */
        assert_close(penalty_value(&p, theta), want_value, 4.0 * DBL_EPSILON * terms);
        assert_true(4.0 * DBL_EPSILON * terms < 0.2 * want_value); /* the check has teeth */
        penalty_free(&p);
        free(f);
        free(a);
        free(theta);
        free(grad);
    }
}

static void test_inactive_before_first_task(void **state) {
    const Method methods[] = {METHOD_EWC, METHOD_L2, METHOD_ONLINE_EWC};
    for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
        Penalty p;
        float theta[4] = {1, 2, 3, 4}, grad[4] = {0.5f, -1, 2, 0};
        const float grad0[4] = {0.5f, -1, 2, 0};
        assert_int_equal(penalty_init(&p, methods[m], 5.0, 1.0, 4), EWC_OK);
        assert_false(penalty_active(&p));
        assert_true(penalty_value(&p, theta) == 0.0);
        penalty_add_gradient(&p, theta, grad);
        assert_memory_equal(grad, grad0, sizeof grad);
        assert_true(penalty_max_a(&p) == 0.0f);
        penalty_free(&p);
    }
}

static void test_sgd_inactive(void **state) {
    Penalty p;
    float theta[4] = {1, 2, 3, 4}, anchor[4] = {0, 0, 0, 0}, grad[4] = {0.5f, -1, 2, 0};
    const float grad0[4] = {0.5f, -1, 2, 0};
    assert_int_equal(penalty_init(&p, METHOD_SGD, 5.0, 1.0, 4), EWC_OK);
    penalty_add_task(&p, NULL, anchor); /* the Fisher may be NULL for sgd */
    penalty_add_task(&p, NULL, anchor);
    assert_false(penalty_active(&p));
    assert_true(penalty_value(&p, theta) == 0.0);
    penalty_add_gradient(&p, theta, grad);
    assert_memory_equal(grad, grad0, sizeof grad);
    assert_true(penalty_max_a(&p) == 0.0f);
    penalty_free(&p);
}

static void test_max_a(void **state) {
    enum { N = 300, T = 4 };
    TestRng r = {87};
    Penalty ewc, online, l2;
    double gamma = 0.6, sum[N] = {0}, run[N] = {0};
    assert_int_equal(penalty_init(&ewc, METHOD_EWC, 1.0, 1.0, N), EWC_OK);
    assert_int_equal(penalty_init(&online, METHOD_ONLINE_EWC, 1.0, gamma, N), EWC_OK);
    assert_int_equal(penalty_init(&l2, METHOD_L2, 1.0, 1.0, N), EWC_OK);
    float f[N], a[N];
    for (int t = 0; t < T; t++) {
        trng_fill(&r, f, N, 0.0, 1.0);
        trng_fill(&r, a, N, -1.0, 1.0);
        f[(t * 37) % N] = 10.0f + t; /* a different maximiser per task */
        penalty_add_task(&ewc, f, a);
        penalty_add_task(&online, f, a);
        penalty_add_task(&l2, f, a);
        double max_sum = 0.0, max_run = 0.0;
        for (int i = 0; i < N; i++) {
            sum[i] += f[i];
            run[i] = gamma * run[i] + f[i];
            max_sum = fmax(max_sum, sum[i]);
            max_run = fmax(max_run, run[i]);
        }
        assert_close_at(penalty_max_a(&ewc), max_sum, 1e-6 * max_sum, t);
        assert_close_at(penalty_max_a(&online), max_run, 1e-6 * max_run, t);
        assert_close_at(penalty_max_a(&l2), t + 1, 0.0, t);
    }
    penalty_free(&ewc);
    penalty_free(&online);
    penalty_free(&l2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ewc),
        cmocka_unit_test(test_l2),
        cmocka_unit_test(test_online_ewc),
        cmocka_unit_test(test_fused_five_tasks),
        cmocka_unit_test(test_l2_ignores_fisher),
        cmocka_unit_test(test_near_anchor),
        cmocka_unit_test(test_inactive_before_first_task),
        cmocka_unit_test(test_sgd_inactive),
        cmocka_unit_test(test_max_a),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
