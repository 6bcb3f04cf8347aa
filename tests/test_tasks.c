/* Tests of the task families and scenarios (tasks.h): rotations against an independent float64
 * implementation (polar coordinates) and exact on the grid, split tasks' classes and sample
 * lists, the output unit and active range of every scenario, frozen output rows, the joint
 * sample map, and the softmax over active outputs against a float64 reference. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ewc/config.h"
#include "ewc/layer.h"
#include "ewc/permute.h"
#include "ewc/tasks.h"
#include "testutil.h"

enum { SIDE = 28, DIM = SIDE * SIDE };

static void random_image(uint8_t *x, int dim, uint64_t seed) {
    TestRng r = {seed};
    for (int k = 0; k < dim; k++) x[k] = (uint8_t)(trng_next(&r) >> 56);
}

/* The reference: the rotation written in polar coordinates, bilinear sampling in float64.
 * Output pixel (r, c) at angle phi and radius rho about the centre takes the input at angle
 * phi - theta (the content turns counter-clockwise by theta); outside the image counts 0. */
static double ref_rotate_pixel(const uint8_t *x, int side, double degrees, int r, int c) {
    double mid = (side - 1) / 2.0, vx = c - mid, vy = mid - r;
    double rho = hypot(vx, vy), phi = atan2(vy, vx), th = degrees * acos(-1.0) / 180.0;
    double col = mid + rho * cos(phi - th), row = mid - rho * sin(phi - th);
    double r0 = floor(row), c0 = floor(col), v = 0.0;
    for (int dr = 0; dr < 2; dr++)
        for (int dc = 0; dc < 2; dc++) {
            double rr = r0 + dr, cc = c0 + dc;
            double w = (dr ? row - r0 : 1 - (row - r0)) * (dc ? col - c0 : 1 - (col - c0));
            if (rr >= 0 && rr < side && cc >= 0 && cc < side)
                v += w * x[(int)rr * side + (int)cc];
        }
    return v;
}

static void test_rotation_matches_reference(void **state) {
    (void)state;
    static const double angles[] = {0, 7.5, 30, 45, 60, 89.9, 120, 135, 172.5, -33, 400};
    uint8_t x[DIM], got[DIM];
    RotateTap *taps = malloc(DIM * sizeof *taps);
    assert_non_null(taps);
    int checked = 0, ties = 0, interpolated = 0;
    for (size_t a = 0; a < sizeof angles / sizeof angles[0]; a++) {
        random_image(x, DIM, 100 + a);
        tasks_rotation_taps(taps, SIDE, angles[a]);
        tasks_rotate_image(got, x, taps, DIM);
        for (int r = 0; r < SIDE; r++)
            for (int c = 0; c < SIDE; c++) {
                double v = ref_rotate_pixel(x, SIDE, angles[a], r, c);
                double want = floor(v + 0.5), frac = v - floor(v);
                int g = got[r * SIDE + c];
                interpolated += fabs(v - nearbyint(v)) > 1e-6;
                if (fabs(frac - 0.5) < 1e-6) { /* a rounding tie: either neighbour */
                    ties++;
                    assert_true(g == (int)floor(v) || g == (int)ceil(v));
                } else if (g != (int)want) {
                    fail_msg("angle %g, pixel (%d, %d): got %d, reference %.9f", angles[a], r, c,
                             g, v);
                }
                checked++;
            }
    }
    assert_int_equal(checked, 11 * DIM);
    assert_true(ties < checked / 100);
    assert_true(interpolated > checked / 2); /* the test is not only about grid points */
    free(taps);
}

