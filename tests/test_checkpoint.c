/* Tests for the checkpoint: the exact HDF5 layout (every dataset with its shape and type, and
 * nothing else), a bitwise round trip of the whole trainer state, the per-task records (anchor,
 * Fisher, permutation), clean rejection of damaged, foreign, newer or mismatched checkpoints,
 * and that saving leaves no temporary files behind.
 *
 * One small trainer (synthetic data, 12 pixels, 3 classes, hidden {5}, EWC, momentum) is run
 * once like run.c does: two finished tasks, each saved with its TaskRecord, then a few steps
 * into the third task and a mid-task save. Every test reads that checkpoint or a damaged copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/error.h"
#include "ewc/h5file.h"
#include "ewc/penalty.h"
#include "ewc/train.h"
#include "testutil.h"

#define N_TRAIN 40
#define N_TEST 20
#define DIM 12
#define CLASSES 3
#define HIDDEN 5
#define TASKS 3
#define BATCH 8
#define FINISHED 2       /* tasks finished (and recorded) before the mid-task save */
#define STEPS_INTO_LAST 2 /* steps taken in task FINISHED before that save */

/* The reference run, built once by setup_group. */
static struct {
    char dir[64];
    char ckpt[H5FILE_PATH_MAX];
    Dataset data;
    Config cfg;
    Trainer t;
    bool have_trainer;
    float *anchor[FINISHED]; /* params when task k finished (what its TaskRecord pointed to) */
    float *fisher[FINISHED]; /* the Fisher handed to checkpoint_save for task k */
    int used[FINISHED];      /* samples the Fisher averaged over */
    int n_damaged;           /* counter for damaged copies' file names */
} R;

/* ---- helpers -------------------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void path_in(char *buf, const char *name) {
    snprintf(buf, H5FILE_PATH_MAX, "%s/%s", R.dir, name);
}

/* A fresh path for a damaged copy (each test gets its own file). */
static void new_path(char *buf, const char *what) {
    char name[96];
    snprintf(name, sizeof name, "damaged-%02d-%s.h5", R.n_damaged++, what);
    path_in(buf, name);
}

