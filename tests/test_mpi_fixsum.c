/* --reduce fixed under MPI: 20 training steps (momentum, both dropouts, an active EWC penalty,
 * SGD and Adam, partial batches, merged and per-micro-batch forward/backward calls) and the
 * Fisher give bitwise the results of one rank; the
 * gradient agrees with the exact reduction's to float rounding; a NaN parameter stops the step
 * with EWC_ENAN on every rank without touching the parameters; the bytes per step follow the
 * formula of fixsum.h and do not grow with the batch. Run under mpirun at 1, 2, 3, 4 and 8 ranks. */
#include "mpitest.h"

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/fixsum.h"
#include "ewc/penalty.h"
#include "ewc/rng.h"
#include "ewc/train.h"

#define TRAIN_N 710 /* batch 150: 4 full batches and a partial one of 110 */
#define TEST_N 300
#define DIM 64
#define CLASSES 10
#define MICRO 16 /* 10 micro-batches per full batch, the last of 6 samples; 7 in the partial one */

static void base_config(Config *c, int batch, ReduceMode reduce) {
    config_defaults(c);
    c->tasks = 2;
    c->n_hidden = 2;
    c->hidden[0] = 40;
    c->hidden[1] = 24;
    c->lr = 0.05;
    c->batch = batch;
    c->seed = 13;
    c->reduce = reduce;
    c->micro_batch = MICRO;
    c->quiet = 1;
}

/* A made-up finished task so the EWC penalty is active (identical everywhere). */
static void fake_finished_task(Trainer *t) {
    size_t n = t->shape.n_params;
    float *f = malloc(n * sizeof(float)), *anchor = malloc(n * sizeof(float));
    if (!f || !anchor) abort();
    for (size_t i = 0; i < n; i++) {
        f[i] = 0.5f * rng_uniform(99, RNG_INIT, 7000, 0, i);
        anchor[i] = t->params[i] + 0.1f * (rng_uniform(99, RNG_INIT, 7001, 0, i) - 0.5f);
    }
    penalty_add_task(&t->pen, f, anchor);
    free(f);
    free(anchor);
}

static EwcStatus run_steps(Trainer *t, int task, int count, double *losses) {
    int spe = trainer_steps_per_epoch(t);
    for (int g = 0; g < count; g++) {
        int epoch = g / spe, step = g % spe;
        if (step == 0) trainer_begin_epoch(t, task, epoch);
        EwcStatus st = trainer_step(t, task, epoch, step, &losses[g]);
        if (st) return st;
    }
    return EWC_OK;
}

/* Train COUNT steps on the world and on world rank 0 alone from the same start; compare
 * params, grad, momentum (or Adam's moments) and losses bitwise, and on every world rank. */
