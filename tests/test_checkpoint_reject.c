/* Tests that checkpoint_load rejects damaged, foreign, newer or mismatched checkpoints (copies of
 * the reference run's, checkpoint_fixture.h) with the right status and one line naming the file
 * and what is wrong. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_fixture.h"
#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/h5file.h"
#include "ewc/train.h"
#include "testutil.h"

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

/* A copy of the reference checkpoint without each of the N datasets NEEDED in turn (sealed
 * again, so only the missing dataset is wrong) is refused with EWC_EFORMAT naming it. */
static void refuse_without(const char *const *needed, size_t n, const char *tag) {
    for (size_t i = 0; i < n; i++) {
        char p[H5FILE_PATH_MAX];
        hid_t f = open_copy_rw(p, tag);
        assert_true(H5Ldelete(f, needed[i], H5P_DEFAULT) >= 0);
        close_sealed(f, p);
        EwcStatus st = load_with(&R.cfg, p);
        if (st != EWC_EFORMAT)
            fail_msg("without %s: status %d (\"%s\")", needed[i], st, ewc_error_message());
        assert_error(st, EWC_EFORMAT, p, needed[i], NULL);
    }
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
    refuse_without(needed, sizeof needed / sizeof needed[0], "missing");
}

static void test_reject_missing_task_record(void **state) {
    (void)state;
    /* a checkpoint whose finished tasks lack their records cannot be continued (the next save
     * copies them), so it must be refused at load time, not after the next task's training */
    static const char *const needed[] = {"/tasks/000/anchor/layer0/W", "/tasks/001/fisher/layer1/b",
                                         "/tasks/001/permutation"};
    refuse_without(needed, sizeof needed / sizeof needed[0], "missing-task");
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

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
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
    };
    int failed = cmocka_run_group_tests(tests, setup_group, teardown_group);
    MPI_Finalize();
    return failed ? 1 : 0;
}
