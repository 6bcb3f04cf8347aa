/* SI inside the trainer under MPI: trainer_step with --method si accumulates the path integral
 * of the DATA gradient (t->grad, not the penalty's) times the update actually taken (with
 * momentum and an active explicit penalty), and the path integral and parameters are bitwise
 * the same on the world as on a 1-rank communicator (exact reduction), on every rank. Run
 * under mpirun at 1, 2 and 4 ranks. */
#include "mpitest.h"

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/penalty.h"
#include "ewc/rng.h"
#include "ewc/train.h"

#define STEPS 6

static void si_config(Config *c) {
    config_defaults(c);
    c->tasks = 2;
    c->n_hidden = 2;
    c->hidden[0] = 24;
    c->hidden[1] = 12;
    c->batch = 37;
    c->seed = 9;
    c->method = METHOD_SI;
    c->lambda = 5.0;
    c->momentum = 0.5;
    c->lr = 0.05;
    c->dropout = 0.2;
    c->quiet = 1;
}

/* A finished task 0 so the penalty is active: a random importance and anchor (every rank). */
static void fake_task(Trainer *t) {
    size_t np = t->shape.n_params;
    float *om = malloc(np * sizeof(float)), *anchor = malloc(np * sizeof(float));
    if (!om || !anchor) abort();
    for (size_t k = 0; k < np; k++) {
        om[k] = rng_uniform(4, RNG_INIT, 9000, 0, k);
        anchor[k] = t->params[k] + 0.3f * (rng_uniform(4, RNG_INIT, 9001, 0, k) - 0.5f);
    }
    penalty_add_task(&t->pen, om, anchor);
    si_begin_task(&t->si, t->params);
    free(om);
    free(anchor);
}

/* STEPS steps of task 1 on T; REF (may be NULL) gets the float64 sum of -grad * delta. */
static int run_steps(Trainer *t, double *ref) {
    size_t np = t->shape.n_params;
    float *before = malloc(np * sizeof(float));
    if (!before) return 0;
    if (ref) memset(ref, 0, np * sizeof(double));
    trainer_begin_epoch(t, 1, 0);
    for (int k = 0; k < STEPS; k++) {
        double loss;
        memcpy(before, t->params, np * sizeof(float));
        if (trainer_step(t, 1, 0, k, &loss) != EWC_OK) {
            free(before);
            return 0;
        }
        if (ref)
            for (size_t i = 0; i < np; i++)
                ref[i] -= (double)t->grad[i] * ((double)t->params[i] - before[i]);
    }
    free(before);
    return 1;
}

static void test_si_trainer(void **state) {
    (void)state;
    Dataset data;
    Config cfg;
    Trainer w, s;
    int ok = 1, have_w = 0, have_s = 0;
    MPI_Comm solo = mt_solo_comm();
    si_config(&cfg);
    MT_EXPECT(ok, mt_synth_dataset(&data, 300, 10, 30, 5, 41), "data");
    if (ok) MT_EXPECT(ok, have_w = trainer_init(&w, &cfg, &data, MPI_COMM_WORLD) == EWC_OK, "init");
    if (ok && mt_rank == 0)
        MT_EXPECT(ok, have_s = trainer_init(&s, &cfg, &data, solo) == EWC_OK, "solo init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = w.shape.n_params;
        double *ref = malloc(np * sizeof(double));
        if (!ref) abort();
        MT_EXPECT(ok, w.si.w != NULL && w.si.n == np, "no SI state with --method si");
        fake_task(&w);
        MT_EXPECT(ok, penalty_active(&w.pen), "penalty not active");
        MT_EXPECT(ok, run_steps(&w, ref), "steps failed");
        double scale = 0.0, worst = 0.0;
        for (size_t i = 0; i < np; i++) scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
        for (size_t i = 0; i < np; i++) {
            double e = fabs(w.si.w[i] - ref[i]) / (1e-5 * scale + 1e-5 * fabs(ref[i]));
            worst = e > worst ? e : worst;
        }
        MT_EXPECT(ok, scale > 0.0 && worst <= 1.0, "path integral off the float64 sum of "
                  "-grad * delta by %.3g tolerances (scale %.3g)", worst, scale);
        MT_EXPECT(ok, mt_same_as_root(w.si.w, np * sizeof(float), MPI_COMM_WORLD),
                  "ranks hold different path integrals");
        if (mt_rank == 0) {
            fake_task(&s);
            MT_EXPECT(ok, run_steps(&s, NULL), "1-rank steps failed");
            long i = mt_first_diff(w.si.w, s.si.w, np), j = mt_first_diff(w.params, s.params, np);
            MT_EXPECT(ok, i < 0 && j < 0, "%d ranks differ from 1 rank: w at %ld, params at %ld",
                      mt_size, i, j);
        }
        free(ref);
    }
    if (have_w) trainer_free(&w);
    if (have_s) trainer_free(&s);
    if (solo != MPI_COMM_NULL) MPI_Comm_free(&solo);
    dataset_free(&data);
    MT_AGREE(ok);
}

int main(int argc, char **argv) {
    (void)mt_alloc_layers64; /* a helper of mpitest.h this test does not need */
    mt_init(&argc, &argv, 300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_si_trainer),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return mt_finish(failed);
}