static void copy_file(const char *from, const char *to) {
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

static void write_bytes(const char *path, const void *data, size_t n) {
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
static void assert_error(EwcStatus status, EwcStatus want, ...) {
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
static EwcStatus load_with(const Config *cfg, const char *path) {
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

static int setup_group(void **state) {
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

static int teardown_group(void **state) {
    (void)state;
    if (R.have_trainer) trainer_free(&R.t);
    for (int k = 0; k < FINISHED; k++) {
        free(R.anchor[k]);
        free(R.fisher[k]);
    }
    dataset_free(&R.data);
    return R.dir[0] ? nftw(R.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) : 0;
}

/* ---- layout --------------------------------------------------------------------------------- */

typedef enum { T_F32, T_F64, T_I32, T_I64 } DType;
static const char *const dtype_names[] = {"float32", "float64", "int32", "int64"};

typedef struct {
    char path[96];
    DType type;
    int rank;
    hsize_t dims[2];
    bool seen;
} ExpectDataset;

typedef struct {
    char path[96];
    bool seen;
} ExpectGroup;

#define MAX_EXPECT 128
typedef struct {
    ExpectDataset ds[MAX_EXPECT];
    int n_ds;
    ExpectGroup gr[MAX_EXPECT];
    int n_gr;
    char unexpected[1024]; /* objects found that are not on either list */
    char errors[2048];     /* datasets with the wrong type or shape */
} Layout;

static void add_group(Layout *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_group(Layout *L, const char *fmt, ...) {
    assert_true(L->n_gr < MAX_EXPECT);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->gr[L->n_gr++].path, sizeof L->gr[0].path, fmt, ap);
    va_end(ap);
}

static void add_ds(Layout *L, DType type, int rank, hsize_t d0, hsize_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add_ds(Layout *L, DType type, int rank, hsize_t d0, hsize_t d1, const char *fmt, ...) {
    assert_true(L->n_ds < MAX_EXPECT);
    ExpectDataset *e = &L->ds[L->n_ds++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->path, sizeof e->path, fmt, ap);
    va_end(ap);
    e->type = type;
    e->rank = rank;
    e->dims[0] = d0;
    e->dims[1] = d1;
}

/* GROUP/layer<K>/{W (out, in), b (out)} float32 for every layer, with their groups. */
static void add_slab(Layout *L, const ModelShape *s, const char *group) {
    add_group(L, "%s", group);
    for (int l = 0; l < s->n_layers; l++) {
        add_group(L, "%s/layer%d", group, l);
        add_ds(L, T_F32, 2, (hsize_t)s->dims[l + 1], (hsize_t)s->dims[l], "%s/layer%d/W", group, l);
        add_ds(L, T_F32, 1, (hsize_t)s->dims[l + 1], 0, "%s/layer%d/b", group, l);
    }
}

/* Everything the reference checkpoint must hold (from src/checkpoint.c's write_state and
 * write_task). */
static void expected_layout(Layout *L, const Trainer *t) {
    memset(L, 0, sizeof *L);
    hsize_t np = t->shape.n_params, T = TASKS;
    add_group(L, "/");
    add_group(L, "/config"); /* attributes only */
    add_slab(L, &t->shape, "/model");
    add_group(L, "/tasks");
    for (int k = 0; k < FINISHED; k++) {
        char g[32];
        snprintf(g, sizeof g, "/tasks/%03d", k);
        add_group(L, "%s", g);
        char sub[48];
        snprintf(sub, sizeof sub, "%s/anchor", g);
        add_slab(L, &t->shape, sub);
        snprintf(sub, sizeof sub, "%s/fisher", g);
        add_slab(L, &t->shape, sub);
        add_ds(L, T_I32, 1, DIM, 0, "%s/permutation", g);
    }
    add_group(L, "/state");
    add_ds(L, T_F32, 1, np, 0, "/state/momentum");
    add_group(L, "/state/penalty");
    add_ds(L, T_F32, 1, np, 0, "/state/penalty/a");
    add_ds(L, T_F64, 1, np, 0, "/state/penalty/b");
    add_group(L, "/metrics");
    add_ds(L, T_F64, 1, T, 0, "/metrics/initial_accuracy");
    add_ds(L, T_F64, 2, T, T, "/metrics/accuracy");
    hsize_t nc = (hsize_t)t->n_curve;
    add_ds(L, T_I64, 1, nc, 0, "/metrics/curve_step");
    add_ds(L, T_I32, 1, nc, 0, "/metrics/curve_task");
    add_ds(L, T_F64, 1, nc, 0, "/metrics/curve_accuracy");
}

static void appendf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t size, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

/* Check dataset NAME (open in FILE) against E, noting any difference in L->errors. */
static void check_dataset(Layout *L, hid_t file, const char *name, const ExpectDataset *e) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) {
        appendf(L->errors, sizeof L->errors, " %s: cannot open;", name);
        return;
    }
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    int got_type = -1;
    if (cls == H5T_FLOAT && size == 4) got_type = T_F32;
    if (cls == H5T_FLOAT && size == 8) got_type = T_F64;
    if (cls == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2 && size == 4) got_type = T_I32;
    if (cls == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2 && size == 8) got_type = T_I64;
    if (got_type != (int)e->type)
        appendf(L->errors, sizeof L->errors, " %s: type class %d size %zu, expected %s;", name,
                (int)cls, size, dtype_names[e->type]);
    else if (H5Tget_order(type) != H5T_ORDER_LE)
        appendf(L->errors, sizeof L->errors, " %s: not little-endian;", name);
    hsize_t dims[H5S_MAX_RANK];
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank != e->rank || H5Sget_simple_extent_dims(space, dims, NULL) != rank ||
        (rank >= 1 && dims[0] != e->dims[0]) || (rank >= 2 && dims[1] != e->dims[1]))
        appendf(L->errors, sizeof L->errors, " %s: rank %d dims (%llu, %llu), expected rank %d (%llu, %llu);",
                name, rank, rank >= 1 ? (unsigned long long)dims[0] : 0ull,
                rank >= 2 ? (unsigned long long)dims[1] : 0ull, e->rank,
                (unsigned long long)e->dims[0], (unsigned long long)e->dims[1]);
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(d);
}

typedef struct {
    Layout *L;
    hid_t file;
} VisitCtx;

static herr_t visit_object(hid_t obj, const char *rel, H5O_type_t type, void *data) {
    (void)obj;
    VisitCtx *ctx = data;
    Layout *L = ctx->L;
    char name[160];
    snprintf(name, sizeof name, "/%s", strcmp(rel, ".") ? rel : "");
    if (type == H5O_TYPE_GROUP) {
        for (int i = 0; i < L->n_gr; i++)
            if (strcmp(L->gr[i].path, name) == 0) {
                L->gr[i].seen = true;
                return 0;
            }
    } else if (type == H5O_TYPE_DATASET) {
        for (int i = 0; i < L->n_ds; i++)
            if (strcmp(L->ds[i].path, name) == 0) {
                L->ds[i].seen = true;
                check_dataset(L, ctx->file, name, &L->ds[i]);
                return 0;
            }
    }
    appendf(L->unexpected, sizeof L->unexpected, " %s (type %d)", name, (int)type);
    return 0;
}

#if H5_VERSION_GE(1, 12, 0)
static herr_t visit_cb(hid_t obj, const char *rel, const H5O_info2_t *info, void *data) {
    return visit_object(obj, rel, info->type, data);
}
#define VISIT(file, cb, data) H5Ovisit3(file, H5_INDEX_NAME, H5_ITER_INC, cb, data, H5O_INFO_BASIC)
#else
static herr_t visit_cb(hid_t obj, const char *rel, const H5O_info_t *info, void *data) {
    return visit_object(obj, rel, info->type, data);
}
#define VISIT(file, cb, data) H5Ovisit(file, H5_INDEX_NAME, H5_ITER_INC, cb, data)
#endif

/* Names of OBJECT's attributes, each followed by a space, into BUF. */
static herr_t attr_name_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)loc, (void)info;
    appendf(data, 1024, "%s ", name);
    return 0;
}

static void assert_attrs_exactly(hid_t file, const char *object, const char *const *names, int n) {
    char found[1024] = "";
    hid_t o = H5Oopen(file, object, H5P_DEFAULT);
    if (o < 0) fail_msg("cannot open %s", object);
    hsize_t idx = 0;
    assert_true(H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_name_cb, found) >= 0);
    H5Oclose(o);
    int count = 0;
    for (const char *p = found; (p = strchr(p, ' ')); p++) count++;
    for (int i = 0; i < n; i++) {
        char key[80];
        snprintf(key, sizeof key, " %s ", names[i]);
        char padded[1030];
        snprintf(padded, sizeof padded, " %s", found);
        if (!strstr(padded, key)) fail_msg("%s lacks attribute '%s' (has: %s)", object, names[i], found);
    }
    if (count != n) fail_msg("%s has attributes [%s], expected exactly %d", object, found, n);
}

