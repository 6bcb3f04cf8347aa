/* Reader for IDX files (the MNIST family's format), raw or gzip-compressed.
 * The header is validated (and, for a raw file, checked against the file size) before anything
 * is allocated; a gzip payload must decompress to exactly the declared size. */
#ifndef EWC_IDX_H
#define EWC_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "ewc/error.h"

/* An unsigned-byte IDX array: images (n, rows, cols) when ndim = 3, labels (n) when ndim = 1. */
typedef struct {
    int ndim;
    int dims[3];   /* dims[0] = number of items */
    uint8_t *data; /* owned; (dims[0], dims[1], dims[2]) row-major */
} IdxArray;

/* Read PATH (gzip-compressed or raw, detected from the content, not the name), expecting
 * unsigned-byte data of EXPECT_NDIM dimensions. Errors (EWC_EIO, EWC_EFORMAT, EWC_ENOMEM) name
 * the file. On failure OUT is left empty. */
EwcStatus idx_read(IdxArray *out, const char *path, int expect_ndim);
void idx_free(IdxArray *a);

#endif
