/* bench_reduce: bytes per step and step time of the three reductions (exact, fixed, float
 * allreduce) on the real trainer, for 784-400-400-10 and 784-2000-2000-10 at batch 100, 1000
 * and 4096. MPI program: run at 2 ranks on one host, or across hosts. Bytes are counted in the
 * code (Dist.bytes: what each rank receives, for bandwidth-optimal collectives). */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/fixsum.h"
#include "ewc/layer.h"
#include "ewc/train.h"

#define BENCH_NAME "bench_reduce"
#include "benchutil.h"

#define MAX_CASES 16
#define TARGET_FLOPS 2e10 /* default timed steps: about this many flops per segment */

enum { M_EXACT, M_FIXED, M_ALLREDUCE, M_COUNT };
static const char *const mode_names[M_COUNT] = {"exact", "fixed", "allreduce"};
static const ReduceMode mode_enum[M_COUNT] = {REDUCE_EXACT, REDUCE_FIXED, REDUCE_ALLREDUCE};
enum { C_WALL, C_CPU, C_COUNT };
static const char *const clock_names[C_COUNT] = {"wall", "cpu"};

typedef struct {
    int n_hidden, hidden[CONFIG_MAX_HIDDEN], batch;
} Case;

typedef struct {
    Config cfg;
    Trainer t;
    int ready, epoch, step;
} Run;

typedef struct {
    Case c;
    int steps;
    size_t n_params;
    double s_bytes;                /* exact's bytes per sample (fixsum_exact_bytes_per_sample) */
    double best[C_COUNT][M_COUNT]; /* seconds per step, best repetition */
    double bytes[M_COUNT];         /* received per rank and step, largest over ranks */
    int have[M_COUNT];
} Result;

static int g_rank, g_size, g_clock = C_WALL, g_micro = 0;
static char g_load[2][32];

static int parse_hidden(const char *s, Case *c) {
    c->n_hidden = 0;
    while (*s && c->n_hidden < CONFIG_MAX_HIDDEN) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        c->hidden[c->n_hidden++] = (int)v;
        if (*end && *end != ',') return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return c->n_hidden > 0 ? 0 : -1;
}

