/* Tests for the checkpoint: the exact HDF5 layout, a bitwise round trip of the trainer state, the
 * task records, older formats, early-stopping state and execution flags, all on the reference
 * run's checkpoint (checkpoint_fixture.h) or a changed copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_fixture.h"
#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/h5file.h"
#include "ewc/train.h"
#include "testutil.h"

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

/* ---- older formats, early stopping, execution flags ---------------------------------------- */

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

/* A checkpoint from before --init (no /config init) was initialised He-uniform: it loads with
 * the default, and a resume with --init torch is refused, naming the flag. */
static void test_pre_init_loads_as_he(void **state) {
    (void)state;
    char p[H5FILE_PATH_MAX];
    hid_t f = open_copy_rw(p, "pre-init");
    assert_true(H5Adelete_by_name(f, "/config", "init", H5P_DEFAULT) >= 0);
    close_sealed(f, p);
    EwcStatus st = load_with(&R.cfg, p);
    if (st) fail_msg("checkpoint without the init attribute: %s", ewc_error_message());
    Config c = R.cfg;
    c.init = MODEL_INIT_TORCH;
    assert_error(load_with(&c, p), EWC_EINVAL, p, "--init", NULL);
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

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_exact),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_task_records),
        cmocka_unit_test(test_old_formats_refused),
        cmocka_unit_test(test_pre_adam_loads_as_sgd),
        cmocka_unit_test(test_pre_si_loads),
        cmocka_unit_test(test_pre_init_loads_as_he),
        cmocka_unit_test(test_early_stopping_round_trip),
        cmocka_unit_test(test_execution_fields_may_change),
    };
    int failed = cmocka_run_group_tests(tests, setup_group, teardown_group);
    MPI_Finalize();
    return failed ? 1 : 0;
}