static void test_layout_exact(void **state) {
    (void)state;
    Layout *L = calloc(1, sizeof *L);
    assert_non_null(L);
    expected_layout(L, &R.t);
    hid_t file = H5Fopen(R.ckpt, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(file >= 0);
    VisitCtx ctx = {L, file};
    assert_true(VISIT(file, visit_cb, &ctx) >= 0);

    static const char *const root_attrs[] = {"format", "format_version", "tasks_done", "n_params",
                                             "config", "blas_core", "blas_quantum"};
    static const char *const task_attrs[] = {"fisher_kind", "fisher_samples", "importance"};
    static const char *const state_attrs[] = {"task", "epoch", "step", "global_step",
                                              "train_samples", "train_seconds", "last_loss"};
    static const char *const pen_attrs[] = {"tasks_done", "c"};
    static const char *const metric_attrs[] = {"curve_points"};
    assert_attrs_exactly(file, "/", root_attrs, 7);
    assert_attrs_exactly(file, "/tasks/000", task_attrs, 3);
    assert_attrs_exactly(file, "/tasks/001", task_attrs, 3);
    assert_attrs_exactly(file, "/state", state_attrs, 7);
    assert_attrs_exactly(file, "/state/penalty", pen_attrs, 2);
    assert_attrs_exactly(file, "/metrics", metric_attrs, 1);
    H5Fclose(file);

    if (L->unexpected[0]) fail_msg("unexpected objects in the checkpoint:%s", L->unexpected);
    if (L->errors[0]) fail_msg("wrong datasets:%s", L->errors);
    for (int i = 0; i < L->n_ds; i++)
        if (!L->ds[i].seen) fail_msg("dataset %s missing", L->ds[i].path);
    for (int i = 0; i < L->n_gr; i++)
        if (!L->gr[i].seen) fail_msg("group %s missing", L->gr[i].path);
    free(L);
}

static void test_attributes(void **state) {
    (void)state;
    H5Reader r = {0};
    assert_int_equal(h5file_open_read(&r, R.ckpt), EWC_OK);
    char s[128];
    int64_t v;
    assert_int_equal(h5file_get_attr_str(&r, "/", "format", s, sizeof s), EWC_OK);
    assert_string_equal(s, "ewc-train checkpoint");
    assert_int_equal(h5file_get_attr_i64(&r, "/", "format_version", &v), EWC_OK);
    assert_int_equal(v, CHECKPOINT_FORMAT_VERSION);
    assert_int_equal(h5file_get_attr_i64(&r, "/", "tasks_done", &v), EWC_OK);
    assert_int_equal(v, FINISHED);
    assert_int_equal(h5file_get_attr_i64(&r, "/", "n_params", &v), EWC_OK);
    assert_int_equal(v, (int64_t)R.t.shape.n_params);
    /* the BLAS kernel set and row quantum the run used (blascore.h) */
    assert_int_equal(h5file_get_attr_str(&r, "/", "blas_core", s, sizeof s), EWC_OK);
    assert_string_equal(s, R.t.blas_core);
    assert_int_equal(h5file_get_attr_i64(&r, "/", "blas_quantum", &v), EWC_OK);
    assert_int_equal(v, R.t.dist.quantum);
    for (int k = 0; k < FINISHED; k++) {
        char g[32];
        snprintf(g, sizeof g, "/tasks/%03d", k);
        assert_int_equal(h5file_get_attr_str(&r, g, "fisher_kind", s, sizeof s), EWC_OK);
        assert_string_equal(s, config_fisher_name(R.cfg.fisher));
        assert_int_equal(h5file_get_attr_i64(&r, g, "fisher_samples", &v), EWC_OK);
        assert_int_equal(v, R.used[k]);
        assert_int_equal(v, N_TRAIN); /* --fisher-samples 0: the whole training set */
        assert_int_equal(h5file_get_attr_str(&r, g, "importance", s, sizeof s), EWC_OK);
        assert_string_equal(s, "fisher"); /* an ewc run's tasks hold Fishers */
    }
    /* the experiment config, one attribute per field, for naming a mismatch on resume */
    assert_int_equal(h5file_get_attr_str(&r, "/config", "hidden", s, sizeof s), EWC_OK);
    assert_string_equal(s, "5");
    double lambda;
    assert_int_equal(h5file_get_attr_f64(&r, "/config", "lambda", &lambda), EWC_OK);
    assert_true(lambda == R.cfg.lambda);
    assert_int_equal(h5file_get_attr_i64(&r, "/config", "tasks", &v), EWC_OK);
    assert_int_equal(v, TASKS);
    assert_int_equal(h5file_get_attr_i64(&r, "/metrics", "curve_points", &v), EWC_OK);
    assert_int_equal(v, R.t.n_curve);
    h5file_close(&r);
}

/* ---- round trip ----------------------------------------------------------------------------- */

static void assert_bits_equal(const void *a, const void *b, size_t bytes, const char *what) {
    if (memcmp(a, b, bytes) != 0) {
        const unsigned char *x = a, *y = b;
        size_t i = 0;
        while (x[i] == y[i]) i++;
        fail_msg("%s differs (first at byte %zu of %zu)", what, i, bytes);
    }
}

static void test_round_trip(void **state) {
    (void)state;
    const Trainer *a = &R.t;
    Trainer b;
    assert_int_equal(trainer_init(&b, &R.cfg, &R.data, MPI_COMM_SELF), EWC_OK);
    /* a fresh trainer really differs from the saved one, so equality below means restored */
    assert_true(b.task == 0 && b.global_step == 0 && b.pen.tasks_done == 0 && b.n_curve == 0);
    assert_true(memcmp(a->params, b.params, a->shape.n_params * sizeof(float)) != 0);

    EwcStatus st = checkpoint_load(&b, R.ckpt);
    if (st) fail_msg("checkpoint_load: %s", ewc_error_message());
    assert_string_equal(b.resumed_blas_core, a->blas_core);
    assert_int_equal(b.resumed_quantum, a->dist.quantum);
    size_t np = a->shape.n_params;
    assert_int_equal(b.shape.n_params, np);
    assert_bits_equal(a->params, b.params, np * sizeof(float), "params");
    assert_non_null(b.mom);
    assert_bits_equal(a->mom, b.mom, np * sizeof(float), "momentum");
    assert_bits_equal(a->pen.a, b.pen.a, np * sizeof(float), "penalty a");
    assert_bits_equal(a->pen.b, b.pen.b, np * sizeof(double), "penalty b");
    assert_bits_equal(&a->pen.c, &b.pen.c, sizeof(double), "penalty c");
    assert_int_equal(b.pen.tasks_done, FINISHED);
    assert_int_equal(b.task, a->task);
    assert_int_equal(b.task, FINISHED);
    assert_int_equal(b.epoch, a->epoch);
    assert_int_equal(b.step, a->step);
    assert_int_equal(b.step, STEPS_INTO_LAST);
    assert_int_equal(b.global_step, a->global_step);
    assert_int_equal(b.train_samples, a->train_samples);
    assert_bits_equal(&a->train_seconds, &b.train_seconds, sizeof(double), "train_seconds");
    assert_bits_equal(&a->last_loss, &b.last_loss, sizeof(double), "last_loss");
    assert_bits_equal(a->acc, b.acc, (size_t)TASKS * TASKS * sizeof(double), "accuracy matrix");
    assert_bits_equal(a->initial_acc, b.initial_acc, TASKS * sizeof(double), "initial accuracy");
    assert_int_equal(b.n_curve, a->n_curve);
    assert_int_equal(b.n_curve, FINISHED + 1);
    for (int i = 0; i < a->n_curve; i++) {
        assert_int_equal(b.curve[i].step, a->curve[i].step);
        assert_int_equal(b.curve[i].task, a->curve[i].task);
        assert_bits_equal(&a->curve[i].accuracy, &b.curve[i].accuracy, sizeof(double), "curve");
    }
    for (int k = 0; k < TASKS; k++)
        assert_bits_equal(a->perm[k], b.perm[k], DIM * sizeof(int), "permutation");

    /* the restored state continues exactly as the original would */
    Trainer c;
    assert_int_equal(trainer_init(&c, &R.cfg, &R.data, MPI_COMM_SELF), EWC_OK);
    assert_int_equal(checkpoint_load(&c, R.ckpt), EWC_OK);
    double lb, lc;
    trainer_begin_epoch(&b, b.task, b.epoch);
    trainer_begin_epoch(&c, c.task, c.epoch);
    assert_int_equal(trainer_step(&b, b.task, b.epoch, b.step, &lb), EWC_OK);
    assert_int_equal(trainer_step(&c, c.task, c.epoch, c.step, &lc), EWC_OK);
    assert_bits_equal(b.params, c.params, np * sizeof(float), "params after one more step");
    trainer_free(&c);
    trainer_free(&b);
}

/* Read GROUP/layer<K>/{W,b} of the checkpoint into a slab of the model.h layout. */
static void read_slab(H5Reader *r, const ModelShape *s, const char *group, float *slab) {
    for (int l = 0; l < s->n_layers; l++) {
        int din = s->dims[l], dout = s->dims[l + 1];
        float *w = malloc((size_t)dout * din * sizeof *w), *b = malloc((size_t)dout * sizeof *b);
        assert_non_null(w);
        assert_non_null(b);
        char path[128];
        uint64_t dw[2] = {(uint64_t)dout, (uint64_t)din}, db[1] = {(uint64_t)dout};
        snprintf(path, sizeof path, "%s/layer%d/W", group, l);
        if (h5file_read_f32(r, path, w, 2, dw)) fail_msg("%s", ewc_error_message());
        snprintf(path, sizeof path, "%s/layer%d/b", group, l);
        if (h5file_read_f32(r, path, b, 1, db)) fail_msg("%s", ewc_error_message());
        float *wb = slab + s->offset[l];
        for (int i = 0; i < dout; i++) {
            memcpy(wb + (size_t)i * (din + 1), w + (size_t)i * din, (size_t)din * sizeof *w);
            wb[(size_t)i * (din + 1) + din] = b[i];
        }
        free(w);
        free(b);
    }
}

static void test_task_records(void **state) {
    (void)state;
    const ModelShape *s = &R.t.shape;
    size_t np = s->n_params;
    float *slab = malloc(np * sizeof *slab);
    assert_non_null(slab);
    H5Reader r = {0};
    assert_int_equal(h5file_open_read(&r, R.ckpt), EWC_OK);

    read_slab(&r, s, "/model", slab);
    assert_bits_equal(slab, R.t.params, np * sizeof(float), "/model vs the current params");
    for (int k = 0; k < FINISHED; k++) {
        char g[64];
        snprintf(g, sizeof g, "/tasks/%03d/anchor", k);
        read_slab(&r, s, g, slab);
        assert_bits_equal(slab, R.anchor[k], np * sizeof(float), g);
        snprintf(g, sizeof g, "/tasks/%03d/fisher", k);
        read_slab(&r, s, g, slab);
        assert_bits_equal(slab, R.fisher[k], np * sizeof(float), g);
        int32_t perm[DIM];
        uint64_t dim[1] = {DIM};
        snprintf(g, sizeof g, "/tasks/%03d/permutation", k);
        assert_int_equal(h5file_read_i32(&r, g, perm, 1, dim), EWC_OK);
        for (int i = 0; i < DIM; i++) assert_int_equal(perm[i], R.t.perm[k][i]);
    }
    /* the records are not all the same: anchors moved, Fishers and permutations differ */
    assert_true(memcmp(R.anchor[0], R.anchor[1], np * sizeof(float)) != 0);
    assert_true(memcmp(R.fisher[0], R.fisher[1], np * sizeof(float)) != 0);
    assert_true(memcmp(R.t.perm[0], R.t.perm[1], DIM * sizeof(int)) != 0);
    h5file_close(&r);
    free(slab);
}

/* ---- damaged and mismatched checkpoints ----------------------------------------------------- */

static void test_reject_truncated(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    new_path(p, "truncated");
    copy_file(R.ckpt, p);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size / 2), 0);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, NULL);
}

