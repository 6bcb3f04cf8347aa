/* Tests for h5file: exact round trips of every type and attribute, the validation messages on
 * read, bad and foreign files, and a header h5dump reads (h5file_fixture.h: shared helpers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ewc/error.h"
#include "ewc/h5file.h"
#include "h5file_fixture.h"
#include "testutil.h"


static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

/* ---- round trip ----------------------------------------------------------------------------- */

static void test_roundtrip_every_type(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX];
    path_in(path, f, "ckpt.h5");

    float f32[2][3] = {{1.5f, -0.0f, INFINITY}, {FLT_MIN / 4, FLT_MAX, -1e-30f}};
    double f64[2][2][2] = {{{M_PI, -M_E}, {DBL_MIN / 8, -DBL_MAX}}, {{0.1, 1e300}, {-INFINITY, 2}}};
    int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
    int64_t i64[3] = {INT64_MIN, 42, INT64_MAX};
    int64_t step = -7;
    float nan_f = NAN;
    uint64_t d2[2] = {2, 3}, d3[3] = {2, 2, 2}, d4[1] = {4}, d3i[1] = {3}, d0[1] = {0};

    H5Writer w;
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/tasks/003/fisher/layer0/W", &f32[0][0], 2, d2),
                     EWC_OK);
    assert_int_equal(h5file_write_f64(&w, "/tasks/003/fisher/layer1/b", &f64[0][0][0], 3, d3),
                     EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/i32", i32, 1, d4), EWC_OK);
    assert_int_equal(h5file_write_i64(&w, "/ints/i64", i64, 1, d3i), EWC_OK);
    assert_int_equal(h5file_write_i64(&w, "/ints/step", &step, 0, NULL), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/nan", &nan_f, 0, NULL), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/empty", NULL, 1, d0), EWC_OK);
    assert_int_equal(h5file_set_attr_str(&w, "/", "config", "{\"lr\": 0.1}"), EWC_OK);
    assert_int_equal(h5file_set_attr_str(&w, "/", "empty", ""), EWC_OK);
    assert_int_equal(h5file_set_attr_str(&w, "/", "utf8", "λ = 100 \xe2\x9c\x93"), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "min", INT64_MIN), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/tasks/003", "task", 3), EWC_OK);
    assert_int_equal(h5file_set_attr_f64(&w, "/tasks/003/fisher/layer0/W", "scale", 0.1),
                     EWC_OK);
    assert_int_equal(h5file_set_attr_f64(&w, "/new/group", "x", -DBL_MAX), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "version", 1), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "version", 2), EWC_OK); /* replaced */
    assert_int_equal(count_temps(f), 1);
    assert_int_equal(h5file_commit(&w), EWC_OK);
    assert_int_equal(count_temps(f), 0);
    h5file_abort(&w); /* no-op after commit */
    assert_no_open_ids();
    assert_string_equal(ewc_error_message(), "");

    H5Reader r;
    assert_int_equal(h5file_open_read(&r, path), EWC_OK);
    int rank = -1;
    uint64_t dims[H5FILE_MAX_RANK];
    assert_int_equal(h5file_dims(&r, "/tasks/003/fisher/layer1/b", &rank, dims), EWC_OK);
    assert_int_equal(rank, 3);
    assert_true(dims[0] == 2 && dims[1] == 2 && dims[2] == 2);
    assert_int_equal(h5file_dims(&r, "/ints/step", &rank, dims), EWC_OK);
    assert_int_equal(rank, 0);
    assert_int_equal(h5file_dims(&r, "/empty", &rank, dims), EWC_OK);
    assert_true(rank == 1 && dims[0] == 0);

    float g32[2][3];
    double g64[2][2][2];
    int32_t gi32[4];
    int64_t gi64[3], gstep = 0, iv = 0;
    float gnan = 0;
    assert_int_equal(h5file_read_f32(&r, "/tasks/003/fisher/layer0/W", &g32[0][0], 2, d2),
                     EWC_OK);
    assert_memory_equal(g32, f32, sizeof f32);
    assert_int_equal(h5file_read_f64(&r, "/tasks/003/fisher/layer1/b", &g64[0][0][0], 3, d3),
                     EWC_OK);
    assert_memory_equal(g64, f64, sizeof f64);
    assert_int_equal(h5file_read_i32(&r, "/i32", gi32, 1, d4), EWC_OK);
    assert_memory_equal(gi32, i32, sizeof i32);
    assert_int_equal(h5file_read_i64(&r, "/ints/i64", gi64, 1, d3i), EWC_OK);
    assert_memory_equal(gi64, i64, sizeof i64);
    assert_int_equal(h5file_read_i64(&r, "/ints/step", &gstep, 0, NULL), EWC_OK);
    assert_int_equal(gstep, -7);
    assert_int_equal(h5file_read_f32(&r, "/nan", &gnan, 0, NULL), EWC_OK);
    assert_true(isnan(gnan));
    assert_int_equal(h5file_read_f32(&r, "/empty", NULL, 1, d0), EWC_OK);

    char s[64];
    double x = 0;
    assert_int_equal(h5file_get_attr_str(&r, "/", "config", s, sizeof s), EWC_OK);
    assert_string_equal(s, "{\"lr\": 0.1}");
    assert_int_equal(h5file_get_attr_str(&r, "/", "empty", s, sizeof s), EWC_OK);
    assert_string_equal(s, "");
    assert_int_equal(h5file_get_attr_str(&r, "/", "utf8", s, sizeof s), EWC_OK);
    assert_string_equal(s, "λ = 100 \xe2\x9c\x93");
    assert_int_equal(h5file_get_attr_i64(&r, "/", "min", &iv), EWC_OK);
    assert_true(iv == INT64_MIN);
    assert_int_equal(h5file_get_attr_i64(&r, "/tasks/003", "task", &iv), EWC_OK);
    assert_int_equal(iv, 3);
    assert_int_equal(h5file_get_attr_i64(&r, "/", "version", &iv), EWC_OK);
    assert_int_equal(iv, 2);
    assert_int_equal(h5file_get_attr_f64(&r, "/tasks/003/fisher/layer0/W", "scale", &x), EWC_OK);
    assert_true(x == 0.1);
    assert_int_equal(h5file_get_attr_f64(&r, "/new/group", "x", &x), EWC_OK);
    assert_true(x == -DBL_MAX);

    assert_true(h5file_exists(&r, "/"));
    assert_true(h5file_exists(&r, "/tasks/003/fisher"));
    assert_true(h5file_exists(&r, "/tasks/003/fisher/layer0/W"));
    assert_false(h5file_exists(&r, "/tasks/004/fisher"));
    assert_false(h5file_exists(&r, "/i32/below_a_dataset"));
    assert_true(h5file_attr_exists(&r, "/", "config"));
    assert_false(h5file_attr_exists(&r, "/", "nope"));
    assert_false(h5file_attr_exists(&r, "/nope", "config"));
    assert_string_equal(ewc_error_message(), "");
    h5file_close(&r);
    h5file_close(&r); /* no-op when closed */
    assert_no_open_ids();
}

