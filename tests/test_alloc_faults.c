/* Allocation failure at each allocation of a run: set-up (flags, dataset, validation split,
 * trainer, BLAS self-test), training with its checkpoints and outputs, and a resume (checkpoint
 * load, then save). Linked with -Wl,--wrap=malloc,calloc,realloc,free: the K-th call of our code
 * fails, for K = 1, 2, ... until a run makes fewer than K calls. Every failure must give
 * EWC_ENOMEM with a one-line message (or, for an optional buffer, the reference results), free
 * everything (live allocations through the wrapper back to the count before the run), close
 * every HDF5 object and leave no temporary checkpoint file. Allocations inside the shared
 * libraries (HDF5, Open MPI, OpenBLAS, zlib, libc's stdio) use their own malloc and are not
 * failed here; only the program's own calls are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ewc/blascore.h"
#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/run.h"
#include "ewc/train.h"
#include "ewc/validation.h"

/* ---- the wrapper: counts calls, fails the armed one, tracks live blocks ---------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static struct {
    long calls;    /* allocation calls since the counter was reset */
    long fail_at;  /* the call to fail (1-based), 0 = none */
    long snap_at;  /* at this call, copy the current checkpoint to resume_src (0 = never) */
    int failed;    /* the armed call was reached and failed */
    void **live;   /* blocks handed out and not yet freed */
    size_t n_live, cap;
} fa;

static void live_add(void *p) {
    if (!p) return;
    if (fa.n_live == fa.cap) {
        size_t cap = fa.cap ? 2 * fa.cap : 1024;
        void **grown = __real_realloc(fa.live, cap * sizeof *grown);
        if (!grown) abort();
        fa.live = grown;
        fa.cap = cap;
    }
    fa.live[fa.n_live++] = p;
}

/* 1 if P was ours (and is now forgotten) */
static int live_remove(void *p) {
    for (size_t i = fa.n_live; i-- > 0;)
        if (fa.live[i] == p) {
            fa.live[i] = fa.live[--fa.n_live];
            return 1;
        }
    return 0;
}

static void snapshot(void);

static int fail_now(void) {
    fa.calls++;
    if (fa.snap_at && fa.calls == fa.snap_at) snapshot();
    if (fa.fail_at && fa.calls == fa.fail_at) {
        fa.failed = 1;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n) {
    if (fail_now()) return NULL;
    void *p = __real_malloc(n);
    live_add(p);
    return p;
}

void *__wrap_calloc(size_t n, size_t size) {
    if (fail_now()) return NULL;
    void *p = __real_calloc(n, size);
    live_add(p);
    return p;
}

void *__wrap_realloc(void *old, size_t n) {
    if (fail_now()) return NULL; /* the old block stays valid, as with a real failure */
    void *p = __real_realloc(old, n);
    if (p && old) live_remove(old);
    live_add(p);
    return p;
}

void __wrap_free(void *p) {
    if (p) live_remove(p);
    __real_free(p);
}

/* ---- the scenario ------------------------------------------------------------------------------ */

#define N_TRAIN 260
#define N_TEST 60
#define DIM 64 /* 8 x 8 images */
#define CLASSES 10

static char data_dir[256], out_dir[256], resume_src[300];

static const char *ckpt_path(void) {
    static char path[300];
    snprintf(path, sizeof path, "%s/%s", out_dir, CHECKPOINT_NAME);
    return path;
}

static void write_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
    fwrite(b, 1, 4, f);
}

/* A small IDX dataset: N images of 8 x 8 random pixels with labels 0..9 (every class present). */
static void write_split(const char *images, const char *labels, int n, unsigned seed) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", data_dir, images);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    write_be32(f, 0x803);
    write_be32(f, (uint32_t)n);
    write_be32(f, 8);
    write_be32(f, 8);
    for (int i = 0; i < n * DIM; i++) fputc((int)((seed = seed * 1103515245u + 12345u) >> 24), f);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof path, "%s/%s", data_dir, labels);
    f = fopen(path, "wb");
    assert_non_null(f);
    write_be32(f, 0x801);
    write_be32(f, (uint32_t)n);
    for (int i = 0; i < n; i++) fputc(i % CLASSES, f);
    assert_int_equal(fclose(f), 0);
}

