/* bench_train: training throughput of trainer_step against the "roofline" of its SGEMMs alone
 * (same shapes, same BLAS, same run, interleaved), and the exact vs allreduce reduction.
 * MPI program: run at 1 rank for throughput and roofline, at 2 ranks for exact vs allreduce. */
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
#include "ewc/train.h"

#define BENCH_NAME "bench_train"
#include "benchutil.h"

#define MAX_CASES 16
#define TARGET_FLOPS 4e10 /* default timed steps: about this many flops per segment */

enum { M_EXACT, M_ALLREDUCE, M_ROOF, M_COUNT };
static const char *const mode_names[M_COUNT] = {"exact", "allreduce", "roofline"};

typedef struct {
    int n_hidden, hidden[CONFIG_MAX_HIDDEN], batch;
} Case;

typedef struct {
    Config cfg;
    Trainer t;
    int ready, epoch, step; /* next step to run */
} Run;

/* Preallocated operands of exactly the SGEMMs of one training step (layouts of layer.c). */
typedef struct {
    int L, n, dims[MODEL_MAX_LAYERS + 1];
    float *x[MODEL_MAX_LAYERS];  /* (n, dims[l] + 1) layer input */
    float *w[MODEL_MAX_LAYERS];  /* (dims[l+1], dims[l] + 1) [W | b] */
    float *h[MODEL_MAX_LAYERS];  /* (n, dims[l+1] + 1) forward output */
    float *d[MODEL_MAX_LAYERS];  /* (n, dims[l+1]) delta */
    float *dx[MODEL_MAX_LAYERS]; /* (n, dims[l]) input gradient */
    float *g[MODEL_MAX_LAYERS];  /* (dims[l+1], dims[l] + 1) weight gradient */
} Roof;

enum { C_WALL, C_CPU, C_COUNT }; /* wall clock, or this process's CPU time (immune to being
                                  * descheduled on a busy machine, blind to waiting) */
static const char *const clock_names[C_COUNT] = {"wall", "cpu"};

typedef struct {
    Case c;
    int steps;
    double flops;                     /* of the SGEMMs of one step */
    double best[C_COUNT][M_COUNT];    /* seconds per step, best repetition */
    double all[C_COUNT][M_COUNT][64]; /* seconds per step of every repetition */
    int have[M_COUNT];
} Result;

static int g_rank, g_size, g_clock = C_WALL;
static int g_dim = 784, g_classes = 10; /* of the dataset, for the model names */
static char g_load[2][32]; /* load average before and after */

static int parse_hidden(const char *s, Case *c) {
    c->n_hidden = 0;
    while (*s && c->n_hidden < CONFIG_MAX_HIDDEN) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        c->hidden[c->n_hidden++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return c->n_hidden > 0 ? 0 : -1;
}

static float *rand_buf(size_t n, unsigned long long *state) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) die("out of memory");
    for (size_t i = 0; i < n; i++) p[i] = frand01(state) - 0.5f; /* [-0.5, 0.5) */
    return p;
}

static void roof_init(Roof *r, const ModelShape *s, int n) {
    memset(r, 0, sizeof *r);
    unsigned long long st = 12345;
    r->L = s->n_layers;
    r->n = n;
    for (int l = 0; l <= r->L; l++) r->dims[l] = s->dims[l];
    for (int l = 0; l < r->L; l++) {
        size_t in = (size_t)s->dims[l], out = (size_t)s->dims[l + 1];
        r->x[l] = rand_buf((size_t)n * (in + 1), &st);
        r->w[l] = rand_buf(out * (in + 1), &st);
        r->h[l] = rand_buf((size_t)n * (out + 1), &st);
        r->d[l] = rand_buf((size_t)n * out, &st);
        r->dx[l] = rand_buf((size_t)n * in, &st);
        r->g[l] = rand_buf(out * (in + 1), &st);
    }
}

static void roof_free(Roof *r) {
    for (int l = 0; l < r->L; l++) {
        free(r->x[l]);
        free(r->w[l]);
        free(r->h[l]);
        free(r->d[l]);
        free(r->dx[l]);
        free(r->g[l]);
    }
}

/* The products of one step, with the trainer's flags and leading dimensions (layer.c):
 * forward n x (in+1) . (in+1) x out, input gradient (layers > 0) n x out . out x in, weight
 * gradient out x n . n x (in+1) accumulated (beta 1). Hidden outputs have a trailing-1 column. */
static void roof_step(Roof *r) {
    int n = r->n;
    for (int l = 0; l < r->L; l++) {
        int din = r->dims[l], dout = r->dims[l + 1], ldo = l + 1 < r->L ? dout + 1 : dout;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, dout, din + 1, 1.0f, r->x[l],
                    din + 1, r->w[l], din + 1, 0.0f, r->h[l], ldo);
    }
    for (int l = r->L - 1; l >= 0; l--) {
        int din = r->dims[l], dout = r->dims[l + 1];
        if (l > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, din, dout, 1.0f, r->d[l],
                        dout, r->w[l], din + 1, 0.0f, r->dx[l], din);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dout, din + 1, n, 1.0f, r->d[l], dout,
                    r->x[l], din + 1, 1.0f, r->g[l], din + 1);
    }
}