static void world_vs_solo(const Config *cfg, int count) {
    int ok = 1;
    Dataset data;
    Trainer w, s;
    int have_w = 0, have_s = 0;
    double lw[64], ls[64];
    MPI_Comm solo = mt_solo_comm();
    MT_EXPECT(ok, mt_synth_dataset(&data, TRAIN_N, TEST_N, DIM, CLASSES, 7), "data");
    if (ok) {
        have_w = trainer_init(&w, cfg, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have_w, "trainer_init: %s", ewc_error_message());
    }
    if (have_w) {
        MT_EXPECT(ok, w.reduce == REDUCE_FIXED && w.fix.micro == cfg->micro_batch,
                  "mode %d micro %d", w.reduce, w.fix.micro);
        fake_finished_task(&w);
        EwcStatus st = run_steps(&w, 1, count, lw);
        MT_EXPECT(ok, st == EWC_OK, "world steps: %d (%s)", st, ewc_error_message());
    }
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t bytes = w.shape.n_params * sizeof(float);
        int same = mt_same_as_root(w.params, bytes, MPI_COMM_WORLD);
        same &= mt_same_as_root(w.grad, bytes, MPI_COMM_WORLD);
        same &= w.mom ? mt_same_as_root(w.mom, bytes, MPI_COMM_WORLD) : 1;
        same &= w.adam.m ? mt_same_as_root(w.adam.m, bytes, MPI_COMM_WORLD) : 1;
        same &= mt_same_as_root(lw, (size_t)count * sizeof(double), MPI_COMM_WORLD);
        MT_EXPECT(ok, same, "world ranks hold different params/grad/mom/losses");
        if (mt_rank == 0) {
            have_s = trainer_init(&s, cfg, &data, solo) == EWC_OK;
            MT_EXPECT(ok, have_s, "1-rank trainer_init");
            if (have_s) {
                /* one forward/backward call per micro-batch on 1 rank: where the world merges
                 * them (m a multiple of the BLAS quantum), this checks that merging changes no
                 * bit */
                int merged = 0;
                for (int l = 0; l < s.shape.n_layers; l++) {
                    merged += w.fix.calls.rows[l] == 0;
                    s.fix.calls.rows[l] = s.fix.micro;
                }
                if (getenv("EWC_TEST_VERBOSE"))
                    printf("micro %d, quantum %d: world merges %d of %d layers\n", w.fix.micro,
                           w.dist.quantum, merged, s.shape.n_layers);
                fake_finished_task(&s);
                MT_EXPECT(ok, run_steps(&s, 1, count, ls) == EWC_OK, "1-rank steps");
                size_t np = w.shape.n_params;
                const float *a[] = {w.params, w.grad, w.mom, w.adam.m, w.adam.v};
                const float *b[] = {s.params, s.grad, s.mom, s.adam.m, s.adam.v};
                const char *names[] = {"params", "grad", "mom", "adam m", "adam v"};
                for (int k = 0; k < 5; k++) {
                    if (!a[k]) continue;
                    long i = mt_first_diff(a[k], b[k], np);
                    MT_EXPECT(ok, i < 0, "%s differ from 1 rank at %ld: %.9g vs %.9g", names[k],
                              i, i < 0 ? 0.0 : a[k][i], i < 0 ? 0.0 : b[k][i]);
                }
                MT_EXPECT(ok, memcmp(lw, ls, (size_t)count * sizeof(double)) == 0,
                          "losses differ from 1 rank (first %.17g vs %.17g)", lw[0], ls[0]);
                MT_EXPECT(ok, lw[count - 1] < lw[0], "the loss did not fall: %.4f -> %.4f", lw[0],
                          lw[count - 1]);
            }
        }
    }
    if (have_w) trainer_free(&w);
    if (have_s) trainer_free(&s);
    if (solo != MPI_COMM_NULL) MPI_Comm_free(&solo);
    dataset_free(&data);
    MT_AGREE(ok);
}

static void test_steps_sgd(void **state) {
    (void)state;
    Config c;
    base_config(&c, 150, REDUCE_FIXED);
    c.momentum = 0.9;
    c.dropout = 0.3;
    c.dropout_input = 0.1;
    c.method = METHOD_EWC;
    c.lambda = 50.0;
    world_vs_solo(&c, 20);
}

/* micro-batches of 24: a multiple of the usual BLAS quanta (12 for OpenBLAS's Haswell SGEMM), so
 * the world merges each rank's forward and backward calls and the 1-rank run does not */
static void test_steps_adam_implicit(void **state) {
    (void)state;
    Config c;
    base_config(&c, 150, REDUCE_FIXED);
    c.micro_batch = 24;
    c.optimizer = OPTIMIZER_ADAM;
    c.lr = 0.002;
    c.dropout = 0.2;
    c.method = METHOD_EWC;
    c.lambda = 50.0;
    c.penalty_step = PENALTY_IMPLICIT;
    world_vs_solo(&c, 12);
}

/* A batch of one micro-batch: rank 0 computes every gradient, the others idle but agree. */
static void test_steps_one_micro(void **state) {
    (void)state;
    Config c;
    base_config(&c, MICRO, REDUCE_FIXED);
    c.momentum = 0.5;
    c.dropout = 0.2;
    c.method = METHOD_EWC;
    c.lambda = 10.0;
    world_vs_solo(&c, 30);
}

