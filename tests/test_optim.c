/* Tests of the fused optimizer step: plain SGD, momentum, the explicit penalty (= data gradient
 * plus penalty_add_gradient, then SGD), the implicit proximal step against its float64 closed
 * form, and stability of the implicit step where the explicit one diverges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/optim.h"
#include "ewc/penalty.h"
#include "testutil.h"

#define N 64
#define TASKS 3

/* A penalty over TASKS random tasks, with the float64 A = sum_t F_t and B = sum_t F_t anchor_t
 * of the naive definition kept alongside. */
typedef struct {
    Penalty pen;
    double a[N], b[N];
} Fixture;

static void fixture_init(Fixture *fx, Method method, double lambda, int tasks, uint64_t seed) {
    TestRng r = {seed};
    memset(fx, 0, sizeof *fx);
    assert_int_equal(penalty_init(&fx->pen, method, lambda, 1.0, N), EWC_OK);
    for (int t = 0; t < tasks; t++) {
        float f[N], anchor[N];
        trng_fill(&r, f, N, 0.0, 2.0);
        trng_fill(&r, anchor, N, -1.0, 1.0);
        penalty_add_task(&fx->pen, f, anchor);
        for (int i = 0; i < N; i++) {
            if (method == METHOD_ONLINE_EWC) { /* gamma = 1: one Fisher, the latest anchor */
                fx->a[i] += f[i];
                fx->b[i] = fx->a[i] * anchor[i];
                continue;
            }
            double w = method == METHOD_L2 ? 1.0 : f[i];
            fx->a[i] += w;
            fx->b[i] += w * anchor[i];
        }
    }
}

/* Random theta and grad; a random momentum buffer if USE_MOM, else zeros. */
static void random_state(float *theta, float *grad, float *mom, int use_mom, uint64_t seed) {
    TestRng r = {seed};
    trng_fill(&r, theta, N, -1.0, 1.0);
    trng_fill(&r, grad, N, -1.0, 1.0);
    if (use_mom)
        trng_fill(&r, mom, N, -0.5, 0.5);
    else
        memset(mom, 0, N * sizeof *mom);
}

/* Without an active penalty: theta -= lr g (no momentum) for inactive and lambda = 0 cases. */
static void test_plain_sgd(void **state) {
    Fixture sgd, fresh, zero;
    fixture_init(&sgd, METHOD_SGD, 5.0, 0, 1);
    fixture_init(&fresh, METHOD_EWC, 5.0, 0, 2); /* no finished task yet */
    fixture_init(&zero, METHOD_EWC, 0.0, 2, 3);  /* lambda = 0 */
    const Penalty *pens[] = {&sgd.pen, &fresh.pen, &zero.pen};
    const PenaltyStep modes[] = {PENALTY_EXPLICIT, PENALTY_IMPLICIT};
    for (size_t k = 0; k < 3; k++)
        for (size_t m = 0; m < 2; m++) {
            float theta[N], theta0[N], grad[N], grad0[N], unused[N];
            random_state(theta, grad, unused, 0, 10 + k);
            memcpy(theta0, theta, sizeof theta);
            memcpy(grad0, grad, sizeof grad);
            optim_step(theta, grad, NULL, pens[k], 0.25f, 0.0f, modes[m]);
            assert_memory_equal(grad, grad0, sizeof grad);
            for (int i = 0; i < N; i++) {
                double want = (double)theta0[i] - 0.25 * grad0[i];
                assert_close_at(theta[i], want, FLT_EPSILON * (fabs(theta0[i]) + 0.25), i);
            }
        }
    penalty_free(&sgd.pen);
    penalty_free(&fresh.pen);
    penalty_free(&zero.pen);
}