static void test_reject_garbage(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    new_path(p, "garbage");
    unsigned char junk[4096];
    TestRng rng = {99};
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(trng_next(&rng) >> 56);
    write_bytes(p, junk, sizeof junk);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, NULL);

    /* a valid HDF5 superblock followed by garbage: the checkpoint's first 1 KiB, then junk */
    new_path(p, "garbage-after-header");
    copy_file(R.ckpt, p);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 1024, SEEK_SET), 0);
    for (int i = 0; i < 16; i++) assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    assert_int_equal(fclose(f), 0);
    EwcStatus st = load_with(&R.cfg, p);
    assert_int_not_equal(st, EWC_OK);
    assert_error(st, st, p, NULL);
}

static void test_reject_empty(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    new_path(p, "empty");
    write_bytes(p, NULL, 0);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, NULL);
}

static void test_reject_missing_file(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    new_path(p, "never-written");
    assert_error(load_with(&R.cfg, p), EWC_EIO, p, NULL);
}

static void test_reject_foreign_hdf5(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    new_path(p, "foreign");
    H5Writer w = {0};
    float x[3] = {1, 2, 3};
    uint64_t d[1] = {3};
    assert_int_equal(h5file_create_temp(&w, p), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/model/layer0/W", x, 1, d), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "format_version", 1), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "not an ewc-train checkpoint", NULL);

    /* a format attribute naming something else */
    new_path(p, "foreign-format");
    assert_int_equal(h5file_create_temp(&w, p), EWC_OK);
    assert_int_equal(h5file_set_attr_str(&w, "/", "format", "some other program"), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "format_version", 1), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "not an ewc-train checkpoint", NULL);
}

/* Open a copy of the checkpoint for writing with the raw HDF5 API. */
static hid_t open_copy_rw(char *p, const char *what) {
    new_path(p, what);
    copy_file(R.ckpt, p);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

/* Close F (the copy P, changed with the raw HDF5 API) and seal it again, as if ewc-train had
 * written it that way: the checks behind the digest are what these tests are about. */
static void close_sealed(hid_t f, const char *p) {
    assert_true(H5Fclose(f) >= 0);
    size_t n;
    unsigned char *image = slurp(p, &n);
    assert_int_equal(h5file_seal_image(image, n), EWC_OK);
    write_bytes(p, image, n);
    free(image);
}

static void set_attr_i64(hid_t file, const char *obj, const char *name, int64_t v) {
    hid_t a = H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
}

static void test_reject_newer_version(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    hid_t f = open_copy_rw(p, "version-up");
    set_attr_i64(f, "/", "format_version", CHECKPOINT_FORMAT_VERSION + 1);
    close_sealed(f, p);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "newer", NULL);

    /* an older (unknown) version is refused too, but not called newer */
    f = open_copy_rw(p, "version-down");
    set_attr_i64(f, "/", "format_version", 0);
    close_sealed(f, p);
    EwcStatus st = load_with(&R.cfg, p);
    if (strstr(ewc_error_message(), "newer")) fail_msg("\"%s\" says newer", ewc_error_message());
    assert_error(st, EWC_EFORMAT, p, "version", NULL);
}

