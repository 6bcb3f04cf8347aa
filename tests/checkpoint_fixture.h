/* The checkpoint tests' shared fixture (tests/test_checkpoint*.c): one small reference run saved
 * to a checkpoint by setup_group, and helpers that copy, damage, reseal and load checkpoints.
 * Include after <cmocka.h>; link with tests/checkpoint_fixture.c. */
#ifndef EWC_TEST_CHECKPOINT_FIXTURE_H
#define EWC_TEST_CHECKPOINT_FIXTURE_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/error.h"
#include "ewc/h5file.h"
#include "ewc/train.h"

#define N_TRAIN 40
#define N_TEST 20
#define DIM 12
#define CLASSES 3
#define HIDDEN 5
#define TASKS 3
#define BATCH 8
#define FINISHED 2       /* tasks finished (and recorded) before the mid-task save */
#define STEPS_INTO_LAST 2 /* steps taken in task FINISHED before that save */

/* The reference run, built once by setup_group: one small trainer (synthetic data, DIM pixels,
 * CLASSES classes, hidden {HIDDEN}, EWC, momentum) run like run.c does: FINISHED finished tasks,
 * each saved with its TaskRecord, then STEPS_INTO_LAST steps into the next task and a mid-task
 * save to R.ckpt. */
typedef struct {
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
} CheckpointReference;

extern CheckpointReference R;

/* CMocka group setup and teardown: build the reference run in a fresh temporary directory;
 * free it and remove the directory. */
int setup_group(void **state);
int teardown_group(void **state);

/* BUF[H5FILE_PATH_MAX] = R.dir/NAME. */
void path_in(char *buf, const char *name);
/* A fresh path for a damaged copy (each test gets its own file). */
void new_path(char *buf, const char *what);
void copy_file(const char *from, const char *to);
void write_bytes(const char *path, const void *data, size_t n);
/* Append to the string in BUF[SIZE], silently cut at the end. */
void appendf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* STATUS is WANT and the error message contains every NULL-terminated substring; clears it. */
void assert_error(EwcStatus status, EwcStatus want, ...);
/* Fails, naming WHAT and the first differing byte, unless A and B hold the same BYTES. */
void assert_bits_equal(const void *a, const void *b, size_t bytes, const char *what);
/* Load PATH into a fresh trainer built from CFG (R.data); returns the status, message kept. */
EwcStatus load_with(const Config *cfg, const char *path);

/* Open a copy of the checkpoint for writing with the raw HDF5 API. */
hid_t open_copy_rw(char *p, const char *what);
/* Close F (the copy P, changed with the raw HDF5 API) and seal it again, as if ewc-train had
 * written it that way: the checks behind the digest are what these tests are about. */
void close_sealed(hid_t f, const char *p);
/* Overwrite the int64 attribute NAME of OBJ in FILE with V. */
void set_attr_i64(hid_t file, const char *obj, const char *name, int64_t v);

#endif