/* A 2 MB float array (a 512 x 1024 layer) writes at memory speed; the commit's fsyncs are
 * bounded loosely since they depend on the disk. */
static void test_large_write_is_fast(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX];
    path_in(path, f, "big.h5");
    uint64_t dims[2] = {512, 1024};
    size_t n = 512 * 1024;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    assert_true(a && b);
    for (size_t i = 0; i < n; i++) a[i] = (float)i * 0.25f - 1000.0f;

    H5Writer w;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/model/layer0/W", a, 2, dims), EWC_OK);
    double t_write = seconds_since(&t0);
    assert_int_equal(h5file_commit(&w), EWC_OK);
    double t_total = seconds_since(&t0);
    if (t_write > 0.2) fail_msg("writing 2 MB took %.3f s", t_write);
    if (t_total > 5.0) fail_msg("writing and committing 2 MB took %.3f s", t_total);

    H5Reader r;
    assert_int_equal(h5file_open_read(&r, path), EWC_OK);
    assert_int_equal(h5file_read_f32(&r, "/model/layer0/W", b, 2, dims), EWC_OK);
    assert_memory_equal(a, b, n * sizeof *a);
    h5file_close(&r);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size >= (off_t)(n * sizeof *a) && sb.st_size < (off_t)(n * 4 + 65536));
    free(a);
    free(b);
    assert_no_open_ids();
}