/* The Fisher (every kind, a subset in chunks with a partial last one): bitwise the 1-rank one on
 * every rank, and within float rounding of the exact reduction's. */
static void test_fisher(void **state) {
    (void)state;
    int ok = 1;
    Dataset data;
    Config cf, ce;
    base_config(&cf, 150, REDUCE_FIXED);
    base_config(&ce, 150, REDUCE_EXACT);
    Trainer w, s, e;
    int have_w = 0, have_s = 0, have_e = 0;
    MPI_Comm solo = mt_solo_comm();
    MT_EXPECT(ok, mt_synth_dataset(&data, TRAIN_N, TEST_N, DIM, CLASSES, 9), "data");
    if (ok) {
        have_w = trainer_init(&w, &cf, &data, MPI_COMM_WORLD) == EWC_OK;
        have_e = trainer_init(&e, &ce, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have_w && have_e, "trainer_init: %s", ewc_error_message());
    }
    if (mt_rank == 0 && ok) have_s = trainer_init(&s, &cf, &data, solo) == EWC_OK;
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = w.shape.n_params;
        float *fw = malloc(np * sizeof(float)), *fs = malloc(np * sizeof(float));
        float *fe = malloc(np * sizeof(float));
        if (!fw || !fs || !fe) abort();
        static const FisherKind kinds[] = {FISHER_EMPIRICAL, FISHER_SAMPLED, FISHER_EXPECTED};
        for (int k = 0; k < 3; k++) {
            int used = 0, used_e = 0;
            EwcStatus st = trainer_fisher(&w, 1, kinds[k], 620, fw, &used);
            MT_EXPECT(ok, st == EWC_OK && used == 620, "fisher: %d (%s)", st, ewc_error_message());
            st = trainer_fisher(&e, 1, kinds[k], 620, fe, &used_e);
            MT_EXPECT(ok, st == EWC_OK, "exact fisher: %d", st);
            MT_EXPECT(ok, mt_same_as_root(fw, np * sizeof(float), MPI_COMM_WORLD),
                      "%s: world ranks disagree", config_fisher_name(kinds[k]));
            double r = mt_rel_diff(fw, fe, np, 1e-6);
            MT_EXPECT(ok, r < 1e-5, "%s: fixed vs exact Fisher %.3g relative",
                      config_fisher_name(kinds[k]), r);
            if (mt_rank == 0 && have_s) {
                MT_EXPECT(ok, trainer_fisher(&s, 1, kinds[k], 620, fs, &used) == EWC_OK, "solo");
                long i = mt_first_diff(fw, fs, np);
                MT_EXPECT(ok, i < 0, "%s: differs from 1 rank at %ld: %.9g vs %.9g",
                          config_fisher_name(kinds[k]), i, i < 0 ? 0.0 : fw[i], i < 0 ? 0.0 : fs[i]);
            }
        }
        free(fw);
        free(fs);
        free(fe);
    }
    if (have_w) trainer_free(&w);
    if (have_e) trainer_free(&e);
    if (have_s) trainer_free(&s);
    if (solo != MPI_COMM_NULL) MPI_Comm_free(&solo);
    dataset_free(&data);
    MT_AGREE(ok);
}

/* One step's gradient: fixed vs exact agree to float rounding (the same sum, grouped
 * differently); a NaN parameter is EWC_ENAN on every rank and leaves the parameters alone; the
 * bytes received follow fixsum.h's formula and are the same at batch 150 and 600. */
