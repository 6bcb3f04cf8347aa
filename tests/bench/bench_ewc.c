/* bench_ewc: what EWC costs on top of plain SGD: step throughput with 9 finished tasks in the
 * penalty (explicit, momentum, implicit) against SGD, and the diagonal Fisher over the whole
 * training set (empirical, sampled, expected) against one training epoch on the same data. */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ewc/layer.h"
#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/penalty.h"
#include "ewc/train.h"

#define BENCH_NAME "bench_ewc"
#include "benchutil.h"

#define MAX_REPS 64
#define DONE_TASKS 9 /* finished tasks folded into the penalty */
#define TASK 9       /* the task being trained (its permutation) */

typedef struct {
    const char *name;
    Method method;
    double momentum;
    PenaltyStep pstep;
} StepVariant;

static const StepVariant variants[] = {
    {"sgd", METHOD_SGD, 0.0, PENALTY_EXPLICIT},
    {"ewc", METHOD_EWC, 0.0, PENALTY_EXPLICIT},
    {"sgd+mom0.9", METHOD_SGD, 0.9, PENALTY_EXPLICIT},
    {"ewc+mom0.9", METHOD_EWC, 0.9, PENALTY_EXPLICIT},
    {"ewc-implicit", METHOD_EWC, 0.0, PENALTY_IMPLICIT},
    {"ewc-implicit+mom0.9", METHOD_EWC, 0.9, PENALTY_IMPLICIT},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))
/* (EWC variant, its SGD baseline) pairs whose throughput ratio is reported */
static const int pairs[][2] = {{1, 0}, {3, 2}, {4, 0}, {5, 2}};
#define N_PAIRS ((int)(sizeof pairs / sizeof pairs[0]))

enum { F_EPOCH = 3, F_COUNT }; /* 0..2: FisherKind, 3: one training epoch */
static const char *const fisher_names[F_COUNT] = {"empirical", "sampled", "expected", "epoch"};

typedef struct {
    Config cfg;
    Trainer t;
    int epoch, step;
} Run;

enum { C_WALL, C_CPU, C_COUNT }; /* wall clock, or this process's CPU time (immune to being
                                  * descheduled on a busy machine, blind to waiting) */
static const char *const clock_names[C_COUNT] = {"wall", "cpu"};

static int g_rank, g_size, g_clock = C_WALL;

