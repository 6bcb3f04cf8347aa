/* Tests for h5file's commits: aborted, failed or killed writes never damage the previous file or
 * leave temps behind, the digest header and CRC-32s catch damage, and the previous file is kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ewc/error.h"
#include "ewc/h5file.h"
#include "ewc/sha256.h"
#include "h5file_fixture.h"
#include "testutil.h"

static void assert_same_bytes(const unsigned char *a, size_t na, const char *path) {
    size_t nb;
    unsigned char *b = slurp(path, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(b);
}

static void write_small(const char *path, int64_t version) {
    H5Writer w;
    int32_t v[3] = {1, 2, (int32_t)version};
    uint64_t dims[1] = {3};
    assert_int_equal(h5file_create_temp(&w, path), EWC_OK);
    assert_int_equal(h5file_write_i32(&w, "/v", v, 1, dims), EWC_OK);
    assert_int_equal(h5file_set_attr_i64(&w, "/", "version", version), EWC_OK);
    assert_int_equal(h5file_commit(&w), EWC_OK);
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
        cmocka_unit_test_setup_teardown(test_abort_keeps_previous_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_keeps_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_stale_temps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_header_matches_sha256sum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crc_checked_on_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_keeps_previous, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
