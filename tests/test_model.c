/* Tests of the MLP: slab layout (offsets, rows, sizes, errors), He initialisation, the whole
 * network gradient against central finite differences of an independent float64 forward pass,
 * and row-range sharding of the parameter gradient (on the BLAS row quantum: bitwise equal to
 * one call). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/layer.h"
#include "ewc/model.h"
#include "ewc/tile.h"
#include "testutil.h"

/* ---- shape -------------------------------------------------------------------------------- */

static void test_shape_mnist(void **state) {
    ModelShape s;
    const int hidden[] = {400, 400};
    assert_int_equal(model_shape_init(&s, 784, hidden, 2, 10), EWC_OK);
    assert_int_equal(s.n_layers, 3);
    const int dims[] = {784, 400, 400, 10};
    for (int l = 0; l <= 3; l++) assert_int_equal(s.dims[l], dims[l]);
    const size_t offs[] = {0, 400 * 785, 400 * 785 + 400 * 401, 400 * 785 + 400 * 401 + 10 * 401};
    const int row0[] = {0, 400, 800, 810};
    for (int l = 0; l <= 3; l++) {
        assert_int_equal(s.offset[l], offs[l]);
        assert_int_equal(s.row0[l], row0[l]);
    }
    assert_int_equal(s.n_params, 400 * 785 + 400 * 401 + 10 * 401);
    assert_int_equal(s.n_rows, 810);
}

static void test_shape_no_hidden(void **state) {
    ModelShape s;
    assert_int_equal(model_shape_init(&s, 784, NULL, 0, 10), EWC_OK);
    assert_int_equal(s.n_layers, 1);
    assert_int_equal(s.n_params, 10 * 785);
    assert_int_equal(s.n_rows, 10);
    assert_int_equal(s.offset[1], 10 * 785);
}

static void expect_shape_error(int inputs, const int *hidden, int n_hidden, int classes) {
    ModelShape s;
    ewc_error_clear();
    assert_int_equal(model_shape_init(&s, inputs, hidden, n_hidden, classes), EWC_EINVAL);
    assert_true(ewc_error_message()[0] != '\0');
    ewc_error_clear();
}

static void test_shape_errors(void **state) {
    const int zero_mid[] = {400, 0, 400}, negative[] = {-3}, ok[] = {400};
    int many[MODEL_MAX_LAYERS];
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) many[l] = 2;
    expect_shape_error(784, zero_mid, 3, 10);
    expect_shape_error(784, negative, 1, 10);
    expect_shape_error(0, ok, 1, 10);
    expect_shape_error(784, ok, 1, 0);
    expect_shape_error(784, many, MODEL_MAX_LAYERS, 10); /* one hidden layer too many */
    expect_shape_error(784, ok, -1, 10);
    /* more than INT_MAX parameters: 100000 x 100000 is 1e10 */
    const int huge[] = {100000, 100000};
    expect_shape_error(784, huge, 2, 10);
    /* the maximum number of hidden layers is fine */
    ModelShape s;
    assert_int_equal(model_shape_init(&s, 3, many, MODEL_MAX_LAYERS - 1, 2), EWC_OK);
    assert_int_equal(s.n_rows, 2 * (MODEL_MAX_LAYERS - 1) + 2);
}

static void test_row_offset(void **state) {
    ModelShape s;
    const int hidden[] = {400, 3, 400};
    assert_int_equal(model_shape_init(&s, 784, hidden, 3, 10), EWC_OK);
    size_t expect = 0;
    int row = 0;
    for (int l = 0; l < s.n_layers; l++)
        for (int i = 0; i < s.dims[l + 1]; i++, row++) {
            if (model_row_offset(&s, row) != expect)
                fail_msg("row %d: offset %zu, expected %zu", row, model_row_offset(&s, row),
                         expect);
            expect += (size_t)s.dims[l] + 1;
        }
    assert_int_equal(row, s.n_rows);
    assert_int_equal(expect, s.n_params);
}

/* ---- initialisation ----------------------------------------------------------------------- */

/* Every layer of P is U(-b, b) with b = sqrt(6/in) (he) or 1/sqrt(in) (torch): within the
 * bound, with the mean, variance and reach of that distribution; biases 0 (he) or drawn with the
 * weights (torch). */
