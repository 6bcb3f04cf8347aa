/* Fuzz harness for the checkpoint reader (checkpoint.h over h5file.h): the input is a file image,
 * loaded in memory (checkpoint_load_image) into trainers built from the two configurations that
 * make_corpus.sh writes its seed checkpoints with (CONFIGS below; keep the two in step: the
 * replay run fails if no seed loads). Each input is loaded as it is, which tests the digest
 * check (any change to a sealed checkpoint must be refused before HDF5 parses it), and with
 * FUZZ_SEAL=1 in the environment also sealed afresh (h5file_seal_image), which takes the damaged
 * bytes past the digest into HDF5 and our reader. Checked on every input: a rejected file gives
 * one message line and a status of a bad file; an accepted one leaves a position inside the
 * sequence. */
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/error.h"
#include "ewc/h5file.h"
#include "ewc/run.h"
#include "ewc/train.h"
#include "fuzz_util.h" /* FUZZ_CHECK */

/* The data make_corpus.sh trains on: 8x8 images, 10 classes, 64 training (minus --validation)
 * and 32 test samples. Only the shapes matter to the reader. */
#define DIM 64
#define CLASSES 10
#define N_TRAIN 64
#define N_TEST 32

/* The seed runs' flags, as make_corpus.sh passes them (execution flags left out). */
static const char *const CONFIGS[][32] = {
    {"ewc-train", "--data", "fuzz-data", "--tasks", "2", "--hidden", "8", "--method", "ewc",
     "--momentum", "0.9", "--train-samples", "64", "--test-samples", "32", "--batch", "16",
     "--validation", "16", "--patience", "2", "--fisher-samples", "32", "--seed", "7", NULL},
    {"ewc-train", "--data", "fuzz-data", "--tasks", "2", "--hidden", "8,4", "--method",
     "online-ewc", "--gamma", "0.9", "--optimizer", "adam", "--train-samples", "64",
     "--test-samples", "32", "--batch", "16", "--penalty-step", "implicit",
     "--permute-fraction", "0.5", NULL},
};
#define N_CONFIGS (sizeof CONFIGS / sizeof CONFIGS[0])

static struct {
    Config cfg[N_CONFIGS];
    Dataset data[N_CONFIGS];
    Trainer t[N_CONFIGS];
    long accepted; /* inputs some trainer accepted (the replay run wants at least one) */
    int verbose;   /* env FUZZ_VERBOSE set: print why each input was rejected */
    int seal;      /* env FUZZ_SEAL set: also load each input sealed afresh */
} F;

static void split_alloc(Split *s, int n) {
    s->n = n;
    s->dim = DIM;
    s->x = calloc((size_t)n * DIM, 1);
    s->y = calloc((size_t)n, 1);
    FUZZ_CHECK(s->x && s->y, "out of memory");
}

/* At exit: free the trainers, but leave MPI initialised: MPI_Finalize unloads Open MPI's plugins,
 * and LeakSanitizer would then report their never-freed start-up allocations as ours. */
static void release(void) {
    for (size_t k = 0; k < N_CONFIGS; k++) {
        trainer_free(&F.t[k]);
        dataset_free(&F.data[k]);
    }
}

