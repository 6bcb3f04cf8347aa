/* Early stopping end to end under MPI (1, 2 and 4 ranks): every rank draws the same validation
 * split; a short Fashion-MNIST task whose validation accuracy stops improving really ends early,
 * after exactly --patience checks without improvement, and ends with the parameters of its best
 * check: bit-identical to an independent run of exactly that many plain steps, whose validation
 * accuracy is the recorded best. The momentum is at rest after the restore. */
#include "mpitest.h"

#include <ftw.h>

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/run.h"
#include "ewc/train.h"
#include "ewc/validation.h"

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void test_stops_early_and_restores_best(void **state) {
    (void)state;
    int ok = 1;
    char dir[64] = "/tmp/test_mpi_earlystop.XXXXXX";
    if (mt_rank == 0 && !mkdtemp(dir)) dir[0] = '\0';
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    Config cfg, plain; /* plain: r's config, which r points at until trainer_free(&r) */
    config_defaults(&cfg);
    cfg.tasks = 1;
    cfg.n_hidden = 1;
    cfg.hidden[0] = 32;
    cfg.batch = 50;
    cfg.lr = 0.1;
    cfg.momentum = 0.5;
    cfg.epochs = 40;
    cfg.train_samples = 1500;
    cfg.test_samples = 300;
    cfg.validation = 300;
    cfg.patience = 3;
    cfg.val_every = 6;
    cfg.fisher_samples = 100;
    cfg.quiet = 1;
    snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", dir);
    MT_EXPECT(ok, dir[0], "mkdtemp failed");

    Dataset data = {0};
    Trainer t, r;
    int have_t = 0, have_r = 0;
    EwcStatus st = dataset_load(&data, DATASET_DEFAULT_DIR, cfg.train_samples, cfg.test_samples);
    if (!st) st = validation_split(&data, cfg.validation, cfg.seed);
    MT_EXPECT(ok, st == EWC_OK, "data: %s", ewc_error_message());
    if (mt_all(ok, MPI_COMM_WORLD)) {
        /* the split is a function of the seed only: the same samples on every rank */
        MT_EXPECT(ok, data.val.n == 300 && data.train.n == 1200, "split %d / %d", data.val.n,
                  data.train.n);
        MT_EXPECT(ok, mt_same_as_root(data.val.x, (size_t)data.val.n * data.val.dim,
                                      MPI_COMM_WORLD) &&
                      mt_same_as_root(data.val.y, (size_t)data.val.n, MPI_COMM_WORLD) &&
                      mt_same_as_root(data.train.x, (size_t)data.train.n * data.train.dim,
                                      MPI_COMM_WORLD),
                  "the validation split differs between ranks");
        have_t = trainer_init(&t, &cfg, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have_t, "trainer_init: %s", ewc_error_message());
    }
    if (mt_all(ok, MPI_COMM_WORLD)) {
        st = run_sequence(&t);
        MT_EXPECT(ok, st == EWC_OK, "run_sequence: %s", ewc_error_message());
    }
    if (mt_all(ok, MPI_COMM_WORLD)) {
        const EarlyStopRecord *e = &t.es.rec[0];
        long long spe = trainer_steps_per_epoch(&t), max = spe * cfg.epochs;
        if (getenv("EWC_TEST_VERBOSE") && mt_rank == 0)
            printf("stopped after %lld of %lld steps, best %.4f at step %lld\n", e->steps_trained,
                   max, e->best_accuracy, e->best_step);
        MT_EXPECT(ok, e->stopped_early && e->steps_trained < max / 2, "ran %lld of %lld steps",
                  e->steps_trained, max);
        MT_EXPECT(ok, e->best_step == e->steps_trained - (long long)cfg.patience * cfg.val_every,
                  "best at step %lld, stopped at %lld, patience %d every %d", e->best_step,
                  e->steps_trained, cfg.patience, cfg.val_every);
        MT_EXPECT(ok, t.global_step == e->steps_trained, "global step %lld", t.global_step);
        MT_EXPECT(ok, t.val_acc[0] == e->best_accuracy, "validation %.4f, best %.4f",
                  t.val_acc[0], e->best_accuracy);
        int rest = 1;
        for (size_t i = 0; i < t.shape.n_params; i++) rest &= t.mom[i] == 0.0f;
        MT_EXPECT(ok, rest, "momentum not zeroed after the restore");

        /* independent: exactly best_step plain steps from the same start */
        plain = cfg;
        plain.patience = 0;
        have_r = trainer_init(&r, &plain, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have_r, "trainer_init: %s", ewc_error_message());
        st = EWC_OK;
        for (long long k = 0; have_r && !st && k < e->best_step; k++) {
            if (k % spe == 0) trainer_begin_epoch(&r, 0, (int)(k / spe));
            double loss;
            st = trainer_step(&r, 0, (int)(k / spe), (int)(k % spe), &loss);
        }
        double acc = -1;
        if (have_r && !st) st = trainer_evaluate_split(&r, &data.val, 0, &acc);
        MT_EXPECT(ok, st == EWC_OK, "reference steps: %s", ewc_error_message());
        MT_EXPECT(ok, have_r && !memcmp(r.params, t.params, t.shape.n_params * sizeof(float)),
                  "restored parameters differ from those after %lld steps", e->best_step);
        MT_EXPECT(ok, acc == e->best_accuracy, "validation accuracy %.4f after %lld steps,"
                  " recorded best %.4f", acc, e->best_step, e->best_accuracy);
        /* and they are not simply the last parameters: one more check interval changes them */
        MT_EXPECT(ok, e->best_step < e->steps_trained, "no restore happened");
    }
    if (have_r) trainer_free(&r);
    if (have_t) trainer_free(&t);
    dataset_free(&data);
    MPI_Barrier(MPI_COMM_WORLD);
    if (mt_rank == 0 && dir[0]) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    MT_AGREE(ok);
}

int main(int argc, char **argv) {
    (void)mt_alloc_layers64; /* a shared helper this test does not need */
    mt_init(&argc, &argv, 300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stops_early_and_restores_best),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return mt_finish(failed);
}
