/* The h5file tests' shared fixture (see h5file_fixture.h): per-test temporary directories and
 * the helpers both test files use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ewc/error.h"
#include "ewc/h5file.h"
#include "h5file_fixture.h"

/* ---- helpers -------------------------------------------------------------------------------- */

int setup(void **state) {
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

int teardown(void **state) {
    Fixture *f = *state;
    int rc = nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

void path_in(char *buf, const Fixture *f, const char *name) {
    snprintf(buf, H5FILE_PATH_MAX, "%s/%s", f->dir, name);
}

/* Every HDF5 id (files, groups, datasets, types, ...) must be closed between operations. */
void assert_no_open_ids(void) {
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* STATUS is WANT and the error message contains every NULL-terminated substring; clears it. */
void assert_error(EwcStatus status, EwcStatus want, ...) {
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

/* Number of entries in F's directory whose name contains ".tmp". */
int count_temps(const Fixture *f) {
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