/* Replace dataset PATH of FILE by a float32 one of RANK dims DIMS (zeros). */
static void replace_dataset(hid_t file, const char *path, int rank, const hsize_t *dims) {
    assert_true(H5Ldelete(file, path, H5P_DEFAULT) >= 0);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(file, path, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    float *zero = calloc(n, sizeof *zero);
    assert_non_null(zero);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero) >= 0);
    free(zero);
    H5Dclose(d);
    H5Sclose(space);
}

static void test_reject_wrong_shape(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    const ModelShape *s = &R.t.shape;
    /* W with one row too few */
    hid_t f = open_copy_rw(p, "shape-W");
    hsize_t dw[2] = {(hsize_t)s->dims[1] - 1, (hsize_t)s->dims[0]};
    replace_dataset(f, "/model/layer0/W", 2, dw);
    close_sealed(f, p);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "/model/layer0/W", NULL);

    /* the momentum as a matrix of the same element count */
    f = open_copy_rw(p, "shape-momentum");
    hsize_t dm[2] = {1, s->n_params};
    replace_dataset(f, "/state/momentum", 2, dm);
    close_sealed(f, p);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "/state/momentum", NULL);

    /* penalty b stored as float32 instead of float64 (right shape, wrong type) */
    f = open_copy_rw(p, "type-penalty-b");
    hsize_t db[1] = {s->n_params};
    replace_dataset(f, "/state/penalty/b", 1, db);
    close_sealed(f, p);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "/state/penalty/b", NULL);
}

static void test_reject_missing_dataset(void **state) {
    (void)state;
    /* every dataset checkpoint_load reads, deleted one at a time */
    static const char *const needed[] = {
        "/model/layer0/W", "/model/layer0/b", "/model/layer1/W", "/model/layer1/b",
        "/state/momentum", "/state/penalty/a", "/state/penalty/b",
        "/metrics/initial_accuracy", "/metrics/accuracy", "/metrics/curve_step",
        "/metrics/curve_task", "/metrics/curve_accuracy",
    };
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        char p[H5FILE_PATH_MAX];
        hid_t f = open_copy_rw(p, "missing");
        assert_true(H5Ldelete(f, needed[i], H5P_DEFAULT) >= 0);
        close_sealed(f, p);
        EwcStatus st = load_with(&R.cfg, p);
        if (st != EWC_EFORMAT)
            fail_msg("without %s: status %d (\"%s\")", needed[i], st, ewc_error_message());
        assert_error(st, EWC_EFORMAT, p, needed[i], NULL);
    }
}

static void test_reject_missing_task_record(void **state) {
    (void)state;
    /* a checkpoint whose finished tasks lack their records cannot be continued (the next save
     * copies them), so it must be refused at load time, not after the next task's training */
    static const char *const needed[] = {"/tasks/000/anchor/layer0/W", "/tasks/001/fisher/layer1/b",
                                         "/tasks/001/permutation"};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        char p[H5FILE_PATH_MAX];
        hid_t f = open_copy_rw(p, "missing-task");
        assert_true(H5Ldelete(f, needed[i], H5P_DEFAULT) >= 0);
        close_sealed(f, p);
        EwcStatus st = load_with(&R.cfg, p);
        if (st != EWC_EFORMAT)
            fail_msg("without %s: status %d (\"%s\")", needed[i], st, ewc_error_message());
        assert_error(st, EWC_EFORMAT, p, needed[i], NULL);
    }
}

static void test_reject_config_mismatch(void **state) {
    (void)state;
    Config c = R.cfg;
    c.lambda = 20.0;
    assert_error(load_with(&c, R.ckpt), EWC_EINVAL, R.ckpt, "--lambda", NULL);

    c = R.cfg;
    c.hidden[0] = HIDDEN + 1;
    assert_error(load_with(&c, R.ckpt), EWC_EINVAL, R.ckpt, "--hidden", NULL);

    c = R.cfg;
    c.hidden[1] = HIDDEN;
    c.n_hidden = 2;
    assert_error(load_with(&c, R.ckpt), EWC_EINVAL, R.ckpt, "--hidden", NULL);

    c = R.cfg;
    c.seed = R.cfg.seed + 1;
    assert_error(load_with(&c, R.ckpt), EWC_EINVAL, R.ckpt, "--seed", NULL);

    c = R.cfg;
    c.method = METHOD_ONLINE_EWC;
    assert_error(load_with(&c, R.ckpt), EWC_EINVAL, R.ckpt, "--method", NULL);

    c = R.cfg;
    c.optimizer = OPTIMIZER_ADAM; /* (with R's momentum: the parser would refuse it, not load) */
    assert_error(load_with(&c, R.ckpt), EWC_EINVAL, R.ckpt, "--optimizer", NULL);

    c = R.cfg;
    c.adam_eps = 1e-6;
    assert_error(load_with(&c, R.ckpt), EWC_EINVAL, R.ckpt, "--adam-eps", NULL);
}

/* A checkpoint from before --optimizer (version 2 without the attributes) is an SGD run whose
 * Adam constants read as the defaults: it loads with the default flags, and asking it for Adam
 * or other betas is refused, naming the flag. */
static void test_pre_adam_loads_as_sgd(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    static const char *const added[] = {"optimizer", "adam_beta1", "adam_beta2", "adam_eps"};
    hid_t f = open_copy_rw(p, "pre-adam");
    for (int i = 0; i < 4; i++) assert_true(H5Adelete_by_name(f, "/config", added[i], H5P_DEFAULT) >= 0);
    close_sealed(f, p);
    EwcStatus st = load_with(&R.cfg, p);
    if (st) fail_msg("checkpoint without the Adam attributes: %s", ewc_error_message());
    Config c = R.cfg;
    c.optimizer = OPTIMIZER_ADAM; /* (with R's momentum: the parser would refuse it, not load) */
    assert_error(load_with(&c, p), EWC_EINVAL, p, "--optimizer", NULL);
    c = R.cfg;
    c.adam_beta2 = 0.99;
    assert_error(load_with(&c, p), EWC_EINVAL, p, "--adam-beta2", NULL);
}

/* A checkpoint from before --method si / mas (no /config si_xi, no task "importance") loads
 * with the default --si-xi, and a save from it records its copied tasks as Fishers; another
 * --si-xi is refused, naming the flag. */
