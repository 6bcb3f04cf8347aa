/* ewc-train: train an MLP on a sequence of permuted-pixel tasks with SGD, L2, EWC or online EWC,
 * data-parallel over MPI. Parses flags, loads data, runs the sequence, prints the results. */
#include <cblas.h>
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ewc/blascore.h"
#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/dist.h"
#include "ewc/layer.h"
#include "ewc/overlap.h"
#include "ewc/run.h"
#include "ewc/signals.h"
#include "ewc/train.h"
#include "ewc/validation.h"

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_STOPPED = SIGNALS_EXIT_STOPPED };

/* mkdir -p DIR and check that a file can be created in it. Rank 0 only. */
static EwcStatus prepare_out_dir(const char *dir) {
    char path[CONFIG_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            ewc_error_set("--out %s: cannot create %s: %s", dir, path, strerror(errno));
            return EWC_EIO;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        ewc_error_set("--out %s: not a directory", dir);
        return EWC_EIO;
    }
    snprintf(path, sizeof path, "%s/.ewc-write-test", dir);
    FILE *f = fopen(path, "w");
    if (!f || fclose(f) != 0) {
        ewc_error_set("--out %s: directory is not writable: %s", dir, strerror(errno));
        return EWC_EIO;
    }
    unlink(path);
    return EWC_OK;
}

static void print_matrix(const Trainer *t) {
    int T = t->cfg->tasks;
    printf("\naccuracy matrix R[t][j] (test accuracy on task j after training task t):\n      ");
    for (int j = 0; j < T; j++) printf("  task%-3d", j);
    printf("\n");
    for (int r = 0; r < t->task; r++) {
        printf("t=%-3d ", r);
        for (int j = 0; j < T; j++) printf("  %.4f ", t->acc[(size_t)r * T + j]);
        printf("\n");
    }
}

/* Rank 0's line on the BLAS in use, and the warning when a resumed run changed it. */
static void print_blas(const Trainer *t, const BlasCore *b, int resumed) {
    if (t->dist.rank != 0) return;
    if (!t->cfg->quiet)
        printf("BLAS: OpenBLAS core %s, row quantum %d, self-test passed in %.3f s; %s (%.2f s)\n",
               b->core, t->dist.quantum, b->selftest_seconds, b->reason, b->seconds);
    if (resumed && t->resumed_blas_core[0] && (strcmp(t->resumed_blas_core, b->core) != 0 ||
                                               t->resumed_quantum != t->dist.quantum))
        fprintf(stderr, "ewc-train: warning: the checkpoint was written on OpenBLAS core %s "
                "(row quantum %d), this run uses %s (row quantum %d): results are bit-identical "
                "only within one kernel set\n", t->resumed_blas_core, t->resumed_quantum,
                b->core, t->dist.quantum);
}

