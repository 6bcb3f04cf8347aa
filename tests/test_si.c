/* Synaptic Intelligence (si.h and the fused accumulation of optim.h / adam.h): the path
 * integral w of a few SGD steps on a tiny linear model against a float64 run computing
 * -g * delta by hand, the fused variants of every optimizer case against optim_step / adam_step
 * (same trajectory bit for bit, w = the float64 sum over it of -g_data * delta), the importance
 * with its clipping, and the penalty's SI / MAS form (A = 2 sum Omega, latest anchor). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/adam.h"
#include "ewc/optim.h"
#include "ewc/penalty.h"
#include "ewc/si.h"
#include "testutil.h"

/* The tiny model: y = W x + b with 3 inputs, 2 outputs, [W | b] row-major (2, 4) = 8 params,
 * loss = 1/(2S) sum_s ||W x_s + b - y_s||^2 over S = 5 fixed samples. */
#define DIN 3
#define DOUT 2
#define NP (DOUT * (DIN + 1))
#define S 5

typedef struct {
    double x[S][DIN], y[S][DOUT];
} Data;

static void data_init(Data *d, uint64_t seed) {
    TestRng r = {seed};
    for (int s = 0; s < S; s++) {
        for (int k = 0; k < DIN; k++) d->x[s][k] = trng_uniform(&r, -1.0, 1.0);
        for (int j = 0; j < DOUT; j++) d->y[s][j] = trng_uniform(&r, -2.0, 2.0);
    }
}

/* Loss and gradient (NP) at THETA, in float64. */
static double loss_grad(const Data *d, const double *theta, double *g) {
    double loss = 0.0;
    if (g) memset(g, 0, NP * sizeof *g);
    for (int s = 0; s < S; s++)
        for (int j = 0; j < DOUT; j++) {
            const double *row = theta + j * (DIN + 1);
            double r = row[DIN] - d->y[s][j];
            for (int k = 0; k < DIN; k++) r += row[k] * d->x[s][k];
            loss += r * r / (2.0 * S);
            if (!g) continue;
            for (int k = 0; k < DIN; k++) g[j * (DIN + 1) + k] += r * d->x[s][k] / S;
            g[j * (DIN + 1) + DIN] += r / S;
        }
    return loss;
}

/* The float32 data gradient the trainer would hand the optimizer at THETA32. */
static void grad32(const Data *d, const float *theta32, float *g32) {
    double th[NP], g[NP];
    for (int i = 0; i < NP; i++) th[i] = theta32[i];
    loss_grad(d, th, g);
    for (int i = 0; i < NP; i++) g32[i] = (float)g[i];
}

/* 1/2 delta^T H delta for the step delta = -LR G: the loss is quadratic, so per step
 * -g . delta = L(theta) - L(theta + delta) + 1/2 delta^T H delta exactly. */
static double half_curvature(const Data *d, const double *g, double lr) {
    double c = 0.0;
    for (int s = 0; s < S; s++)
        for (int j = 0; j < DOUT; j++) {
            const double *gj = g + j * (DIN + 1);
            double dx = -lr * gj[DIN];
            for (int k = 0; k < DIN; k++) dx -= lr * gj[k] * d->x[s][k];
            c += dx * dx / (2.0 * S);
        }
    return c;
}

/* Plain SGD, 25 steps, lr 0.2: the fused w against a float64 run that computes -g * delta by
 * hand; the importance against the float64 formula; and sum_i w_i against the loss decrease
 * (the path integral splits it over the parameters), plus the steps' exact curvature terms. */