static void run_init(Run *r, const Case *c, int mode, const char *dir, const Dataset *data) {
    config_defaults(&r->cfg);
    snprintf(r->cfg.data_dir, sizeof r->cfg.data_dir, "%s", dir);
    r->cfg.tasks = 1;
    r->cfg.n_hidden = c->n_hidden;
    memcpy(r->cfg.hidden, c->hidden, sizeof c->hidden);
    r->cfg.batch = c->batch;
    r->cfg.reduce = mode_enum[mode];
    r->cfg.micro_batch = g_micro;
    r->cfg.quiet = 1;
    if (trainer_init(&r->t, &r->cfg, data, MPI_COMM_WORLD)) die("trainer_init");
    trainer_begin_epoch(&r->t, 0, 0);
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

/* Wall and CPU seconds of STEPS steps (slowest rank), bytes received per step (largest rank). */
static void timed_segment(Run *r, int steps, double dt[C_COUNT], double *bytes) {
    MPI_Barrier(MPI_COMM_WORLD);
    long long b0 = r->t.dist.bytes;
    double w0 = MPI_Wtime(), c0 = cpu_seconds();
    run_steps(r, steps);
    dt[C_CPU] = cpu_seconds() - c0;
    dt[C_WALL] = MPI_Wtime() - w0;
    double b = (double)(r->t.dist.bytes - b0) / steps;
    MPI_Allreduce(MPI_IN_PLACE, dt, C_COUNT, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&b, bytes, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

static double step_flops(const ModelShape *s, int n) {
    double f = 0.0;
    for (int l = 0; l < s->n_layers; l++) {
        double in = s->dims[l], out = s->dims[l + 1];
        f += 4.0 * n * out * (in + 1) + (l > 0 ? 2.0 * n * out * in : 0.0);
    }
    return f;
}

static void bench_case(Result *res, const char *dir, const Dataset *data, const int *want,
                       int reps, int steps_flag, int warmup) {
    Run runs[M_COUNT];
    memset(runs, 0, sizeof runs);
    int first = -1;
    for (int m = 0; m < M_COUNT; m++)
        if (want[m]) {
            run_init(&runs[m], &res->c, m, dir, data);
            if (first < 0) first = m;
        }
    const ModelShape *s = &runs[first].t.shape;
    res->n_params = s->n_params;
    res->s_bytes = fixsum_exact_bytes_per_sample(s);
    int steps = steps_flag > 0 ? steps_flag : (int)ceil(TARGET_FLOPS / step_flops(s, res->c.batch));
    res->steps = steps < 3 ? 3 : steps;
    double dt[C_COUNT], bytes;
    for (int m = 0; m < M_COUNT; m++) {
        res->have[m] = want[m];
        for (int c = 0; c < C_COUNT; c++) res->best[c][m] = INFINITY;
        if (want[m] && warmup) timed_segment(&runs[m], warmup, dt, &bytes);
    }
    for (int k = 0; k < reps; k++) /* interleaved, rotating order */
        for (int j = 0; j < M_COUNT; j++) {
            int m = (j + k) % M_COUNT;
            if (!want[m]) continue;
            timed_segment(&runs[m], res->steps, dt, &bytes);
            res->bytes[m] = bytes;
            for (int c = 0; c < C_COUNT; c++)
                if (dt[c] / res->steps < res->best[c][m]) res->best[c][m] = dt[c] / res->steps;
        }
    for (int m = 0; m < M_COUNT; m++)
        if (runs[m].ready) trainer_free(&runs[m].t);
}

static void model_name(char *buf, size_t size, const Case *c, int dim, int classes) {
    size_t k = (size_t)snprintf(buf, size, "%d", dim);
    for (int i = 0; i < c->n_hidden && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "-%d", c->hidden[i]);
    if (k < size) snprintf(buf + k, size - k, "-%d", classes);
}

/* The formulas of fixsum.h, per rank and step: exact (B s + 4 n)(p-1)/p, fixed 12 n (p-1)/p,
 * allreduce 8 n (p-1)/p. */
static double predicted(const Result *r, int m) {
    double q = (double)(g_size - 1) / g_size, n = (double)r->n_params;
    return m == M_EXACT ? (r->c.batch * r->s_bytes + 4 * n) * q : m == M_FIXED ? 12 * n * q : 8 * n * q;
}

/* The micro-batch of R's fixed runs: --micro-batch, or the default for its batch. */
static int case_micro(const Result *r) {
    return g_micro ? g_micro : fixsum_default_micro(r->c.batch);
}

static void print_table(const Result *res, int n, int reps, int dim, int classes) {
    int c = g_clock;
    printf("bench_reduce: %d rank%s, %s, %s kernels, micro-batch %s, best of %d interleaved "
           "repetitions, %s clock, load average %s -> %s\n", g_size, g_size > 1 ? "s" : "",
           openblas_get_config(), openblas_get_corename(),
           g_micro ? "--micro-batch" : "the default (fixed:m below)", reps, clock_names[c],
           g_load[0], g_load[1]);
    printf("MB/step = MB received per rank per step (counted); pred = the formula; "
           "/allr = ratio to float allreduce\n\n");
    printf("%-18s %5s %9s %5s %10s %10s %8s %9s %8s %10s\n", "model", "batch", "mode", "steps",
           "MB/step", "pred MB", "/allr B", "step ms", "/allr t", "samples/s");
    for (int i = 0; i < n; i++) {
        const Result *r = &res[i];
        char name[64];
        model_name(name, sizeof name, &r->c, dim, classes);
        for (int m = 0; m < M_COUNT; m++) {
            if (!r->have[m]) continue;
            double t = r->best[c][m];
            char mode[32];
            if (m == M_FIXED)
                snprintf(mode, sizeof mode, "fixed:%d", case_micro(r));
            else
                snprintf(mode, sizeof mode, "%s", mode_names[m]);
            printf("%-18s %5d %9s %5d %10.3f %10.3f", name, r->c.batch, mode, r->steps,
                   r->bytes[m] / 1e6, predicted(r, m) / 1e6);
            if (r->have[M_ALLREDUCE])
                printf(" %8.3f %9.3f %8.3f", r->bytes[M_ALLREDUCE] > 0 ? r->bytes[m] / r->bytes[M_ALLREDUCE] : 0.0,
                       t * 1e3, t / r->best[c][M_ALLREDUCE]);
            else
                printf(" %8s %9.3f %8s", "-", t * 1e3, "-");
            printf(" %10.0f\n", r->c.batch / t);
        }
    }
    fflush(stdout);
}

static void write_json(FILE *f, const Result *res, int n, int reps) {
    fprintf(f, "{\"bench\": \"reduce\", \"ranks\": %d, \"openblas\": \"%s\", \"core\": \"%s\", "
               "\"micro_batch\": %d, \"reps\": %d, \"clock\": \"%s\", \"loadavg\": [\"%s\", \"%s\"], "
               "\"cases\": [", g_size, openblas_get_config(), openblas_get_corename(),
            g_micro, reps, clock_names[g_clock], g_load[0], g_load[1]);
    for (int i = 0; i < n; i++) {
        const Result *r = &res[i];
        fprintf(f, "%s\n  {\"hidden\": [", i ? "," : "");
        for (int k = 0; k < r->c.n_hidden; k++) fprintf(f, "%s%d", k ? ", " : "", r->c.hidden[k]);
        fprintf(f, "], \"batch\": %d, \"micro_batch\": %d, \"steps\": %d, \"n_params\": %zu, "
                   "\"exact_bytes_per_sample\": %.6g",
                r->c.batch, case_micro(r), r->steps, r->n_params, r->s_bytes);
        for (int m = 0; m < M_COUNT; m++) {
            if (!r->have[m]) continue;
            fprintf(f, ", \"%s\": {\"bytes_per_step\": %.6g, \"predicted_bytes\": %.6g, "
                       "\"wall_step_ms\": %.6g, \"cpu_step_ms\": %.6g}", mode_names[m],
                    r->bytes[m], predicted(r, m), r->best[C_WALL][m] * 1e3, r->best[C_CPU][m] * 1e3);
        }
        fprintf(f, "}");
    }
    fprintf(f, "\n]}\n");
}

static void usage(void) {
    printf("usage: bench_reduce [--data DIR] [--hidden W,W] [--batch N] [--modes LIST]\n"
           "                    [--micro-batch M] [--reps R] [--steps N] [--warmup N]\n"
           "                    [--clock wall|cpu] [--json FILE|-]\n"
           "Default: 784-400-400-10 and 784-2000-2000-10 at batch 100, 1000 and 4096, modes\n"
           "exact,fixed,allreduce, 3 repetitions, wall clock. --data defaults to $EWC_MNIST_DIR,\n"
           "data/mnist, else Fashion-MNIST. Run under mpirun with 2 or more ranks.\n");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    layer_flush_subnormals();
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    openblas_set_num_threads(1);
    const char *dir = default_data_dir(), *json = NULL;
    int reps = 3, steps = 0, warmup = 2, batch = 0, want[M_COUNT] = {1, 1, 1};
    Case one = {0};
    for (int i = 1; i < argc; i += 2) { /* --flag VALUE pairs */
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
        } else if (!strcmp(a, "--micro-batch")) {
            ok = (g_micro = atoi(v)) >= 0;
        } else if (!strcmp(a, "--reps")) {
            ok = (reps = atoi(v)) > 0;
        } else if (!strcmp(a, "--steps")) {
            ok = (steps = atoi(v)) > 0;
        } else if (!strcmp(a, "--warmup")) {
            ok = (warmup = atoi(v)) >= 0;
        } else if (!strcmp(a, "--modes")) {
            for (int m = 0; m < M_COUNT; m++) want[m] = strstr(v, mode_names[m]) != NULL;
            ok = want[0] || want[1] || want[2];
        } else if (!strcmp(a, "--clock")) {
            ok = !strcmp(v, "wall") || !strcmp(v, "cpu");
            g_clock = !strcmp(v, "cpu") ? C_CPU : C_WALL;
        } else if (!strcmp(a, "--json")) {
            json = v;
        } else {
            ok = 0;
        }
        if (!ok) {
            if (g_rank == 0) fprintf(stderr, "bench_reduce: bad argument %s %s\n", a, v ? v : "");
            MPI_Finalize();
            return 2;
        }
    }
    static const int widths[] = {400, 2000}, batches[] = {100, 1000, 4096};
    Case cases[MAX_CASES];
    int n_cases = 0;
    for (int w = 0; w < 2; w++)
        for (int b = 0; b < 3; b++) {
            Case c = {2, {widths[w], widths[w]}, batches[b]};
            if (one.n_hidden) {
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
    Dataset data = {0};
    if (dataset_load(&data, dir, 0, 0)) die("dataset_load");
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
        if (!to_stdout) print_table(res, n_cases, reps, data.train.dim, data.n_classes);
        if (json) {
            FILE *f = to_stdout ? stdout : fopen(json, "w");
            if (!f) {
                fprintf(stderr, "bench_reduce: cannot write %s\n", json);
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
