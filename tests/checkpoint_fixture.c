/* The checkpoint tests' shared fixture (see checkpoint_fixture.h): the reference run that
 * setup_group builds and saves, and the helpers that copy, damage, reseal and load checkpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_fixture.h"
#include "ewc/checkpoint.h"
#include "ewc/penalty.h"
#include "testutil.h"

CheckpointReference R;

/* ---- helpers -------------------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void path_in(char *buf, const char *name) {
    snprintf(buf, H5FILE_PATH_MAX, "%s/%s", R.dir, name);
}

/* A fresh path for a damaged copy (each test gets its own file). */
void new_path(char *buf, const char *what) {
    char name[96];
    snprintf(name, sizeof name, "damaged-%02d-%s.h5", R.n_damaged++, what);
    path_in(buf, name);
}

void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(ferror(in), 0);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static float *dup_floats(const float *src, size_t n) {
    float *p = malloc(n * sizeof *p);
    if (p) memcpy(p, src, n * sizeof *p);
    return p;
}

static EwcStatus curve_push(Trainer *t, int task, double accuracy) {
    if (t->n_curve == t->cap_curve) {
        int cap = t->cap_curve ? 2 * t->cap_curve : 4;
        CurvePoint *c = realloc(t->curve, (size_t)cap * sizeof *c);
        if (!c) return EWC_ENOMEM;
        t->curve = c;
        t->cap_curve = cap;
    }
    t->curve[t->n_curve++] = (CurvePoint){t->global_step, task, accuracy};
    return EWC_OK;
}

/* STATUS is WANT and the error message contains every NULL-terminated substring; clears it. */
void assert_error(EwcStatus status, EwcStatus want, ...) {
    const char *msg = ewc_error_message();
    if (status != want) fail_msg("status %d, expected %d (\"%s\")", status, want, msg);
    va_list ap;
    va_start(ap, want);
    for (const char *sub; (sub = va_arg(ap, const char *));)
        if (!strstr(msg, sub)) fail_msg("message \"%s\" lacks \"%s\"", msg, sub);
    va_end(ap);
    if (strchr(msg, '\n')) fail_msg("message \"%s\" is not one line", msg);
    ewc_error_clear();
}

/* Load PATH into a fresh trainer built from CFG (R.data); returns the status, message kept. */
EwcStatus load_with(const Config *cfg, const char *path) {
    Trainer t;
    ewc_error_clear();
    EwcStatus st = trainer_init(&t, cfg, &R.data, MPI_COMM_SELF);
    if (st) fail_msg("trainer_init: %s", ewc_error_message());
    st = checkpoint_load(&t, path);
    trainer_free(&t);
    return st;
}

/* ---- the reference run ---------------------------------------------------------------------- */

/* One epoch of TASK's steps [0, STEPS) with the bookkeeping of run_sequence. */
static EwcStatus train_steps(Trainer *t, int task, int steps) {
    trainer_begin_epoch(t, task, 0);
    for (int step = 0; step < steps; step++) {
        double loss;
        EwcStatus st = trainer_step(t, task, 0, step, &loss);
        if (st) return st;
        int n = N_TRAIN - step * BATCH < BATCH ? N_TRAIN - step * BATCH : BATCH;
        t->train_samples += n;
        t->train_seconds += 0.001 * (step + 1);
        t->last_loss = loss;
        t->global_step++;
        t->step = step + 1;
    }
    return EWC_OK;
}

/* finish_task of run.c: accuracy row, Fisher, penalty, position, checkpoint with the record. */
static EwcStatus finish_task(Trainer *t, int task) {
    EwcStatus st;
    for (int j = 0; j < TASKS; j++)
        if ((st = trainer_evaluate(t, j, &t->acc[(size_t)task * TASKS + j]))) return st;
    double acc;
    if ((st = trainer_evaluate(t, task, &acc)) || (st = curve_push(t, task, acc))) return st;
    size_t np = t->shape.n_params;
    if (!(R.fisher[task] = malloc(np * sizeof(float)))) return EWC_ENOMEM;
    st = trainer_fisher(t, task, R.cfg.fisher, R.cfg.fisher_samples, R.fisher[task], &R.used[task]);
    if (st) return st;
    if (!(R.anchor[task] = dup_floats(t->params, np))) return EWC_ENOMEM;
    penalty_add_task(&t->pen, R.fisher[task], t->params);
    t->task = task + 1;
    t->epoch = t->step = 0;
    TaskRecord rec = {task, t->params, R.fisher[task], R.cfg.fisher, R.used[task], NULL};
    return checkpoint_save(t, R.ckpt, &rec);
}