/* ---- validation on read --------------------------------------------------------------------- */

static void test_read_mismatches_name_the_dataset(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX];
    path_in(path, f, "checkpoint.h5");
    uint64_t dims[2] = {400, 784}, wrong[2] = {400, 785}, flat[1] = {400 * 784};
    uint64_t d1[1] = {3};
    float *w0 = calloc(400 * 785, sizeof *w0);
    assert_non_null(w0);
    double d[3] = {1, 2, 3};
    int32_t i[3] = {1, 2, 3};

    H5Writer w;
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/model/layer0/W", w0, 2, dims), EWC_OK);
    assert_int_equal(h5file_write_f64(&w, "/d", d, 1, d1), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/i", i, 1, d1), EWC_OK);
    assert_int_equal(h5file_set_attr_str(&w, "/", "name", "a long enough string"), EWC_OK);
    assert_int_equal(h5file_set_attr_f64(&w, "/d", "lambda", 100.0), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);

    H5Reader r;
    assert_int_equal(h5file_open_read(&r, path), EWC_OK);
    /* shape: rejected before anything is read, so the buffer keeps its sentinel */
    for (size_t k = 0; k < 400 * 785; k++) w0[k] = 7.0f;
    assert_error(h5file_read_f32(&r, "/model/layer0/W", w0, 2, wrong), EWC_EFORMAT,
                 "checkpoint.h5: /model/layer0/W has shape (400, 784), expected (400, 785)",
                 NULL);
    assert_true(w0[0] == 7.0f && w0[400 * 784 - 1] == 7.0f);
    assert_error(h5file_read_f32(&r, "/model/layer0/W", w0, 1, flat), EWC_EFORMAT,
                 "/model/layer0/W has shape (400, 784), expected (313600,)", NULL);
    assert_true(w0[0] == 7.0f);
    /* element type */
    double dd[3];
    float ff[3];
    int32_t ii[3];
    int64_t ll[3];
    /* cppcheck-suppress invalidPointerCast ; rejected on the type before the buffer is touched */
    assert_error(h5file_read_f64(&r, "/model/layer0/W", (double *)w0, 2, dims), EWC_EFORMAT,
                 "checkpoint.h5: /model/layer0/W has type float32, expected float64", NULL);
    assert_error(h5file_read_f32(&r, "/d", ff, 1, d1), EWC_EFORMAT,
                 "/d has type float64, expected float32", NULL);
    assert_error(h5file_read_i32(&r, "/d", ii, 1, d1), EWC_EFORMAT,
                 "/d has type float64, expected int32", NULL);
    assert_error(h5file_read_i64(&r, "/i", ll, 1, d1), EWC_EFORMAT,
                 "/i has type int32, expected int64", NULL);
    assert_error(h5file_read_f32(&r, "/i", ff, 1, d1), EWC_EFORMAT,
                 "/i has type int32, expected float32", NULL);
    /* missing datasets, groups that are not datasets, paths below a dataset */
    assert_error(h5file_read_f64(&r, "/model/layer1/W", dd, 1, d1), EWC_EFORMAT,
                 "checkpoint.h5: no dataset /model/layer1/W", NULL);
    assert_error(h5file_read_f64(&r, "/d/x", dd, 1, d1), EWC_EFORMAT, "no dataset /d/x", NULL);
    assert_error(h5file_read_f64(&r, "/model", dd, 1, d1), EWC_EFORMAT,
                 "checkpoint.h5: /model is not a dataset", NULL);
    int rank;
    uint64_t got[H5FILE_MAX_RANK];
    assert_error(h5file_dims(&r, "/nothing", &rank, got), EWC_EFORMAT, "no dataset /nothing",
                 NULL);
    /* attributes */
    char s[8];
    int64_t v;
    double x;
    assert_error(h5file_get_attr_i64(&r, "/", "seed", &v), EWC_EFORMAT,
                 "checkpoint.h5: / has no attribute 'seed'", NULL);
    assert_error(h5file_get_attr_f64(&r, "/missing", "lambda", &x), EWC_EFORMAT,
                 "checkpoint.h5: no object /missing", "lambda", NULL);
    assert_error(h5file_get_attr_i64(&r, "/d", "lambda", &v), EWC_EFORMAT,
                 "checkpoint.h5: attribute 'lambda' of /d has type float64, expected int64",
                 NULL);
    assert_error(h5file_get_attr_str(&r, "/d", "lambda", s, sizeof s), EWC_EFORMAT,
                 "attribute 'lambda' of /d has type float64, expected string", NULL);
    assert_error(h5file_get_attr_f64(&r, "/", "name", &x), EWC_EFORMAT,
                 "attribute 'name' of / has type string, expected float64", NULL);
    strcpy(s, "keep");
    assert_error(h5file_get_attr_str(&r, "/", "name", s, sizeof s), EWC_EFORMAT,
                 "attribute 'name' of / is longer than 7 bytes", NULL);
    assert_string_equal(s, "keep");
    /* bad arguments */
    assert_error(h5file_read_f32(&r, "/d", ff, 9, d1), EWC_EINVAL, "invalid rank", NULL);
    h5file_close(&r);
    assert_error(h5file_read_f64(&r, "/d", dd, 1, d1), EWC_EINVAL, "without an open file",
                 NULL);
    free(w0);
    assert_no_open_ids();
}