/* What a run ends with, to compare a run that survived a failed optional allocation. */
typedef struct {
    EwcStatus st;
    char msg[1024];
    int task;
    long long global_step;
    int quantum;
    size_t n_params;
    float params[8192];
    double acc[16];
} Result;

/* The flags of both scenarios: two tasks, every stateful feature, mid-task checkpoints. */
static EwcStatus parse(Config *c, int resume) {
    char *argv[] = {"ewc-train", "--data", data_dir, "--out", out_dir, "--tasks", "2",
                    "--hidden", "16,12", "--epochs", "2", "--batch", "40", "--method", "ewc",
                    "--lambda", "5", "--momentum", "0.5", "--dropout", "0.1", "--validation", "40",
                    "--patience", "2", "--val-every", "3", "--eval-every", "4",
                    "--checkpoint-every", "5", "--fisher-samples", "100", "--quiet",
                    resume ? "--resume" : NULL, NULL};
    int argc = 0;
    while (argv[argc]) argc++;
    return config_parse(c, argc, argv);
}

static void remove_outputs(void) {
    DIR *d = opendir(out_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", out_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* A temporary checkpoint left in the output directory, or NULL. */
static const char *temp_left(void) {
    static char name[300];
    const char *found = NULL;
    DIR *d = opendir(out_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp")) {
            snprintf(name, sizeof name, "%s", e->d_name);
            found = name;
        }
    closedir(d);
    return found;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof buf, in)) > 0;) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* The checkpoint as it is at this moment of a run: a mid-run state to resume from (libc's stdio
 * allocates through its own malloc, so this is safe inside the wrapper). */
static void snapshot(void) {
    fa.snap_at = 0;
    copy_file(ckpt_path(), resume_src);
}

/* main's train_main without the output-directory check and the BLAS choice (no re-exec in a
 * test): a fresh run, or (RESUME) a resume from resume_src followed by one more checkpoint. */