/* v = mu v + g; theta -= lr v over several steps, against a float64 recurrence. */
static void test_momentum(void **state) {
    Fixture fx;
    fixture_init(&fx, METHOD_SGD, 0.0, 0, 4);
    float theta[N], grad[N], mom[N];
    double th[N], v[N];
    random_state(theta, grad, mom, 1, 20);
    for (int i = 0; i < N; i++) {
        th[i] = theta[i];
        v[i] = mom[i];
    }
    const float lr = 0.1f, mu = 0.9f;
    TestRng r = {21};
    for (int step = 0; step < 10; step++) {
        trng_fill(&r, grad, N, -1.0, 1.0);
        optim_step(theta, grad, mom, &fx.pen, lr, mu, PENALTY_EXPLICIT);
        for (int i = 0; i < N; i++) {
            v[i] = (double)mu * v[i] + grad[i];
            th[i] -= (double)lr * v[i];
            assert_close_at(mom[i], v[i], 1e-6 * (step + 1) * (1.0 + fabs(v[i])), i);
            assert_close_at(theta[i], th[i], 1e-6 * (step + 1) * (1.0 + fabs(th[i])), i);
        }
    }
    penalty_free(&fx.pen);
}

/* Explicit: the fused step equals grad + penalty_add_gradient followed by (momentum) SGD, and
 * the float64 closed form theta - lr (mu v + g + lambda (A theta - B)). */
static void check_explicit(Method method, int use_mom) {
    Fixture fx;
    fixture_init(&fx, method, 3.0, TASKS, 30 + method);
    float theta[N], grad[N], mom[N], theta0[N], mom0[N], g2[N];
    random_state(theta, grad, mom, use_mom, 31);
    memcpy(theta0, theta, sizeof theta);
    memcpy(mom0, mom, sizeof mom);
    const float lr = 0.05f, mu = use_mom ? 0.8f : 0.0f;

    optim_step(theta, grad, use_mom ? mom : NULL, &fx.pen, lr, mu, PENALTY_EXPLICIT);

    memcpy(g2, grad, sizeof grad);
    penalty_add_gradient(&fx.pen, theta0, g2);
    for (int i = 0; i < N; i++) {
        double pen = fx.pen.lambda * (fx.a[i] * theta0[i] - fx.b[i]);
        double v = (use_mom ? (double)mu * mom0[i] : 0.0) + grad[i] + pen;
        double want = (double)theta0[i] - lr * v;
        double tol = 4.0 * FLT_EPSILON * (fabs(theta0[i]) + lr * (fabs(grad[i]) + fabs(pen) +
                                                                  fabs(mom0[i])));
        assert_close_at(theta[i], want, tol, i);
        /* the naive path: SGD on the data gradient plus the penalty's gradient */
        float v2 = use_mom ? mu * mom0[i] + g2[i] : g2[i];
        assert_close_at(theta[i], theta0[i] - lr * v2, tol, i);
        if (use_mom) assert_close_at(mom[i], v, 4.0 * FLT_EPSILON * (fabs(v) + 1.0), i);
    }
    penalty_free(&fx.pen);
}

static void test_explicit(void **state) {
    check_explicit(METHOD_EWC, 0);
    check_explicit(METHOD_EWC, 1);
    check_explicit(METHOD_L2, 0);
    check_explicit(METHOD_L2, 1);
}

/* Implicit: theta = (theta - lr v + lr lambda B) / (1 + lr lambda A), v = mu v + grad (the
 * penalty stays out of the momentum), in float64 from the current float state at every step. */