/* A file written by someone else (here: plain HDF5 calls with a user block, then sealed) with
 * an unterminated fixed-length ASCII string (numpy's "S" type), a big-endian float64 (with its
 * CRC-32 over the little-endian bytes), uint32 data and a non-scalar attribute. The same file
 * unsealed is refused: nothing without a digest is read. */
static void test_read_foreign_layouts(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX];
    path_in(path, f, "foreign.h5");
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    assert_true(fcpl >= 0 && H5Pset_userblock(fcpl, H5FILE_USERBLOCK) >= 0);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    assert_true(file >= 0);
    hid_t scalar = H5Screate(H5S_SCALAR), vec = H5Screate_simple(1, (hsize_t[]){2}, NULL);
    const char *text = "written by h5py";
    hid_t fstr = H5Tcopy(H5T_C_S1);
    assert_true(H5Tset_size(fstr, strlen(text)) >= 0);
    assert_true(H5Tset_strpad(fstr, H5T_STR_NULLPAD) >= 0);
    hid_t a = H5Acreate2(file, "fstr", fstr, scalar, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, fstr, text) >= 0);
    H5Aclose(a);
    a = H5Acreate2(file, "pair", H5T_STD_I64LE, vec, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, (int64_t[]){1, 2}) >= 0);
    H5Aclose(a);
    hid_t d = H5Dcreate2(file, "be", H5T_IEEE_F64BE, vec, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         (double[]){0.5, -3}) >= 0);
    /* 0.5 and -3 as little-endian float64 bytes */
    const unsigned char le[16] = {0, 0, 0, 0, 0, 0, 0xe0, 0x3f, 0, 0, 0, 0, 0, 0, 0x08, 0xc0};
    int64_t crc = (int64_t)crc32(0, le, sizeof le);
    a = H5Acreate2(d, "crc32", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &crc) >= 0);
    H5Aclose(a);
    H5Dclose(d);
    d = H5Dcreate2(file, "u32", H5T_STD_U32LE, vec, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Tclose(fstr);
    H5Sclose(vec);
    H5Sclose(scalar);
    assert_true(H5Fclose(file) >= 0);

    H5Reader r;
    assert_error(h5file_open_read(&r, path), EWC_EFORMAT, path, "no SHA-256 digest", NULL);
    assert_true(r.damaged);
    size_t n;
    unsigned char *image = slurp(path, &n);
    assert_int_equal(h5file_seal_image(image, n), EWC_OK);
    write_bytes(path, image, n);
    free(image);
    char s[32];
    double be[2];
    int32_t u[2];
    int64_t v;
    uint64_t two[1] = {2};
    assert_int_equal(h5file_open_read(&r, path), EWC_OK);
    assert_int_equal(h5file_get_attr_str(&r, "/", "fstr", s, sizeof s), EWC_OK);
    assert_string_equal(s, text);
    assert_error(h5file_get_attr_str(&r, "/", "fstr", s, strlen(text)), EWC_EFORMAT,
                 "attribute 'fstr' of / is longer than 14 bytes", NULL);
    assert_int_equal(h5file_read_f64(&r, "/be", be, 1, two), EWC_OK);
    assert_true(be[0] == 0.5 && be[1] == -3);
    assert_error(h5file_get_attr_i64(&r, "/", "pair", &v), EWC_EFORMAT,
                 "attribute 'pair' of / is not a single value", NULL);
    assert_error(h5file_read_i32(&r, "/u32", u, 1, two), EWC_EFORMAT,
                 "/u32 has type uint32, expected int32", NULL);
    h5file_close(&r);
    assert_no_open_ids();
}

