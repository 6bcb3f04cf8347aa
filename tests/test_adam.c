/* Tests of the Adam step: against an independent float64 recurrence (no penalty, explicit,
 * implicit), the bias correction at t = 1, 2, 10, the reduction of the implicit step to the SGD
 * one when s = lr, the implicit step as the proximal objective's minimiser, and the reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/adam.h"
#include "ewc/optim.h"
#include "ewc/penalty.h"
#include "testutil.h"

#define N 64
#define TASKS 2

/* An EWC penalty over TASKS random tasks and its naive float64 A = sum F, B = sum F anchor. */
typedef struct {
    Penalty pen;
    double a[N], b[N];
} Fixture;

static void fixture_init(Fixture *fx, double lambda, int tasks, uint64_t seed) {
    TestRng r = {seed};
    memset(fx, 0, sizeof *fx);
    assert_int_equal(penalty_init(&fx->pen, tasks ? METHOD_EWC : METHOD_SGD, lambda, 1.0, N),
                     EWC_OK);
    for (int t = 0; t < tasks; t++) {
        float f[N], anchor[N];
        trng_fill(&r, f, N, 0.0, 2.0);
        trng_fill(&r, anchor, N, -1.0, 1.0);
        penalty_add_task(&fx->pen, f, anchor);
        for (int i = 0; i < N; i++) {
            fx->a[i] += f[i];
            fx->b[i] += (double)f[i] * anchor[i];
        }
    }
}

/* The reference: the textbook Adam recurrence in float64, from its own float64 state. */
typedef struct {
    double th[N], m[N], v[N];
    long long t;
} Ref;

static void ref_step(Ref *r, const float *grad, const Fixture *fx, PenaltyStep mode, double lr,
                     double b1, double b2, double eps) {
    r->t++;
    double lambda = fx->pen.lambda, active = fx->pen.tasks_done > 0 && lambda != 0.0;
    for (int i = 0; i < N; i++) {
        double g = grad[i];
        if (active && mode == PENALTY_EXPLICIT) g += lambda * (fx->a[i] * r->th[i] - fx->b[i]);
        r->m[i] = b1 * r->m[i] + (1.0 - b1) * g;
        r->v[i] = b2 * r->v[i] + (1.0 - b2) * g * g;
        double mhat = r->m[i] / (1.0 - pow(b1, (double)r->t));
        double vhat = r->v[i] / (1.0 - pow(b2, (double)r->t));
        double s = lr / (sqrt(vhat) + eps);
        if (active && mode == PENALTY_IMPLICIT)
            r->th[i] = (r->th[i] - s * mhat + s * lambda * fx->b[i]) / (1.0 + s * lambda * fx->a[i]);
        else
            r->th[i] -= s * mhat;
    }
}

/* STEPS steps of random gradients from a random theta and zero moments; THETA, m, v and t follow
 * the reference within a tolerance that grows with the step (float32 against float64). */
static void check_against_reference(double lambda, int tasks, PenaltyStep mode, int steps,
                                    double b1, double b2, double eps, uint64_t seed) {
    Fixture fx;
    fixture_init(&fx, lambda, tasks, seed);
    Adam a;
    assert_int_equal(adam_init(&a, N, b1, b2, eps), EWC_OK);
    assert_int_equal(a.t, 0);
    float theta[N], grad[N];
    Ref r = {0};
    TestRng rng = {seed + 1};
    trng_fill(&rng, theta, N, -1.0, 1.0);
    for (int i = 0; i < N; i++) r.th[i] = theta[i];
    const float lr = 0.01f;
    for (int step = 1; step <= steps; step++) {
        trng_fill(&rng, grad, N, -1.0, 1.0);
        adam_step(&a, theta, grad, &fx.pen, lr, mode);
        ref_step(&r, grad, &fx, mode, lr, b1, b2, eps);
        assert_int_equal(a.t, step);
        for (int i = 0; i < N; i++) {
            double gmax = 1.0 + lambda * (fx.a[i] * 2.0 + fabs(fx.b[i]));
            assert_close_at(a.m[i], r.m[i], 8.0 * FLT_EPSILON * step * gmax, step * N + i);
            assert_close_at(a.v[i], r.v[i], 8.0 * FLT_EPSILON * step * gmax * gmax, step * N + i);
            assert_close_at(theta[i], r.th[i], 1e-6 * step * (1.0 + fabs(r.th[i])), step * N + i);
        }
    }
    adam_free(&a);
    penalty_free(&fx.pen);
}