static void check_uniform_layers(const float *p, const ModelShape *s, ModelInit init) {
    for (int l = 0; l < s->n_layers; l++) {
        int din = s->dims[l], dout = s->dims[l + 1], cols = init == MODEL_INIT_TORCH ? din + 1 : din;
        double bound = init == MODEL_INIT_TORCH ? 1.0 / sqrt(din) : sqrt(6.0 / din);
        double sum = 0.0, sum2 = 0.0, amax = 0.0;
        const float *wb = p + s->offset[l];
        for (int i = 0; i < dout; i++) {
            if (init == MODEL_INIT_HE) assert_true(wb[(size_t)i * (din + 1) + din] == 0.0f);
            for (int j = 0; j < cols; j++) {
                double w = wb[(size_t)i * (din + 1) + j];
                if (!(fabs(w) <= bound * (1.0 + FLT_EPSILON)))
                    fail_msg("layer %d w[%d][%d] = %g outside +-%g", l, i, j, w, bound);
                sum += w;
                sum2 += w * w;
                amax = fmax(amax, fabs(w));
            }
        }
        double m = (double)cols * dout, var = bound * bound / 3.0;
        assert_close_at(sum / m, 0.0, 5.0 * sqrt(var / m), l);
        /* U(-b, b) has variance b^2/3 (4th central moment b^4/5) and reaches close to +-b */
        assert_close_at(sum2 / m, var, 5.0 * sqrt((bound * bound * bound * bound / 5.0 - var * var)
                                                 / m), l);
        assert_true(amax > bound * (1.0 - 20.0 / m));
    }
}

static void test_init_params(void **state) {
    ModelShape s;
    const int hidden[] = {400, 400, 400};
    assert_int_equal(model_shape_init(&s, 784, hidden, 3, 10), EWC_OK);
    float *p = malloc(s.n_params * sizeof *p), *q = malloc(s.n_params * sizeof *q);
    float *r = malloc(s.n_params * sizeof *r);
    assert_non_null(p);
    assert_non_null(q);
    assert_non_null(r);
    model_init_params(p, &s, 42, MODEL_INIT_HE);
    model_init_params(q, &s, 42, MODEL_INIT_HE);
    model_init_params(r, &s, 43, MODEL_INIT_HE);
    assert_memory_equal(p, q, s.n_params * sizeof *p);

    size_t same = 0;
    for (size_t k = 0; k < s.n_params; k++) same += p[k] == r[k];
    /* only the biases (all zero) may agree between seeds */
    assert_true(same <= (size_t)s.n_rows + s.n_params / 1000);

    /* layers 1 and 2 have the same shape (400 x 401): their draws must still be independent */
    size_t same_layers = 0, layer_size = s.offset[2] - s.offset[1];
    assert_int_equal(s.offset[3] - s.offset[2], layer_size);
    for (size_t k = 0; k < layer_size; k++) same_layers += p[s.offset[1] + k] == p[s.offset[2] + k];
    assert_true(same_layers <= 400 + layer_size / 1000);

    check_uniform_layers(p, &s, MODEL_INIT_HE);
    free(p);
    free(q);
    free(r);
}

/* --init torch: PyTorch's nn.Linear default, biases drawn too; the same draws as he, scaled */
static void test_init_torch(void **state) {
    ModelShape s;
    const int hidden[] = {1000, 1000};
    assert_int_equal(model_shape_init(&s, 1024, hidden, 2, 10), EWC_OK);
    float *he = malloc(s.n_params * sizeof *he), *to = malloc(s.n_params * sizeof *to);
    assert_non_null(he);
    assert_non_null(to);
    model_init_params(he, &s, 7, MODEL_INIT_HE);
    model_init_params(to, &s, 7, MODEL_INIT_TORCH);
    check_uniform_layers(to, &s, MODEL_INIT_TORCH);
    for (int l = 0; l < s.n_layers; l++) {
        int din = s.dims[l];
        size_t zero_bias = 0;
        for (int i = 0; i < s.dims[l + 1]; i++) {
            const float *row = to + s.offset[l] + (size_t)i * (din + 1);
            zero_bias += row[din] == 0.0f;
            for (int j = 0; j < din; j += 97) /* same uniform draw: ratio of the bounds, 1/sqrt(6) */
                assert_float_equal(row[j], he[s.offset[l] + (size_t)i * (din + 1) + j] / sqrt(6.0),
                                   1e-6 / sqrt(din));
        }
        assert_true(zero_bias <= 1);
    }
    free(he);
    free(to);
}

/* ---- whole-network gradient --------------------------------------------------------------- */

/* Independent float64 forward pass: mean cross-entropy of the MLP on X (n, dims[0]) with labels
 * Y. If MARGIN is not NULL it receives the smallest |pre-activation| of any hidden unit, and if
 * LOGITS is not NULL the logits (n, classes). */