static void scenario(int resume, Result *r) {
    Config cfg;
    Dataset data = {0};
    Trainer t = {0};
    int have_trainer = 0;
    memset(r, 0, sizeof *r);
    EwcStatus st = parse(&cfg, resume);
    if (st == EWC_OK) st = dataset_load(&data, cfg.data_dir, cfg.train_samples, cfg.test_samples);
    if (st == EWC_OK) st = validation_split(&data, cfg.validation, cfg.seed);
    if (st == EWC_OK) have_trainer = (st = trainer_init(&t, &cfg, &data, MPI_COMM_WORLD)) == EWC_OK;
    BlasCore blas;
    memset(&blas, 0, sizeof blas);
    snprintf(blas.core, sizeof blas.core, "test");
    if (st == EWC_OK) st = blascore_verify(&blas, &t.shape, cfg.batch, MPI_COMM_WORLD, NULL);
    t.blas_core = blas.core;
    char ckpt[CONFIG_PATH_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/%s", cfg.out_dir, CHECKPOINT_NAME);
    if (st == EWC_OK && resume) st = checkpoint_load(&t, ckpt);
    if (st == EWC_OK) st = run_sequence(&t);
    if (st == EWC_OK && resume) st = checkpoint_save(&t, ckpt, NULL);
    r->st = st;
    snprintf(r->msg, sizeof r->msg, "%s", ewc_error_message());
    if (st == EWC_OK) {
        r->task = t.task;
        r->global_step = t.global_step;
        r->quantum = t.dist.quantum;
        r->n_params = t.shape.n_params;
        assert_true(r->n_params <= sizeof r->params / sizeof r->params[0]);
        memcpy(r->params, t.params, r->n_params * sizeof(float));
        memcpy(r->acc, t.acc, (size_t)cfg.tasks * cfg.tasks * sizeof(double));
    }
    if (have_trainer) trainer_free(&t);
    dataset_free(&data);
}

static int same_result(const Result *a, const Result *b) {
    return a->task == b->task && a->global_step == b->global_step && a->quantum == b->quantum &&
           a->n_params == b->n_params &&
           memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0 &&
           memcmp(a->acc, b->acc, sizeof a->acc) == 0;
}

/* Fail call K = 1, 2, ... of scenario RESUME; returns the number of calls of a clean run. */
static long fail_each(int resume, const Result *ref) {
    static Result r;
    long k;
    int survived = 0;
    for (k = 1;; k++) {
        remove_outputs();
        if (resume) copy_file(resume_src, ckpt_path());
        ewc_error_clear();
        size_t live_before = fa.n_live;
        fa.calls = 0;
        fa.failed = 0;
        fa.fail_at = k;
        scenario(resume, &r);
        fa.fail_at = 0;
        if (!fa.failed) break; /* fewer than K calls: every call has been failed once */
        if (r.st == EWC_OK) {
            /* an optional buffer (e.g. the permuted training images): same results without it */
            if (!same_result(&r, ref))
                fail_msg("%s, allocation %ld failed: the run succeeded with different results",
                         resume ? "resume" : "fresh run", k);
            survived++;
        } else if (r.st != EWC_ENOMEM || !strstr(r.msg, "memory") || strchr(r.msg, '\n')) {
            fail_msg("%s, allocation %ld failed: status %d, message '%s' (want EWC_ENOMEM and "
                     "one line about memory)", resume ? "resume" : "fresh run", k, r.st, r.msg);
        }
        if (fa.n_live != live_before)
            fail_msg("%s, allocation %ld failed: %zu blocks leaked", resume ? "resume" : "fresh run",
                     k, fa.n_live - live_before);
        ssize_t open_h5 = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
        if (open_h5 != 0)
            fail_msg("%s, allocation %ld failed: %zd HDF5 objects left open",
                     resume ? "resume" : "fresh run", k, open_h5);
        const char *tmp = temp_left();
        if (tmp)
            fail_msg("%s, allocation %ld failed: temporary file %s left", resume ? "resume" : "fresh run",
                     k, tmp);
    }
    assert_int_equal(r.st, EWC_OK);
    assert_true(same_result(&r, ref));
    printf("%s: %ld allocations, each failed once; %d optional (run completed identically)\n",
           resume ? "resume" : "fresh run", k - 1, survived);
    return k - 1;
}

/* ---- the tests ------------------------------------------------------------------------------------ */

static Result reference;
static long fresh_calls;

static int setup(void **state) {
    (void)state;
    snprintf(data_dir, sizeof data_dir, "/tmp/ewc-alloc-data.XXXXXX");
    snprintf(out_dir, sizeof out_dir, "/tmp/ewc-alloc-out.XXXXXX");
    if (!mkdtemp(data_dir) || !mkdtemp(out_dir)) return -1;
    snprintf(resume_src, sizeof resume_src, "%s/resume-from.h5", data_dir);
    write_split("train-images-idx3-ubyte", "train-labels-idx1-ubyte", N_TRAIN, 1);
    write_split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", N_TEST, 2);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_outputs();
    rmdir(out_dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The unfailed fresh run: it completes, frees everything, and (run again) leaves a mid-run
 * checkpoint to resume from; the resume from it ends bit-identical to the uninterrupted run. */
static void test_reference_runs(void **state) {
    (void)state;
    static Result r;
    size_t live_before = fa.n_live;
    remove_outputs();
    fa.calls = 0;
    scenario(0, &reference);
    if (reference.st != EWC_OK) fail_msg("reference run: %s", reference.msg);
    assert_int_equal(reference.task, 2);
    assert_int_equal(fa.n_live, live_before);
    fresh_calls = fa.calls;
    remove_outputs();
    fa.calls = 0;
    fa.snap_at = fresh_calls * 3 / 5;
    scenario(0, &r);
    assert_int_equal(fa.snap_at, 0); /* the snapshot was taken */
    assert_int_equal(r.st, EWC_OK);
    assert_true(same_result(&r, &reference));
    remove_outputs();
    copy_file(resume_src, ckpt_path());
    scenario(1, &r);
    if (r.st != EWC_OK) fail_msg("reference resume: %s", r.msg);
    assert_true(same_result(&r, &reference));
    assert_true(r.global_step > 0);
    assert_int_equal(fa.n_live, live_before);
}

static void test_fail_each_allocation_of_a_run(void **state) {
    (void)state;
    assert_int_equal(fail_each(0, &reference), fresh_calls);
    assert_true(fresh_calls > 50); /* the wrapper really sees the program's allocations */
}

static void test_fail_each_allocation_of_a_resume(void **state) {
    (void)state;
    assert_true(fail_each(1, &reference) > 20);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_runs),
        cmocka_unit_test(test_fail_each_allocation_of_a_run),
        cmocka_unit_test(test_fail_each_allocation_of_a_resume),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    MPI_Finalize();
    return failed ? 1 : 0;
}