int setup_group(void **state) {
    (void)state;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the damage helpers probe with the raw API */
    strcpy(R.dir, "/tmp/test_checkpoint.XXXXXX");
    if (!mkdtemp(R.dir)) return -1;
    path_in(R.ckpt, CHECKPOINT_NAME);

    TestRng rng = {20240601};
    Split *sp[2] = {&R.data.train, &R.data.test};
    int ns[2] = {N_TRAIN, N_TEST};
    for (int s = 0; s < 2; s++) {
        sp[s]->n = ns[s];
        sp[s]->dim = DIM;
        sp[s]->x = malloc((size_t)ns[s] * DIM);
        sp[s]->y = malloc((size_t)ns[s]);
        if (!sp[s]->x || !sp[s]->y) return -1;
        for (int i = 0; i < ns[s] * DIM; i++) sp[s]->x[i] = (uint8_t)(trng_next(&rng) >> 56);
        for (int i = 0; i < ns[s]; i++) sp[s]->y[i] = (uint8_t)(i % CLASSES);
    }
    R.data.n_classes = CLASSES;

    config_defaults(&R.cfg);
    R.cfg.hidden[0] = HIDDEN;
    R.cfg.n_hidden = 1;
    R.cfg.tasks = TASKS;
    R.cfg.batch = BATCH;
    R.cfg.method = METHOD_EWC;
    R.cfg.momentum = 0.9;
    R.cfg.lambda = 10.0;
    snprintf(R.cfg.out_dir, sizeof R.cfg.out_dir, "%s", R.dir);

    Trainer *t = &R.t;
    EwcStatus st = trainer_init(t, &R.cfg, &R.data, MPI_COMM_SELF);
    if (st) {
        fprintf(stderr, "trainer_init: %s\n", ewc_error_message());
        return -1;
    }
    R.have_trainer = true;
    t->blas_core = "TestCore"; /* as main sets it from blascore_choose */
    int spe = trainer_steps_per_epoch(t);
    for (int j = 0; j < TASKS && !st; j++) st = trainer_evaluate(t, j, &t->initial_acc[j]);
    for (int task = 0; task < FINISHED && !st; task++) {
        st = train_steps(t, task, spe);
        if (!st) st = finish_task(t, task);
    }
    /* part of the next task, then a mid-task checkpoint (no new record: tasks carried over) */
    if (!st) st = train_steps(t, FINISHED, STEPS_INTO_LAST);
    if (!st) st = curve_push(t, FINISHED, 0.375);
    if (!st) st = checkpoint_save(t, R.ckpt, NULL);
    if (st) {
        fprintf(stderr, "reference run: %s\n", ewc_error_message());
        return -1;
    }
    return 0;
}

int teardown_group(void **state) {
    (void)state;
    if (R.have_trainer) trainer_free(&R.t);
    for (int k = 0; k < FINISHED; k++) {
        free(R.anchor[k]);
        free(R.fisher[k]);
    }
    dataset_free(&R.data);
    return R.dir[0] ? nftw(R.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) : 0;
}

void appendf(char *buf, size_t size, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}


void assert_bits_equal(const void *a, const void *b, size_t bytes, const char *what) {
    if (memcmp(a, b, bytes) != 0) {
        const unsigned char *x = a, *y = b;
        size_t i = 0;
        while (x[i] == y[i]) i++;
        fail_msg("%s differs (first at byte %zu of %zu)", what, i, bytes);
    }
}

/* Open a copy of the checkpoint for writing with the raw HDF5 API. */
hid_t open_copy_rw(char *p, const char *what) {
    new_path(p, what);
    copy_file(R.ckpt, p);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* Close F (the copy P, changed with the raw HDF5 API) and seal it again, as if ewc-train had
 * written it that way: the checks behind the digest are what these tests are about. */
void close_sealed(hid_t f, const char *p) {
    assert_true(H5Fclose(f) >= 0);
    size_t n;
    unsigned char *image = slurp(p, &n);
    assert_int_equal(h5file_seal_image(image, n), EWC_OK);
    write_bytes(p, image, n);
    free(image);
}

void set_attr_i64(hid_t file, const char *obj, const char *name, int64_t v) {
    hid_t a = H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
}