static void test_gradient_nan_bytes(void **state) {
    (void)state;
    int ok = 1;
    Dataset data;
    Config cf, ce, cb;
    base_config(&cf, 150, REDUCE_FIXED);
    base_config(&ce, 150, REDUCE_EXACT);
    base_config(&cb, 600, REDUCE_FIXED);
    Trainer f, e, b;
    int have_f = 0, have_e = 0, have_b = 0;
    MT_EXPECT(ok, mt_synth_dataset(&data, TRAIN_N, TEST_N, DIM, CLASSES, 11), "data");
    if (ok) {
        have_f = trainer_init(&f, &cf, &data, MPI_COMM_WORLD) == EWC_OK;
        have_e = trainer_init(&e, &ce, &data, MPI_COMM_WORLD) == EWC_OK;
        have_b = trainer_init(&b, &cb, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have_f && have_e && have_b, "trainer_init: %s", ewc_error_message());
    }
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = f.shape.n_params;
        double lf, le, lb;
        trainer_begin_epoch(&f, 0, 0);
        trainer_begin_epoch(&e, 0, 0);
        trainer_begin_epoch(&b, 0, 0);
        long long b0 = f.dist.bytes;
        MT_EXPECT(ok, trainer_step(&f, 0, 0, 0, &lf) == EWC_OK, "fixed step");
        long long bytes = f.dist.bytes - b0;
        MT_EXPECT(ok, trainer_step(&e, 0, 0, 0, &le) == EWC_OK, "exact step");
        double r = mt_rel_diff(f.grad, e.grad, np, 1e-6);
        MT_EXPECT(ok, r < 1e-5, "fixed vs exact gradient: %.3g relative", r);
        MT_EXPECT(ok, fabs(lf - le) <= 1e-6 * fabs(le), "loss %.9g vs %.9g", lf, le);
        /* bytes: int64 reduce-scatter of n + 1, float all-gather of n, MAX of L + M doubles */
        int p = mt_size, L = f.shape.n_layers, M = (150 + MICRO - 1) / MICRO;
        long long own = (long long)f.fix.counts[mt_rank], fown = f.fix.fcounts[mt_rank];
        long long want = p == 1 ? 0
                                : 8 * ((long long)np + 1 - own) + 4 * ((long long)np - fown) +
                                      2 * 8 * (long long)(L + M) * (p - 1) / p;
        MT_EXPECT(ok, bytes == want, "bytes per step %lld, want %lld", bytes, want);
        MT_EXPECT(ok, bytes <= 12.0 * np * (p - 1) / p + 8.0 * p + 16.0 * (L + M) + 64,
                  "bytes per step %lld > 12 n (p - 1) / p", bytes);
        b0 = b.dist.bytes;
        MT_EXPECT(ok, trainer_step(&b, 0, 0, 0, &lb) == EWC_OK, "batch 600 step");
        long long bytes600 = b.dist.bytes - b0, extra = p == 1 ? 0 : 2 * 8 * (long long)(38 - 10) * (p - 1) / p;
        MT_EXPECT(ok, bytes600 - bytes <= extra + 16, "batch 600: %lld bytes, batch 150: %lld",
                  bytes600, bytes);
        /* NaN */
        float *before = malloc(np * sizeof(float));
        if (!before) abort();
        f.params[f.shape.offset[1] + 3] = NAN;
        memcpy(before, f.params, np * sizeof(float));
        ewc_error_clear();
        EwcStatus st = trainer_step(&f, 0, 0, 1, &lf);
        MT_EXPECT(ok, st == EWC_ENAN, "NaN parameter: status %d", st);
        MT_EXPECT(ok, strstr(ewc_error_message(), "not finite") != NULL ||
                          strstr(ewc_error_message(), "rank") != NULL,
                  "message: %s", ewc_error_message());
        MT_EXPECT(ok, memcmp(before, f.params, np * sizeof(float)) == 0,
                  "the parameters changed in a failed step");
        free(before);
    }
    if (have_f) trainer_free(&f);
    if (have_e) trainer_free(&e);
    if (have_b) trainer_free(&b);
    dataset_free(&data);
    MT_AGREE(ok);
}

int main(int argc, char **argv) {
    mt_init(&argc, &argv, 500);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_sgd),        cmocka_unit_test(test_steps_adam_implicit),
        cmocka_unit_test(test_steps_one_micro),  cmocka_unit_test(test_fisher),
        cmocka_unit_test(test_gradient_nan_bytes),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return mt_finish(failed);
}