/* Everything after flag parsing; returns the agreed status. Collective. */
static EwcStatus train_main(Config *cfg, BlasCore *blas, MPI_Comm comm, int *reporter) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    Dataset data = {0};
    Trainer t = {0};
    int have_trainer = 0;
    Config resolved = *cfg; /* the trainer's: split's --tasks may depend on the data's classes */
    EwcStatus st = rank == 0 ? prepare_out_dir(cfg->out_dir) : EWC_OK;
    if ((st = dist_agree(comm, st, reporter))) goto done;
    st = dataset_load(&data, cfg->data_dir, cfg->train_samples, cfg->test_samples);
    if (st == EWC_OK) st = validation_split(&data, cfg->validation, cfg->seed);
    if (st == EWC_OK) st = run_resolve_config(&resolved, &data);
    if ((st = dist_agree(comm, st, reporter))) goto done;
    st = trainer_init(&t, &resolved, &data, comm);
    have_trainer = st == EWC_OK;
    if ((st = dist_agree(comm, st, reporter))) goto done;
    if ((st = blascore_verify(blas, &t.shape, cfg->batch, comm, reporter))) goto done;
    t.blas_core = blas->core;

    char ckpt[CONFIG_PATH_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/%s", cfg->out_dir, CHECKPOINT_NAME);
    /* --resume falls back to checkpoint.prev.h5 if checkpoint.h5 is damaged (checkpoint.h) */
    int resume = 0;
    if (cfg->resume) st = checkpoint_resume(&t, cfg->out_dir, &resume);
    /* a fresh run in an old --out starts over: the old checkpoints are not this run's */
    else if (rank == 0) st = checkpoint_discard(cfg->out_dir);
    if ((st = dist_agree(comm, st, reporter))) goto done;
    if (resume && rank == 0 && !cfg->quiet)
        printf("resuming from %s: task %d, epoch %d, step %d\n", ckpt, t.task, t.epoch, t.step);
    print_blas(&t, blas, resume);
    if (rank == 0 && !cfg->quiet)
        printf("ewc-train: %d tasks, method %s, %zu parameters, %d rank%s, data %s\n", t.cfg->tasks,
               config_method_name(cfg->method), t.shape.n_params, size, size > 1 ? "s" : "",
               cfg->data_dir);
    st = run_sequence(&t);
    st = dist_agree(comm, st, reporter);
    if (st == EWC_OK && rank == 0 && !cfg->quiet) {
        print_matrix(&t);
        printf("outputs in %s/\n", cfg->out_dir);
    }
done:
    if (have_trainer) trainer_free(&t);
    dataset_free(&data);
    return st;
}

int main(int argc, char **argv) {
    /* before MPI_Init too: a requeue signal can come while MPI starts up (the default action
     * would kill the process), and again after, in case the MPI library installed its own */
    signals_install();
    /* every rank parses the same argv, so all of them agree on a flag error without talking */
    Config cfg;
    EwcStatus st = config_parse(&cfg, argc, argv);
    if (st == EWC_OK && blascore_is_probe()) return blascore_probe_main(&cfg);
    /* OpenBLAS chose its kernels when it loaded: a better choice re-executes the program, which
     * must happen before MPI_Init */
    BlasCore blas;
    int training = st == EWC_OK && !cfg.help && !cfg.fisher_overlap[0] && !cfg.overlap_layers;
    EwcStatus blas_st = training ? blascore_choose(&cfg, argv, &blas) : EWC_OK;
    MPI_Init(&argc, &argv);
    signals_install();
    layer_flush_subnormals();
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank, reporter = 0;
    MPI_Comm_rank(comm, &rank);
    reporter = rank == 0; /* a flag error, and errors below, are the same on every rank */
    if (training && (st = dist_agree(comm, blas_st, &reporter)) == EWC_OK) reporter = rank == 0;
    if (st == EWC_OK && cfg.help) {
        if (rank == 0) config_print_help(argv[0]);
    } else if (st == EWC_OK && cfg.fisher_overlap[0]) {
        st = rank != 0            ? EWC_OK
             : cfg.overlap_layers ? overlap_print_layers(cfg.fisher_overlap, stdout)
                                  : overlap_print(cfg.fisher_overlap, stdout);
        st = dist_agree(comm, st, &reporter);
    } else if (st == EWC_OK && cfg.overlap_layers) {
        ewc_error_set("--overlap-layers: only with --fisher-overlap FILE");
        st = EWC_EINVAL;
    } else if (st == EWC_OK) {
        openblas_set_num_threads(cfg.threads);
        st = train_main(&cfg, &blas, comm, &reporter);
    }
    if (st != EWC_OK && st != EWC_ESTOP && reporter)
        fprintf(stderr, "ewc-train: error: %s\n", ewc_error_message());
    MPI_Finalize();
    return st == EWC_OK ? EXIT_OK : st == EWC_ESTOP ? EXIT_STOPPED : EXIT_ERROR;
}
