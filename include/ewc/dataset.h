/* A labelled image dataset (train and test split) loaded from a directory of IDX files. */
#ifndef EWC_DATASET_H
#define EWC_DATASET_H

#include <stdint.h>

#include "ewc/error.h"

#define DATASET_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define DATASET_MAX_CLASSES 256

typedef struct {
    int n;          /* number of samples */
    int dim;        /* pixels per sample (rows * cols) */
    uint8_t *x;     /* (n, dim) raw pixels, owned; the model sees x / 255 */
    uint8_t *y;     /* (n) labels in [0, n_classes), owned */
} Split;

typedef struct {
    Split train, test;
    Split val;      /* held-out validation samples (validation.h); n = 0 without --validation */
    int n_classes;  /* 1 + the largest label in either split's file (before any MAX_TRAIN /
                     * MAX_TEST limit, so the limits never change the model's shape) */
} Dataset;

/* Load DIR/{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte}, each raw or with a .gz suffix (the raw file is preferred when both
 * exist). Images and labels of a split
 * must agree in count, both splits must have the same image size, and labels must be < 256.
 * MAX_TRAIN / MAX_TEST > 0 keep only the first that many samples (0 = all). Errors name the file. */
EwcStatus dataset_load(Dataset *d, const char *dir, int max_train, int max_test);
void dataset_free(Dataset *d);

#endif
