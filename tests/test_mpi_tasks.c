/* The trainer under task families and scenarios, under MPI: the Fisher over a task's active
 * outputs and samples against a naive float64 loop, evaluation against a naive argmax over the
 * active outputs, a training step against the naive gradient of the active softmax, inactive
 * heads that do not move (momentum, EWC penalty, Adam), and bitwise equality of the world and
 * a 1-rank communicator for split + task, split + class, rotated + domain and --joint. Run
 * under mpirun at 1, 2 and 4 ranks. */
#include "mpitest.h"

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/model.h"
#include "ewc/rng.h"
#include "ewc/tasks.h"
#include "ewc/train.h"

enum { DIM = 49, SIDE = 7, CLASSES = 6, NTRAIN = 150, NTEST = 90 };

static const FisherKind kinds[] = {FISHER_EMPIRICAL, FISHER_SAMPLED, FISHER_EXPECTED};

static void base_config(Config *c, TaskFamily f, Scenario sc) {
    config_defaults(c);
    c->task_family = f;
    c->scenario = sc;
    c->tasks = 3;
    c->classes_per_task = f == FAMILY_SPLIT ? 2 : 0;
    c->n_hidden = 2;
    c->hidden[0] = 8;
    c->hidden[1] = 6;
    c->batch = 13;
    c->seed = 4;
    c->quiet = 1;
}

/* As in test_mpi_fisher.c: parameters moved away from the symmetric initialisation. */
static void perturb_params(Trainer *t) {
    const ModelShape *s = &t->shape;
    for (int l = 0; l < s->n_layers; l++)
        for (int o = 0; o < s->dims[l + 1]; o++)
            for (int j = 0; j <= s->dims[l]; j++) {
                size_t k = s->offset[l] + (size_t)o * (s->dims[l] + 1) + j;
                float u = rng_uniform(5, RNG_INIT, 8000, 0, k);
                t->params[k] = j < s->dims[l] ? 0.7f * t->params[k] : 0.3f * u;
            }
}

/* Input of sample I of SPLIT under TASK's transform, in float64 from the task's own tables. */
static void naive_input(const Trainer *t, const Split *sp, int task, int i, double *h) {
    const TaskSet *ts = &t->tasks;
    const uint8_t *x = sp->x + (size_t)i * t->dim;
    uint8_t rot[DIM];
    if (ts->family == FAMILY_ROTATED) tasks_rotate_image(rot, x, ts->rot[task], t->dim);
    for (int k = 0; k < t->dim; k++)
        h[k] = (ts->family == FAMILY_ROTATED ? rot[k] : x[ts->perm[task][k]]) / 255.0;
}

/* Active-output softmax of logits Z in float64 into P (zeros outside [lo, hi)). */
static void naive_softmax(const double *z, double *p, int c, int lo, int hi) {
    for (int k = 0; k < c; k++) p[k] = 0.0;
    mt_softmax64(z + lo, p + lo, hi - lo);
}

/* The naive Fisher of TASK (n samples of rng_permutation(RNG_FISHER_ORDER) over the task's
 * list), one sample at a time, over the active outputs of the task. */