static double step_flops(const ModelShape *s, int n) {
    double f = 0.0;
    for (int l = 0; l < s->n_layers; l++) {
        double in = s->dims[l], out = s->dims[l + 1];
        f += 2.0 * n * out * (in + 1);      /* forward */
        f += 2.0 * out * (in + 1) * n;      /* weight gradient */
        if (l > 0) f += 2.0 * n * out * in; /* input gradient */
    }
    return f;
}

static void run_init(Run *r, const Case *c, ReduceMode mode, const char *dir, const Dataset *data) {
    config_defaults(&r->cfg);
    snprintf(r->cfg.data_dir, sizeof r->cfg.data_dir, "%s", dir);
    r->cfg.tasks = 1;
    r->cfg.n_hidden = c->n_hidden;
    memcpy(r->cfg.hidden, c->hidden, sizeof c->hidden);
    r->cfg.batch = c->batch;
    r->cfg.reduce = mode;
    r->cfg.quiet = 1;
    if (trainer_init(&r->t, &r->cfg, data, MPI_COMM_WORLD)) die("trainer_init");
    trainer_begin_epoch(&r->t, 0, 0);
    r->epoch = r->step = 0;
    r->ready = 1;
}

static void run_steps(Run *r, int steps) {
    int spe = trainer_steps_per_epoch(&r->t);
    for (int i = 0; i < steps; i++) {
        if (r->step == spe) {
            r->step = 0;
            trainer_begin_epoch(&r->t, 0, ++r->epoch);
        }
        double loss;
        if (trainer_step(&r->t, 0, r->epoch, r->step++, &loss)) die("trainer_step");
    }
}

/* Wall and CPU time of STEPS steps of MODE, all ranks started together; the slowest rank
 * counts. */
static void timed_segment(int mode, Run *runs, Roof *roof, int steps, double dt[C_COUNT]) {
    MPI_Barrier(MPI_COMM_WORLD);
    double w0 = MPI_Wtime(), c0 = cpu_seconds();
    if (mode == M_ROOF)
        for (int i = 0; i < steps; i++) roof_step(roof);
    else
        run_steps(&runs[mode], steps);
    dt[C_CPU] = cpu_seconds() - c0;
    dt[C_WALL] = MPI_Wtime() - w0;
    MPI_Allreduce(MPI_IN_PLACE, dt, C_COUNT, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

static void bench_case(Result *res, const char *dir, const Dataset *data, const int *want,
                       int reps, int steps_flag, int warmup) {
    Run runs[2];
    memset(runs, 0, sizeof runs);
    for (int m = 0; m < 2; m++)
        if (want[m]) run_init(&runs[m], &res->c, m == M_EXACT ? REDUCE_EXACT : REDUCE_ALLREDUCE,
                              dir, data);
    Run *any = want[M_EXACT] ? &runs[M_EXACT] : &runs[M_ALLREDUCE];
    Roof roof;
    roof_init(&roof, &any->t.shape, res->c.batch);
    res->flops = step_flops(&any->t.shape, res->c.batch);
    int steps = steps_flag > 0 ? steps_flag : (int)ceil(TARGET_FLOPS / res->flops);
    if (steps < 10 && steps_flag <= 0) steps = 10;
    res->steps = steps;
    double dt[C_COUNT];
    for (int m = 0; m < M_COUNT; m++) {
        res->have[m] = want[m];
        for (int c = 0; c < C_COUNT; c++) res->best[c][m] = INFINITY;
        if (want[m] && warmup) timed_segment(m, runs, &roof, warmup, dt);
    }
    /* interleaved repetitions; the order rotates so no mode always runs right after another */
    for (int k = 0; k < reps; k++)
        for (int j = 0; j < M_COUNT; j++) {
            int m = (j + k) % M_COUNT;
            if (!want[m]) continue;
            timed_segment(m, runs, &roof, steps, dt);
            for (int c = 0; c < C_COUNT; c++) {
                double s = dt[c] / steps;
                res->all[c][m][k] = s;
                if (s < res->best[c][m]) res->best[c][m] = s;
            }
        }
    roof_free(&roof);
    for (int m = 0; m < 2; m++)
        if (runs[m].ready) trainer_free(&runs[m].t);
}

static void hidden_str(char *buf, size_t size, const Case *c) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, size - k, "%d", g_dim);
    for (int i = 0; i < c->n_hidden && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "-%d", c->hidden[i]);
    if (k < size) snprintf(buf + k, size - k, "-%d", g_classes);
}