static double ref_mean_ce(const ModelShape *s, const double *params, const double *x,
                          const uint8_t *y, int n, double *margin, double *logits) {
    double loss = 0.0, cur[64], next[64];
    if (margin) *margin = INFINITY;
    for (int t = 0; t < n; t++) {
        int width = s->dims[0];
        for (int j = 0; j < width; j++) cur[j] = x[(size_t)t * width + j];
        for (int l = 0; l < s->n_layers; l++) {
            int din = s->dims[l], dout = s->dims[l + 1];
            const double *wb = params + s->offset[l];
            for (int i = 0; i < dout; i++) {
                double z = wb[(size_t)i * (din + 1) + din];
                for (int j = 0; j < din; j++) z += wb[(size_t)i * (din + 1) + j] * cur[j];
                if (l + 1 < s->n_layers) {
                    if (margin) *margin = fmin(*margin, fabs(z));
                    z = z > 0.0 ? z : 0.0;
                }
                next[i] = z;
            }
            memcpy(cur, next, (size_t)dout * sizeof *cur);
        }
        int c = s->dims[s->n_layers];
        double m = cur[0], sum = 0.0;
        for (int k = 1; k < c; k++) m = fmax(m, cur[k]);
        for (int k = 0; k < c; k++) sum += exp(cur[k] - m);
        /* cppcheck-suppress invalidFunctionArg ; c >= 1 and the max's term is exp(0) = 1 */
        loss += m + log(sum) - cur[y[t]];
        if (logits) memcpy(logits + (size_t)t * c, cur, (size_t)c * sizeof *cur);
    }
    return loss / n;
}

typedef struct {
    ModelShape s;
    Activations a;
    float *params;
    uint8_t *y;
    int n;
} Net;

/* A net of the given widths with random parameters (biases too) and inputs; runs the forward
 * pass, the loss with scale 1/n, and the backward deltas. */
static void net_setup(Net *net, const int *dims, int n_layers, int n, uint64_t seed) {
    TestRng r = {seed};
    assert_int_equal(model_shape_init(&net->s, dims[0], dims + 1, n_layers - 1, dims[n_layers]),
                     EWC_OK);
    const ModelShape *s = &net->s;
    assert_int_equal(model_acts_alloc(&net->a, s, n), EWC_OK);
    net->n = n;
    net->params = malloc(s->n_params * sizeof *net->params);
    net->y = malloc((size_t)n);
    assert_non_null(net->params);
    assert_non_null(net->y);
    for (int l = 0; l < s->n_layers; l++) {
        int din = s->dims[l];
        double w = sqrt(3.0 / din);
        for (int i = 0; i < s->dims[l + 1]; i++)
            for (int j = 0; j <= din; j++)
                net->params[s->offset[l] + (size_t)i * (din + 1) + j] =
                    (float)(j < din ? trng_uniform(&r, -w, w) : trng_uniform(&r, -0.5, 0.5));
    }
    int d0 = s->dims[0], c = s->dims[s->n_layers];
    for (int t = 0; t < n; t++) {
        for (int j = 0; j < d0; j++)
            net->a.act[0][(size_t)t * (d0 + 1) + j] = (float)trng_uniform(&r, -1.0, 1.0);
        net->y[t] = (uint8_t)(trng_next(&r) % (uint64_t)c);
    }
    model_forward(&net->a, s, net->params, 0, n, NULL, NULL);
    softmax_ce_forward_backward(net->a.prob, net->a.loss, net->a.delta[s->n_layers - 1],
                                net->a.logits, net->y, n, c, 1.0f / (float)n);
    model_backward_deltas(&net->a, s, net->params, 0, n, 0.0f, NULL);
}

static void net_free(Net *net) {
    model_acts_free(&net->a);
    free(net->params);
    free(net->y);
}

static void test_acts_trailing_one(void **state) {
    const int dims[] = {7, 5, 4, 3};
    Net net;
    net_setup(&net, dims, 3, 6, 71);
    /* set by model_acts_alloc and never overwritten by the forward pass */
    for (int l = 0; l < net.s.n_layers; l++) {
        int ld = net.s.dims[l] + 1;
        for (int t = 0; t < net.n; t++) assert_true(net.a.act[l][(size_t)t * ld + ld - 1] == 1.0f);
    }
    net_free(&net);
}

