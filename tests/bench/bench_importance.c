/* bench_importance: what SI and MAS cost on top of plain SGD: step throughput with SI's path
 * integral fused into the step (first task, and with a finished task in the penalty; SGD,
 * momentum, implicit, Adam) against the same optimizer without it, and the MAS importance over
 * the whole training set against one training epoch (the sampled Fisher beside it). */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/layer.h"
#include "ewc/mas.h"
#include "ewc/penalty.h"
#include "ewc/train.h"

#define BENCH_NAME "bench_importance"
#include "benchutil.h"

#define MAX_REPS 64
#define TASK 1 /* the task being trained; task 0 is in the penalty when PENALISED */

typedef struct {
    const char *name;
    Method method;
    Optimizer opt;
    double momentum;
    PenaltyStep pstep;
    int penalised; /* 1: one finished task in the penalty */
} StepVariant;

static const StepVariant variants[] = {
    {"sgd", METHOD_SGD, OPTIMIZER_SGD, 0.0, PENALTY_EXPLICIT, 0},
    {"si-first-task", METHOD_SI, OPTIMIZER_SGD, 0.0, PENALTY_EXPLICIT, 0},
    {"si", METHOD_SI, OPTIMIZER_SGD, 0.0, PENALTY_EXPLICIT, 1},
    {"sgd+mom0.9", METHOD_SGD, OPTIMIZER_SGD, 0.9, PENALTY_EXPLICIT, 0},
    {"si+mom0.9", METHOD_SI, OPTIMIZER_SGD, 0.9, PENALTY_EXPLICIT, 1},
    {"si-implicit", METHOD_SI, OPTIMIZER_SGD, 0.0, PENALTY_IMPLICIT, 1},
    {"adam", METHOD_SGD, OPTIMIZER_ADAM, 0.0, PENALTY_EXPLICIT, 0},
    {"si+adam", METHOD_SI, OPTIMIZER_ADAM, 0.0, PENALTY_EXPLICIT, 1},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))
/* (SI variant, its baseline without SI) pairs whose throughput ratio is reported */
static const int pairs[][2] = {{1, 0}, {2, 0}, {4, 3}, {5, 0}, {7, 6}};
#define N_PAIRS ((int)(sizeof pairs / sizeof pairs[0]))

enum { I_MAS, I_FISHER, I_EPOCH, I_COUNT };
static const char *const imp_names[I_COUNT] = {"mas", "fisher-sampled", "epoch"};

typedef struct {
    Config cfg;
    Trainer t;
    int epoch, step;
} Run;

enum { C_WALL, C_CPU, C_COUNT };
static const char *const clock_names[C_COUNT] = {"wall", "cpu"};
static int g_rank, g_size, g_clock = C_WALL;

static void run_init(Run *r, const StepVariant *v, const char *dir, const Dataset *data,
                     const int *hidden, int n_hidden, int batch) {
    config_defaults(&r->cfg);
    snprintf(r->cfg.data_dir, sizeof r->cfg.data_dir, "%s", dir);
    r->cfg.tasks = TASK + 1;
    r->cfg.n_hidden = n_hidden;
    memcpy(r->cfg.hidden, hidden, (size_t)n_hidden * sizeof *hidden);
    r->cfg.batch = batch;
    r->cfg.method = v->method;
    r->cfg.optimizer = v->opt;
    r->cfg.lr = v->opt == OPTIMIZER_ADAM ? 0.001 : 0.1;
    r->cfg.lambda = 100.0;
    r->cfg.momentum = v->momentum;
    r->cfg.penalty_step = v->pstep;
    r->cfg.quiet = 1;
    if (trainer_init(&r->t, &r->cfg, data, MPI_COMM_WORLD)) die("trainer_init");
    if (v->penalised) {
        /* a finished task: importances in [0, 0.01) (lr * lambda * max(A) < 2 keeps the explicit
         * step stable) anchored near the current parameters */
        size_t np = r->t.shape.n_params;
        float *om = malloc(np * sizeof(float)), *anchor = malloc(np * sizeof(float));
        if (!om || !anchor) die("out of memory");
        unsigned long long st = 777;
        for (size_t i = 0; i < np; i++) {
            om[i] = 0.005f * frand01(&st);
            anchor[i] = r->t.params[i] + 0.02f * (frand01(&st) - 0.5f);
        }
        penalty_add_task(&r->t.pen, om, anchor);
        si_begin_task(&r->t.si, r->t.params);
        free(om);
        free(anchor);
    }
    r->t.task = TASK;
    trainer_begin_epoch(&r->t, TASK, 0);
    r->epoch = r->step = 0;
}

