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

/* The dataset manifest (h5file_manifest.c), appended after the HDF5 bytes at commit:
 *     EWC-MANIFEST v1
 *     <offset> <size> <crc32, 8 hex digits> </path>      one line per dataset, in name order
 *     EWC-MANIFEST-END <length of the lines above, 20 digits> <their crc32, 8 hex digits>
 * Offsets count from the start of the file (user block included). The whole trailer for the
 * datasets of FILE (open, flushed, ours), in *TEXT (malloc'd, *LEN bytes); NAME for messages. */
EwcStatus h5file_manifest_build(hid_t file, const char *name, char **text, size_t *len);

typedef enum {
    MANIFEST_INTACT,  /* the manifest is intact and every dataset matches its CRC-32 */
    MANIFEST_DATASET, /* ... and FOUND names the first dataset that does not */
    MANIFEST_DAMAGED, /* a manifest footer, but the manifest fails its CRC or its bounds */
    MANIFEST_ABSENT   /* no manifest footer at the end (truncated, damaged or never written) */
} ManifestVerdict;

/* What the manifest at the end of the SIZE-byte file IMAGE says about its datasets, reading
 * only IMAGE's bytes (never HDF5; IMAGE may be damaged or hostile): every offset and size is
 * checked against SIZE before a byte is read. FOUND[FOUND_SIZE] gets the dataset's path. */
ManifestVerdict h5file_manifest_check(const unsigned char *image, size_t size, char *found,
                                      size_t found_size);

#endif
