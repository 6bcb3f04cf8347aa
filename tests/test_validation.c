/* Tests for the validation split: the held-out indices are a sorted, seeded subset (the same
 * for a seed, different for another), the split moves exactly those samples out of the training
 * split and keeps the rest in order, bad sizes are refused naming --validation, and the
 * trainer's epoch orders and Fisher subsets only ever see the remaining samples. Each synthetic
 * sample carries its original index in its first two pixels, so disjointness is checked on the
 * data itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/train.h"
#include "ewc/validation.h"
#include "testutil.h"

#define N 200
#define DIM 16
#define CLASSES 3
#define N_TEST 20

/* N training samples whose pixels 0 and 1 hold the sample's index; the rest random. */
static void make_data(Dataset *d) {
    TestRng rng = {42};
    memset(d, 0, sizeof *d);
    d->n_classes = CLASSES;
    Split *sp[2] = {&d->train, &d->test};
    int ns[2] = {N, N_TEST};
    for (int s = 0; s < 2; s++) {
        sp[s]->n = ns[s];
        sp[s]->dim = DIM;
        sp[s]->x = malloc((size_t)ns[s] * DIM);
        sp[s]->y = malloc((size_t)ns[s]);
        assert_non_null(sp[s]->x);
        assert_non_null(sp[s]->y);
        for (int i = 0; i < ns[s]; i++) {
            uint8_t *x = sp[s]->x + (size_t)i * DIM;
            x[0] = (uint8_t)(i & 255);
            x[1] = (uint8_t)(i >> 8);
            for (int k = 2; k < DIM; k++) x[k] = (uint8_t)(trng_next(&rng) >> 56);
            sp[s]->y[i] = (uint8_t)(trng_next(&rng) % CLASSES);
        }
    }
}

static int original_index(const Split *sp, int i) {
    const uint8_t *x = sp->x + (size_t)i * DIM;
    return x[0] | x[1] << 8;
}

static void test_indices(void **state) {
    (void)state;
    int a[30], b[30], c[30];
    assert_int_equal(validation_indices(a, 30, N, 7), EWC_OK);
    assert_int_equal(validation_indices(b, 30, N, 7), EWC_OK);
    assert_int_equal(validation_indices(c, 30, N, 8), EWC_OK);
    for (int i = 0; i < 30; i++) {
        assert_in_range(a[i], 0, N - 1);
        if (i) assert_true(a[i] > a[i - 1]); /* sorted, distinct */
    }
    assert_memory_equal(a, b, sizeof a);                  /* a function of the seed */
    assert_true(memcmp(a, c, sizeof a) != 0);             /* another seed, another subset */
    /* not simply the first samples */
    assert_true(a[29] >= 30);
    int all[N];
    assert_int_equal(validation_indices(all, N, N, 7), EWC_OK);
    for (int i = 0; i < N; i++) assert_int_equal(all[i], i);
}

static void test_split_moves_samples(void **state) {
    (void)state;
    Dataset d, orig;
    make_data(&d);
    make_data(&orig);
    int idx[50], held[N] = {0};
    assert_int_equal(validation_indices(idx, 50, N, 3), EWC_OK);
    for (int i = 0; i < 50; i++) held[idx[i]] = 1;
    assert_int_equal(validation_split(&d, 50, 3), EWC_OK);
    assert_int_equal(d.val.n, 50);
    assert_int_equal(d.val.dim, DIM);
    assert_int_equal(d.train.n, N - 50);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(original_index(&d.val, i), idx[i]);
        assert_memory_equal(d.val.x + (size_t)i * DIM, orig.train.x + (size_t)idx[i] * DIM, DIM);
        assert_int_equal(d.val.y[i], orig.train.y[idx[i]]);
    }
    int prev = -1;
    for (int i = 0; i < d.train.n; i++) {
        int o = original_index(&d.train, i);
        assert_false(held[o]);
        assert_true(o > prev); /* the remaining samples, in their original order */
        prev = o;
        assert_memory_equal(d.train.x + (size_t)i * DIM, orig.train.x + (size_t)o * DIM, DIM);
        assert_int_equal(d.train.y[i], orig.train.y[o]);
    }
    /* the test split is untouched */
    assert_memory_equal(d.test.x, orig.test.x, (size_t)N_TEST * DIM);
    dataset_free(&d);
    dataset_free(&orig);
}