static void test_reference_no_penalty(void **state) {
    check_against_reference(0.0, 0, PENALTY_EXPLICIT, 12, 0.9, 0.999, 1e-8, 1);
    check_against_reference(0.0, 0, PENALTY_IMPLICIT, 12, 0.8, 0.99, 1e-3, 2);
    check_against_reference(5.0, 0, PENALTY_IMPLICIT, 12, 0.9, 0.999, 1e-8, 3); /* no task yet */
}

static void test_reference_explicit(void **state) {
    check_against_reference(3.0, TASKS, PENALTY_EXPLICIT, 12, 0.9, 0.999, 1e-8, 10);
    check_against_reference(0.5, TASKS, PENALTY_EXPLICIT, 12, 0.5, 0.9, 1e-4, 11);
}

static void test_reference_implicit(void **state) {
    check_against_reference(3.0, TASKS, PENALTY_IMPLICIT, 12, 0.9, 0.999, 1e-8, 20);
    check_against_reference(1e4, TASKS, PENALTY_IMPLICIT, 12, 0.9, 0.999, 1e-8, 21); /* stiff */
}

/* A constant gradient g makes m = (1 - b1^t) g and v = (1 - b2^t) g^2 exactly, so with the
 * right bias correction mhat = g, vhat = g^2 and every step is lr g / (|g| + eps); an uncorrected
 * or off-by-one correction would give a step far from it at t = 1, 2 (and 10 for beta2). */
static void test_bias_correction(void **state) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-3;
    const float lr = 0.01f;
    Fixture fx;
    fixture_init(&fx, 0.0, 0, 30);
    Adam a;
    assert_int_equal(adam_init(&a, N, b1, b2, eps), EWC_OK);
    float theta[N], grad[N];
    TestRng rng = {31};
    trng_fill(&rng, theta, N, -1.0, 1.0);
    trng_fill(&rng, grad, N, -1.0, 1.0);
    for (int t = 1; t <= 10; t++) {
        float prev[N];
        memcpy(prev, theta, sizeof prev);
        adam_step(&a, theta, grad, &fx.pen, lr, PENALTY_EXPLICIT);
        if (t != 1 && t != 2 && t != 10) continue;
        assert_int_equal(a.t, t);
        for (int i = 0; i < N; i++) {
            double g = grad[i];
            assert_close_at(a.m[i], (1.0 - pow(b1, t)) * g, 4.0 * t * FLT_EPSILON * fabs(g), i);
            assert_close_at(a.v[i], (1.0 - pow(b2, t)) * g * g, 4.0 * t * FLT_EPSILON * g * g, i);
            double step = (double)prev[i] - theta[i], want = lr * g / (fabs(g) + eps);
            /* theta's own rounding (|theta| <= 1.2) bounds the step's precision */
            assert_close_at(step, want, 1e-5 * fabs(want) + 2.0 * FLT_EPSILON, t * N + i);
        }
    }
    adam_free(&a);
    penalty_free(&fx.pen);
}

/* b1 = b2 = 0, eps = 0.5 and |g| = 0.5 give m = g, v = g^2, no bias correction and
 * s = lr / (0.5 + 0.5) = lr exactly: the implicit Adam step must then be optim.h's implicit SGD
 * step bit for bit (and the unpenalised one plain SGD), over several steps. */
static void test_implicit_reduces_to_sgd(void **state) {
    Fixture fx, none;
    fixture_init(&fx, 7.0, TASKS, 40);
    fixture_init(&none, 0.0, 0, 41);
    const Fixture *fxs[] = {&fx, &none};
    for (int k = 0; k < 2; k++) {
        Adam a;
        assert_int_equal(adam_init(&a, N, 0.0, 0.0, 0.5), EWC_OK);
        float th_adam[N], th_sgd[N], grad[N];
        TestRng rng = {42};
        trng_fill(&rng, th_adam, N, -1.0, 1.0);
        memcpy(th_sgd, th_adam, sizeof th_sgd);
        for (int step = 0; step < 4; step++) {
            for (int i = 0; i < N; i++) grad[i] = trng_uniform(&rng, 0, 1) < 0.5 ? -0.5f : 0.5f;
            adam_step(&a, th_adam, grad, &fxs[k]->pen, 0.05f, PENALTY_IMPLICIT);
            optim_step(th_sgd, grad, NULL, &fxs[k]->pen, 0.05f, 0.0f, PENALTY_IMPLICIT);
            assert_memory_equal(th_adam, th_sgd, sizeof th_sgd);
        }
        adam_free(&a);
    }
    /* and the test can fail: eps = 0.25 gives s = lr / 0.75, a different step */
    Adam a;
    assert_int_equal(adam_init(&a, N, 0.0, 0.0, 0.25), EWC_OK);
    float th_adam[N], th_sgd[N], grad[N];
    for (int i = 0; i < N; i++) {
        th_adam[i] = th_sgd[i] = 0.25f;
        grad[i] = 0.5f;
    }
    adam_step(&a, th_adam, grad, &fx.pen, 0.05f, PENALTY_IMPLICIT);
    optim_step(th_sgd, grad, NULL, &fx.pen, 0.05f, 0.0f, PENALTY_IMPLICIT);
    assert_true(memcmp(th_adam, th_sgd, sizeof th_sgd) != 0);
    adam_free(&a);
    penalty_free(&fx.pen);
    penalty_free(&none.pen);
}