static int naive_fisher(const Trainer *t, int task, FisherKind kind, int n, double *F) {
    const ModelShape *s = &t->shape;
    const TaskSet *ts = &t->tasks;
    const Split *tr = &t->data->train;
    int L = s->n_layers, C = t->classes, N = ts->n_train[task], lo, hi;
    size_t np = s->n_params;
    tasks_active(ts, task, task, &lo, &hi);
    int *pos = malloc((size_t)N * sizeof(int));
    double **h = mt_alloc_layers64(s), **d = mt_alloc_layers64(s);
    double *p = malloc((size_t)C * sizeof(double)), *g = malloc(np * sizeof(double));
    if (!pos || !h || !d || !p || !g) return 0;
    rng_permutation(pos, N, t->cfg->seed, RNG_FISHER_ORDER, (uint32_t)task, 0);
    memset(F, 0, np * sizeof(double));
    for (int i = 0; i < n; i++) {
        int sample = ts->train_idx ? ts->train_idx[task][pos[i]] : pos[i];
        naive_input(t, tr, task, sample, h[0]);
        mt_forward64(s, t->params, h);
        naive_softmax(h[L], p, C, lo, hi);
        int y_draw = lo;
        if (kind == FISHER_SAMPLED) {
            float u = rng_uniform(t->cfg->seed, RNG_FISHER_LABEL, (uint32_t)task, 0,
                                  (uint64_t)sample);
            float cum = 0.0f;
            for (y_draw = lo; y_draw < hi - 1; y_draw++)
                if (u < (cum += (float)p[y_draw])) break;
        }
        for (int y = lo; y < hi; y++) {
            double w = kind == FISHER_EXPECTED ? p[y]
                       : kind == FISHER_SAMPLED ? y == y_draw
                                                : y == tasks_unit(ts, task, tr->y[sample]);
            if (w == 0.0) continue;
            for (int k = 0; k < C; k++) d[L][k] = k >= lo && k < hi ? p[k] - (k == y) : 0.0;
            for (int l = L - 1; l >= 1; l--) {
                int din = s->dims[l], dout = s->dims[l + 1];
                const float *wb = t->params + s->offset[l];
                for (int j = 0; j < din; j++) {
                    double acc = 0.0;
                    for (int o = 0; o < dout; o++) acc += (double)wb[(size_t)o * (din + 1) + j] * d[l + 1][o];
                    d[l][j] = h[l][j] > 0.0 ? acc : 0.0;
                }
            }
            for (int l = 0; l < L; l++) {
                int din = s->dims[l], dout = s->dims[l + 1];
                double *gl = g + s->offset[l];
                for (int o = 0; o < dout; o++)
                    for (int j = 0; j <= din; j++)
                        gl[(size_t)o * (din + 1) + j] = d[l + 1][o] * (j == din ? 1.0 : h[l][j]);
            }
            for (size_t k = 0; k < np; k++) F[k] += w * g[k] * g[k];
        }
    }
    for (size_t k = 0; k < np; k++) F[k] /= n;
    free(pos);
    free(p);
    free(g);
    mt_free_layers64(s, h);
    mt_free_layers64(s, d);
    return 1;
}

/* Number of elements off REF beyond 1e-4 relative + 1e-6 of the largest. */
static int count_off(const float *got, const double *ref, size_t n) {
    double m = 0.0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    for (size_t i = 0; i < n; i++)
        bad += !(fabs((double)got[i] - ref[i]) <= 1e-4 * fabs(ref[i]) + 1e-6 * m);
    return bad;
}

/* Whether the output-layer rows [r0, r1) of A and B are bitwise equal. */
static int rows_equal(const Trainer *t, const float *a, const float *b, int r0, int r1) {
    const ModelShape *s = &t->shape;
    int L = s->n_layers, w = s->dims[L - 1] + 1;
    size_t off = s->offset[L - 1] + (size_t)r0 * w;
    return r1 <= r0 || memcmp(a + off, b + off, (size_t)(r1 - r0) * w * sizeof(float)) == 0;
}

static void test_fisher_active_vs_naive(void **state) {
    (void)state;
    int ok = 1;
    Dataset data;
    MT_EXPECT(ok, mt_synth_dataset(&data, NTRAIN, NTEST, DIM, CLASSES, 31), "data");
    for (int sc = SCENARIO_DOMAIN; sc <= SCENARIO_CLASS && mt_all(ok, MPI_COMM_WORLD); sc++) {
        Config cfg;
        Trainer t;
        base_config(&cfg, FAMILY_SPLIT, (Scenario)sc);
        int have = trainer_init(&t, &cfg, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have, "trainer_init");
        if (!mt_all(ok, MPI_COMM_WORLD)) {
            if (have) trainer_free(&t);
            break;
        }
        perturb_params(&t);
        size_t np = t.shape.n_params;
        float *f = malloc(np * sizeof(float));
        double *ref = malloc(np * sizeof(double));
        if (!f || !ref) abort();
        for (int task = 1; task <= 2; task++) {
            t.task = task; /* class scenario: the classes of tasks 0..task are active */
            for (int c = 0; c < 3; c++) {
                int n = t.tasks.n_train[task] - 3, used = -1;
                EwcStatus st = trainer_fisher(&t, task, kinds[c], n, f, &used);
                MT_EXPECT(ok, st == EWC_OK && used == n, "status %d, used %d", st, used);
                MT_EXPECT(ok, naive_fisher(&t, task, kinds[c], n, ref), "out of memory");
                int bad = count_off(f, ref, np);
                MT_EXPECT(ok, bad == 0, "scenario %d task %d %s: %d of %zu elements off the "
                          "float64 reference", sc, task, config_fisher_name(kinds[c]), bad, np);
                /* outputs outside the active range have no Fisher */
                int lo, hi;
                tasks_active(&t.tasks, task, task, &lo, &hi);
                float *zero = calloc(np, sizeof(float));
                MT_EXPECT(ok, rows_equal(&t, f, zero, 0, lo) &&
                                  rows_equal(&t, f, zero, hi, t.classes),
                          "scenario %d task %d: Fisher outside the active outputs", sc, task);
                MT_EXPECT(ok, !rows_equal(&t, f, zero, lo, hi), "active rows have no Fisher");
                free(zero);
            }
        }
        free(f);
        free(ref);
        trainer_free(&t);
    }
    dataset_free(&data);
    MT_AGREE(ok);
}