static void test_pre_si_loads(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    hid_t f = open_copy_rw(p, "pre-si");
    assert_true(H5Adelete_by_name(f, "/config", "si_xi", H5P_DEFAULT) >= 0);
    for (int k = 0; k < FINISHED; k++) {
        char g[32];
        snprintf(g, sizeof g, "/tasks/%03d", k);
        assert_true(H5Adelete_by_name(f, g, "importance", H5P_DEFAULT) >= 0);
    }
    close_sealed(f, p);
    EwcStatus st = load_with(&R.cfg, p);
    if (st) fail_msg("checkpoint without the SI attributes: %s", ewc_error_message());
    Config c = R.cfg;
    c.si_xi = 0.5;
    assert_error(load_with(&c, p), EWC_EINVAL, p, "--si-xi", NULL);
    assert_int_equal(checkpoint_save(&R.t, p, NULL), EWC_OK);
    H5Reader r = {0};
    char s[32];
    assert_int_equal(h5file_open_read(&r, p), EWC_OK);
    for (int k = 0; k < FINISHED; k++) {
        char g[32];
        snprintf(g, sizeof g, "/tasks/%03d", k);
        assert_int_equal(h5file_get_attr_str(&r, g, "importance", s, sizeof s), EWC_OK);
        assert_string_equal(s, "fisher");
    }
    h5file_close(&r);
}

/* Files of format 1 and 2 have no digest, so they cannot be verified: refused, saying what to do
 * (here: the checkpoint without its user block, i.e. plain HDF5 as versions 1 and 2 wrote it).
 * A sealed file that claims version 2 is refused too, naming the version. */
static void test_old_formats_refused(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    size_t n;
    unsigned char *image = slurp(R.ckpt, &n);
    new_path(p, "unsealed");
    write_bytes(p, image + H5FILE_USERBLOCK, n - H5FILE_USERBLOCK);
    free(image);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "no SHA-256 digest",
                 "without --resume", NULL);
    hid_t f = open_copy_rw(p, "version-2");
    set_attr_i64(f, "/", "format_version", 2);
    close_sealed(f, p);
    assert_error(load_with(&R.cfg, p), EWC_EFORMAT, p, "format version 2", NULL);
}

/* The --validation / --patience state: validation matrix, best-so-far state and per-task records
 * round-trip bit for bit; an impossible counter or a missing best slab is refused. */
static void test_early_stopping_round_trip(void **state) {
    (void)state;
    Config c = R.cfg;
    c.validation = 5;
    c.patience = 3;
    c.val_every = 2;
    c.method = METHOD_SGD; /* no finished tasks to carry over */
    Trainer a, b;
    assert_int_equal(trainer_init(&a, &c, &R.data, MPI_COMM_SELF), EWC_OK);
    assert_int_equal(trainer_init(&b, &c, &R.data, MPI_COMM_SELF), EWC_OK);
    size_t np = a.shape.n_params;
    TestRng rng = {77};
    assert_non_null(a.val_acc);
    assert_non_null(a.es.best);
    trng_fill(&rng, a.es.best, np, -1, 1);
    for (int i = 0; i < TASKS * TASKS; i++) a.val_acc[i] = trng_uniform(&rng, 0, 1);
    a.es.best_accuracy = 0.625;
    a.es.best_step = 4;
    a.es.bad_checks = 2;
    a.es.rec[0] = (EarlyStopRecord){5, 3, 0.75, 1};
    a.es.rec[1] = (EarlyStopRecord){10, 10, 0.5, 0};
    a.task = 2;
    a.step = 1;
    char p[H5FILE_PATH_MAX];
    new_path(p, "early-stopping");
    if (checkpoint_save(&a, p, NULL)) fail_msg("save: %s", ewc_error_message());
    if (checkpoint_load(&b, p)) fail_msg("load: %s", ewc_error_message());
    assert_bits_equal(a.es.best, b.es.best, np * sizeof(float), "best parameters");
    assert_bits_equal(a.val_acc, b.val_acc, TASKS * TASKS * sizeof(double), "validation matrix");
    assert_bits_equal(&a.es.best_accuracy, &b.es.best_accuracy, sizeof(double), "best accuracy");
    assert_int_equal(b.es.best_step, 4);
    assert_int_equal(b.es.bad_checks, 2);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(b.es.rec[k].steps_trained, a.es.rec[k].steps_trained);
        assert_int_equal(b.es.rec[k].best_step, a.es.rec[k].best_step);
        assert_int_equal(b.es.rec[k].stopped_early, a.es.rec[k].stopped_early);
        assert_true(b.es.rec[k].best_accuracy == a.es.rec[k].best_accuracy);
    }
    /* the file's counter must be below the patience (a save does not check it) */
    char q[H5FILE_PATH_MAX];
    new_path(q, "early-stopping-counter");
    a.es.bad_checks = 3;
    if (checkpoint_save(&a, q, NULL)) fail_msg("save: %s", ewc_error_message());
    assert_error(load_with(&c, q), EWC_EFORMAT, q, "early-stopping", NULL);
    new_path(q, "early-stopping-no-best");
    copy_file(p, q);
    hid_t f = H5Fopen(q, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/state/early_stopping/best", H5P_DEFAULT) >= 0);
    close_sealed(f, q);
    assert_error(load_with(&c, q), EWC_EFORMAT, q, "/state/early_stopping/best", NULL);
    trainer_free(&a);
    trainer_free(&b);
}

static void test_execution_fields_may_change(void **state) {
    (void)state;
    Config c = R.cfg;
    c.threads = 4;
    snprintf(c.out_dir, sizeof c.out_dir, "/somewhere/else");
    c.eval_every = 7;
    c.checkpoint_every = 3;
    c.resume = 1;
    c.quiet = 1;
    Trainer t;
    assert_int_equal(trainer_init(&t, &c, &R.data, MPI_COMM_SELF), EWC_OK);
    EwcStatus st = checkpoint_load(&t, R.ckpt);
    if (st) fail_msg("checkpoint_load with changed execution flags: %s", ewc_error_message());
    assert_bits_equal(t.params, R.t.params, t.shape.n_params * sizeof(float), "params");
    assert_int_equal(t.global_step, R.t.global_step);
    trainer_free(&t);
}

/* ---- temporary files ------------------------------------------------------------------------ */