static void run_steps(Run *r, int steps) {
    int spe = trainer_steps_per_epoch(&r->t);
    for (int i = 0; i < steps; i++) {
        if (r->step == spe) {
            r->step = 0;
            trainer_begin_epoch(&r->t, TASK, ++r->epoch);
        }
        double loss;
        if (trainer_step(&r->t, TASK, r->epoch, r->step++, &loss)) die("trainer_step");
    }
}

static void start(double t0[C_COUNT]) {
    MPI_Barrier(MPI_COMM_WORLD);
    t0[C_WALL] = MPI_Wtime();
    t0[C_CPU] = cpu_seconds();
}

static void stop(const double t0[C_COUNT], double div, double *out, size_t stride) {
    double dt[C_COUNT] = {MPI_Wtime() - t0[C_WALL], cpu_seconds() - t0[C_CPU]};
    MPI_Allreduce(MPI_IN_PLACE, dt, C_COUNT, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    for (int c = 0; c < C_COUNT; c++) out[c * stride] = dt[c] / div;
}

static double minv(const double *v, int n) {
    double m = INFINITY;
    for (int i = 0; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    layer_flush_subnormals();
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    openblas_set_num_threads(1);

    const char *dir = default_data_dir(), *json = NULL;
    int hidden[CONFIG_MAX_HIDDEN] = {400, 400}, n_hidden = 2, batch = 100, reps = 5, steps = 200;
    int ireps = 3, do_step = 1, do_imp = 1, train_samples = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (g_rank == 0)
                printf("usage: bench_importance [--data DIR] [--hidden W,W] [--batch N] [--reps R]"
                       " [--steps N]\n                        [--importance-reps R] "
                       "[--train-samples N] [--no-step] [--no-importance]\n"
                       "                        [--clock wall|cpu] [--json FILE|-]\n");
            MPI_Finalize();
            return 0;
        } else if (!strcmp(a, "--no-step")) {
            do_step = takes = 0;
        } else if (!strcmp(a, "--no-importance")) {
            do_imp = takes = 0;
        } else if (!v) {
            ok = 0;
        } else if (!strcmp(a, "--data")) {
            dir = v;
        } else if (!strcmp(a, "--hidden")) {
            n_hidden = 0;
            for (const char *s = v; *s && ok && n_hidden < CONFIG_MAX_HIDDEN;) {
                char *end;
                long w = strtol(s, &end, 10);
                ok = end != s && w > 0 && (*end == ',' || *end == '\0');
                hidden[n_hidden++] = (int)w;
                s = *end == ',' ? end + 1 : end;
            }
            ok = ok && n_hidden > 0;
        } else if (!strcmp(a, "--batch")) {
            ok = (batch = atoi(v)) > 0;
        } else if (!strcmp(a, "--reps")) {
            ok = (reps = atoi(v)) > 0 && reps <= MAX_REPS;
        } else if (!strcmp(a, "--importance-reps")) {
            ok = (ireps = atoi(v)) > 0 && ireps <= MAX_REPS;
        } else if (!strcmp(a, "--steps")) {
            ok = (steps = atoi(v)) > 0;
        } else if (!strcmp(a, "--train-samples")) {
            ok = (train_samples = atoi(v)) >= 0;
        } else if (!strcmp(a, "--json")) {
            json = v;
        } else if (!strcmp(a, "--clock")) {
            ok = !strcmp(v, "wall") || !strcmp(v, "cpu");
            g_clock = !strcmp(v, "cpu") ? C_CPU : C_WALL;
        } else {
            ok = 0;
        }
        if (!ok) {
            if (g_rank == 0) fprintf(stderr, "bench_importance: bad argument %s %s\n", a, v ? v : "");
            MPI_Finalize();
            return 2;
        }
        i += takes;
    }

    Dataset data = {0};
    if (dataset_load(&data, dir, train_samples, 0)) die("dataset_load");
    char load0[32], load1[32];
    loadavg(load0, sizeof load0);
    double t0[C_COUNT];

    /* (a) step throughput, one trainer per variant, interleaved repetitions */
    static double t_step[C_COUNT][N_VARIANTS][MAX_REPS];
    if (do_step) {
        static Run runs[N_VARIANTS];
        for (int v = 0; v < N_VARIANTS; v++) {
            run_init(&runs[v], &variants[v], dir, &data, hidden, n_hidden, batch);
            run_steps(&runs[v], 10); /* warm-up */
        }
        for (int k = 0; k < reps; k++)
            for (int j = 0; j < N_VARIANTS; j++) {
                int v = (j + k) % N_VARIANTS;
                start(t0);
                run_steps(&runs[v], steps);
                stop(t0, steps, &t_step[0][v][k], N_VARIANTS * MAX_REPS);
            }
        for (int v = 0; v < N_VARIANTS; v++) trainer_free(&runs[v].t);
    }

    /* (b) MAS over the whole training set vs the sampled Fisher vs one epoch, interleaved */
    static double t_imp[C_COUNT][I_COUNT][MAX_REPS];
    int used = 0;
    if (do_imp) {
        static Run run;
        run_init(&run, &variants[0], dir, &data, hidden, n_hidden, batch);
        float *omega = malloc(run.t.shape.n_params * sizeof(float));
        if (!omega) die("out of memory");
        run_steps(&run, 10);
        if (mas_importance(&run.t, TASK, 1000, omega, &used)) die("mas_importance");
        int spe = trainer_steps_per_epoch(&run.t);
        for (int k = 0; k < ireps; k++)
            for (int j = 0; j < I_COUNT; j++) {
                int q = (j + k) % I_COUNT;
                start(t0);
                if (q == I_EPOCH) {
                    trainer_begin_epoch(&run.t, TASK, ++run.epoch);
                    run.step = 0;
                    run_steps(&run, spe);
                } else if (q == I_MAS) {
                    if (mas_importance(&run.t, TASK, 0, omega, &used)) die("mas_importance");
                } else if (trainer_fisher(&run.t, TASK, FISHER_SAMPLED, 0, omega, &used)) {
                    die("trainer_fisher");
                }
                stop(t0, 1.0, &t_imp[0][q][k], I_COUNT * MAX_REPS);
            }
        free(omega);
        trainer_free(&run.t);
    }
    loadavg(load1, sizeof load1);

    if (g_rank == 0) {
        char name[96];
        int k = snprintf(name, sizeof name, "%d", data.train.dim);
        for (int i = 0; i < n_hidden; i++)
            k += snprintf(name + k, sizeof name - (size_t)k, "-%d", hidden[i]);
        snprintf(name + k, sizeof name - (size_t)k, "-%d", data.n_classes);
        int to_stdout = json && !strcmp(json, "-"), c = g_clock;
        if (!to_stdout) {
            printf("bench_importance: %s, batch %d, %d rank%s, 1 BLAS thread (%s kernels), best "
                   "of %d / %d interleaved repetitions, %s clock, load average %s -> %s\n", name,
                   batch, g_size, g_size > 1 ? "s" : "", openblas_get_corename(), reps, ireps,
                   clock_names[c], load0, load1);
            if (do_step) {
                printf("\n(a) training step, lambda 100, %d steps per repetition\n", steps);
                printf("%-16s %10s %9s\n", "variant", "samples/s", "step ms");
                for (int v = 0; v < N_VARIANTS; v++) {
                    double s = minv(t_step[c][v], reps);
                    printf("%-16s %10.0f %9.3f\n", variants[v].name, batch / s, s * 1e3);
                }
                printf("%-34s %8s %8s  (target >= 0.85)\n", "samples/s ratio", clock_names[c],
                       clock_names[!c]);
                for (int p = 0; p < N_PAIRS; p++) {
                    int e = pairs[p][0], b = pairs[p][1];
                    char label[64];
                    snprintf(label, sizeof label, "%s / %s", variants[e].name, variants[b].name);
                    printf("%-34s %8.3f %8.3f\n", label,
                           minv(t_step[c][b], reps) / minv(t_step[c][e], reps),
                           minv(t_step[!c][b], reps) / minv(t_step[!c][e], reps));
                }
            }
            if (do_imp) {
                printf("\n(b) importance over %d samples (chunks of %d) vs one epoch of %d steps"
                       " (target for mas <= 1.5)\n", used, batch, (data.train.n + batch - 1) / batch);
                printf("%-16s %9s %10s %10s\n", "measure", "seconds", "/ epoch", clock_names[!c]);
                double ep = minv(t_imp[c][I_EPOCH], ireps), ep2 = minv(t_imp[!c][I_EPOCH], ireps);
                for (int q = 0; q < I_COUNT; q++) {
                    double s = minv(t_imp[c][q], ireps);
                    printf("%-16s %9.3f %10.3f %10.3f\n", imp_names[q], s, s / ep,
                           minv(t_imp[!c][q], ireps) / ep2);
                }
            }
            fflush(stdout);
        }
        if (json) {
            FILE *f = to_stdout ? stdout : fopen(json, "w");
            if (!f) die("cannot write the --json file");
            fprintf(f, "{\"bench\": \"importance\", \"model\": \"%s\", \"batch\": %d, \"ranks\": "
                       "%d, \"core\": \"%s\", \"clock\": \"%s\", \"loadavg\": [\"%s\", \"%s\"]",
                    name, batch, g_size, openblas_get_corename(), clock_names[c], load0, load1);
            if (do_step) {
                fprintf(f, ",\n \"step\": {\"steps\": %d", steps);
                for (int v = 0; v < N_VARIANTS; v++)
                    fprintf(f, ", \"%s_samples_per_s\": %.6g", variants[v].name,
                            batch / minv(t_step[c][v], reps));
                for (int cc = 0; cc < C_COUNT; cc++) {
                    fprintf(f, ",\n  \"ratios_%s\": {", clock_names[cc]);
                    for (int p = 0; p < N_PAIRS; p++) {
                        int e = pairs[p][0], b = pairs[p][1];
                        fprintf(f, "%s\"%s/%s\": %.6g", p ? ", " : "", variants[e].name,
                                variants[b].name,
                                minv(t_step[cc][b], reps) / minv(t_step[cc][e], reps));
                    }
                    fprintf(f, "}");
                }
                fprintf(f, "}");
            }
            if (do_imp) {
                fprintf(f, ",\n \"importance\": {\"samples\": %d", used);
                for (int q = 0; q < I_COUNT; q++) {
                    fprintf(f, ", \"%s\": {\"seconds\": %.6g", imp_names[q], minv(t_imp[c][q], ireps));
                    for (int cc = 0; cc < C_COUNT; cc++)
                        fprintf(f, ", \"over_epoch_%s\": %.6g", clock_names[cc],
                                minv(t_imp[cc][q], ireps) / minv(t_imp[cc][I_EPOCH], ireps));
                    fprintf(f, "}");
                }
                fprintf(f, "}");
            }
            fprintf(f, "}\n");
            if (!to_stdout) fclose(f);
        }
    }
    dataset_free(&data);
    MPI_Finalize();
    return 0;
}