/* Accuracy of every task against a naive float64 argmax over its active outputs. */
static void test_evaluate_vs_naive(void **state) {
    (void)state;
    int ok = 1;
    Dataset data;
    MT_EXPECT(ok, mt_synth_dataset(&data, NTRAIN, NTEST, DIM, CLASSES, 32), "data");
    static const TaskFamily fams[] = {FAMILY_SPLIT, FAMILY_SPLIT, FAMILY_SPLIT, FAMILY_ROTATED,
                                      FAMILY_PERMUTED};
    static const Scenario scs[] = {SCENARIO_DOMAIN, SCENARIO_TASK, SCENARIO_CLASS,
                                   SCENARIO_DOMAIN, SCENARIO_TASK};
    for (int v = 0; v < 5 && mt_all(ok, MPI_COMM_WORLD); v++) {
        Config cfg;
        Trainer t;
        base_config(&cfg, fams[v], scs[v]);
        int have = trainer_init(&t, &cfg, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have, "trainer_init");
        if (!mt_all(ok, MPI_COMM_WORLD)) {
            if (have) trainer_free(&t);
            break;
        }
        perturb_params(&t);
        const ModelShape *s = &t.shape;
        double **h = mt_alloc_layers64(s);
        for (int seen = 0; seen < 3; seen++) {
            t.task = seen;
            for (int task = 0; task < 3; task++) {
                double acc;
                EwcStatus st = trainer_evaluate(&t, task, &acc);
                const int *idx;
                int n = tasks_samples(&t.tasks, &data, &data.test, task, &idx), correct = 0, lo,
                    hi;
                tasks_active(&t.tasks, task, seen, &lo, &hi);
                for (int i = 0; i < n; i++) {
                    int sample = idx ? idx[i] : i, best = lo;
                    naive_input(&t, &data.test, task, sample, h[0]);
                    mt_forward64(s, t.params, h);
                    for (int k = lo; k < hi; k++) best = h[s->n_layers][k] > h[s->n_layers][best] ? k : best;
                    correct += best == tasks_unit(&t.tasks, task, data.test.y[sample]);
                }
                MT_EXPECT(ok, st == EWC_OK && fabs(acc * n - correct) <= 1.0, "family %d scenario"
                          " %d seen %d task %d: accuracy %.4f, naive %d of %d", fams[v], scs[v],
                          seen, task, acc, correct, n);
                /* class scenario: a task not seen yet has no active output of its own */
                if (scs[v] == SCENARIO_CLASS && task > seen)
                    MT_EXPECT(ok, acc == 0.0, "unseen task %d scores %.4f", task, acc);
            }
        }
        mt_free_layers64(s, h);
        trainer_free(&t);
    }
    dataset_free(&data);
    MT_AGREE(ok);
}

/* One plain SGD step (lr 1) on a softmax regression: the change of the parameters is the mean
 * over the batch of the naive gradient of the active softmax's cross-entropy, and exactly 0
 * outside the task's active outputs. */
