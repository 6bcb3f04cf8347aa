/* Tests for dataset_load on generated directories (good, mismatched, missing files, clamping)
 * and, when installed, on the real Fashion-MNIST and MNIST files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ewc/dataset.h"
#include "ewc/error.h"

/* The original MNIST is checked when EWC_MNIST_DIR names its directory (e.g. data/mnist after
 * data/fetch.sh mnist); unset, that check is skipped. */
#define MNIST_DIR_ENV "EWC_MNIST_DIR"

typedef struct {
    char dir[64];
    char path[256];
} Fixture;

/* Write an unsigned-byte IDX file of NDIM dims whose payload is value(i) = (i * MUL + ADD). */
static void write_idx(const char *path, int gz, int ndim, const uint32_t *dims, int mul,
                      int add) {
    size_t total = 1;
    for (int i = 0; i < ndim; i++) total *= dims[i];
    size_t n = 4 + 4 * (size_t)ndim + total;
    uint8_t *b = malloc(n);
    assert_non_null(b);
    b[0] = 0, b[1] = 0, b[2] = 0x08, b[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        uint8_t *q = b + 4 + 4 * i;
        q[0] = (uint8_t)(dims[i] >> 24), q[1] = (uint8_t)(dims[i] >> 16);
        q[2] = (uint8_t)(dims[i] >> 8), q[3] = (uint8_t)dims[i];
    }
    for (size_t i = 0; i < total; i++) b[4 + 4 * ndim + i] = (uint8_t)(i * (size_t)mul + add);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, b, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(b, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
    }
    free(b);
}

static const char *fx_path(Fixture *fx, const char *name) {
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx->dir, name);
    return fx->path;
}

/* The standard small dataset: 7 train and 4 test images of 3x2 pixels. Train labels are
 * i % 5 (0..4), test labels (i * 3 + 2) % 256 = 2, 5, 8, 11, so n_classes = 12. Train files
 * are raw, test files gzipped, to cover both in one load. */
