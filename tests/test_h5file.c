/* Tests for h5file: exact round trips of every type and attribute, validation messages, and
 * that aborted, failed or killed writes never damage the previous file or leave temps behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ewc/error.h"
#include "ewc/h5file.h"
#include "ewc/sha256.h"

typedef struct {
    char dir[64];
} Fixture;

/* ---- helpers -------------------------------------------------------------------------------- */

static int setup(void **state) {
    Fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/test_h5file.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    ewc_error_clear();
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

static int teardown(void **state) {
    Fixture *f = *state;
    int rc = nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void path_in(char *buf, const Fixture *f, const char *name) {
    snprintf(buf, H5FILE_PATH_MAX, "%s/%s", f->dir, name);
}

/* Every HDF5 id (files, groups, datasets, types, ...) must be closed between operations. */
static void assert_no_open_ids(void) {
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* STATUS is WANT and the error message contains every NULL-terminated substring; clears it. */
static void assert_error(EwcStatus status, EwcStatus want, ...) {
    const char *msg = ewc_error_message();
    va_list ap;
    va_start(ap, want);
    for (const char *sub; (sub = va_arg(ap, const char *));) {
        if (!strstr(msg, sub)) fail_msg("message \"%s\" lacks \"%s\"", msg, sub);
    }
    va_end(ap);
    if (status != want) fail_msg("status %d, expected %d (\"%s\")", status, want, msg);
    ewc_error_clear();
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

static void assert_same_bytes(const unsigned char *a, size_t na, const char *path) {
    size_t nb;
    unsigned char *b = slurp(path, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(b);
}

/* Number of entries in F's directory whose name contains ".tmp". */
static int count_temps(const Fixture *f) {
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* A small committed file with one dataset and one attribute, tagged with VERSION. */
static void write_small(const char *path, int64_t version) {
    H5Writer w;
    int32_t v[3] = {1, 2, (int32_t)version};
    uint64_t dims[1] = {3};
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "version", version), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);
}

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

/* ---- crash safety --------------------------------------------------------------------------- */

static void test_abort_keeps_previous_file(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX];
    path_in(path, f, "ckpt.h5");
    write_small(path, 1);
    size_t n;
    unsigned char *before = slurp(path, &n);

    H5Writer w;
    int32_t v[2] = {5, 6};
    uint64_t dims[1] = {2};
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
    assert_int_equal(count_temps(f), 1);
    h5file_abort(&w);
    h5file_abort(&w);
    assert_same_bytes(before, n, path);
    assert_int_equal(count_temps(f), 0);
    assert_int_equal(h5file_commit(&w), EWC_EINVAL); /* finished writer */
    ewc_error_clear();

    /* a failed write (same dataset twice) poisons the commit */
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
    assert_error(h5file_write_i32(&w, "/v", v, 1, dims), EWC_EINVAL, "/v written twice", NULL);
    assert_error(h5file_commit(&w), EWC_EIO, path, "earlier write", NULL);
    assert_same_bytes(before, n, path);
    assert_int_equal(count_temps(f), 0);

    /* invalid arguments fail too, and also poison the commit */
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_error(h5file_write_i32(&w, "/r", v, 9, dims), EWC_EINVAL, "invalid rank", NULL);
    assert_error(h5file_write_i32(&w, "/r", NULL, 1, dims), EWC_EINVAL, "NULL buffer", NULL);
    assert_error(h5file_set_attr_i64(&w, "/", "", 1), EWC_EINVAL, "empty name", NULL);
    assert_error(h5file_commit(&w), EWC_EIO, "earlier write", NULL);
    assert_same_bytes(before, n, path);
    assert_int_equal(count_temps(f), 0);
    free(before);
    assert_no_open_ids();
}

static void test_failed_commit_keeps_previous(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX], inner[H5FILE_PATH_MAX + 16];
    H5Writer w;
    int32_t v[2] = {5, 6};
    uint64_t dims[1] = {2};

    /* rename fails: the final path became a non-empty directory after create_temp */
    path_in(path, f, "dir.h5");
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(inner, sizeof inner, "%s/keep", path);
    write_bytes(inner, "keep", 4);
    assert_error(h5file_commit(&w), EWC_EIO, path, "cannot rename", NULL);
    assert_same_bytes((const unsigned char *)"keep", 4, inner);
    assert_int_equal(count_temps(f), 0);
    /* and create_temp refuses a directory up front */
    assert_error(h5file_create_temp(&w, path), EWC_EIO, path, "is a directory", NULL);
    h5file_abort(&w); /* no-op after a failed create */

    /* the temp file cannot be created: missing directory */
    path_in(path, f, "no/such/dir/ckpt.h5");
    assert_error(h5file_create_temp(&w, path), EWC_EIO, path, "No such file", NULL);
    assert_int_equal(count_temps(f), 0);
    assert_error(h5file_create_temp(&w, ""), EWC_EINVAL, "empty path", NULL);

    /* the disk "fills up" (RLIMIT_FSIZE) while 2 MB are written over a small previous file */
    path_in(path, f, "ckpt.h5");
    write_small(path, 1);
    size_t n;
    unsigned char *before = slurp(path, &n);
    size_t count = 512 * 1024;
    float *big = calloc(count, sizeof *big);
    assert_non_null(big);
    uint64_t bdims[1] = {count};
    struct rlimit saved, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 256 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    EwcStatus st_create = h5file_create_temp(&w, path);
    EwcStatus st_write = h5file_write_f32(&w, "/model/layer0/W", big, 1, bdims);
    EwcStatus st_commit = h5file_commit(&w);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(st_create, EWC_OK);
    assert_int_not_equal(st_commit, EWC_OK);
    assert_true(st_write != EWC_OK || st_commit == EWC_EIO);
    assert_non_null(strstr(ewc_error_message(), path));
    ewc_error_clear();
    assert_same_bytes(before, n, path);
    assert_int_equal(count_temps(f), 0);
    free(big);
    free(before);
    assert_no_open_ids();
}

static void test_remove_stale_temps(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX], p[H5FILE_PATH_MAX];
    path_in(path, f, "ckpt.h5");
    write_small(path, 1);
    size_t n;
    unsigned char *before = slurp(path, &n);

    /* a run killed between create_temp and commit */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        H5Writer w;
        int32_t v[1] = {9};
        uint64_t dims[1] = {1};
        int ok = h5file_create_temp(&w, path) == EWC_OK &&
                 h5file_write_i32(&w, "/v", v, 1, dims) == EWC_OK;
        _exit(ok ? 0 : 1);
    }
    int wstatus;
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    assert_int_equal(count_temps(f), 1);

    const char *keep[] = {"other.h5.tmp.1", "ckpt.h5x", "xckpt.h5.tmp"};
    const char *stale[] = {"ckpt.h5.tmp.123.0", "ckpt.h5.tmpABCDEF"};
    for (size_t i = 0; i < 3; i++) {
        path_in(p, f, keep[i]);
        write_bytes(p, "x", 1);
    }
    for (size_t i = 0; i < 2; i++) {
        path_in(p, f, stale[i]);
        write_bytes(p, "x", 1);
    }
    path_in(p, f, "ckpt.h5.tmp.dir"); /* not a regular file: left alone */
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(count_temps(f), 6); /* "ckpt.h5x" has no ".tmp" */

    assert_int_equal(h5file_remove_stale_temps(path), EWC_OK);
    assert_int_equal(count_temps(f), 3);
    for (size_t i = 0; i < 3; i++) {
        path_in(p, f, keep[i]);
        assert_int_equal(access(p, F_OK), 0);
    }
    assert_same_bytes(before, n, path);
    assert_int_equal(h5file_remove_stale_temps(path), EWC_OK); /* nothing left: fine */

    path_in(p, f, "missing-dir/ckpt.h5");
    assert_error(h5file_remove_stale_temps(p), EWC_EIO, "missing-dir", NULL);
    path_in(p, f, "");
    assert_error(h5file_remove_stale_temps(p), EWC_EINVAL, "not a file name", NULL);
    free(before);
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


/* ---- integrity ------------------------------------------------------------------------------ */

/* The header holds the length and the SHA-256 of bytes 512.., as `tail -c +513 | sha256sum`
 * (an independent implementation) prints it, and h5py reads the file. */
static void test_digest_header_matches_sha256sum(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX], cmd[H5FILE_PATH_MAX + 128], line[256];
    path_in(path, f, "sealed.h5");
    write_small(path, 7);
    size_t n;
    unsigned char *image = slurp(path, &n);
    char want[512];
    unsigned char d[SHA256_BYTES];
    char hex[SHA256_HEX];
    sha256_digest(image + 512, n - 512, d);
    sha256_hex(d, hex);
    snprintf(want, sizeof want, "EWC-CHECKPOINT-DIGEST v1\nalgorithm: sha256\nlength: %zu\n"
             "sha256: %s\ncovers: bytes 512 to the end; check with: tail -c +513 FILE | sha256sum\n",
             n, hex);
    assert_memory_equal(image, want, strlen(want));
    for (size_t i = strlen(want); i < 512; i++) assert_int_equal(image[i], 0);
    assert_memory_equal(image + 512, "\x89HDF\r\n\x1a\n", 8);
    snprintf(cmd, sizeof cmd, "tail -c +513 '%s' | sha256sum", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    assert_int_equal(pclose(p), 0);
    assert_memory_equal(line, hex, 64);
    if (access("/usr/bin/python3", X_OK) == 0) {
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import h5py, sys; f = h5py.File(sys.argv[1],"
                 " \"r\"); print(f.userblock_size, list(f[\"v\"][()]))' '%s'", path);
        p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(line, sizeof line, p));
        assert_int_equal(pclose(p), 0);
        assert_string_equal(line, "512 [1, 2, 7]\n");
    }
    /* sealing is what a commit does: the committed image is a fixed point */
    unsigned char *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, image, n);
    memset(copy, 0, 512);
    assert_int_equal(h5file_seal_image(copy, n), EWC_OK);
    assert_memory_equal(copy, image, n);
    assert_error(h5file_seal_image(copy, 511), EWC_EINVAL, "user block", NULL);
    free(copy);
    free(image);
}