static void test_si_sgd_vs_float64(void **state) {
    (void)state;
    Data d;
    data_init(&d, 11);
    TestRng r = {12};
    float th32[NP], g32[NP];
    double th64[NP], start64[NP], g64[NP], w64[NP] = {0};
    trng_fill(&r, th32, NP, -1.0, 1.0);
    for (int i = 0; i < NP; i++) th64[i] = start64[i] = th32[i];
    Penalty none;
    assert_int_equal(penalty_init(&none, METHOD_SGD, 0.0, 1.0, NP), EWC_OK);
    Si si;
    assert_int_equal(si_init(&si, NP, 0.1), EWC_OK);
    si_begin_task(&si, th32);
    const float lr = 0.2f;
    double loss0 = loss_grad(&d, th64, NULL), curv = 0.0;
    for (int k = 0; k < 25; k++) {
        grad32(&d, th32, g32);
        optim_step_si(th32, g32, NULL, &none, lr, 0.0f, PENALTY_EXPLICIT, si.w);
        loss_grad(&d, th64, g64);
        for (int i = 0; i < NP; i++) {
            double next = th64[i] - (double)lr * g64[i];
            w64[i] -= g64[i] * (next - th64[i]);
            th64[i] = next;
        }
        curv += half_curvature(&d, g64, (double)lr);
    }
    double wmax = 0.0, wsum = 0.0;
    for (int i = 0; i < NP; i++) wmax = fabs(w64[i]) > wmax ? fabs(w64[i]) : wmax;
    for (int i = 0; i < NP; i++) {
        assert_close_at(si.w[i], w64[i], 1e-4 * fabs(w64[i]) + 1e-6 * wmax, i);
        assert_true(w64[i] >= 0.0); /* plain SGD: each term is lr g^2 */
        wsum += w64[i];
    }
    double drop = loss0 - loss_grad(&d, th64, NULL);
    assert_true(drop > 0.1 && curv > 0.01 * drop);
    assert_close(wsum, drop + curv, 1e-9 * drop);
    double fsum = 0.0;
    for (int i = 0; i < NP; i++) fsum += si.w[i];
    assert_close(fsum, drop + curv, 1e-4 * drop);
    float omega[NP];
    si_importance(&si, th32, omega);
    for (int i = 0; i < NP; i++) {
        double dt = th64[i] - start64[i], want = w64[i] / (dt * dt + 0.1);
        assert_close_at(omega[i], want, 1e-4 * want + 1e-7, i);
    }
    si_free(&si);
    penalty_free(&none);
}

/* Every optimizer case, with and without the SI accumulator, from the same state for 12 steps
 * on the tiny model: the trajectories (theta, momentum, Adam moments) agree bit for bit, and w
 * is the float64 sum over the float32 trajectory of -g_data * (theta_new - theta_old). The
 * penalty's own gradient is large here, so a w that used g + penalty would fail. */
typedef struct {
    const char *name;
    int adam, penalty, momentum;
    PenaltyStep mode;
} Case;

static const Case cases[] = {
    {"sgd", 0, 0, 0, PENALTY_EXPLICIT},         {"sgd momentum", 0, 0, 1, PENALTY_EXPLICIT},
    {"explicit", 0, 1, 0, PENALTY_EXPLICIT},     {"explicit momentum", 0, 1, 1, PENALTY_EXPLICIT},
    {"implicit", 0, 1, 0, PENALTY_IMPLICIT},     {"implicit momentum", 0, 1, 1, PENALTY_IMPLICIT},
    {"adam", 1, 0, 0, PENALTY_EXPLICIT},         {"adam explicit", 1, 1, 0, PENALTY_EXPLICIT},
    {"adam implicit", 1, 1, 0, PENALTY_IMPLICIT},
};

static void run_case(const Case *c) {
    Data d;
    data_init(&d, 21);
    TestRng r = {22};
    float a[NP], b[NP], mom_a[NP] = {0}, mom_b[NP] = {0}, g[NP], omega[NP], anchor[NP];
    trng_fill(&r, a, NP, -1.0, 1.0);
    memcpy(b, a, sizeof a);
    trng_fill(&r, omega, NP, 0.5, 2.0);
    trng_fill(&r, anchor, NP, -2.0, 2.0);
    Penalty pen;
    assert_int_equal(penalty_init(&pen, c->penalty ? METHOD_SI : METHOD_SGD, 0.8, 1.0, NP), EWC_OK);
    if (c->penalty) penalty_add_task(&pen, omega, anchor);
    Adam ad_a, ad_b;
    assert_int_equal(adam_init(&ad_a, NP, 0.9, 0.999, 1e-8), EWC_OK);
    assert_int_equal(adam_init(&ad_b, NP, 0.9, 0.999, 1e-8), EWC_OK);
    Si si;
    assert_int_equal(si_init(&si, NP, 0.1), EWC_OK);
    si_begin_task(&si, b);
    double ref[NP] = {0}, with_pen[NP] = {0};
    float lr = c->adam ? 0.05f : 0.1f, mu = c->momentum ? 0.7f : 0.0f;
    for (int k = 0; k < 12; k++) {
        grad32(&d, a, g);
        float old[NP];
        memcpy(old, a, sizeof a);
        if (c->adam) {
            adam_step(&ad_a, a, g, &pen, lr, c->mode);
            adam_step_si(&ad_b, b, g, &pen, lr, c->mode, si.w);
        } else {
            optim_step(a, g, c->momentum ? mom_a : NULL, &pen, lr, mu, c->mode);
            optim_step_si(b, g, c->momentum ? mom_b : NULL, &pen, lr, mu, c->mode, si.w);
        }
        if (memcmp(a, b, sizeof a) || memcmp(mom_a, mom_b, sizeof mom_a) ||
            (c->adam && (memcmp(ad_a.m, ad_b.m, sizeof a) || memcmp(ad_a.v, ad_b.v, sizeof a))))
            fail_msg("%s: step %d: the SI variant changed the trajectory", c->name, k);
        for (int i = 0; i < NP; i++) {
            double delta = (double)a[i] - old[i];
            double pg = c->penalty ? 0.8 * ((double)pen.a[i] * old[i] - pen.b[i]) : 0.0;
            ref[i] -= (double)g[i] * delta;
            with_pen[i] -= ((double)g[i] + pg) * delta;
        }
    }
    double scale = 0.0, apart = 0.0;
    for (int i = 0; i < NP; i++) scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    for (int i = 0; i < NP; i++) {
        double tol = 1e-5 * scale + 1e-5 * fabs(ref[i]);
        if (!(fabs(si.w[i] - ref[i]) <= tol))
            fail_msg("%s: w[%d] = %.9g, float64 sum %.9g (tol %.3g)", c->name, i, si.w[i], ref[i],
                     tol);
        apart = fabs(with_pen[i] - ref[i]) > apart ? fabs(with_pen[i] - ref[i]) : apart;
    }
    assert_true(scale > 0.0);
    if (c->penalty && !(apart > 1e-2 * scale))
        fail_msg("%s: the penalised gradient gives nearly the same w (%.3g of %.3g)", c->name,
                 apart, scale);
    si_free(&si);
    adam_free(&ad_a);
    adam_free(&ad_b);
    penalty_free(&pen);
}