#define TRAIN_N 7
#define TEST_N 4
static void write_small_dataset(Fixture *fx) {
    const uint32_t tri[3] = {TRAIN_N, 3, 2}, tei[3] = {TEST_N, 3, 2};
    const uint32_t tel[1] = {TEST_N};
    write_idx(fx_path(fx, "train-images-idx3-ubyte"), 0, 3, tri, 1, 0);
    write_idx(fx_path(fx, "t10k-images-idx3-ubyte.gz"), 1, 3, tei, 1, 100);
    write_idx(fx_path(fx, "t10k-labels-idx1-ubyte.gz"), 1, 1, tel, 3, 2);
    /* Labels i % 5 are not an affine pattern: write them by hand. */
    uint8_t lab[8 + TRAIN_N] = {0, 0, 8, 1, 0, 0, 0, TRAIN_N};
    for (int i = 0; i < TRAIN_N; i++) lab[8 + i] = (uint8_t)(i % 5);
    FILE *f = fopen(fx_path(fx, "train-labels-idx1-ubyte"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(lab, 1, sizeof lab, f), sizeof lab);
    assert_int_equal(fclose(f), 0);
}

static int unlink_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static int fixture_setup(void **state) {
    Fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    strcpy(fx->dir, "/tmp/ewc_test_dataset_XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    *state = fx;
    ewc_error_clear();
    return 0;
}

static int fixture_teardown(void **state) {
    Fixture *fx = *state;
    int rc = nftw(fx->dir, unlink_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return rc;
}

/* A failed load: the status, one line containing every FRAGMENT, and an empty Dataset. */
static void expect_load_failure(const char *dir, EwcStatus want, const char *frag1,
                                const char *frag2) {
    Dataset d;
    memset(&d, 0xAB, sizeof d);
    ewc_error_clear();
    EwcStatus st = dataset_load(&d, dir, 0, 0);
    const char *msg = ewc_error_message();
    if (st != want || !strstr(msg, frag1) || (frag2 && !strstr(msg, frag2)))
        print_error("status %d (want %d), message: %s\n", st, want, msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(msg, frag1));
    if (frag2) assert_non_null(strstr(msg, frag2));
    assert_null(strchr(msg, '\n'));
    assert_null(d.train.x);
    assert_null(d.train.y);
    assert_null(d.test.x);
    assert_null(d.test.y);
    assert_int_equal(d.train.n, 0);
    assert_int_equal(d.n_classes, 0);
}

static void test_load_small(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    Dataset d;
    ewc_error_clear();
    assert_int_equal(dataset_load(&d, fx->dir, 0, 0), EWC_OK);
    assert_string_equal(ewc_error_message(), "");
    assert_int_equal(d.train.n, TRAIN_N);
    assert_int_equal(d.test.n, TEST_N);
    assert_int_equal(d.train.dim, 6);
    assert_int_equal(d.test.dim, 6);
    assert_int_equal(d.n_classes, 12);
    for (int i = 0; i < TRAIN_N * 6; i++) assert_int_equal(d.train.x[i], i);
    for (int i = 0; i < TEST_N * 6; i++) assert_int_equal(d.test.x[i], 100 + i);
    for (int i = 0; i < TRAIN_N; i++) assert_int_equal(d.train.y[i], i % 5);
    for (int i = 0; i < TEST_N; i++) assert_int_equal(d.test.y[i], 3 * i + 2);
    dataset_free(&d);
    assert_null(d.train.x);
    assert_int_equal(d.n_classes, 0);
    dataset_free(&d); /* twice is harmless */
    dataset_free(NULL);
}

static void test_raw_preferred_over_gz(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    /* A stale .gz of different content beside the raw train images must be ignored. */
    const uint32_t other[3] = {TRAIN_N, 3, 2};
    write_idx(fx_path(fx, "train-images-idx3-ubyte.gz"), 1, 3, other, 0, 77);
    Dataset d;
    assert_int_equal(dataset_load(&d, fx->dir, 0, 0), EWC_OK);
    assert_int_equal(d.train.x[5], 5);
    dataset_free(&d);
    /* Without the raw file, the .gz is used. */
    assert_int_equal(unlink(fx_path(fx, "train-images-idx3-ubyte")), 0);
    assert_int_equal(dataset_load(&d, fx->dir, 0, 0), EWC_OK);
    assert_int_equal(d.train.x[5], 77);
    dataset_free(&d);
}

static void test_clamp(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    Dataset d;
    assert_int_equal(dataset_load(&d, fx->dir, 3, 100), EWC_OK);
    assert_int_equal(d.train.n, 3);
    assert_int_equal(d.test.n, TEST_N); /* a limit above the count is not an error */
    for (int i = 0; i < 3 * 6; i++) assert_int_equal(d.train.x[i], i);
    for (int i = 0; i < 3; i++) assert_int_equal(d.train.y[i], i % 5);
    assert_int_equal(d.n_classes, 12); /* from the whole files, not the kept samples */
    dataset_free(&d);

    assert_int_equal(dataset_load(&d, fx->dir, 0, 1), EWC_OK);
    assert_int_equal(d.train.n, TRAIN_N);
    assert_int_equal(d.test.n, 1);
    assert_int_equal(d.test.x[5], 105);
    assert_int_equal(d.test.y[0], 2);
    dataset_free(&d);

    ewc_error_clear();
    assert_int_equal(dataset_load(&d, fx->dir, -1, 0), EWC_EINVAL);
    assert_null(d.train.x);
}

static void test_count_mismatch(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    const uint32_t six[1] = {TEST_N + 1};
    write_idx(fx_path(fx, "t10k-labels-idx1-ubyte.gz"), 1, 1, six, 1, 0);
    expect_load_failure(fx->dir, EWC_EFORMAT, "t10k-images-idx3-ubyte.gz has 4 images",
                        "t10k-labels-idx1-ubyte.gz has 5 labels");
}

static void test_size_mismatch(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    const uint32_t wide[3] = {TEST_N, 2, 3}; /* same pixel count, different shape */
    write_idx(fx_path(fx, "t10k-images-idx3-ubyte.gz"), 1, 3, wide, 1, 0);
    expect_load_failure(fx->dir, EWC_EFORMAT, "image size mismatch", "has 3x2 images");
}

static void test_missing_file(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    assert_int_equal(unlink(fx_path(fx, "t10k-labels-idx1-ubyte.gz")), 0);
    char raw[300], gz[300];
    snprintf(raw, sizeof raw, "%s/t10k-labels-idx1-ubyte ", fx->dir);
    snprintf(gz, sizeof gz, "%s/t10k-labels-idx1-ubyte.gz", fx->dir);
    expect_load_failure(fx->dir, EWC_EIO, raw, gz);
}

static void test_missing_dir(void **state) {
    Fixture *fx = *state;
    expect_load_failure(fx_path(fx, "nonexistent"), EWC_EIO, fx->path, "does not exist");
    /* A file where the directory should be. */
    FILE *f = fopen(fx_path(fx, "plain-file"), "wb");
    assert_non_null(f);
    fclose(f);
    expect_load_failure(fx->path, EWC_EIO, fx->path, "not a directory");
}

static void test_bad_file_inside(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    /* Truncate the raw train images: the error from idx_read names that file. */
    assert_int_equal(truncate(fx_path(fx, "train-images-idx3-ubyte"), 20), 0);
    expect_load_failure(fx->dir, EWC_EFORMAT, fx->path, "truncated");
}

static void test_single_class(void **state) {
    Fixture *fx = *state;
    write_small_dataset(fx);
    const uint32_t trl[1] = {TRAIN_N}, tel[1] = {TEST_N};
    write_idx(fx_path(fx, "train-labels-idx1-ubyte"), 0, 1, trl, 0, 0);
    write_idx(fx_path(fx, "t10k-labels-idx1-ubyte.gz"), 1, 1, tel, 0, 0);
    expect_load_failure(fx->dir, EWC_EFORMAT, fx->dir, "at least 2 classes");
}

/* The real data, when installed: 60000/10000 samples of 28x28 and 10 balanced classes. */
static void check_real_dataset(const char *dir) {
    struct stat sb;
    if (dir == NULL || dir[0] == '\0' || stat(dir, &sb) != 0) skip();
    Dataset d;
    ewc_error_clear();
    EwcStatus st = dataset_load(&d, dir, 0, 0);
    if (st != EWC_OK) print_error("%s\n", ewc_error_message());
    assert_int_equal(st, EWC_OK);
    assert_int_equal(d.train.n, 60000);
    assert_int_equal(d.test.n, 10000);
    assert_int_equal(d.train.dim, 784);
    assert_int_equal(d.test.dim, 784);
    assert_int_equal(d.n_classes, 10);
    int count[256] = {0};
    for (int i = 0; i < d.test.n; i++) count[d.test.y[i]]++;
    for (int c = 0; c < 10; c++) assert_true(count[c] >= 800 && count[c] <= 1200);
    int max_pixel = 0;
    for (int i = 0; i < 784 * 100; i++)
        if (d.train.x[i] > max_pixel) max_pixel = d.train.x[i];
    assert_int_equal(max_pixel, 255);
    dataset_free(&d);
}

static void test_fashion_mnist(void **state) { check_real_dataset(DATASET_DEFAULT_DIR); }

static void test_mnist(void **state) { check_real_dataset(getenv(MNIST_DIR_ENV)); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_small, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_raw_preferred_over_gz, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_clamp, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_count_mismatch, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_size_mismatch, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bad_file_inside, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_single_class, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_mnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
