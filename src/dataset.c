/* Loads a train/test dataset from a directory of four IDX files (MNIST layout, raw or .gz),
 * checks that images, labels and splits agree, and keeps the first N samples when asked. */
#include "ewc/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ewc/idx.h"

#define DATASET_PATH_MAX 4096

enum { FILE_TRAIN_IMAGES, FILE_TRAIN_LABELS, FILE_TEST_IMAGES, FILE_TEST_LABELS, FILE_COUNT };

static const char *const dataset_file_names[FILE_COUNT] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
};

/* Put DIR/NAME, or DIR/NAME.gz when only that exists, into PATH. The raw file wins so that a
 * user who unpacked the archives is not silently served the stale .gz next to them. */
static EwcStatus dataset_find_file(char *path, size_t size, const char *dir, const char *name) {
    struct stat sb;
    int n = snprintf(path, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n + 3 >= size) {
        ewc_error_set("%s/%s: path too long", dir, name);
        return EWC_EINVAL;
    }
    /* Anything but "does not exist" (e.g. permission denied) is left for idx_read to report. */
    if (stat(path, &sb) == 0 || errno != ENOENT) return EWC_OK;
    strcat(path, ".gz");
    if (stat(path, &sb) == 0 || errno != ENOENT) return EWC_OK;
    ewc_error_set("%s/%s: dataset file missing: neither %s/%s nor %s/%s.gz exists", dir, name,
                  dir, name, dir, name);
    return EWC_EIO;
}

/* Move A's data into *DST, keeping only the first MAX items when MAX > 0. */
static void dataset_take(uint8_t **dst, int *n, IdxArray *a, int max, size_t item_bytes) {
    int keep = a->dims[0];
    if (max > 0 && max < keep) {
        keep = max;
        /* Give the tail back: a small --train-samples run should not hold all 47 MB. */
        uint8_t *shrunk = realloc(a->data, (size_t)keep * item_bytes);
        if (shrunk) a->data = shrunk;
    }
    *dst = a->data;
    *n = keep;
    a->data = NULL;
}

static int dataset_max_label(const IdxArray *labels) {
    int m = 0;
    for (int i = 0; i < labels->dims[0]; i++)
        if (labels->data[i] > m) m = labels->data[i];
    return m;
}

EwcStatus dataset_load(Dataset *d, const char *dir, int max_train, int max_test) {
    EwcStatus st = EWC_OK;
    IdxArray arr[FILE_COUNT];
    char paths[FILE_COUNT][DATASET_PATH_MAX];
    memset(arr, 0, sizeof arr);

    if (d) memset(d, 0, sizeof *d);
    if (!d || !dir || max_train < 0 || max_test < 0) {
        ewc_error_set("dataset_load: bad arguments (dir %s, max_train %d, max_test %d)",
                      dir ? dir : "(null)", max_train, max_test);
        return EWC_EINVAL;
    }

    struct stat sb;
    if (stat(dir, &sb) != 0) {
        ewc_error_set("%s: dataset directory %s", dir,
                      errno == ENOENT ? "does not exist" : strerror(errno));
        return EWC_EIO;
    }
    if (!S_ISDIR(sb.st_mode)) {
        ewc_error_set("%s: dataset path is not a directory", dir);
        return EWC_EIO;
    }

    for (int f = 0; f < FILE_COUNT; f++) {
        st = dataset_find_file(paths[f], sizeof paths[f], dir, dataset_file_names[f]);
        if (st != EWC_OK) goto fail;
    }
    for (int f = 0; f < FILE_COUNT; f++) {
        int is_images = f == FILE_TRAIN_IMAGES || f == FILE_TEST_IMAGES;
        st = idx_read(&arr[f], paths[f], is_images ? 3 : 1);
        if (st != EWC_OK) goto fail;
    }

    const IdxArray *tri = &arr[FILE_TRAIN_IMAGES], *tei = &arr[FILE_TEST_IMAGES];
    for (int s = 0; s < 2; s++) {
        int fi = s == 0 ? FILE_TRAIN_IMAGES : FILE_TEST_IMAGES, fl = fi + 1;
        if (arr[fi].dims[0] != arr[fl].dims[0]) {
            ewc_error_set("%s has %d images but %s has %d labels", paths[fi], arr[fi].dims[0],
                          paths[fl], arr[fl].dims[0]);
            st = EWC_EFORMAT;
            goto fail;
        }
    }
    if (tri->dims[1] != tei->dims[1] || tri->dims[2] != tei->dims[2]) {
        ewc_error_set("image size mismatch: %s has %dx%d images but %s has %dx%d",
                      paths[FILE_TRAIN_IMAGES], tri->dims[1], tri->dims[2],
                      paths[FILE_TEST_IMAGES], tei->dims[1], tei->dims[2]);
        st = EWC_EFORMAT;
        goto fail;
    }

    /* Labels are unsigned bytes, so < 256 = DATASET_MAX_CLASSES holds by construction. The
     * class count comes from the whole files, so --train-samples cannot shrink the model. */
    int max_train_label = dataset_max_label(&arr[FILE_TRAIN_LABELS]);
    int max_test_label = dataset_max_label(&arr[FILE_TEST_LABELS]);
    int n_classes = 1 + (max_train_label > max_test_label ? max_train_label : max_test_label);
    if (n_classes < 2) {
        ewc_error_set("%s: every label in %s and %s is 0: need at least 2 classes", dir,
                      dataset_file_names[FILE_TRAIN_LABELS], dataset_file_names[FILE_TEST_LABELS]);
        st = EWC_EFORMAT;
        goto fail;
    }

    const int dim = tri->dims[1] * tri->dims[2]; /* <= 4096 * 4096, validated by idx_read */
    d->train.dim = d->test.dim = dim;
    d->n_classes = n_classes;
    dataset_take(&d->train.x, &d->train.n, &arr[FILE_TRAIN_IMAGES], max_train, (size_t)dim);
    dataset_take(&d->train.y, &d->train.n, &arr[FILE_TRAIN_LABELS], max_train, 1);
    dataset_take(&d->test.x, &d->test.n, &arr[FILE_TEST_IMAGES], max_test, (size_t)dim);
    dataset_take(&d->test.y, &d->test.n, &arr[FILE_TEST_LABELS], max_test, 1);
    return EWC_OK;

fail:
    for (int f = 0; f < FILE_COUNT; f++) idx_free(&arr[f]);
    dataset_free(d);
    return st;
}

void dataset_free(Dataset *d) {
    if (!d) return;
    free(d->train.x);
    free(d->train.y);
    free(d->test.x);
    free(d->test.y);
    free(d->val.x);
    free(d->val.y);
    memset(d, 0, sizeof *d);
}
