/* Tests for saving and resuming checkpoints: a save leaves no temporary files behind and keeps
 * the file it replaces as checkpoint.prev.h5, a failed save changes nothing, a resume falls back
 * to the previous file when the latest is damaged, and in-memory images are verified. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
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
