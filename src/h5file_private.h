/* Internals shared by the three parts of the h5file module (h5file.h): h5file.c (helpers and
 * reading), h5file_write.c (writing) and h5file_image.c (the digest, CRCs and file images). */
#ifndef EWC_H5FILE_PRIVATE_H
#define EWC_H5FILE_PRIVATE_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ewc/h5file.h"

#define DETAIL_MAX 256
#define CRC_ATTR "crc32" /* on every dataset: CRC-32 of its elements' little-endian bytes */

/* The element types this module reads and writes. */
typedef enum { KIND_F32, KIND_F64, KIND_I32, KIND_I64 } Kind;

void h5file_quiet(void);              /* switch off HDF5's own error printing */
const char *h5file_detail(char *buf); /* BUF[DETAIL_MAX]: the innermost HDF5 error message */
bool h5file_path_exists(hid_t file, const char *path);
EwcStatus h5file_copy_path(char *dst, const char *src, const char *what);
const char *h5file_split_dir(const char *path, char *dir);
hid_t h5file_kind_mem_type(Kind k);
hid_t h5file_kind_file_type(Kind k);

/* zlib's CRC-32 of COUNT elements of SIZE bytes at DATA (native order), taken over their
 * little-endian representation, so the value does not depend on the host. */
uint32_t h5file_crc_le(const void *data, size_t count, size_t size);

/* Open IMAGE read-only in memory without checking its digest (the caller has, or parses it
 * in a throw-away process). HDF5 copies IMAGE. < 0 on failure. */
hid_t h5file_open_image_unverified(const void *image, size_t size);

#endif