static void test_network_gradient_fd(void **state) {
    const int dims[] = {7, 5, 4, 3};
    Net net;
    net_setup(&net, dims, 3, 6, 72);
    const ModelShape *s = &net.s;
    int n = net.n, d0 = s->dims[0], c = s->dims[s->n_layers];

    double *theta = malloc(s->n_params * sizeof *theta), *x = malloc((size_t)n * d0 * sizeof *x);
    double *logits = malloc((size_t)n * c * sizeof *logits);
    float *grad = calloc(s->n_params, sizeof *grad);
    assert_non_null(theta);
    assert_non_null(x);
    assert_non_null(logits);
    assert_non_null(grad);
    for (size_t k = 0; k < s->n_params; k++) theta[k] = net.params[k];
    for (int t = 0; t < n; t++)
        for (int j = 0; j < d0; j++) x[(size_t)t * d0 + j] = net.a.act[0][(size_t)t * (d0 + 1) + j];

    model_backward_params(grad, &net.a, s, 0, n, 0, s->n_rows);

    /* the forward pass and the loss agree with float64 */
    double margin, mean = 0.0;
    double ref = ref_mean_ce(s, theta, x, net.y, n, &margin, logits);
    for (int k = 0; k < n * c; k++) assert_close_at(net.a.logits[k], logits[k], 1e-5, k);
    for (int t = 0; t < n; t++) mean += net.a.loss[t];
    assert_close(mean / n, ref, 1e-5);
    /* central differences are only valid away from ReLU kinks (a property of the test data) */
    const double h = 1e-3;
    if (margin < 5.0 * h) fail_msg("test data: a hidden unit is %g from its kink", margin);

    size_t informative = 0;
    for (size_t k = 0; k < s->n_params; k++) {
        double t0 = theta[k];
        theta[k] = t0 + h;
        double up = ref_mean_ce(s, theta, x, net.y, n, NULL, NULL);
        theta[k] = t0 - h;
        double down = ref_mean_ce(s, theta, x, net.y, n, NULL, NULL);
        theta[k] = t0;
        double fd = (up - down) / (2.0 * h);
        assert_close_at(grad[k], fd, 1e-5 * fmax(1.0, fabs(fd)), k);
        informative += fabs(fd) > 1e-3;
    }
    /* most parameters (not a dead network) were actually checked against a nonzero gradient */
    assert_true(informative >= s->n_params * 3 / 4);
    free(theta);
    free(x);
    free(logits);
    free(grad);
    net_free(&net);
}

static void test_backward_params_row_split(void **state) {
    const int dims[] = {50, 40, 30, 10};
    Net net;
    net_setup(&net, dims, 3, 32, 73);
    const ModelShape *s = &net.s;
    size_t bytes = s->n_params * sizeof(float);
    float *base = malloc(bytes), *whole = malloc(bytes), *parts = malloc(bytes);
    assert_non_null(base);
    assert_non_null(whole);
    assert_non_null(parts);
    TestRng r = {74};
    trng_fill(&r, base, s->n_params, -1.0, 1.0);

    memcpy(whole, base, bytes);
    model_backward_params(whole, &net.a, s, 0, net.n, 0, s->n_rows);
    for (int layer = 0; layer < s->n_layers; layer++) {
        /* every layer's gradient is there (the call did cover all rows) */
        size_t changed = 0;
        for (size_t k = s->offset[layer]; k < s->offset[layer + 1]; k++)
            changed += whole[k] != base[k];
        assert_true(changed > (s->offset[layer + 1] - s->offset[layer]) / 2);
    }

    /* The BLAS rounds rows of a partial output tile differently, so a split is exact only on
     * the row quantum of tile.h (the trainer's row ranges start on it, within each layer). */
    int q = tile_probe_quantum(s, net.n);
    assert_true(q > 0);
    int splits[64], n_splits = 0;
    for (int l = 0; l < s->n_layers; l++)
        for (int r0 = 0; r0 < s->dims[l + 1]; r0 += q) splits[n_splits++] = s->row0[l] + r0;
    splits[n_splits++] = s->n_rows;
    assert_true(n_splits > s->n_layers + 1); /* some splits fall inside a layer */
    for (int t = 0; t < n_splits; t++) {
        int k = splits[t];
        memcpy(parts, base, bytes);
        model_backward_params(parts, &net.a, s, 0, net.n, 0, k);
        /* a range call leaves every row outside the range alone */
        size_t end = k < s->n_rows ? model_row_offset(s, k) : s->n_params;
        assert_memory_equal(parts + end, base + end, (s->n_params - end) * sizeof(float));
        model_backward_params(parts, &net.a, s, 0, net.n, k, s->n_rows);
        if (memcmp(parts, whole, bytes) != 0) fail_msg("split at row %d is not bitwise equal", k);
    }
    /* every quantum-aligned piece computed separately, in reverse order, as many ranks would */
    memcpy(parts, base, bytes);
    for (int t = n_splits - 2; t >= 0; t--)
        model_backward_params(parts, &net.a, s, 0, net.n, splits[t], splits[t + 1]);
    assert_memory_equal(parts, whole, bytes);
    free(base);
    free(whole);
    free(parts);
    net_free(&net);
}