static void run_init(Run *r, const StepVariant *v, const char *dir, const Dataset *data,
                     const int *hidden, int n_hidden, int batch) {
    config_defaults(&r->cfg);
    snprintf(r->cfg.data_dir, sizeof r->cfg.data_dir, "%s", dir);
    r->cfg.tasks = DONE_TASKS + 1;
    r->cfg.n_hidden = n_hidden;
    memcpy(r->cfg.hidden, hidden, (size_t)n_hidden * sizeof *hidden);
    r->cfg.batch = batch;
    r->cfg.method = v->method;
    r->cfg.lambda = 100.0;
    r->cfg.momentum = v->momentum;
    r->cfg.penalty_step = v->pstep;
    r->cfg.quiet = 1;
    if (trainer_init(&r->t, &r->cfg, data, MPI_COMM_WORLD)) die("trainer_init");
    /* 9 finished tasks: Fishers in [0, 0.01) (so lr * lambda * max(A) < 2 keeps the explicit
     * step stable) anchored near the current parameters */
    size_t np = r->t.shape.n_params;
    float *fisher = malloc(np * sizeof(float)), *anchor = malloc(np * sizeof(float));
    if (!fisher || !anchor) die("out of memory");
    unsigned long long st = 777;
    for (int k = 0; k < DONE_TASKS; k++) {
        for (size_t i = 0; i < np; i++) {
            fisher[i] = 0.01f * frand01(&st);
            anchor[i] = r->t.params[i] + 0.02f * (frand01(&st) - 0.5f);
        }
        penalty_add_task(&r->t.pen, fisher, anchor);
    }
    free(fisher);
    free(anchor);
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

/* Segment timing: all ranks start together; the slowest rank's wall and CPU time count. */
static void start(double t0[C_COUNT]) {
    MPI_Barrier(MPI_COMM_WORLD);
    t0[C_WALL] = MPI_Wtime();
    t0[C_CPU] = cpu_seconds();
}

/* Store the time since T0 divided by DIV into OUT[C][slot] for both clocks (OUT is
 * [C_COUNT][stride] doubles). */
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

static void print_list(FILE *f, const double *v, int n, double scale) {
    for (int k = 0; k < n; k++) fprintf(f, "%s%.6g", k ? ", " : "", v[k] * scale);
}

static void usage(void) {
    printf("usage: bench_ewc [--data DIR] [--hidden W,W] [--batch N] [--reps R] [--steps N]\n"
           "                 [--fisher-reps R] [--no-fisher] [--no-step] [--clock wall|cpu]\n"
           "                 [--json FILE|-]\n"
           "Default: 784-400-400-10, batch 100, 5 repetitions of each measurement, interleaved.\n"
           "--json - prints JSON instead of the tables; --json FILE writes it as well. --clock\n"
           "picks the clock of the tables (default wall; cpu = process CPU time, robust against\n"
           "other jobs on a busy machine); the JSON gives both.\n");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    layer_flush_subnormals(); /* as ewc-train does */
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    openblas_set_num_threads(1);

    const char *dir = default_data_dir(), *json = NULL;
    int hidden[CONFIG_MAX_HIDDEN] = {400, 400}, n_hidden = 2, batch = 100, reps = 5, steps = 200;
    int freps = 5, do_step = 1, do_fisher = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (g_rank == 0) usage();
            MPI_Finalize();
            return 0;
        } else if (!strcmp(a, "--no-fisher")) {
            do_fisher = takes = 0;
        } else if (!strcmp(a, "--no-step")) {
            do_step = takes = 0;
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
        } else if (!strcmp(a, "--fisher-reps")) {
            ok = (freps = atoi(v)) > 0 && freps <= MAX_REPS;
        } else if (!strcmp(a, "--steps")) {
            ok = (steps = atoi(v)) > 0;
        } else if (!strcmp(a, "--json")) {
            json = v;
        } else if (!strcmp(a, "--clock")) {
            ok = !strcmp(v, "wall") || !strcmp(v, "cpu");
            g_clock = !strcmp(v, "cpu") ? C_CPU : C_WALL;
        } else {
            ok = 0;
        }
        if (!ok) {
            if (g_rank == 0) fprintf(stderr, "bench_ewc: bad argument %s %s\n", a, v ? v : "");
            MPI_Finalize();
            return 2;
        }
        i += takes;
    }

    Dataset data = {0};
    if (dataset_load(&data, dir, 0, 0)) die("dataset_load");
    char load0[32], load1[32];
    loadavg(load0, sizeof load0);

    /* (a) step throughput: one trainer per variant, interleaved repetitions */
    static double t_step[C_COUNT][N_VARIANTS][MAX_REPS];
    double t0[C_COUNT];
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

    /* (b) Fisher over the whole training set vs one epoch, same trainer, interleaved */
    static double t_fisher[C_COUNT][F_COUNT][MAX_REPS];
    int used = 0;
    if (do_fisher) {
        static Run run;
        run_init(&run, &variants[1], dir, &data, hidden, n_hidden, batch);
        float *fisher = malloc(run.t.shape.n_params * sizeof(float));
        if (!fisher) die("out of memory");
        run_steps(&run, 10); /* warm-up */
        for (int f = 0; f < 3; f++)
            if (trainer_fisher(&run.t, TASK, (FisherKind)f, 1000, fisher, &used)) die("fisher");
        int spe = trainer_steps_per_epoch(&run.t);
        for (int k = 0; k < freps; k++)
            for (int j = 0; j < F_COUNT; j++) {
                int f = (j + k) % F_COUNT;
                start(t0);
                if (f == F_EPOCH) {
                    /* a whole epoch, as run_sequence does it */
                    trainer_begin_epoch(&run.t, TASK, ++run.epoch);
                    run.step = 0;
                    run_steps(&run, spe);
                } else if (trainer_fisher(&run.t, TASK, (FisherKind)f, 0, fisher, &used)) {
                    die("trainer_fisher");
                }
                stop(t0, 1.0, &t_fisher[0][f][k], F_COUNT * MAX_REPS);
            }
        free(fisher);
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
            printf("bench_ewc: %s, batch %d, %d rank%s, 1 BLAS thread (%s kernels), best of %d "
                   "(steps) / %d (Fisher) interleaved repetitions, %s clock, load average %s -> "
                   "%s\n", name, batch, g_size, g_size > 1 ? "s" : "", openblas_get_corename(),
                   reps, freps, clock_names[c], load0, load1);
            if (do_step) {
                printf("\n(a) training step, ewc variants with %d finished tasks in the penalty, "
                       "lambda 100, lr 0.1, %d steps per repetition\n", DONE_TASKS, steps);
                printf("%-22s %10s %9s\n", "variant", "samples/s", "step ms");
                for (int v = 0; v < N_VARIANTS; v++) {
                    double s = minv(t_step[c][v], reps);
                    printf("%-22s %10.0f %9.3f\n", variants[v].name, batch / s, s * 1e3);
                }
                printf("%-44s %8s %8s\n", "samples/s ratio", clock_names[c], clock_names[!c]);
                for (int p = 0; p < N_PAIRS; p++) {
                    int e = pairs[p][0], b = pairs[p][1];
                    char label[64];
                    snprintf(label, sizeof label, "%s / %s", variants[e].name, variants[b].name);
                    printf("%-44s %8.3f %8.3f\n", label,
                           minv(t_step[c][b], reps) / minv(t_step[c][e], reps),
                           minv(t_step[!c][b], reps) / minv(t_step[!c][e], reps));
                }
            }
            if (do_fisher) {
                printf("\n(b) Fisher over %d samples (chunks of %d) vs one epoch of %d steps\n",
                       used, batch, (data.train.n + batch - 1) / batch);
                printf("%-12s %9s %10s %10s\n", "kind", "seconds", "/ epoch", clock_names[!c]);
                double ep = minv(t_fisher[c][F_EPOCH], freps);
                double ep2 = minv(t_fisher[!c][F_EPOCH], freps);
                for (int f = 0; f < F_COUNT; f++) {
                    double s = minv(t_fisher[c][f], freps);
                    printf("%-12s %9.3f %10.3f %10.3f\n", fisher_names[f], s, s / ep,
                           minv(t_fisher[!c][f], freps) / ep2);
                }
            }
            fflush(stdout);
        }
        if (json) {
            FILE *f = to_stdout ? stdout : fopen(json, "w");
            if (!f) die("cannot write the --json file");
            fprintf(f, "{\"bench\": \"ewc\", \"model\": \"%s\", \"batch\": %d, \"ranks\": %d, "
                       "\"core\": \"%s\", \"reps\": %d, \"fisher_reps\": %d, \"clock\": \"%s\", "
                       "\"loadavg\": [\"%s\", \"%s\"]", name, batch, g_size,
                    openblas_get_corename(), reps, freps, clock_names[c], load0, load1);
            if (do_step) {
                fprintf(f, ",\n \"step\": {\"steps\": %d, \"done_tasks\": %d, \"lambda\": 100",
                        steps, DONE_TASKS);
                for (int v = 0; v < N_VARIANTS; v++) {
                    double s = minv(t_step[c][v], reps);
                    fprintf(f, ",\n  \"%s\": {\"step_ms\": %.6g, \"samples_per_s\": %.6g",
                            variants[v].name, s * 1e3, batch / s);
                    for (int cc = 0; cc < C_COUNT; cc++) {
                        fprintf(f, ", \"%s_step_ms\": [", clock_names[cc]);
                        print_list(f, t_step[cc][v], reps, 1e3);
                        fprintf(f, "]");
                    }
                    fprintf(f, "}");
                }
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
            if (do_fisher) {
                fprintf(f, ",\n \"fisher\": {\"samples\": %d", used);
                for (int q = 0; q < F_COUNT; q++) {
                    double s = minv(t_fisher[c][q], freps);
                    fprintf(f, ",\n  \"%s\": {\"seconds\": %.6g", fisher_names[q], s);
                    for (int cc = 0; cc < C_COUNT; cc++)
                        fprintf(f, ", \"over_epoch_%s\": %.6g", clock_names[cc],
                                minv(t_fisher[cc][q], freps) / minv(t_fisher[cc][F_EPOCH], freps));
                    for (int cc = 0; cc < C_COUNT; cc++) {
                        fprintf(f, ", \"%s_seconds\": [", clock_names[cc]);
                        print_list(f, t_fisher[cc][q], freps, 1.0);
                        fprintf(f, "]");
                    }
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