static void test_rotation_exact_on_the_grid(void **state) {
    (void)state;
    uint8_t x[DIM], got[DIM];
    RotateTap *taps = malloc(DIM * sizeof *taps);
    assert_non_null(taps);
    random_image(x, DIM, 7);
    for (int side = 27; side <= 28; side++) { /* odd side: a pixel at the centre */
        int dim = side * side;
        tasks_rotation_taps(taps, side, 0.0);
        tasks_rotate_image(got, x, taps, dim);
        assert_memory_equal(got, x, (size_t)dim); /* 0 degrees: the identity */
        tasks_rotation_taps(taps, side, 360.0);
        tasks_rotate_image(got, x, taps, dim);
        assert_memory_equal(got, x, (size_t)dim);
        /* 90 degrees counter-clockwise: numpy's rot90, out[r][c] = in[c][side - 1 - r] */
        tasks_rotation_taps(taps, side, 90.0);
        tasks_rotate_image(got, x, taps, dim);
        for (int r = 0; r < side; r++)
            for (int c = 0; c < side; c++)
                assert_int_equal(got[r * side + c], x[c * side + side - 1 - r]);
        tasks_rotation_taps(taps, side, 180.0);
        tasks_rotate_image(got, x, taps, dim);
        for (int r = 0; r < side; r++)
            for (int c = 0; c < side; c++)
                assert_int_equal(got[r * side + c], x[(side - 1 - r) * side + side - 1 - c]);
        tasks_rotation_taps(taps, side, -90.0); /* = 270: out[r][c] = in[side - 1 - c][r] */
        tasks_rotate_image(got, x, taps, dim);
        for (int r = 0; r < side; r++)
            for (int c = 0; c < side; c++)
                assert_int_equal(got[r * side + c], x[(side - 1 - c) * side + r]);
        /* a grid-point move takes one source pixel with weight 1 */
        tasks_rotation_taps(taps, side, 90.0);
        for (int k = 0; k < dim; k++) {
            int n = 0;
            for (int j = 0; j < 4; j++) n += taps[k].src[j] >= 0;
            assert_int_equal(n, 1);
        }
    }
    /* the pixel at the top right goes to the top left: the content turns counter-clockwise */
    memset(x, 0, sizeof x);
    x[SIDE - 1] = 200;
    tasks_rotation_taps(taps, SIDE, 90.0);
    tasks_rotate_image(got, x, taps, DIM);
    assert_int_equal(got[0], 200);
    free(taps);
}

/* Taps: the weights inside the image sum to 1 where the whole 2x2 neighbourhood is inside. */
static void test_rotation_taps_are_convex(void **state) {
    (void)state;
    RotateTap *taps = malloc(DIM * sizeof *taps);
    assert_non_null(taps);
    tasks_rotation_taps(taps, SIDE, 33.0);
    int interior = 0;
    for (int k = 0; k < DIM; k++) {
        double s = 0.0;
        int in = 0;
        for (int j = 0; j < 4; j++) {
            assert_true(taps[k].w[j] >= 0.0 && taps[k].w[j] <= 1.0);
            s += taps[k].w[j];
            in += taps[k].src[j] >= 0;
        }
        if (in == 4) {
            interior++;
            assert_close_at(s, 1.0, 1e-12, k);
        }
        assert_true(s <= 1.0 + 1e-12);
    }
    assert_true(interior > DIM / 2);
    free(taps);
}

/* ---- task sets over a small synthetic dataset ---------------------------------------- */

enum { NTRAIN = 500, NTEST = 200, NVAL = 50, CLASSES = 10 };

static Dataset make_data(int dim) {
    Dataset d;
    memset(&d, 0, sizeof d);
    d.n_classes = CLASSES;
    Split *sp[3] = {&d.train, &d.test, &d.val};
    int ns[3] = {NTRAIN, NTEST, NVAL};
    TestRng r = {42};
    for (int s = 0; s < 3; s++) {
        sp[s]->n = ns[s];
        sp[s]->dim = dim;
        sp[s]->x = malloc((size_t)ns[s] * dim);
        sp[s]->y = malloc((size_t)ns[s]);
        assert_non_null(sp[s]->x);
        assert_non_null(sp[s]->y);
        for (int i = 0; i < ns[s]; i++) sp[s]->y[i] = (uint8_t)(trng_next(&r) % CLASSES);
        random_image(sp[s]->x, ns[s] * dim, 1000 + (uint64_t)s);
    }
    return d;
}

static Config make_config(TaskFamily f, Scenario sc, int tasks, int k) {
    Config c;
    config_defaults(&c);
    c.task_family = f;
    c.scenario = sc;
    c.tasks = tasks;
    c.classes_per_task = k;
    c.seed = 5;
    return c;
}