static void check_implicit(Method method, double lambda, int use_mom) {
    Fixture fx;
    fixture_init(&fx, method, lambda, TASKS, 40 + method);
    float theta[N], grad[N], mom[N];
    random_state(theta, grad, mom, use_mom, 41);
    const float lr = 0.05f, mu = use_mom ? 0.8f : 0.0f;
    TestRng r = {42};
    for (int step = 0; step < 5; step++) {
        float theta0[N], mom0[N];
        trng_fill(&r, grad, N, -1.0, 1.0);
        memcpy(theta0, theta, sizeof theta);
        memcpy(mom0, mom, sizeof mom);
        optim_step(theta, grad, use_mom ? mom : NULL, &fx.pen, lr, mu, PENALTY_IMPLICIT);
        double k = (double)lr * lambda;
        for (int i = 0; i < N; i++) {
            double v = (use_mom ? (double)mu * mom0[i] : 0.0) + grad[i];
            double want = ((double)theta0[i] - lr * v + k * fx.b[i]) / (1.0 + k * fx.a[i]);
            double tol = 4.0 * FLT_EPSILON * (fabs(theta0[i]) + lr * fabs(v) + k * fabs(fx.b[i])) /
                         (1.0 + k * fx.a[i]) + FLT_EPSILON * fabs(want);
            assert_close_at(theta[i], want, tol, step * N + i);
            if (use_mom) assert_close_at(mom[i], v, 4.0 * FLT_EPSILON * (fabs(v) + 1.0), i);
        }
    }
    penalty_free(&fx.pen);
}

static void test_implicit(void **state) {
    check_implicit(METHOD_EWC, 3.0, 0);
    check_implicit(METHOD_EWC, 3.0, 1);
    check_implicit(METHOD_EWC, 1e4, 0); /* stiff */
    check_implicit(METHOD_L2, 3.0, 1);
    check_implicit(METHOD_ONLINE_EWC, 3.0, 0);
}

/* lr lambda A = 10: explicit steps multiply theta - anchor by (1 - 10) = -9 and blow up, the
 * implicit step divides it by 1 + 10 and converges to the anchor. */
static void test_implicit_stable_where_explicit_diverges(void **state) {
    enum { M = 4 };
    const float fisher[M] = {1, 1, 1, 1}, anchor[M] = {0.5f, -0.25f, 1.0f, 0.0f};
    const float start[M] = {1.5f, 0.75f, -1.0f, 0.125f}, zero[M] = {0};
    const float lr = 0.1f;
    const PenaltyStep modes[] = {PENALTY_EXPLICIT, PENALTY_IMPLICIT};
    for (int m = 0; m < 2; m++) {
        Penalty pen;
        assert_int_equal(penalty_init(&pen, METHOD_EWC, 100.0, 1.0, M), EWC_OK);
        penalty_add_task(&pen, fisher, anchor);
        assert_close(lr * pen.lambda * penalty_max_a(&pen), 10.0, 1e-5);
        float theta[M];
        memcpy(theta, start, sizeof theta);
        for (int step = 1; step <= 20; step++) {
            float prev[M];
            memcpy(prev, theta, sizeof prev);
            optim_step(theta, zero, NULL, &pen, lr, 0.0f, modes[m]);
            for (int i = 0; i < M; i++) {
                double d0 = fabs((double)prev[i] - anchor[i]);
                double d = fabs((double)theta[i] - anchor[i]);
                assert_true(isfinite(theta[i]));
                if (modes[m] == PENALTY_EXPLICIT) {
                    if (!(d >= 8.0 * d0)) fail_msg("explicit step %d: |d| %g -> %g", step, d0, d);
                } else if (!(d <= d0 / 10.0 + 1e-7)) {
                    fail_msg("implicit step %d: |d| %g -> %g", step, d0, d);
                }
            }
        }
        for (int i = 0; i < M; i++) {
            double d = fabs((double)theta[i] - anchor[i]), d_start = fabs(start[i] - anchor[i]);
            if (modes[m] == PENALTY_EXPLICIT)
                assert_true(d > 1e18 * d_start); /* 9^20 = 1.2e19 */
            else
                assert_true(d <= 1e-6);
        }
        penalty_free(&pen);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_sgd),
        cmocka_unit_test(test_momentum),
        cmocka_unit_test(test_explicit),
        cmocka_unit_test(test_implicit),
        cmocka_unit_test(test_implicit_stable_where_explicit_diverges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