/* The names in DIR, space-separated and sorted by readdir order, excluding . and .. */
static int list_dir(const char *dir, char *buf, size_t size) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    buf[0] = '\0';
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        appendf(buf, size, "%s ", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static void test_no_temp_files(void **state) {
    (void)state;
    char dir[H5FILE_PATH_MAX], path[H5FILE_PATH_MAX + 32], stale[H5FILE_PATH_MAX + 64];
    char names[1024];
    path_in(dir, "save-here");
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_NAME);
    /* the finished tasks are carried over from the previous file at PATH */
    copy_file(R.ckpt, path);

    /* after a save: the new checkpoint and the previous one, nothing else */
    assert_int_equal(checkpoint_save(&R.t, path, NULL), EWC_OK);
    if (list_dir(dir, names, sizeof names) != 2) fail_msg("after a save %s holds: %s", dir, names);
    assert_non_null(strstr(names, CHECKPOINT_NAME " "));
    assert_non_null(strstr(names, "checkpoint.prev.h5 "));

    /* a stale temp left by a killed run is removed by the next save */
    snprintf(stale, sizeof stale, "%s/%s.tmp.123.4", dir, CHECKPOINT_NAME);
    write_bytes(stale, "partial", 7);
    assert_int_equal(checkpoint_save(&R.t, path, NULL), EWC_OK);
    if (list_dir(dir, names, sizeof names) != 2) fail_msg("after a save %s holds: %s", dir, names);
    assert_non_null(strstr(names, CHECKPOINT_NAME " "));
    assert_non_null(strstr(names, "checkpoint.prev.h5 "));

    /* and the re-saved file still loads to the same state */
    Trainer t;
    assert_int_equal(trainer_init(&t, &R.cfg, &R.data, MPI_COMM_SELF), EWC_OK);
    assert_int_equal(checkpoint_load(&t, path), EWC_OK);
    assert_bits_equal(t.params, R.t.params, t.shape.n_params * sizeof(float), "params");
    trainer_free(&t);
}

static void test_failed_save_keeps_previous(void **state) {
    (void)state;
    /* a save that cannot carry the finished tasks over (previous file damaged) fails cleanly:
     * an error naming the file, the previous file untouched, no temp file left */
    char dir[H5FILE_PATH_MAX], path[H5FILE_PATH_MAX + 32], names[1024];
    path_in(dir, "save-fails");
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_NAME);
    write_bytes(path, "not hdf5", 8);
    EwcStatus st = checkpoint_save(&R.t, path, NULL);
    assert_int_not_equal(st, EWC_OK);
    assert_error(st, st, path, NULL);
    if (list_dir(dir, names, sizeof names) != 1) fail_msg("after a failed save: %s", names);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 8);
}


/* ---- integrity: the previous checkpoint, fallback on resume, in-memory images --------------- */

static void flip_byte(const char *path, size_t at) {
    size_t n;
    unsigned char *image = slurp(path, &n);
    assert_true(at < n);
    image[at] ^= 0x10;
    write_bytes(path, image, n);
    free(image);
}

static void assert_same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    if (na != nb || memcmp(x, y, na) != 0) fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

/* A save keeps the file it replaces as checkpoint.prev.h5; a damaged previous file is refused
 * (never carried over, never made the fallback) and nothing is moved. */
static void test_save_keeps_previous(void **state) {
    (void)state;
    char dir[H5FILE_PATH_MAX], path[H5FILE_PATH_MAX + 32], prev[H5FILE_PATH_MAX + 32];
    char before[H5FILE_PATH_MAX];
    path_in(dir, "rotate");
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(path, sizeof path, "%s/checkpoint.h5", dir);
    snprintf(prev, sizeof prev, "%s/checkpoint.prev.h5", dir);
    copy_file(R.ckpt, path);
    assert_int_equal(checkpoint_save(&R.t, path, NULL), EWC_OK);
    assert_same_file(prev, R.ckpt);
    new_path(before, "rotate-prev");
    copy_file(prev, before);
    for (int carry = 0; carry < 2; carry++) {
        /* damage in the middle of the file: with or without finished tasks to carry */
        Trainer t;
        assert_int_equal(trainer_init(&t, &R.cfg, &R.data, MPI_COMM_SELF), EWC_OK);
        assert_int_equal(checkpoint_load(&t, path), EWC_OK);
        if (!carry) t.pen.tasks_done = 0;
        char damaged[H5FILE_PATH_MAX];
        new_path(damaged, "rotate-damaged");
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        flip_byte(path, (size_t)sb.st_size / 2);
        copy_file(path, damaged);
        assert_error(checkpoint_save(&t, path, NULL), EWC_EFORMAT, path, "damaged", NULL);
        assert_same_file(path, damaged);
        assert_same_file(prev, before);
        flip_byte(path, (size_t)sb.st_size / 2);
        trainer_free(&t);
    }
}

/* The state checkpoint_resume restored, against a trainer loaded from EXPECT. */
static void assert_resumed_from(const Trainer *t, const char *expect) {
    Trainer e;
    assert_int_equal(trainer_init(&e, &R.cfg, &R.data, MPI_COMM_SELF), EWC_OK);
    if (checkpoint_load(&e, expect)) fail_msg("%s: %s", expect, ewc_error_message());
    assert_bits_equal(t->params, e.params, e.shape.n_params * sizeof(float), "params");
    assert_bits_equal(t->mom, e.mom, e.shape.n_params * sizeof(float), "momentum");
    assert_int_equal(t->global_step, e.global_step);
    assert_int_equal(t->task, e.task);
    assert_int_equal(t->n_curve, e.n_curve);
    trainer_free(&e);
}

static EwcStatus resume_in(const char *dir, const Config *cfg, const char *expect) {
    Trainer t;
    int resumed = -1;
    ewc_error_clear();
    assert_int_equal(trainer_init(&t, cfg, &R.data, MPI_COMM_SELF), EWC_OK);
    EwcStatus st = checkpoint_resume(&t, dir, &resumed);
    if (!st) assert_int_equal(resumed, expect != NULL);
    if (!st && expect) assert_resumed_from(&t, expect);
    trainer_free(&t);
    return st;
}