static void test_split_classes_and_samples(void **state) {
    (void)state;
    Dataset d = make_data(16);
    for (int seeded = 0; seeded < 2; seeded++) {
        Config c = make_config(FAMILY_SPLIT, SCENARIO_DOMAIN, 3, 3); /* classes 0..8; 9 unused */
        c.class_order = seeded ? CLASS_ORDER_SEEDED : CLASS_ORDER_NATURAL;
        TaskSet ts;
        assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
        assert_int_equal(ts.outputs, 3);
        int seen[CLASSES] = {0}, natural = 1;
        for (int t = 0; t < 3; t++)
            for (int j = 0; j < 3; j++) {
                int y = ts.task_class[t * 3 + j];
                assert_true(y >= 0 && y < CLASSES);
                /* cppcheck-suppress negativeIndex ; assert_true above ends the test if y < 0 */
                assert_int_equal(seen[y]++, 0);
                natural &= y == t * 3 + j;
                assert_int_equal(tasks_unit(&ts, t, y), j); /* domain: the position */
                for (int u = 0; u < 3; u++)
                    if (u != t) assert_int_equal(tasks_unit(&ts, u, y), -1);
            }
        assert_int_equal(natural, !seeded); /* seed 5 does not draw the identity */
        /* every split's list holds exactly the task's samples, ascending */
        const Split *sp[3] = {&d.train, &d.test, &d.val};
        for (int s = 0; s < 3; s++)
            for (int t = 0; t < 3; t++) {
                const int *idx;
                int n = tasks_samples(&ts, &d, sp[s], t, &idx), m = 0;
                assert_non_null(idx);
                for (int i = 0; i < sp[s]->n; i++)
                    if (tasks_unit(&ts, t, sp[s]->y[i]) >= 0) {
                        assert_true(m < n);
                        assert_int_equal(idx[m++], i);
                    }
                assert_int_equal(m, n);
                assert_true(n > 0);
            }
        /* the same seed draws the same order again; the input transform is the identity */
        TaskSet again;
        assert_int_equal(tasks_init(&again, &c, &d), EWC_OK);
        assert_memory_equal(ts.task_class, again.task_class, 9 * sizeof(int));
        uint8_t out[2 * 16];
        float row[16];
        tasks_transform_images(&ts, 2, out, d.train.x, 2);
        assert_memory_equal(out, d.train.x, sizeof out);
        tasks_fill_row(&ts, 1, row, d.train.x);
        for (int k = 0; k < 16; k++) assert_true(row[k] == (float)d.train.x[k] * (1.0f / 255.0f));
        tasks_free(&again);
        tasks_free(&ts);
    }
    /* too many tasks for the classes, or a task without training samples, is an error */
    Config c = make_config(FAMILY_SPLIT, SCENARIO_TASK, 4, 3);
    TaskSet ts;
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_EINVAL);
    c = make_config(FAMILY_SPLIT, SCENARIO_TASK, 5, 2);
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
    tasks_free(&ts);
    for (int i = 0; i < NTRAIN; i++) /* no training sample of classes 2 and 3 (task 1) */
        d.train.y[i] = d.train.y[i] == 2 || d.train.y[i] == 3 ? 0 : d.train.y[i];
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_EINVAL);
    dataset_free(&d);
}

/* Units and active ranges: the table of tasks.h for every scenario. */
static void test_scenario_units_and_active(void **state) {
    (void)state;
    Dataset d = make_data(16);
    for (int sc = SCENARIO_DOMAIN; sc <= SCENARIO_CLASS; sc++) {
        Config c = make_config(FAMILY_SPLIT, (Scenario)sc, 5, 2);
        TaskSet ts;
        assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
        assert_int_equal(ts.outputs, sc == SCENARIO_DOMAIN ? 2 : 10);
        for (int t = 0; t < 5; t++) {
            for (int y = 0; y < CLASSES; y++) {
                int want = y / 2 != t ? -1 : sc == SCENARIO_DOMAIN ? y % 2 : y;
                assert_int_equal(tasks_unit(&ts, t, y), want);
            }
            for (int seen = -1; seen <= 6; seen++) {
                int lo, hi, s = seen < 0 ? 0 : seen > 4 ? 4 : seen;
                tasks_active(&ts, t, seen, &lo, &hi);
                int wlo = sc == SCENARIO_TASK ? 2 * t : 0;
                int whi = sc == SCENARIO_DOMAIN ? 2 : sc == SCENARIO_TASK ? 2 * t + 2 : 2 * s + 2;
                assert_int_equal(lo, wlo);
                assert_int_equal(hi, whi);
            }
        }
        tasks_free(&ts);
    }
    /* permuted: every task has all classes; task scenario: one 10-way head per task */
    Config c = make_config(FAMILY_PERMUTED, SCENARIO_TASK, 3, 0);
    TaskSet ts;
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
    assert_int_equal(ts.outputs, 30);
    assert_int_equal(tasks_unit(&ts, 2, 7), 27);
    const int *idx;
    assert_int_equal(tasks_samples(&ts, &d, &d.train, 1, &idx), NTRAIN);
    assert_null(idx);
    int perm[16];
    assert_int_equal(permute_task(perm, 16, 1.0, 5, 2), EWC_OK);
    assert_memory_equal(ts.perm[2], perm, sizeof perm); /* permute.h's permutation */
    /* joint: class scenario sees every class; samples map to (task, index) in order */
    tasks_free(&ts);
    c = make_config(FAMILY_SPLIT, SCENARIO_CLASS, 5, 2);
    c.joint = 1;
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
    int lo, hi;
    tasks_active(&ts, 1, 1, &lo, &hi);
    assert_int_equal(hi, 10);
    long long g = 0;
    for (int t = 0; t < 5; t++)
        for (int i = 0; i < ts.n_train[t]; i++, g++) {
            int task, sample;
            tasks_joint_sample(&ts, g, &task, &sample);
            assert_int_equal(task, t);
            assert_int_equal(sample, ts.train_idx[t][i]);
        }
    assert_true(g == ts.joint_n && g == NTRAIN);
    tasks_free(&ts);
    dataset_free(&d);
}