/* Sanitizer builds read these at start-up. Leaks that are not ours, suppressed by name:
 * - MPI_Init allocates memory that Open MPI never frees (its libraries, plugins mca_*.so, PMIx,
 *   hwloc; some in plugin constructors, run by _dl_init);
 * - H5Fopen of a corrupt file leaks parts of the root group's object header when it fails half
 *   way (HDF5 1.10.8's error path; H5Fopen returned no id, so there is nothing to close).
 * Their stacks only match with the slow unwinder (the fast one stops in the first library frame
 * built without frame pointers), hence fast_unwind_on_malloc=0: exact leak stacks at about a
 * quarter of the speed. For speed, fuzz with -detect_leaks=0 and replay the corpus afterwards
 * with leak detection on (README.md).
 * allocator_may_return_null=1: a corrupt length makes HDF5 ask for terabytes; malloc then returns
 * NULL, as glibc's does, and HDF5 reports the failure, instead of ASan aborting the process. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libopen-pal.so\nleak:libopen-rte.so\nleak:libmpi.so\nleak:libpmix.so\n"
           "leak:libhwloc.so\nleak:mca_\nleak:_dl_init\nleak:H5Fopen\n";
}
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "fast_unwind_on_malloc=0:allocator_may_return_null=1";
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    MPI_Init(argc, argv);
    F.verbose = getenv("FUZZ_VERBOSE") != NULL;
    F.seal = getenv("FUZZ_SEAL") != NULL;
    for (size_t k = 0; k < N_CONFIGS; k++) {
        int n = 0;
        while (CONFIGS[k][n]) n++;
        EwcStatus st = config_parse(&F.cfg[k], n, (char **)CONFIGS[k]);
        FUZZ_CHECK(st == EWC_OK, "config %zu: %s", k, ewc_error_message());
        split_alloc(&F.data[k].train, N_TRAIN - F.cfg[k].validation);
        split_alloc(&F.data[k].test, N_TEST);
        F.data[k].n_classes = CLASSES;
        st = run_resolve_config(&F.cfg[k], &F.data[k]);
        FUZZ_CHECK(st == EWC_OK, "config %zu: %s", k, ewc_error_message());
        st = trainer_init(&F.t[k], &F.cfg[k], &F.data[k], MPI_COMM_SELF);
        FUZZ_CHECK(st == EWC_OK, "trainer_init %zu: %s", k, ewc_error_message());
    }
    atexit(release);
    return 0;
}

/* Load IMAGE into every trainer and check what comes back. */
static void load_all(const uint8_t *image, size_t size, const char *what) {
    for (size_t k = 0; k < N_CONFIGS; k++) {
        Trainer *t = &F.t[k];
        ewc_error_clear();
        EwcStatus st = checkpoint_load_image(t, "fuzz-input", image, size);
        if (st) {
            FUZZ_CHECK(st == EWC_EFORMAT || st == EWC_EINVAL || st == EWC_EIO || st == EWC_ENOMEM,
                       "status %d: %s", (int)st, ewc_error_message());
            fuzz_check_error_line(st);
            if (F.verbose) fprintf(stderr, "%s, config %zu: %s\n", what, k, ewc_error_message());
            continue;
        }
        const Config *c = t->cfg;
        FUZZ_CHECK(t->task >= 0 && t->task <= c->tasks, "task %d", t->task);
        FUZZ_CHECK(t->epoch >= 0 && t->epoch <= c->epochs, "epoch %d", t->epoch);
        FUZZ_CHECK(t->step >= 0 && t->step <= trainer_steps_per_epoch(t), "step %d", t->step);
        FUZZ_CHECK(t->pen.tasks_done >= 0 && t->pen.tasks_done <= t->task, "tasks done %d",
                   t->pen.tasks_done);
        FUZZ_CHECK(t->n_curve >= 0 && (t->n_curve == 0 || t->curve), "curve %d", t->n_curve);
        for (int i = 0; i < t->n_curve; i++) {
            volatile long long s = t->curve[i].step; /* ASan: the curve is as long as said */
            (void)s;
        }
        F.accepted++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_all(data, size, "as is");
    if (F.seal && size >= H5FILE_USERBLOCK) {
        uint8_t *sealed = malloc(size);
        FUZZ_CHECK(sealed != NULL, "out of memory");
        memcpy(sealed, data, size);
        FUZZ_CHECK(h5file_seal_image(sealed, size) == EWC_OK, "seal: %s", ewc_error_message());
        load_all(sealed, size, "sealed");
        free(sealed);
    }
    return 0;
}

/* Called by replay_main.c after the last input: the seed checkpoints must load, or the
 * configurations above and make_corpus.sh have drifted apart. */
int fuzz_replay_summary(void) {
    printf("checkpoint inputs accepted: %ld\n", F.accepted);
    return F.accepted > 0 ? 0 : 1;
}