/* Every damage to a small file is refused before HDF5 sees it, naming the file; damage to the
 * data of the dataset names it. */
static void test_damage_is_refused(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX], bad[H5FILE_PATH_MAX];
    path_in(path, f, "good.h5");
    path_in(bad, f, "bad.h5");
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = (float)i + 0.5f;
    uint64_t dims[1] = {256};
    H5Writer w;
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_f32(&w, "/group/x", x, 1, dims), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "step", 12), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);
    size_t n;
    unsigned char *image = slurp(path, &n);
    /* where the float data sits: 0.5, 1.5, 2.5 */
    const float head[3] = {0.5f, 1.5f, 2.5f};
    size_t data_at = 0;
    for (size_t i = 512; i + sizeof head <= n && !data_at; i++)
        if (memcmp(image + i, head, sizeof head) == 0) data_at = i;
    assert_true(data_at > 512);

    H5Reader r;
    int refused = 0, named = 0;
    for (size_t pos = 0; pos < n; pos += 5) {
        image[pos] ^= (unsigned char)(1u << (pos % 8));
        write_bytes(bad, image, n);
        image[pos] ^= (unsigned char)(1u << (pos % 8));
        EwcStatus st = h5file_open_read(&r, bad);
        if (st != EWC_EFORMAT || !r.damaged || !strstr(ewc_error_message(), bad))
            fail_msg("flip at byte %zu: status %d, message \"%s\"", pos, st, ewc_error_message());
        if (pos >= data_at && pos < data_at + sizeof x) {
            if (!strstr(ewc_error_message(), "first damaged dataset: /group/x"))
                fail_msg("flip in the data at %zu: \"%s\"", pos, ewc_error_message());
            named++;
        }
        refused++;
        ewc_error_clear();
    }
    assert_true(refused > 100 && named > 10);
    /* truncated at any length, or a byte appended */
    for (size_t len = 0; len < n; len += 97) {
        write_bytes(bad, image, len);
        assert_error(h5file_open_read(&r, bad), EWC_EFORMAT, bad, len >= 8 ? "damaged" : "", NULL);
    }
    unsigned char *longer = realloc(image, n + 1);
    assert_non_null(longer);
    image = longer;
    image[n] = 0;
    write_bytes(bad, image, n + 1);
    assert_error(h5file_open_read(&r, bad), EWC_EFORMAT, bad, "damaged", NULL);
    /* without the diagnosis: the same refusal, no dataset named */
    image[data_at] ^= 1;
    h5file_set_diagnosis(false);
    EwcStatus quick = h5file_open_image(&r, "quick", image, n);
    assert_null(strstr(ewc_error_message(), "first damaged"));
    assert_error(quick, EWC_EFORMAT, "quick: damaged (SHA-256 mismatch over bytes 512..", NULL);
    h5file_set_diagnosis(true);
    assert_error(h5file_open_image(&r, "slow", image, n), EWC_EFORMAT,
                 "first damaged dataset: /group/x", NULL);
    image[data_at] ^= 1;
    /* the same bytes from memory */
    assert_error(h5file_open_image(&r, "in-memory", image, n - 1), EWC_EFORMAT,
                 "in-memory: damaged (", "bytes, its digest header records", NULL);
    assert_int_equal(h5file_open_image(&r, "in-memory", image, n), EWC_OK);
    float y[256];
    assert_int_equal(h5file_read_f32(&r, "/group/x", y, 1, dims), EWC_OK);
    assert_memory_equal(x, y, sizeof x);
    h5file_close(&r);
    free(image);
    assert_no_open_ids();
}