static void test_split_errors(void **state) {
    (void)state;
    Dataset d;
    make_data(&d);
    static const int bad[] = {N, N + 1, -1};
    for (int i = 0; i < 3; i++) {
        ewc_error_clear();
        assert_int_equal(validation_split(&d, bad[i], 1), EWC_EINVAL);
        assert_non_null(strstr(ewc_error_message(), "--validation"));
        assert_int_equal(d.train.n, N);
        assert_int_equal(d.val.n, 0);
        assert_null(d.val.x);
    }
    assert_int_equal(validation_split(&d, 0, 1), EWC_OK); /* no split */
    assert_int_equal(d.train.n, N);
    assert_int_equal(validation_split(&d, N - 1, 1), EWC_OK);
    assert_int_equal(d.train.n, 1);
    dataset_free(&d);
}

static void small_config(Config *c) {
    config_defaults(c);
    c->n_hidden = 1;
    c->hidden[0] = 6;
    c->tasks = 2;
    c->batch = 16;
}

/* Epoch orders and Fisher subsets of a trainer on the split data only use the remaining
 * samples; its Fisher is bit-identical to one on a dataset built by hand from those samples,
 * and differs from the Fisher on all samples. */
static void test_trainer_never_sees_validation(void **state) {
    (void)state;
    Dataset d, kept, full;
    make_data(&d);
    make_data(&full);
    make_data(&kept);
    int idx[50], held[N] = {0};
    assert_int_equal(validation_indices(idx, 50, N, 1), EWC_OK);
    for (int i = 0; i < 50; i++) held[idx[i]] = 1;
    int m = 0;
    for (int i = 0; i < N; i++) {
        if (held[i]) continue;
        memcpy(kept.train.x + (size_t)m * DIM, full.train.x + (size_t)i * DIM, DIM);
        kept.train.y[m++] = full.train.y[i];
    }
    kept.train.n = m;
    Config cfg;
    small_config(&cfg);
    cfg.validation = 50;
    assert_int_equal(validation_split(&d, cfg.validation, cfg.seed), EWC_OK);

    Trainer t, tk, tf;
    assert_int_equal(trainer_init(&t, &cfg, &d, MPI_COMM_SELF), EWC_OK);
    assert_int_equal(trainer_init(&tk, &cfg, &kept, MPI_COMM_SELF), EWC_OK);
    assert_int_equal(trainer_init(&tf, &cfg, &full, MPI_COMM_SELF), EWC_OK);
    assert_int_equal(trainer_steps_per_epoch(&t), (N - 50 + 15) / 16);
    for (int task = 0; task < 2; task++)
        for (int epoch = 0; epoch < 3; epoch++) {
            int seen[N] = {0};
            trainer_begin_epoch(&t, task, epoch);
            for (int i = 0; i < d.train.n; i++) {
                assert_in_range(t.order[i], 0, d.train.n - 1);
                int o = original_index(&d.train, t.order[i]);
                if (held[o]) fail_msg("task %d epoch %d: sample %d is held out", task, epoch, o);
                assert_int_equal(seen[o]++, 0);
            }
        }
    size_t np = t.shape.n_params;
    float *f = malloc(np * sizeof *f), *fk = malloc(np * sizeof *fk), *ff = malloc(np * sizeof *ff);
    assert_non_null(f);
    assert_non_null(fk);
    assert_non_null(ff);
    static const FisherKind kinds[] = {FISHER_EMPIRICAL, FISHER_SAMPLED};
    static const int counts[] = {0, 40};
    for (int c = 0; c < 2; c++) {
        int u, uk, uf;
        assert_int_equal(trainer_fisher(&t, 1, kinds[c], counts[c], f, &u), EWC_OK);
        assert_int_equal(trainer_fisher(&tk, 1, kinds[c], counts[c], fk, &uk), EWC_OK);
        assert_int_equal(trainer_fisher(&tf, 1, kinds[c], counts[c], ff, &uf), EWC_OK);
        assert_int_equal(u, counts[c] ? counts[c] : N - 50);
        assert_int_equal(uk, u);
        assert_memory_equal(f, fk, np * sizeof *f);
        assert_true(memcmp(f, ff, np * sizeof *f) != 0);
    }
    free(f);
    free(fk);
    free(ff);
    trainer_free(&t);
    trainer_free(&tk);
    trainer_free(&tf);
    dataset_free(&d);
    dataset_free(&kept);
    dataset_free(&full);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_indices),
        cmocka_unit_test(test_split_moves_samples),
        cmocka_unit_test(test_split_errors),
        cmocka_unit_test(test_trainer_never_sees_validation),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