/* Best seconds per trainer step under clock C (exact if measured, else allreduce). */
static double step_time(const Result *r, int c) {
    return r->have[M_EXACT] ? r->best[c][M_EXACT] : r->best[c][M_ALLREDUCE];
}

static void print_table(const Result *res, int n, int reps) {
    int c = g_clock;
    printf("bench_train: %d rank%s, %d BLAS thread, %s (%s kernels), best of %d interleaved "
           "repetitions, %s clock, load average %s -> %s\n", g_size, g_size > 1 ? "s" : "",
           openblas_get_num_threads(), openblas_get_config(), openblas_get_corename(), reps,
           clock_names[c], g_load[0], g_load[1]);
    printf("roof = the step's SGEMMs alone on preallocated buffers (full batch, 1 rank); "
           "frac = roof / (ranks * step)\n\n");
    printf("%-16s %5s %5s %10s %9s %9s %9s %9s %6s %6s", "model", "batch", "steps", "samples/s",
           "step ms", "roof ms", "sgemm GF", "step GF", "frac", "frac*");
    if (res[0].have[M_ALLREDUCE]) printf(" %9s %9s %8s %8s", "allr s/s", "allr ms", "ex/allr",
                                         "ex/allr*");
    printf("\n");
    for (int i = 0; i < n; i++) {
        const Result *r = &res[i];
        char name[64];
        hidden_str(name, sizeof name, &r->c);
        double step = step_time(r, c), roof = r->best[c][M_ROOF];
        printf("%-16s %5d %5d %10.0f %9.3f %9.3f %9.1f %9.1f %6.3f %6.3f", name, r->c.batch,
               r->steps, r->c.batch / step, step * 1e3, roof * 1e3, r->flops / roof * 1e-9,
               r->flops / step * 1e-9, roof / (g_size * step),
               r->best[!c][M_ROOF] / (g_size * step_time(r, !c)));
        if (r->have[M_ALLREDUCE]) {
            double a = r->best[c][M_ALLREDUCE];
            printf(" %9.0f %9.3f", r->c.batch / a, a * 1e3);
            if (r->have[M_EXACT])
                printf(" %8.3f %8.3f", r->best[c][M_EXACT] / a,
                       r->best[!c][M_EXACT] / r->best[!c][M_ALLREDUCE]);
        }
        printf("\n");
    }
    printf("\n* = the same ratio under the %s clock.", clock_names[!c]);
    if (res[0].have[M_EXACT] && res[0].have[M_ALLREDUCE])
        printf(" ex/allr = exact step time / allreduce step time (> 1: the deterministic"
               " reduction costs more).");
    printf("\n");
    fflush(stdout);
}

static void write_json(FILE *f, const Result *res, int n, int reps) {
    fprintf(f, "{\"bench\": \"train\", \"ranks\": %d, \"blas_threads\": %d, \"openblas\": \"%s\", "
               "\"core\": \"%s\", \"reps\": %d, \"clock\": \"%s\", \"loadavg\": [\"%s\", \"%s\"], "
               "\"cases\": [", g_size, openblas_get_num_threads(), openblas_get_config(),
            openblas_get_corename(), reps, clock_names[g_clock], g_load[0], g_load[1]);
    for (int i = 0; i < n; i++) {
        const Result *r = &res[i];
        fprintf(f, "%s\n  {\"hidden\": [", i ? "," : "");
        for (int k = 0; k < r->c.n_hidden; k++) fprintf(f, "%s%d", k ? ", " : "", r->c.hidden[k]);
        fprintf(f, "], \"batch\": %d, \"steps\": %d, \"gemm_flops_per_step\": %.6g", r->c.batch,
                r->steps, r->flops);
        /* the main figures under the selected clock, then every measurement under both */
        for (int m = 0; m < M_COUNT; m++) {
            if (!r->have[m]) continue;
            double b = r->best[g_clock][m];
            fprintf(f, ", \"%s\": {\"step_ms\": %.6g, \"samples_per_s\": %.6g, \"gflops\": %.6g",
                    mode_names[m], b * 1e3, r->c.batch / b, r->flops / b * 1e-9);
            for (int c = 0; c < C_COUNT; c++) {
                fprintf(f, ", \"%s_step_ms\": [", clock_names[c]);
                for (int k = 0; k < reps; k++)
                    fprintf(f, "%s%.6g", k ? ", " : "", r->all[c][m][k] * 1e3);
                fprintf(f, "]");
            }
            fprintf(f, "}");
        }
        for (int c0 = 0; c0 < C_COUNT; c0++) {
            int c = c0 == 0 ? g_clock : !g_clock;
            const char *sfx = c0 == 0 ? "" : c == C_CPU ? "_cpu" : "_wall";
            fprintf(f, ", \"roofline_fraction%s\": %.6g", sfx,
                    r->best[c][M_ROOF] / (g_size * step_time(r, c)));
            if (r->have[M_EXACT] && r->have[M_ALLREDUCE])
                fprintf(f, ", \"exact_over_allreduce%s\": %.6g", sfx,
                        r->best[c][M_EXACT] / r->best[c][M_ALLREDUCE]);
        }
        fprintf(f, "}");
    }
    fprintf(f, "\n]}\n");
}