/* The implicit step minimises, per coordinate, the proximal objective
 *   J(x) = (x - (theta - s mhat))^2 / (2 s) + lambda/2 (A x^2 - 2 B x)
 * (s and mhat from the first step: mhat = g, s = lr / (|g| + eps)): moving the result by
 * +-delta in either direction must not lower J, while it does lower J for the explicit result. */
static void test_implicit_is_proximal_minimiser(void **state) {
    const double lambda = 50.0, eps = 1e-8;
    const float lr = 0.1f;
    Fixture fx;
    fixture_init(&fx, lambda, TASKS, 50);
    Adam a;
    assert_int_equal(adam_init(&a, N, 0.9, 0.999, eps), EWC_OK);
    float theta[N], theta0[N], grad[N];
    TestRng rng = {51};
    trng_fill(&rng, theta0, N, -1.0, 1.0);
    trng_fill(&rng, grad, N, -1.0, 1.0);
    memcpy(theta, theta0, sizeof theta);
    adam_step(&a, theta, grad, &fx.pen, lr, PENALTY_IMPLICIT);
    int explicit_worse = 0;
    for (int i = 0; i < N; i++) {
        double g = grad[i], s = lr / (fabs(g) + eps), c = theta0[i] - s * g;
#define J(x) (((x) - c) * ((x) - c) / (2.0 * s) + lambda / 2.0 * (fx.a[i] * (x) * (x) - 2.0 * fx.b[i] * (x)))
        double x = theta[i], jx = J(x);
        for (double delta = 1e-4; delta <= 1e-1; delta *= 10.0) {
            double d = delta * (1.0 + fabs(x));
            if (!(J(x + d) >= jx && J(x - d) >= jx))
                fail_msg("[%d] J(%.9g) = %.12g is not a minimum (delta %g: %.12g, %.12g)", i, x,
                         jx, d, J(x + d), J(x - d));
        }
        /* the explicit-penalty step from the same point is not the minimiser */
        double xe = c - s * lambda * (fx.a[i] * theta0[i] - fx.b[i]);
        explicit_worse += J(xe) > jx + 1e-9 * (1.0 + fabs(jx));
#undef J
    }
    assert_true(explicit_worse > N / 2);
    adam_free(&a);
    penalty_free(&fx.pen);
}

/* adam_reset gives the state of a new optimizer: the next step equals a fresh one's. */
static void test_reset(void **state) {
    Fixture fx;
    fixture_init(&fx, 2.0, TASKS, 60);
    Adam a, fresh;
    assert_int_equal(adam_init(&a, N, 0.9, 0.999, 1e-8), EWC_OK);
    assert_int_equal(adam_init(&fresh, N, 0.9, 0.999, 1e-8), EWC_OK);
    float th[N], th2[N], grad[N];
    TestRng rng = {61};
    trng_fill(&rng, th, N, -1.0, 1.0);
    for (int step = 0; step < 5; step++) {
        trng_fill(&rng, grad, N, -1.0, 1.0);
        adam_step(&a, th, grad, &fx.pen, 0.01f, PENALTY_EXPLICIT);
    }
    adam_reset(&a);
    assert_int_equal(a.t, 0);
    memcpy(th2, th, sizeof th2);
    trng_fill(&rng, grad, N, -1.0, 1.0);
    adam_step(&a, th, grad, &fx.pen, 0.01f, PENALTY_EXPLICIT);
    adam_step(&fresh, th2, grad, &fx.pen, 0.01f, PENALTY_EXPLICIT);
    assert_memory_equal(th, th2, sizeof th);
    assert_memory_equal(a.m, fresh.m, N * sizeof(float));
    assert_memory_equal(a.v, fresh.v, N * sizeof(float));
    adam_free(&a);
    adam_free(&fresh);
    penalty_free(&fx.pen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_no_penalty),
        cmocka_unit_test(test_reference_explicit),
        cmocka_unit_test(test_reference_implicit),
        cmocka_unit_test(test_bias_correction),
        cmocka_unit_test(test_implicit_reduces_to_sgd),
        cmocka_unit_test(test_implicit_is_proximal_minimiser),
        cmocka_unit_test(test_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