static void test_resume_falls_back(void **state) {
    (void)state;
    char dir[H5FILE_PATH_MAX], ck[H5FILE_PATH_MAX + 32], prev[H5FILE_PATH_MAX + 32];
    char good_ck[H5FILE_PATH_MAX], good_prev[H5FILE_PATH_MAX], kept[H5FILE_PATH_MAX + 32];
    path_in(dir, "resume");
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(ck, sizeof ck, "%s/checkpoint.h5", dir);
    snprintf(prev, sizeof prev, "%s/checkpoint.prev.h5", dir);
    path_in(good_prev, "checkpoint.prev.h5"); /* the reference run's: after task 1 */
    new_path(good_ck, "resume-good");
    copy_file(R.ckpt, good_ck);
    struct stat sb;
    assert_int_equal(stat(good_ck, &sb), 0);

    /* nothing there: a fresh start */
    assert_int_equal(resume_in(dir, &R.cfg, NULL), EWC_OK);
    /* intact: checkpoint.h5 itself, nothing moved */
    copy_file(good_ck, ck);
    copy_file(good_prev, prev);
    assert_int_equal(resume_in(dir, &R.cfg, good_ck), EWC_OK);
    snprintf(kept, sizeof kept, "%s/checkpoint.damaged.h5", dir);
    assert_int_equal(access(kept, F_OK), -1);
    /* a different experiment is not damage: refused as it is, no fallback */
    Config c = R.cfg;
    c.lambda = 3.0;
    assert_error(resume_in(dir, &c, NULL), EWC_EINVAL, ck, "--lambda", NULL);
    assert_int_equal(access(kept, F_OK), -1);

    /* damaged: the previous one, the damaged file kept, checkpoint.h5 a copy of the previous */
    for (int round = 0; round < 2; round++) {
        copy_file(good_ck, ck);
        flip_byte(ck, (size_t)sb.st_size * (round + 1) / 3);
        char damaged[H5FILE_PATH_MAX];
        new_path(damaged, "resume-damaged");
        copy_file(ck, damaged);
        assert_int_equal(resume_in(dir, &R.cfg, good_prev), EWC_OK);
        snprintf(kept, sizeof kept, round ? "%s/checkpoint.damaged.1.h5" : "%s/checkpoint.damaged.h5",
                 dir);
        assert_same_file(kept, damaged);
        assert_same_file(ck, good_prev);
        assert_same_file(prev, good_prev);
    }
    /* missing checkpoint.h5 with a previous one: that one */
    assert_int_equal(unlink(ck), 0);
    assert_int_equal(resume_in(dir, &R.cfg, good_prev), EWC_OK);
    assert_same_file(ck, good_prev);

    /* both damaged: one line naming both, nothing moved or removed */
    char snap_ck[H5FILE_PATH_MAX], snap_prev[H5FILE_PATH_MAX];
    copy_file(good_ck, ck);
    flip_byte(ck, 700);
    flip_byte(prev, 900);
    new_path(snap_ck, "both-ck");
    new_path(snap_prev, "both-prev");
    copy_file(ck, snap_ck);
    copy_file(prev, snap_prev);
    assert_error(resume_in(dir, &R.cfg, NULL), EWC_EFORMAT, ck, prev, "damaged",
                 "no intact checkpoint left", NULL);
    assert_same_file(ck, snap_ck);
    assert_same_file(prev, snap_prev);
    snprintf(kept, sizeof kept, "%s/checkpoint.damaged.2.h5", dir);
    assert_int_equal(access(kept, F_OK), -1);
    /* damaged without a previous one */
    assert_int_equal(unlink(prev), 0);
    assert_error(resume_in(dir, &R.cfg, NULL), EWC_EFORMAT, ck, "damaged", "no", "fall back", NULL);
    assert_same_file(ck, snap_ck);
    /* a fresh run removes both (not the damaged ones kept) */
    copy_file(good_prev, prev);
    assert_int_equal(checkpoint_discard(dir), EWC_OK);
    assert_int_equal(access(ck, F_OK), -1);
    assert_int_equal(access(prev, F_OK), -1);
    snprintf(kept, sizeof kept, "%s/checkpoint.damaged.h5", dir);
    assert_int_equal(access(kept, F_OK), 0);
}

/* The reader on an in-memory image (what the fuzz harness calls): intact loads, damaged is
 * refused, and damaged-then-resealed data is still caught by its CRC-32. */
static void test_load_image(void **state) {
    (void)state;
    ewc_error_clear();
    size_t n;
    unsigned char *image = slurp(R.ckpt, &n);
    Trainer t;
    assert_int_equal(trainer_init(&t, &R.cfg, &R.data, MPI_COMM_SELF), EWC_OK);
    if (checkpoint_load_image(&t, "image", image, n)) fail_msg("%s", ewc_error_message());
    assert_bits_equal(t.params, R.t.params, t.shape.n_params * sizeof(float), "params");
    /* the model's first weights are in the file as float32 */
    size_t at = 0, din = (size_t)t.shape.dims[0];
    for (size_t i = 512; i + 16 <= n && !at; i++)
        if (memcmp(image + i, R.t.params, 4 * sizeof(float)) == 0 && din >= 4) at = i;
    assert_true(at > 0);
    image[at + 1] ^= 0x40;
    assert_error(checkpoint_load_image(&t, "image", image, n), EWC_EFORMAT, "image: damaged",
                 "first damaged dataset: /model/layer0/W", NULL);
    assert_int_equal(h5file_seal_image(image, n), EWC_OK);
    assert_error(checkpoint_load_image(&t, "image", image, n), EWC_EFORMAT, "/model/layer0/W",
                 "CRC-32", NULL);
    trainer_free(&t);
    free(image);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_exact),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_task_records),
        cmocka_unit_test(test_reject_truncated),
        cmocka_unit_test(test_reject_garbage),
        cmocka_unit_test(test_reject_empty),
        cmocka_unit_test(test_reject_missing_file),
        cmocka_unit_test(test_reject_foreign_hdf5),
        cmocka_unit_test(test_reject_newer_version),
        cmocka_unit_test(test_reject_wrong_shape),
        cmocka_unit_test(test_reject_missing_dataset),
        cmocka_unit_test(test_reject_missing_task_record),
        cmocka_unit_test(test_reject_config_mismatch),
        cmocka_unit_test(test_old_formats_refused),
        cmocka_unit_test(test_pre_adam_loads_as_sgd),
        cmocka_unit_test(test_pre_si_loads),
        cmocka_unit_test(test_early_stopping_round_trip),
        cmocka_unit_test(test_execution_fields_may_change),
        cmocka_unit_test(test_no_temp_files),
        cmocka_unit_test(test_failed_save_keeps_previous),
        cmocka_unit_test(test_save_keeps_previous),
        cmocka_unit_test(test_resume_falls_back),
        cmocka_unit_test(test_load_image),
    };
    int failed = cmocka_run_group_tests(tests, setup_group, teardown_group);
    MPI_Finalize();
    return failed ? 1 : 0;
}