/* A dataset whose data no longer matches its CRC-32 (in a resealed file: only the CRC can tell)
 * is refused on read, and so is a dataset without a CRC-32. */
static void test_crc_checked_on_read(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX];
    path_in(path, f, "crc.h5");
    int64_t v[4] = {11, 22, 33, 44};
    uint64_t dims[1] = {4};
    H5Writer w;
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i64(&w, "/v", v, 1, dims), EWC_OK);
    assert_int_equal(h5file_write_i64(&w, "/u", v, 1, dims), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);
    size_t n;
    unsigned char *image = slurp(path, &n);
    size_t at = 0;
    for (size_t i = 512; i + sizeof v <= n && !at; i++)
        if (memcmp(image + i, v, sizeof v) == 0) at = i;
    assert_true(at > 0);
    image[at + 8] ^= 4; /* one of the two datasets: 22 -> 18 */
    assert_int_equal(h5file_seal_image(image, n), EWC_OK);
    H5Reader r;
    int64_t got[4];
    assert_int_equal(h5file_open_image(&r, "resealed", image, n), EWC_OK);
    EwcStatus su = h5file_read_i64(&r, "/u", got, 1, dims);
    ewc_error_clear();
    EwcStatus sv = h5file_read_i64(&r, "/v", got, 1, dims);
    assert_true((su == EWC_EFORMAT) != (sv == EWC_EFORMAT));
    assert_non_null(strstr(ewc_error_message(), "fails its CRC-32 check"));
    ewc_error_clear();
    h5file_close(&r);
    free(image);

    /* no CRC-32 attribute */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    assert_true(H5Pset_userblock(fcpl, 512) >= 0);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    hid_t space = H5Screate_simple(1, (hsize_t[]){4}, NULL);
    hid_t d = H5Dcreate2(file, "v", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Sclose(space);
    assert_true(H5Fclose(file) >= 0);
    image = slurp(path, &n);
    assert_int_equal(h5file_seal_image(image, n), EWC_OK);
    assert_int_equal(h5file_open_image(&r, path, image, n), EWC_OK);
    assert_error(h5file_read_i64(&r, "/v", got, 1, dims), EWC_EFORMAT, "/v has no crc32", NULL);
    h5file_close(&r);
    free(image);
    assert_no_open_ids();
}