static void test_rotated_tasks(void **state) {
    (void)state;
    Dataset d = make_data(DIM);
    Config c = make_config(FAMILY_ROTATED, SCENARIO_DOMAIN, 4, 0);
    TaskSet ts;
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
    RotateTap *taps = malloc(DIM * sizeof *taps);
    uint8_t *a = malloc(3 * DIM), *b = malloc(DIM);
    float row[DIM];
    assert_true(taps && a && b);
    for (int t = 0; t < 4; t++) {
        assert_true(ts.angle[t] == 45.0 * t); /* evenly spaced over [0, 180) */
        tasks_rotation_taps(taps, SIDE, 45.0 * t);
        tasks_transform_images(&ts, t, a, d.train.x, 3);
        for (int i = 0; i < 3; i++) {
            tasks_rotate_image(b, d.train.x + (size_t)i * DIM, taps, DIM);
            assert_memory_equal(a + (size_t)i * DIM, b, DIM);
        }
        /* the per-row path gives the same values as the buffer + conversion */
        tasks_fill_row(&ts, t, row, d.train.x + 2 * DIM);
        for (int k = 0; k < DIM; k++)
            assert_true(row[k] == (float)a[2 * DIM + k] * (1.0f / 255.0f));
    }
    tasks_free(&ts);
    snprintf(c.angles, sizeof c.angles, "10,-20.5,90,3");
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
    assert_true(ts.angle[1] == -20.5 && ts.angle[2] == 90.0);
    tasks_free(&ts);
    dataset_free(&d);
    d = make_data(20); /* not a square */
    assert_int_equal(tasks_init(&ts, &c, &d), EWC_EINVAL);
    dataset_free(&d);
    free(taps);
    free(a);
    free(b);
}

/* Frozen rows: the output rows outside the active units come back bit for bit, the rest do
 * not (task scenario: other heads; class: unseen classes; domain: nothing frozen). */
static void test_freeze_thaw(void **state) {
    (void)state;
    Dataset d = make_data(16);
    for (int sc = SCENARIO_DOMAIN; sc <= SCENARIO_CLASS; sc++) {
        Config c = make_config(FAMILY_SPLIT, (Scenario)sc, 5, 2);
        TaskSet ts;
        assert_int_equal(tasks_init(&ts, &c, &d), EWC_OK);
        ModelShape s;
        int hidden[1] = {6};
        assert_int_equal(model_shape_init(&s, 16, hidden, 1, ts.outputs), EWC_OK);
        float *p = malloc(s.n_params * sizeof(float)), *m = malloc(s.n_params * sizeof(float));
        float *p0 = malloc(s.n_params * sizeof(float)), *m0 = malloc(s.n_params * sizeof(float));
        assert_true(p && m && p0 && m0);
        TestRng r = {9};
        trng_fill(&r, p, s.n_params, -1, 1);
        trng_fill(&r, m, s.n_params, -1, 1);
        int task = 2, lo, hi;
        tasks_active(&ts, task, task, &lo, &hi);
        memcpy(p0, p, s.n_params * sizeof(float));
        memcpy(m0, m, s.n_params * sizeof(float));
        float *const slabs[3] = {p, NULL, m};
        assert_int_equal(tasks_freeze(&ts, &s, task, slabs, 3), EWC_OK);
        for (size_t i = 0; i < s.n_params; i++) {
            p[i] += 1.0f;
            m[i] -= 1.0f;
        }
        tasks_thaw(&ts, &s, task, slabs, 3);
        int w = s.dims[1] + 1;
        for (size_t i = 0; i < s.n_params; i++) {
            int out_row = i >= s.offset[1] ? (int)((i - s.offset[1]) / w) : -1;
            int frozen = out_row >= 0 && (out_row < lo || out_row >= hi);
            assert_true((p[i] == p0[i]) == frozen);
            assert_true((m[i] == m0[i]) == frozen);
        }
        free(p);
        free(m);
        free(p0);
        free(m0);
        tasks_free(&ts);
    }
    dataset_free(&d);
}