static void test_si_fused_every_case(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* si_importance = max(0, w / ((theta - start)^2 + xi)) in float64, negative w clipped to 0;
 * si_begin_task zeroes w and records the start. */
static void test_si_importance(void **state) {
    (void)state;
    enum { n = 200 };
    TestRng r = {31};
    Si si;
    assert_int_equal(si_init(&si, n, 0.25), EWC_OK);
    float theta[n], start[n], omega[n];
    trng_fill(&r, start, n, -1.0, 1.0);
    trng_fill(&r, theta, n, -1.0, 1.0);
    si_begin_task(&si, start);
    for (int i = 0; i < n; i++) assert_true(si.w[i] == 0.0f && si.start[i] == start[i]);
    trng_fill(&r, si.w, n, -1.0, 3.0);
    theta[7] = start[7]; /* no net change: Omega = w / xi */
    si.w[7] = 0.5f;
    si_importance(&si, theta, omega);
    int clipped = 0;
    for (int i = 0; i < n; i++) {
        double dt = (double)theta[i] - start[i], want = si.w[i] / (dt * dt + 0.25);
        if (want < 0) {
            assert_true(omega[i] == 0.0f);
            clipped++;
        } else {
            assert_close_at(omega[i], want, 1e-7 * want, i);
        }
    }
    assert_close(omega[7], 2.0, 0.0);
    assert_true(clipped > 10);
    si_begin_task(&si, theta);
    for (int i = 0; i < n; i++) assert_true(si.w[i] == 0.0f && si.start[i] == theta[i]);
    si_free(&si);
}

/* SI and MAS penalties: A = 2 sum_t Omega_t, B = A * (latest anchor), so the penalty value is
 * lambda sum_i (sum_t Omega_t,i) (theta_i - anchor_last,i)^2 (the papers' c, no 1/2). */
static void test_si_penalty_form(void **state) {
    (void)state;
    enum { n = 50 };
    static const Method methods[] = {METHOD_SI, METHOD_MAS};
    for (int m = 0; m < 2; m++) {
        TestRng r = {41 + (uint64_t)m};
        Penalty p;
        assert_int_equal(penalty_init(&p, methods[m], 3.0, 0.5, n), EWC_OK);
        double sum[n] = {0};
        float om[n], anchor[n], theta[n];
        for (int t = 0; t < 3; t++) {
            trng_fill(&r, om, n, 0.0, 2.0);
            trng_fill(&r, anchor, n, -1.0, 1.0);
            penalty_add_task(&p, om, anchor);
            for (int i = 0; i < n; i++) sum[i] += om[i];
        }
        trng_fill(&r, theta, n, -1.0, 1.0);
        double want = 0.0;
        for (int i = 0; i < n; i++) {
            assert_close_at(p.a[i], 2.0 * sum[i], 1e-6 * sum[i], i);
            assert_close_at(p.b[i], (double)p.a[i] * anchor[i], 1e-12, i);
            double dt = (double)theta[i] - anchor[i];
            want += 3.0 * sum[i] * dt * dt;
        }
        assert_close(penalty_value(&p, theta), want, 1e-5 * want);
        penalty_free(&p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_si_sgd_vs_float64),
        cmocka_unit_test(test_si_fused_every_case),
        cmocka_unit_test(test_si_importance),
        cmocka_unit_test(test_si_penalty_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
