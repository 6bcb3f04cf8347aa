/* Thin HDF5 layer under the checkpoint module: crash-safe writes (temp file, fsync, rename),
 * files sealed with a SHA-256 digest that every read verifies before HDF5 parses a byte, and
 * reads that check type, shape and CRC-32 before touching the caller's buffer.
 *
 * Integrity (format of every file written here):
 *  - The file starts with a 512-byte HDF5 user block holding, as text padded with NULs:
 *        EWC-CHECKPOINT-DIGEST v1
 *        algorithm: sha256
 *        length: <total file length in bytes>
 *        sha256: <64 hex digits: SHA-256 of bytes 512 .. length-1>
 *        covers: bytes 512 to the end; check with: tail -c +513 FILE | sha256sum
 *    HDF5 (h5py, h5dump) skips the user block, so the files stay ordinary HDF5 files.
 *  - Every dataset carries an int64 attribute "crc32": zlib's CRC-32 of its elements'
 *    little-endian bytes in row-major order.
 *  - After the HDF5 bytes (HDF5 reads only up to its end of allocation and ignores them), a
 *    text trailer, the dataset manifest, covered by the digest:
 *        EWC-MANIFEST v1
 *        <offset> <size> <crc32, 8 hex digits> <path>     one line per dataset, in name order
 *        EWC-MANIFEST-END <length of the two parts above, 20 digits> <their crc32, 8 hex>
 *    where offset counts bytes from the start of the file (user block included) to the
 *    dataset's contiguous data and size is its byte count (0 0 for an empty dataset).
 *  - A read loads the whole file into memory, checks the header (byte for byte as we would have
 *    written it), the length and the digest, and only then opens the image in memory; every
 *    dataset read also checks its CRC-32. A file without a header, of the wrong length or with
 *    a wrong digest is EWC_EFORMAT, "PATH: damaged (...)". After a digest mismatch the message
 *    names the first dataset whose bytes fail the CRC-32 in the manifest, if the manifest is
 *    intact (its own CRC-32 and strict bounds checks); this reads the bytes in plain C, never
 *    with HDF5, and no data of a damaged file is ever used. */
#ifndef EWC_H5FILE_H
#define EWC_H5FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ewc/error.h"

#define H5FILE_MAX_RANK 8
#define H5FILE_PATH_MAX 4096
#define H5FILE_USERBLOCK 512 /* bytes before the HDF5 superblock: the digest header */
#define H5FILE_DIGEST_MAGIC "EWC-CHECKPOINT-DIGEST v1"

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
    bool damaged; /* set by a failed open: the file is damaged or has no digest (not I/O) */
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

/* Serialise the HDF5 file, append the dataset manifest (checked against the bytes it lists),
 * close it, seal it (digest header), write and fsync the temp file,
 * rename it over final_path, fsync the directory. On any failure before the rename (including an earlier failed write on W)
 * the temp file is removed, final_path is untouched, and EWC_EIO (EWC_ENOMEM for the image copy)
 * is returned. Only a failed directory fsync comes after the rename: then the new file is in
 * place but may not survive a power loss (EWC_EIO too). W is finished either way; a later
 * h5file_abort(W) is a no-op. */
EwcStatus h5file_commit(H5Writer *w);

/* h5file_commit, keeping the file that final_path named before as PREV_PATH: just before the
 * rename, PREV_PATH becomes a hard link to (where the file system has none: a fsynced copy of)
 * the old final_path, through a temporary name and a rename, so at every instant final_path
 * names a complete file and PREV_PATH a complete file or nothing. No old file: PREV_PATH is left
 * alone. The caller checks that the old file is intact first. Errors as for h5file_commit. */
EwcStatus h5file_commit_keep(H5Writer *w, const char *prev_path);

/* Make DST a fsynced copy of SRC (a copy, not a hard link: damage to one must not reach the
 * other), replacing DST atomically (temporary name "<DST>.tmp.link.<pid>", rename, directory
 * fsync). EWC_EIO naming both files on failure; DST is then untouched. */
EwcStatus h5file_install_copy(const char *src, const char *dst);

/* Close and delete the temp file; final_path is untouched. No-op on a finished or zeroed W. */
void h5file_abort(H5Writer *w);

/* Delete every regular file named "<basename>.tmp*" in final_path's directory (left by a killed
 * run). Call it before h5file_create_temp on that path: it would delete a live writer's temp too.
 * EWC_EIO if the directory cannot be listed or a file cannot be deleted. */
EwcStatus h5file_remove_stale_temps(const char *final_path);

/* Write a new dataset of RANK (0 = scalar, up to H5FILE_MAX_RANK) dimensions DIMS at PATH
 * (e.g. "/tasks/003/fisher/layer0/W"), creating missing groups. DATA is row-major and only read.
 * Stored little-endian, contiguous, uncompressed, with its "crc32" attribute. EWC_EINVAL for a bad argument or an existing
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

/* Open PATH read-only after verifying it (see "Integrity" above); it is read whole into memory
 * (briefly twice: HDF5 keeps a copy). EWC_EIO if it is missing, unreadable or not a regular
 * file; EWC_EFORMAT with R->damaged set if it is damaged or has no digest ("PATH: damaged
 * (...)"); EWC_EFORMAT if the verified bytes are not HDF5; EWC_ENOMEM. HDF5's own error
 * printing is switched off for the process. On failure R is closed and h5file_close(R) is a
 * no-op. */
EwcStatus h5file_open_read(H5Reader *r, const char *path);

/* The same for the SIZE-byte file image at IMAGE (not kept; not modified), called NAME in
 * messages: for in-memory files and the fuzz harnesses. */
EwcStatus h5file_open_image(H5Reader *r, const char *name, const void *image, size_t size);

/* Check IMAGE's digest header, length and digest only (HDF5 is not involved; a mismatch is
 * diagnosed from the manifest): EWC_OK, or EWC_EFORMAT "NAME: damaged (...)". */
EwcStatus h5file_verify_image(const char *name, const void *image, size_t size);

/* Whether a digest mismatch is diagnosed from the manifest (default true; one CRC-32 pass over
 * the listed data, no HDF5); off, the message says only that the digest does not match.
 * Not thread-safe with respect to running reads. */
void h5file_set_diagnosis(bool on);

/* Write the digest header into the first 512 bytes of IMAGE for its bytes 512..SIZE-1, as a
 * commit does: a test or fuzz harness that builds or mutates an image seals it so the reader
 * goes on to parse it. EWC_EINVAL if SIZE < 512. */
EwcStatus h5file_seal_image(void *image, size_t size);
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
 * EWC_EFORMAT too if the data cannot be read, or if the dataset lacks its "crc32" attribute or
 * its data does not match it (then OUT holds the unusable data). */
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