static void usage(void) {
    printf("usage: bench_train [--data DIR] [--hidden W,W] [--batch N] [--reps R] [--steps N]\n"
           "                   [--warmup N] [--reduce exact|allreduce|both] [--clock wall|cpu]\n"
           "                   [--json FILE|-]\n"
           "Default: 784-400-400-10 and 784-1000-1000-10 at batch 100 and 1000, 5 repetitions,\n"
           "--reduce exact at 1 rank and both at more ranks. --json - prints JSON instead of\n"
           "the table; --json FILE writes it to FILE as well as the table. --clock picks the\n"
           "clock of the main figures (default wall; cpu = process CPU time, robust against\n"
           "other jobs on a busy machine); the table's * columns and the JSON give both.\n");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    layer_flush_subnormals(); /* as ewc-train does */
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    openblas_set_num_threads(1);

    const char *dir = default_data_dir(), *json = NULL, *reduce = g_size > 1 ? "both" : "exact";
    int reps = 5, steps = 0, warmup = 3, n_cases = 0, batch = 0;
    Case cases[MAX_CASES], one = {0};
    for (int i = 1; i < argc; i += 2) { /* --flag value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (g_rank == 0) usage();
            MPI_Finalize();
            return 0;
        } else if (!v) {
            ok = 0;
        } else if (!strcmp(a, "--data")) {
            dir = v;
        } else if (!strcmp(a, "--hidden")) {
            ok = parse_hidden(v, &one) == 0;
        } else if (!strcmp(a, "--batch")) {
            ok = (batch = atoi(v)) > 0;
        } else if (!strcmp(a, "--reps")) {
            ok = (reps = atoi(v)) > 0 && reps <= 64;
        } else if (!strcmp(a, "--steps")) {
            ok = (steps = atoi(v)) > 0;
        } else if (!strcmp(a, "--warmup")) {
            ok = (warmup = atoi(v)) >= 0;
        } else if (!strcmp(a, "--reduce")) {
            reduce = v;
            ok = !strcmp(v, "exact") || !strcmp(v, "allreduce") || !strcmp(v, "both");
        } else if (!strcmp(a, "--json")) {
            json = v;
        } else if (!strcmp(a, "--clock")) {
            ok = !strcmp(v, "wall") || !strcmp(v, "cpu");
            g_clock = !strcmp(v, "cpu") ? C_CPU : C_WALL;
        } else {
            ok = 0;
        }
        if (!ok) {
            if (g_rank == 0) fprintf(stderr, "bench_train: bad argument %s %s\n", a, v ? v : "");
            MPI_Finalize();
            return 2;
        }
    }
    static const int widths[] = {400, 1000}, batches[] = {100, 1000};
    for (int w = 0; w < 2; w++)
        for (int b = 0; b < 2; b++) {
            Case c = {2, {widths[w], widths[w]}, batches[b]};
            if (one.n_hidden) { /* --hidden: only that model */
                if (w) continue;
                c = one;
                c.batch = batches[b];
            }
            if (batch) {
                if (b) continue;
                c.batch = batch;
            }
            cases[n_cases++] = c;
        }
    int want[M_COUNT] = {strcmp(reduce, "allreduce") != 0, strcmp(reduce, "exact") != 0, 1};

    Dataset data = {0};
    if (dataset_load(&data, dir, 0, 0)) die("dataset_load");
    g_dim = data.train.dim;
    g_classes = data.n_classes;
    Result *res = calloc((size_t)n_cases, sizeof *res);
    if (!res) die("out of memory");
    loadavg(g_load[0], sizeof g_load[0]);
    for (int i = 0; i < n_cases; i++) {
        res[i].c = cases[i];
        bench_case(&res[i], dir, &data, want, reps, steps, warmup);
    }
    loadavg(g_load[1], sizeof g_load[1]);
    if (g_rank == 0) {
        int to_stdout = json && !strcmp(json, "-");
        if (!to_stdout) print_table(res, n_cases, reps);
        if (json) {
            FILE *f = to_stdout ? stdout : fopen(json, "w");
            if (!f) {
                fprintf(stderr, "bench_train: cannot write %s\n", json);
            } else {
                write_json(f, res, n_cases, reps);
                if (!to_stdout) fclose(f);
            }
        }
    }
    free(res);
    dataset_free(&data);
    MPI_Finalize();
    return 0;
}