static void test_step_vs_naive_gradient(void **state) {
    (void)state;
    int ok = 1;
    Dataset data;
    MT_EXPECT(ok, mt_synth_dataset(&data, NTRAIN, NTEST, DIM, CLASSES, 33), "data");
    for (int sc = SCENARIO_TASK; sc <= SCENARIO_CLASS && mt_all(ok, MPI_COMM_WORLD); sc++) {
        Config cfg;
        Trainer t;
        base_config(&cfg, FAMILY_SPLIT, (Scenario)sc);
        cfg.n_hidden = 0;
        cfg.lr = 1.0;
        int have = trainer_init(&t, &cfg, &data, MPI_COMM_WORLD) == EWC_OK;
        MT_EXPECT(ok, have, "trainer_init");
        if (!mt_all(ok, MPI_COMM_WORLD)) {
            if (have) trainer_free(&t);
            break;
        }
        perturb_params(&t);
        size_t np = t.shape.n_params;
        int task = 1, C = t.classes, din = DIM, lo, hi;
        float *before = malloc(np * sizeof(float));
        double *g = calloc(np, sizeof(double)), x[DIM], z[CLASSES * 3], p[CLASSES * 3];
        memcpy(before, t.params, np * sizeof(float));
        trainer_begin_epoch(&t, task, 0);
        double loss;
        EwcStatus st = trainer_step(&t, task, 0, 0, &loss);
        MT_EXPECT(ok, st == EWC_OK, "step status %d", st);
        tasks_active(&t.tasks, task, task, &lo, &hi);
        int n = cfg.batch;
        for (int i = 0; i < n; i++) {
            int sample = t.order[i], y = tasks_unit(&t.tasks, task, data.train.y[sample]);
            naive_input(&t, &data.train, task, sample, x);
            for (int o = 0; o < C; o++) {
                z[o] = before[(size_t)o * (din + 1) + din];
                for (int j = 0; j < din; j++) z[o] += before[(size_t)o * (din + 1) + j] * x[j];
            }
            naive_softmax(z, p, C, lo, hi);
            for (int o = lo; o < hi; o++)
                for (int j = 0; j <= din; j++)
                    g[(size_t)o * (din + 1) + j] += (p[o] - (o == y)) * (j == din ? 1.0 : x[j]) / n;
        }
        double m = 0.0, e = 0.0;
        for (size_t k = 0; k < np; k++) {
            double step = (double)before[k] - t.params[k];
            e = fabs(step - g[k]) > e ? fabs(step - g[k]) : e;
            m = fabs(g[k]) > m ? fabs(g[k]) : m;
        }
        MT_EXPECT(ok, e <= 1e-5 * m + 1e-7, "scenario %d: step off the naive gradient by %.3g"
                  " (max %.3g)", sc, e, m);
        MT_EXPECT(ok, rows_equal(&t, t.params, before, 0, lo) &&
                          rows_equal(&t, t.params, before, hi, C),
                  "scenario %d: inactive output rows moved", sc);
        free(before);
        free(g);
        trainer_free(&t);
    }
    dataset_free(&data);
    MT_AGREE(ok);
}

/* Train CFG's tasks for a few steps each on COMM, with the Fisher and penalty between tasks;
 * AFTER (tasks, n_params) gets the parameters at each task's end. */
static EwcStatus run_tasks(Trainer *t, float *after, int steps) {
    const Config *c = t->cfg;
    size_t np = t->shape.n_params;
    float *fisher = malloc(np * sizeof(float));
    if (!fisher) return EWC_ENOMEM;
    EwcStatus st = EWC_OK;
    int stages = c->joint ? 1 : c->tasks;
    for (int task = 0; task < stages && !st; task++) {
        t->task = task;
        int spe = trainer_task_steps_per_epoch(t, task);
        for (int k = 0; k < steps && !st; k++) {
            double loss;
            if (k % spe == 0) trainer_begin_epoch(t, task, k / spe);
            st = trainer_step(t, task, k / spe, k % spe, &loss);
        }
        int used;
        if (!st) st = trainer_fisher(t, task, c->fisher, 0, fisher, &used);
        if (!st) penalty_add_task(&t->pen, fisher, t->params);
        adam_reset(&t->adam);
        memcpy(after + (size_t)task * np, t->params, np * sizeof(float));
    }
    free(fisher);
    return st;
}