/* Forward and backward passes over rows [0, n) cut into calls (ModelCalls), with hidden
 * dropout, copied out of the activations: act[1..L-1], logits, delta[0..L-1]. */
static size_t pass_floats(const ModelShape *s, int n) {
    size_t k = (size_t)n * s->dims[s->n_layers];
    for (int l = 0; l < s->n_layers; l++) k += (size_t)n * s->dims[l + 1];
    for (int l = 1; l < s->n_layers; l++) k += (size_t)n * (s->dims[l] + 1);
    return k;
}

static void pass(Net *net, int i0, int i1, const ModelCalls *calls, float *out) {
    const ModelShape *s = &net->s;
    int L = s->n_layers, c = s->dims[L], n = net->n;
    Dropout drop = {0.3f, 5, 1, 2, 100};
    model_forward(&net->a, s, net->params, i0, i1, &drop, calls);
    softmax_ce_forward_backward(net->a.prob + (size_t)i0 * c, net->a.loss + i0,
                                net->a.delta[L - 1] + (size_t)i0 * c, net->a.logits + (size_t)i0 * c,
                                net->y + i0, i1 - i0, c, 1.0f / (float)n);
    model_backward_deltas(&net->a, s, net->params, i0, i1, 0.3f, calls);
    size_t k = 0;
    for (int l = 1; l < L; l++) {
        size_t m = (size_t)n * (s->dims[l] + 1);
        memcpy(out + k, net->a.act[l], m * sizeof(float));
        k += m;
    }
    memcpy(out + k, net->a.logits, (size_t)n * c * sizeof(float));
    k += (size_t)n * c;
    for (int l = 0; l < L; l++) {
        memcpy(out + k, net->a.delta[l], (size_t)n * s->dims[l + 1] * sizeof(float));
        k += (size_t)n * s->dims[l + 1];
    }
}

/* Calls of M rows over a range are exactly separate passes over each M-row piece, whatever the
 * BLAS; layers the probe finds mergeable may be merged without changing a bit; and a piece
 * size on the row quantum merges every layer. */
static void test_forward_calls(void **state) {
    (void)state;
    const int dims[] = {37, 29, 23, 6}, n = 77;
    Net net;
    net_setup(&net, dims, 3, n, 91);
    const ModelShape *s = &net.s;
    size_t k = pass_floats(s, n);
    float *pieces = malloc(k * sizeof(float)), *got = malloc(k * sizeof(float));
    assert_non_null(pieces);
    assert_non_null(got);
    for (int m = 5; m <= 12; m += 7) { /* 5 is off every SGEMM tile grid: one call would differ */
        for (int b = 0; b < n; b += m) pass(&net, b, b + m < n ? b + m : n, NULL, pieces);
        ModelCalls calls;
        for (int l = 0; l < MODEL_MAX_LAYERS; l++) calls.rows[l] = m;
        memset(got, 0, k * sizeof(float));
        pass(&net, 0, n, &calls, got);
        assert_memory_equal(got, pieces, k * sizeof(float));

        int mask = tile_probe_calls(s, n, m);
        assert_true(mask >= 0 && mask < 1 << s->n_layers);
        for (int sub = mask;; sub = (sub - 1) & mask) { /* every subset of the mergeable layers */
            for (int l = 0; l < s->n_layers; l++) calls.rows[l] = sub >> l & 1 ? 0 : m;
            memset(got, 0, k * sizeof(float));
            pass(&net, 0, n, &calls, got);
            if (memcmp(got, pieces, k * sizeof(float)))
                fail_msg("m %d: merging layers %#x of %#x changed the pass", m, sub, mask);
            if (!sub) break;
        }
    }
    int q = tile_probe_quantum(s, n);
    if (q > 0) assert_int_equal(tile_probe_calls(s, n, 2 * q), (1 << s->n_layers) - 1);
    free(pieces);
    free(got);
    net_free(&net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_mnist),
        cmocka_unit_test(test_shape_no_hidden),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_row_offset),
        cmocka_unit_test(test_init_params),
        cmocka_unit_test(test_init_torch),
        cmocka_unit_test(test_acts_trailing_one),
        cmocka_unit_test(test_network_gradient_fd),
        cmocka_unit_test(test_backward_params_row_split),
        cmocka_unit_test(test_forward_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
