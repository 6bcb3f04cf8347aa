/* Thin HDF5 layer under the checkpoint module: crash-safe writes (temp file, fsync, rename) and
 * reads that check type and shape before touching the caller's buffer. */
#ifndef EWC_H5FILE_H
#define EWC_H5FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ewc/error.h"

#define H5FILE_MAX_RANK 8
#define H5FILE_PATH_MAX 4096

/* A file being written: built in memory, then written under a temporary name next to its final
 * path and renamed over it. The fields are private. Every error message below names the final
 * path (and the temporary one where it matters). */
typedef struct {
    int64_t file;                          /* in-memory HDF5 file id (hid_t), < 0 when closed */
    int fd;                                /* the temp file, open from create_temp to commit */
    bool active;                           /* between create_temp and commit/abort */
    bool failed;                           /* a write failed: commit refuses and aborts */
    char final_path[H5FILE_PATH_MAX];
    char temp_path[H5FILE_PATH_MAX + 48];  /* "<final_path>.tmp.<pid>.<n>" */
} H5Writer;

/* A file open for reading. The fields are private. */
typedef struct {
    int64_t file; /* HDF5 file id (hid_t), < 0 when closed */
    bool open;
    char path[H5FILE_PATH_MAX];
} H5Reader;

/* ---- writing ------------------------------------------------------------------------------ */

/* Create the empty file "<final_path>.tmp.<pid>.<n>" (mode 0666 & ~umask) in final_path's
 * directory and a new HDF5 file in memory; nothing at final_path is touched until h5file_commit.
 * The whole file stays in memory until then (commit briefly needs a second copy), so a disk
 * error can never leave HDF5 in a broken state. EWC_EINVAL for an empty or too long path,
 * EWC_EIO if final_path is a directory or the temp file cannot be created (nothing is left
 * behind). On success exactly one of h5file_commit / h5file_abort must follow. */
EwcStatus h5file_create_temp(H5Writer *w, const char *final_path);

/* Serialise and close the HDF5 file, write and fsync the temp file, rename it over final_path,
 * fsync the directory. On any failure before the rename (including an earlier failed write on W)
 * the temp file is removed, final_path is untouched, and EWC_EIO (EWC_ENOMEM for the image copy)
 * is returned. Only a failed directory fsync comes after the rename: then the new file is in
 * place but may not survive a power loss (EWC_EIO too). W is finished either way; a later
 * h5file_abort(W) is a no-op. */
EwcStatus h5file_commit(H5Writer *w);

/* Close and delete the temp file; final_path is untouched. No-op on a finished or zeroed W. */
void h5file_abort(H5Writer *w);

/* Delete every regular file named "<basename>.tmp*" in final_path's directory (left by a killed
 * run). Call it before h5file_create_temp on that path: it would delete a live writer's temp too.
 * EWC_EIO if the directory cannot be listed or a file cannot be deleted. */
EwcStatus h5file_remove_stale_temps(const char *final_path);

/* Write a new dataset of RANK (0 = scalar, up to H5FILE_MAX_RANK) dimensions DIMS at PATH
 * (e.g. "/tasks/003/fisher/layer0/W"), creating missing groups. DATA is row-major and only read.
 * Stored little-endian, contiguous, uncompressed. EWC_EINVAL for a bad argument or an existing
 * PATH, EWC_EIO for a failed write. Any failure makes the later h5file_commit fail. */
EwcStatus h5file_write_f32(H5Writer *w, const char *path, const float *data, int rank,
                           const uint64_t *dims);
EwcStatus h5file_write_f64(H5Writer *w, const char *path, const double *data, int rank,
                           const uint64_t *dims);
EwcStatus h5file_write_i32(H5Writer *w, const char *path, const int32_t *data, int rank,
                           const uint64_t *dims);
EwcStatus h5file_write_i64(H5Writer *w, const char *path, const int64_t *data, int rank,
                           const uint64_t *dims);

/* Set scalar attribute NAME on the group or dataset OBJECT_PATH ("/" = the root), replacing an
 * attribute of the same name; a missing OBJECT_PATH is created as a group (with its parents).
 * Strings are variable-length UTF-8, as h5py writes them (it reads them back as str).
 * Errors as for the writes. */
EwcStatus h5file_set_attr_str(H5Writer *w, const char *object_path, const char *name,
                              const char *value);
EwcStatus h5file_set_attr_i64(H5Writer *w, const char *object_path, const char *name,
                              int64_t value);
EwcStatus h5file_set_attr_f64(H5Writer *w, const char *object_path, const char *name,
                              double value);

/* ---- reading ------------------------------------------------------------------------------ */

/* Open PATH read-only. EWC_EIO if it is missing, unreadable or not a regular file; EWC_EFORMAT
 * if it is not a valid HDF5 file (garbage, empty, truncated). HDF5's own error printing is
 * switched off for the process. On failure R is closed and h5file_close(R) is a no-op. */
EwcStatus h5file_open_read(H5Reader *r, const char *path);
void h5file_close(H5Reader *r); /* no-op on a closed or zeroed R */

/* Whether PATH names a group or dataset (false too when a parent is missing or not a group). */
bool h5file_exists(const H5Reader *r, const char *path);
bool h5file_attr_exists(const H5Reader *r, const char *object_path, const char *name);

/* Rank and dims of dataset PATH, to size a buffer before reading. EWC_EFORMAT if PATH is not a
 * dataset, has no data (null dataspace) or more than H5FILE_MAX_RANK dimensions. */
EwcStatus h5file_dims(const H5Reader *r, const char *path, int *rank,
                      uint64_t dims[H5FILE_MAX_RANK]);

/* Read dataset PATH into OUT, which must hold the product of EXPECT_DIMS elements. First checks
 * that PATH is a dataset of exactly the element type (float32 / float64 / int32 / int64, any
 * byte order), rank RANK and dims EXPECT_DIMS; otherwise EWC_EFORMAT naming file and dataset,
 * e.g. "ckpt.h5: /model/layer0/W has shape (400, 784), expected (400, 785)", with OUT untouched.
 * EWC_EFORMAT too if the data cannot be read (corrupt file). */
EwcStatus h5file_read_f32(const H5Reader *r, const char *path, float *out, int rank,
                          const uint64_t *expect_dims);
EwcStatus h5file_read_f64(const H5Reader *r, const char *path, double *out, int rank,
                          const uint64_t *expect_dims);
EwcStatus h5file_read_i32(const H5Reader *r, const char *path, int32_t *out, int rank,
                          const uint64_t *expect_dims);
EwcStatus h5file_read_i64(const H5Reader *r, const char *path, int64_t *out, int rank,
                          const uint64_t *expect_dims);

/* Read single-valued attribute NAME of OBJECT_PATH. EWC_EFORMAT naming file, object and
 * attribute if either is missing, the attribute holds more than one value, or its type is not
 * a string / a 64-bit signed integer / a 64-bit float respectively. Strings may be fixed- or
 * variable-length; one that does not fit in SIZE bytes with its NUL is EWC_EFORMAT too. */
EwcStatus h5file_get_attr_str(const H5Reader *r, const char *object_path, const char *name,
                              char *buf, size_t size);
EwcStatus h5file_get_attr_i64(const H5Reader *r, const char *object_path, const char *name,
                              int64_t *value);
EwcStatus h5file_get_attr_f64(const H5Reader *r, const char *object_path, const char *name,
                              double *value);

#endif