/* World vs world rank 0 alone, bit for bit, and frozen heads, for one configuration. */
static void world_vs_solo(const Config *cfg, const char *name, int steps) {
    int ok = 1, have_w = 0, have_s = 0;
    Dataset data;
    Trainer w, s;
    MPI_Comm solo = mt_solo_comm();
    MT_EXPECT(ok, mt_synth_dataset(&data, NTRAIN, NTEST, DIM, CLASSES, 34), "data");
    if (ok) MT_EXPECT(ok, have_w = trainer_init(&w, cfg, &data, MPI_COMM_WORLD) == EWC_OK, "init");
    if (ok && mt_rank == 0)
        MT_EXPECT(ok, have_s = trainer_init(&s, cfg, &data, solo) == EWC_OK, "solo init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = w.shape.n_params;
        float *aw = malloc(cfg->tasks * np * sizeof(float)), *as = malloc(cfg->tasks * np * sizeof(float));
        float *init = malloc(np * sizeof(float));
        if (!aw || !as || !init) abort();
        memcpy(init, w.params, np * sizeof(float));
        EwcStatus st = run_tasks(&w, aw, steps);
        MT_EXPECT(ok, st == EWC_OK, "%s: world status %d", name, st);
        if (mt_rank == 0) {
            st = run_tasks(&s, as, steps);
            MT_EXPECT(ok, st == EWC_OK, "%s: solo status %d", name, st);
            int stages = cfg->joint ? 1 : cfg->tasks;
            long i = mt_first_diff(aw, as, (size_t)stages * np);
            MT_EXPECT(ok, i < 0, "%s, %d ranks: parameters differ from 1 rank at %ld", name,
                      mt_size, i);
        }
        MT_EXPECT(ok, mt_same_as_root(aw, np * sizeof(float), MPI_COMM_WORLD), "ranks differ");
        /* heads: the output rows a task does not train keep their values from before it */
        if (!cfg->joint && cfg->scenario != SCENARIO_DOMAIN)
            for (int task = 0; task < cfg->tasks; task++) {
                int lo, hi;
                const float *prev = task ? aw + (size_t)(task - 1) * np : init;
                const float *cur = aw + (size_t)task * np;
                tasks_active(&w.tasks, task, task, &lo, &hi);
                MT_EXPECT(ok, rows_equal(&w, cur, prev, 0, lo) &&
                                  rows_equal(&w, cur, prev, hi, w.classes),
                          "%s: task %d moved output rows outside [%d, %d)", name, task, lo, hi);
                MT_EXPECT(ok, !rows_equal(&w, cur, prev, lo, hi), "%s: task %d did not train",
                          name, task);
            }
        free(aw);
        free(as);
        free(init);
    }
    if (have_w) trainer_free(&w);
    if (have_s) trainer_free(&s);
    if (solo != MPI_COMM_NULL) MPI_Comm_free(&solo);
    dataset_free(&data);
    MT_AGREE(ok);
}

static void test_split_task_momentum_ewc(void **state) {
    (void)state;
    Config c;
    base_config(&c, FAMILY_SPLIT, SCENARIO_TASK);
    c.method = METHOD_EWC;
    c.lambda = 50;
    c.momentum = 0.9;
    c.dropout = 0.2;
    world_vs_solo(&c, "split+task, momentum, ewc", 17);
}

static void test_split_task_adam_online(void **state) {
    (void)state;
    Config c;
    base_config(&c, FAMILY_SPLIT, SCENARIO_TASK);
    c.method = METHOD_ONLINE_EWC;
    c.penalty_step = PENALTY_IMPLICIT;
    c.optimizer = OPTIMIZER_ADAM;
    c.lr = 0.01;
    c.class_order = CLASS_ORDER_SEEDED;
    world_vs_solo(&c, "split+task, adam, online ewc", 15);
}

static void test_split_class_l2(void **state) {
    (void)state;
    Config c;
    base_config(&c, FAMILY_SPLIT, SCENARIO_CLASS);
    c.method = METHOD_L2;
    c.lambda = 1;
    c.momentum = 0.5;
    c.fisher = FISHER_EXPECTED;
    world_vs_solo(&c, "split+class, momentum, l2", 15);
}

static void test_rotated_domain(void **state) {
    (void)state;
    Config c;
    base_config(&c, FAMILY_ROTATED, SCENARIO_DOMAIN);
    c.method = METHOD_EWC;
    c.lambda = 10;
    world_vs_solo(&c, "rotated+domain, ewc", 15);
}

static void test_joint(void **state) {
    (void)state;
    Config c;
    base_config(&c, FAMILY_SPLIT, SCENARIO_TASK);
    c.joint = 1;
    world_vs_solo(&c, "split+task joint", 40);
    base_config(&c, FAMILY_ROTATED, SCENARIO_CLASS);
    c.joint = 1;
    c.fisher = FISHER_EXPECTED;
    world_vs_solo(&c, "rotated+class joint", 40);
}

int main(int argc, char **argv) {
    mt_init(&argc, &argv, 300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fisher_active_vs_naive),
        cmocka_unit_test(test_evaluate_vs_naive),
        cmocka_unit_test(test_step_vs_naive_gradient),
        cmocka_unit_test(test_split_task_momentum_ewc),
        cmocka_unit_test(test_split_task_adam_online),
        cmocka_unit_test(test_split_class_l2),
        cmocka_unit_test(test_rotated_domain),
        cmocka_unit_test(test_joint),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return mt_finish(failed);
}
