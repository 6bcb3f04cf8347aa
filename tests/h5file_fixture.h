/* The h5file tests' shared fixture (tests/test_h5file*.c): a fresh temporary directory per test,
 * and helpers that read and write raw files and check errors, temporaries and open HDF5 ids.
 * Include after <cmocka.h>; link with tests/h5file_fixture.c. */
#ifndef EWC_TEST_H5FILE_FIXTURE_H
#define EWC_TEST_H5FILE_FIXTURE_H

#include <stddef.h>

#include "ewc/error.h"

typedef struct {
    char dir[64];
} Fixture;

/* CMocka per-test setup and teardown: create Fixture.dir; remove it with everything in it. */
int setup(void **state);
int teardown(void **state);

/* BUF[H5FILE_PATH_MAX] = F's directory/NAME. */
void path_in(char *buf, const Fixture *f, const char *name);
/* Every HDF5 id (files, groups, datasets, types, ...) must be closed between operations. */
void assert_no_open_ids(void);
/* STATUS is WANT and the error message contains every NULL-terminated substring; clears it. */
void assert_error(EwcStatus status, EwcStatus want, ...);
void write_bytes(const char *path, const void *data, size_t n);
/* Number of entries in F's directory whose name contains ".tmp". */
int count_temps(const Fixture *f);

#endif