static void test_open_bad_files(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX];
    H5Reader r;

    path_in(path, f, "missing.h5");
    assert_error(h5file_open_read(&r, path), EWC_EIO, path, "No such file", NULL);
    h5file_close(&r); /* no-op after a failed open */
    assert_error(h5file_open_read(&r, f->dir), EWC_EIO, f->dir, "not a regular file", NULL);

    path_in(path, f, "empty.h5");
    write_bytes(path, "", 0);
    assert_error(h5file_open_read(&r, path), EWC_EFORMAT, path, NULL);

    path_in(path, f, "garbage.h5");
    char junk[5000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 131 + 7);
    write_bytes(path, junk, sizeof junk);
    assert_error(h5file_open_read(&r, path), EWC_EFORMAT, path, NULL);

    /* A real file cut to half its size, and to just past the start of its superblock. */
    path_in(path, f, "truncated.h5");
    float big[4096] = {0};
    uint64_t dims[1] = {4096};
    H5Writer w;
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/x", big, 1, dims), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    assert_error(h5file_open_read(&r, path), EWC_EFORMAT, path, NULL);
    assert_int_equal(truncate(path, 12), 0);
    assert_error(h5file_open_read(&r, path), EWC_EFORMAT, path, NULL);

    char long_path[H5FILE_PATH_MAX + 10];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    assert_error(h5file_open_read(&r, long_path), EWC_EINVAL, "path longer than", NULL);
    assert_no_open_ids();
}

/* ---- interoperability ----------------------------------------------------------------------- */

static void test_h5dump_reads_header(void **state) {
    Fixture *f = *state;
    if (system("command -v h5dump >/dev/null 2>&1") != 0) skip();
    char path[H5FILE_PATH_MAX], cmd[H5FILE_PATH_MAX + 64], out[8192];
    path_in(path, f, "dump.h5");
    float x[6] = {1, 2, 3, 4, 5, 6};
    uint64_t dims[2] = {2, 3};
    H5Writer w;
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/tasks/000/anchor/layer0", x, 2, dims), EWC_OK);
    assert_int_equal(h5file_set_attr_str(&w, "/", "format", "ewc-checkpoint"), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);

    snprintf(cmd, sizeof cmd, "h5dump -H '%s' 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    if (rc != 0) fail_msg("h5dump -H failed (%d):\n%s", rc, out);
    assert_non_null(strstr(out, "DATASET \"layer0\""));
    assert_non_null(strstr(out, "H5T_IEEE_F32LE"));
    assert_non_null(strstr(out, "( 2, 3 )"));
    assert_non_null(strstr(out, "ATTRIBUTE \"format\""));
    assert_no_open_ids();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_write_is_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_mismatches_name_the_dataset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_foreign_layouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h5dump_reads_header, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