/* commit_keep: the old file becomes PREV (same bytes), the new one takes its place; without an
 * old file PREV is left alone. install_copy replaces a file with another's bytes. */
static void test_commit_keeps_previous(void **state) {
    Fixture *f = *state;
    char path[H5FILE_PATH_MAX], prev[H5FILE_PATH_MAX], other[H5FILE_PATH_MAX];
    path_in(path, f, "ckpt.h5");
    path_in(prev, f, "ckpt.prev.h5");
    path_in(other, f, "other.h5");
    H5Writer w;
    int32_t v[1] = {1};
    uint64_t dims[1] = {1};
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
    assert_int_equal(h5file_commit_keep(&w, prev), EWC_OK);
    assert_int_equal(access(prev, F_OK), -1); /* nothing to keep yet */
    size_t n1, n2;
    unsigned char *first = slurp(path, &n1);
    for (int k = 2; k <= 3; k++) {
        v[0] = k;
        assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
        assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
        assert_int_equal(h5file_commit_keep(&w, prev), EWC_OK);
        if (k == 2) assert_same_bytes(first, n1, prev);
    }
    H5Reader r;
    int32_t got;
    assert_int_equal(h5file_open_read(&r, prev), EWC_OK);
    assert_int_equal(h5file_read_i32(&r, "/v", &got, 1, dims), EWC_OK);
    h5file_close(&r);
    assert_int_equal(got, 2);
    assert_int_equal(count_temps(f), 0);
    unsigned char *latest = slurp(path, &n2);
    /* a run killed between keeping the previous file and the rename left PREV a hard link to
     * the current file: the next commit still ends with no temporary file */
    assert_int_equal(unlink(prev), 0);
    assert_int_equal(link(path, prev), 0);
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
    assert_int_equal(h5file_commit_keep(&w, prev), EWC_OK);
    assert_same_bytes(latest, n2, prev);
    assert_int_equal(count_temps(f), 0);
    free(latest);
    latest = slurp(path, &n2);
    assert_int_equal(h5file_install_copy(prev, other), EWC_OK);
    assert_int_equal(h5file_install_copy(path, other), EWC_OK); /* replaces */
    assert_same_bytes(latest, n2, other);
    path_in(other, f, "missing.h5");
    assert_error(h5file_install_copy(other, prev), EWC_EIO, "missing.h5", NULL);
    assert_int_equal(count_temps(f), 0);
    free(first);
    free(latest);
    assert_no_open_ids();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_write_is_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_mismatches_name_the_dataset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_foreign_layouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_keeps_previous_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_keeps_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_stale_temps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h5dump_reads_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_header_matches_sha256sum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crc_checked_on_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_keeps_previous, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