/* The softmax over active units against float64, and the full range bit for bit the old one. */
static void test_softmax_active(void **state) {
    (void)state;
    enum { N = 7, C = 12 };
    float z[N * C], prob[N * C], delta[N * C], loss[N], prob2[N * C], delta2[N * C], loss2[N];
    int y[N], lo[N], hi[N];
    uint8_t y8[N];
    TestRng r = {3};
    trng_fill(&r, z, N * C, -4, 4);
    for (int i = 0; i < N; i++) {
        lo[i] = (int)(trng_next(&r) % 6);
        hi[i] = lo[i] + 1 + (int)(trng_next(&r) % (C - lo[i]));
        y[i] = lo[i] + (int)(trng_next(&r) % (hi[i] - lo[i]));
    }
    int correct = softmax_ce_active_forward_backward(prob, loss, delta, z, y, lo, hi, N, C, 0.5f);
    int want_correct = 0;
    for (int i = 0; i < N; i++) {
        const float *zi = z + i * C;
        double m = -INFINITY, s = 0.0;
        int best = lo[i];
        for (int k = lo[i]; k < hi[i]; k++) {
            m = zi[k] > m ? zi[k] : m;
            if (zi[k] > zi[best]) best = k;
        }
        for (int k = lo[i]; k < hi[i]; k++) s += exp(zi[k] - m);
        want_correct += best == y[i];
        /* cppcheck-suppress invalidFunctionArg ; the max's term is exp(0) = 1, so s >= 1 */
        assert_close_at(loss[i], m + log(s) - zi[y[i]], 1e-5, i);
        for (int k = 0; k < C; k++) {
            double p = k >= lo[i] && k < hi[i] ? exp(zi[k] - m) / s : 0.0;
            assert_close_at(prob[i * C + k], p, 1e-6, i * C + k);
            assert_close_at(delta[i * C + k], 0.5 * (p - (k == y[i])), 1e-6, i * C + k);
            if (k < lo[i] || k >= hi[i]) assert_true(delta[i * C + k] == 0.0f);
        }
    }
    assert_int_equal(correct, want_correct);
    assert_int_equal(softmax_active_forward(prob2, z, y, lo, hi, N, C), want_correct);
    assert_memory_equal(prob2, prob, sizeof prob);
    /* the whole range: the old functions' bits */
    for (int i = 0; i < N; i++) {
        lo[i] = 0;
        hi[i] = C;
        y8[i] = (uint8_t)y[i];
    }
    int c1 = softmax_ce_active_forward_backward(prob, loss, delta, z, y, lo, hi, N, C, 0.25f);
    int c2 = softmax_ce_forward_backward(prob2, loss2, delta2, z, y8, N, C, 0.25f);
    assert_int_equal(c1, c2);
    assert_memory_equal(prob, prob2, sizeof prob);
    assert_memory_equal(loss, loss2, sizeof loss);
    assert_memory_equal(delta, delta2, sizeof delta);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_matches_reference),
        cmocka_unit_test(test_rotation_exact_on_the_grid),
        cmocka_unit_test(test_rotation_taps_are_convex),
        cmocka_unit_test(test_split_classes_and_samples),
        cmocka_unit_test(test_scenario_units_and_active),
        cmocka_unit_test(test_rotated_tasks),
        cmocka_unit_test(test_freeze_thaw),
        cmocka_unit_test(test_softmax_active),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
