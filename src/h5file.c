/* HDF5 files for checkpoints: a file is built in memory, then written to a temp file that is
 * fsynced and renamed into place; reads check types and shapes before copying anything out. */
#include "ewc/h5file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "H5Writer/H5Reader store hid_t as int64_t");
_Static_assert(sizeof(hsize_t) == sizeof(uint64_t), "dims are passed as uint64_t");

#define DETAIL_MAX 256
#define SHAPE_MAX 200

/* ---- helpers -------------------------------------------------------------------------------- */

/* HDF5 prints its whole error stack to stderr by default; errors are reported through
 * ewc_error_set instead (with the innermost HDF5 message as detail). */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Keep the innermost message on one line; a system error becomes "<what>: <strerror>". */
static herr_t take_innermost(unsigned n, const H5E_error2_t *e, void *client) {
    char *out = client;
    if (n != 0 || !e->desc) return 0;
    const char *key = "error message = '";
    const char *msg = strstr(e->desc, key);
    if (msg) {
        msg += strlen(key);
        const char *end = strchr(msg, '\'');
        snprintf(out, DETAIL_MAX, "%.*s: %.*s", (int)strcspn(e->desc, ",:"), e->desc,
                 end ? (int)(end - msg) : 100, msg);
    } else {
        snprintf(out, DETAIL_MAX, "%s", e->desc);
    }
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return 0;
}

/* The most specific message on HDF5's error stack for the call that just failed. */
static const char *h5_detail(char *buf) {
    snprintf(buf, DETAIL_MAX, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, buf);
    return buf;
}

/* Access properties for reading: H5Fclose really closes the file (and any object left open),
 * and file locking is used but ignored where the file system has it disabled. */
static hid_t make_read_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    herr_t rc = H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
    if (rc >= 0) rc = H5Pset_file_locking(fapl, true, true);
#endif
    if (rc < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

/* Whether every prefix of PATH exists as a link ("/" always does). H5Lexists fails rather than
 * answers no when a parent is missing, so the parents are checked first. */
static bool path_exists(hid_t file, const char *path) {
    char buf[H5FILE_PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if ((buf[i] != '/' && buf[i] != '\0') || buf[i - 1] == '/') continue;
        char c = buf[i];
        buf[i] = '\0';
        htri_t e = H5Lexists(file, buf, H5P_DEFAULT);
        buf[i] = c;
        if (e <= 0) return false;
    }
    return true;
}

/* "(400, 784)", "(5,)" or "()" for a scalar. */
static const char *format_shape(char *buf, int rank, const hsize_t *dims) {
    size_t used = (size_t)snprintf(buf, SHAPE_MAX, "(");
    for (int i = 0; i < rank && used < SHAPE_MAX; i++)
        used += (size_t)snprintf(buf + used, SHAPE_MAX - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)dims[i]);
    if (used < SHAPE_MAX) snprintf(buf + used, SHAPE_MAX - used, rank == 1 ? ",)" : ")");
    return buf;
}

static const char *format_type(char *buf, hid_t type) {
    size_t bits = H5Tget_size(type) * 8;
    switch (H5Tget_class(type)) {
    case H5T_INTEGER:
        snprintf(buf, 32, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_FLOAT: snprintf(buf, 32, "float%zu", bits); break;
    case H5T_STRING: snprintf(buf, 32, "string"); break;
    case H5T_COMPOUND: snprintf(buf, 32, "compound"); break;
    case H5T_ENUM: snprintf(buf, 32, "enum"); break;
    case H5T_ARRAY: snprintf(buf, 32, "array"); break;
    case H5T_VLEN: snprintf(buf, 32, "variable-length"); break;
    default: snprintf(buf, 32, "non-numeric"); break;
    }
    return buf;
}

/* The element types this module reads and writes. Kind names index the table below. */
typedef enum { KIND_F32, KIND_F64, KIND_I32, KIND_I64 } Kind;

static const struct {
    const char *name;
    H5T_class_t cls;
    size_t size;
} KINDS[] = {
    [KIND_F32] = {"float32", H5T_FLOAT, 4},
    [KIND_F64] = {"float64", H5T_FLOAT, 8},
    [KIND_I32] = {"int32", H5T_INTEGER, 4},
    [KIND_I64] = {"int64", H5T_INTEGER, 8},
};

/* The native (memory) and little-endian (file) HDF5 types; these are runtime ids. */
static hid_t kind_mem_type(Kind k) {
    switch (k) {
    case KIND_F32: return H5T_NATIVE_FLOAT;
    case KIND_F64: return H5T_NATIVE_DOUBLE;
    case KIND_I32: return H5T_NATIVE_INT32;
    default: return H5T_NATIVE_INT64;
    }
}

static hid_t kind_file_type(Kind k) {
    switch (k) {
    case KIND_F32: return H5T_IEEE_F32LE;
    case KIND_F64: return H5T_IEEE_F64LE;
    case KIND_I32: return H5T_STD_I32LE;
    default: return H5T_STD_I64LE;
    }
}

static bool kind_matches(Kind k, hid_t type) {
    if (H5Tget_class(type) != KINDS[k].cls || H5Tget_size(type) != KINDS[k].size) return false;
    return KINDS[k].cls != H5T_INTEGER || H5Tget_sign(type) == H5T_SGN_2;
}

/* Copy SRC into DST[H5FILE_PATH_MAX]; EWC_EINVAL naming WHAT if it is empty or too long. */
static EwcStatus copy_path(char *dst, const char *src, const char *what) {
    if (!src || !*src) {
        ewc_error_set("%s: empty path", what);
        return EWC_EINVAL;
    }
    if (strlen(src) >= H5FILE_PATH_MAX) {
        ewc_error_set("%s: path longer than %d bytes: %.60s...", what, H5FILE_PATH_MAX - 1, src);
        return EWC_EINVAL;
    }
    strcpy(dst, src);
    return EWC_OK;
}

/* Directory part of PATH into DIR[H5FILE_PATH_MAX] ("." when there is none); returns the
 * basename (inside PATH). */
static const char *split_dir(const char *path, char *dir) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
        return path;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    return slash + 1;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* The file is built in memory (HDF5's core driver) and written out by h5file_commit with plain
 * write(2). HDF5 1.10 cannot survive a failed H5Fclose on a disk file (a full disk at flush
 * time): the id stays registered after its memory is freed and the library crashes later, at
 * the latest in its exit handler. In memory, close cannot fail that way, and our own write
 * reports a full disk like any other I/O error. */
#define CORE_INCREMENT (4u << 20)

static atomic_uint temp_counter;

EwcStatus h5file_create_temp(H5Writer *w, const char *final_path) {
    EwcStatus st = EWC_OK;
    hid_t fapl = H5I_INVALID_HID;
    char detail[DETAIL_MAX];
    struct stat sb;

    w->file = H5I_INVALID_HID;
    w->fd = -1;
    w->active = false;
    w->failed = false;
    w->temp_path[0] = '\0';
    st = copy_path(w->final_path, final_path, "h5file_create_temp");
    if (st) goto fail;
    char dir[H5FILE_PATH_MAX];
    if (!*split_dir(final_path, dir)) {
        ewc_error_set("%s: not a file name", final_path);
        st = EWC_EINVAL;
        goto fail;
    }
    if (stat(final_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        ewc_error_set("%s: is a directory", final_path);
        st = EWC_EIO;
        goto fail;
    }
    h5_quiet();

    /* O_EXCL so two writers never share a temp; a stale one with our pid is skipped. The empty
     * file reserves the name and shows that a write was under way. */
    for (int attempt = 0; w->fd < 0; attempt++) {
        snprintf(w->temp_path, sizeof w->temp_path, "%s.tmp.%ld.%u", final_path, (long)getpid(),
                 atomic_fetch_add(&temp_counter, 1));
        w->fd = open(w->temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (w->fd < 0 && (errno != EEXIST || attempt == 100)) {
            ewc_error_set("%s: cannot create temporary file %s: %s", final_path, w->temp_path,
                          strerror(errno));
            st = EWC_EIO;
            goto fail;
        }
    }

    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, CORE_INCREMENT, false) >= 0 &&
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0)
        w->file = H5Fcreate(w->temp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (w->file < 0) {
        ewc_error_set("%s: cannot create an HDF5 file in memory (%s)", final_path,
                      h5_detail(detail));
        st = EWC_EIO;
        goto fail;
    }
    w->active = true;

fail:
    if (fapl >= 0) H5Pclose(fapl);
    if (st && w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
        unlink(w->temp_path);
    }
    return st;
}

void h5file_abort(H5Writer *w) {
    if (!w || !w->active) return;
    if (w->file >= 0) H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    unlink(w->temp_path);
    w->active = false;
}

/* fsync the directory holding PATH so a completed rename survives a crash. File systems that
 * cannot sync directories (EINVAL) are accepted. */
static EwcStatus sync_dir(const char *path) {
    char dir[H5FILE_PATH_MAX];
    split_dir(path, dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) {
        ewc_error_set("%s: written, but cannot sync directory %s: %s", path, dir,
                      strerror(errno));
        if (fd >= 0) close(fd);
        return EWC_EIO;
    }
    close(fd);
    return EWC_OK;
}

/* write(2) all N bytes of BUF, continuing after short writes and signals. */
static int write_all(int fd, const unsigned char *buf, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return -1;
        }
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

EwcStatus h5file_commit(H5Writer *w) {
    EwcStatus st = EWC_OK;
    unsigned char *image = NULL;
    char detail[DETAIL_MAX];

    if (!w || !w->active) {
        ewc_error_set("h5file_commit: no file is being written");
        return EWC_EINVAL;
    }
    if (w->failed) {
        ewc_error_set("%s: not written because an earlier write to it failed", w->final_path);
        st = EWC_EIO;
        goto fail;
    }
    ssize_t size = -1;
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) >= 0) size = H5Fget_file_image(w->file, NULL, 0);
    if (size > 0 && !(image = malloc((size_t)size))) {
        ewc_error_set("%s: out of memory for a %zd-byte file image", w->final_path, size);
        st = EWC_ENOMEM;
        goto fail;
    }
    if (size <= 0 || H5Fget_file_image(w->file, image, (size_t)size) != size) {
        ewc_error_set("%s: cannot serialise the HDF5 file (%s)", w->final_path,
                      h5_detail(detail));
        st = EWC_EIO;
        goto fail;
    }
    herr_t rc = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (rc < 0) {
        ewc_error_set("%s: cannot close the HDF5 file (%s)", w->final_path, h5_detail(detail));
        st = EWC_EIO;
        goto fail;
    }
    if (write_all(w->fd, image, (size_t)size) != 0 || fsync(w->fd) != 0) {
        ewc_error_set("%s: cannot write temporary file %s: %s", w->final_path, w->temp_path,
                      strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) {
        ewc_error_set("%s: cannot close temporary file %s: %s", w->final_path, w->temp_path,
                      strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    if (rename(w->temp_path, w->final_path) != 0) {
        ewc_error_set("%s: cannot rename %s to it: %s", w->final_path, w->temp_path,
                      strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    w->active = false; /* the temp file is gone: nothing left for abort to undo */
    st = sync_dir(w->final_path);

fail:
    free(image);
    h5file_abort(w);
    return st;
}

EwcStatus h5file_remove_stale_temps(const char *final_path) {
    EwcStatus st = EWC_OK;
    DIR *d = NULL;
    char dir[H5FILE_PATH_MAX], prefix[H5FILE_PATH_MAX + 8];

    st = copy_path(dir, final_path, "h5file_remove_stale_temps");
    if (st) goto fail;
    const char *base = split_dir(final_path, dir);
    if (!*base) {
        ewc_error_set("%s: not a file name", final_path);
        st = EWC_EINVAL;
        goto fail;
    }
    size_t prefix_len = (size_t)snprintf(prefix, sizeof prefix, "%s.tmp", base);
    d = opendir(dir);
    if (!d) {
        ewc_error_set("%s: cannot list directory %s: %s", final_path, dir, strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    for (struct dirent *e; (errno = 0, e = readdir(d));) {
        struct stat sb;
        if (strncmp(e->d_name, prefix, prefix_len) != 0) continue;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISREG(sb.st_mode)) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT) {
            ewc_error_set("%s: cannot remove stale temporary file %s/%s: %s", final_path, dir,
                          e->d_name, strerror(errno));
            st = EWC_EIO;
            goto fail;
        }
    }
    if (errno) {
        ewc_error_set("%s: cannot list directory %s: %s", final_path, dir, strerror(errno));
        st = EWC_EIO;
    }

fail:
    if (d) closedir(d);
    return st;
}

/* Common checks for every write; marks W failed on error. */
static EwcStatus check_writer(H5Writer *w, const char *path, const char *what) {
    if (!w || !w->active) {
        ewc_error_set("h5file: %s %s written without an open writer", what, path ? path : "");
        return EWC_EINVAL;
    }
    if (!path || !*path) {
        ewc_error_set("%s: %s with an empty path", w->final_path, what);
        w->failed = true;
        return EWC_EINVAL;
    }
    return EWC_OK;
}

static EwcStatus write_dataset(H5Writer *w, const char *path, Kind kind, const void *data,
                               int rank, const uint64_t *dims) {
    EwcStatus st = EWC_OK;
    hid_t space = H5I_INVALID_HID, lcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hsize_t hdims[H5FILE_MAX_RANK];
    hsize_t count = 1;
    char detail[DETAIL_MAX];

    st = check_writer(w, path, "dataset");
    if (st) return st;
    if (rank < 0 || rank > H5FILE_MAX_RANK || (rank > 0 && !dims)) {
        ewc_error_set("%s: dataset %s has invalid rank %d", w->final_path, path, rank);
        st = EWC_EINVAL;
        goto fail;
    }
    for (int i = 0; i < rank; i++) count *= (hdims[i] = dims[i]);
    if (!data && count > 0) {
        ewc_error_set("%s: dataset %s written from a NULL buffer", w->final_path, path);
        st = EWC_EINVAL;
        goto fail;
    }
    if (path_exists(w->file, path)) {
        ewc_error_set("%s: dataset %s written twice", w->final_path, path);
        st = EWC_EINVAL;
        goto fail;
    }
    space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, hdims, NULL);
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (space < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) goto h5_fail;
    dset = H5Dcreate2(w->file, path, kind_file_type(kind), space, lcpl, H5P_DEFAULT,
                      H5P_DEFAULT);
    if (dset < 0) goto h5_fail;
    if (count > 0 &&
        H5Dwrite(dset, kind_mem_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        goto h5_fail;
    herr_t rc = H5Dclose(dset);
    dset = H5I_INVALID_HID;
    if (rc < 0) goto h5_fail;
    goto fail;

h5_fail:
    ewc_error_set("%s: cannot write dataset %s (%s)", w->final_path, path, h5_detail(detail));
    st = EWC_EIO;
fail:
    if (dset >= 0) H5Dclose(dset);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (space >= 0) H5Sclose(space);
    if (st) w->failed = true;
    return st;
}

EwcStatus h5file_write_f32(H5Writer *w, const char *path, const float *data, int rank,
                           const uint64_t *dims) {
    return write_dataset(w, path, KIND_F32, data, rank, dims);
}

EwcStatus h5file_write_f64(H5Writer *w, const char *path, const double *data, int rank,
                           const uint64_t *dims) {
    return write_dataset(w, path, KIND_F64, data, rank, dims);
}

EwcStatus h5file_write_i32(H5Writer *w, const char *path, const int32_t *data, int rank,
                           const uint64_t *dims) {
    return write_dataset(w, path, KIND_I32, data, rank, dims);
}

EwcStatus h5file_write_i64(H5Writer *w, const char *path, const int64_t *data, int rank,
                           const uint64_t *dims) {
    return write_dataset(w, path, KIND_I64, data, rank, dims);
}

/* Write scalar attribute NAME of OBJ with file type FTYPE from VALUE (memory type MTYPE). */
static EwcStatus write_attr(H5Writer *w, const char *obj, const char *name, hid_t ftype,
                            hid_t mtype, const void *value) {
    EwcStatus st = EWC_OK;
    hid_t lcpl = H5I_INVALID_HID, group = H5I_INVALID_HID, object = H5I_INVALID_HID;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    char detail[DETAIL_MAX];

    st = check_writer(w, obj, "attribute");
    if (st) return st;
    if (!name || !*name) {
        ewc_error_set("%s: attribute of %s with an empty name", w->final_path, obj);
        st = EWC_EINVAL;
        goto fail;
    }
    if (!path_exists(w->file, obj)) {
        lcpl = H5Pcreate(H5P_LINK_CREATE);
        if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) goto h5_fail;
        group = H5Gcreate2(w->file, obj, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (group < 0) goto h5_fail;
    }
    object = H5Oopen(w->file, obj, H5P_DEFAULT);
    if (object < 0) goto h5_fail;
    htri_t exists = H5Aexists(object, name);
    if (exists < 0 || (exists > 0 && H5Adelete(object, name) < 0)) goto h5_fail;
    space = H5Screate(H5S_SCALAR);
    if (space < 0) goto h5_fail;
    attr = H5Acreate2(object, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, mtype, value) < 0) goto h5_fail;
    goto fail;

h5_fail:
    ewc_error_set("%s: cannot write attribute '%s' of %s (%s)", w->final_path, name, obj,
                  h5_detail(detail));
    st = EWC_EIO;
fail:
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    if (object >= 0) H5Oclose(object);
    if (group >= 0) H5Gclose(group);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (st) w->failed = true;
    return st;
}

EwcStatus h5file_set_attr_str(H5Writer *w, const char *object_path, const char *name,
                              const char *value) {
    EwcStatus st = EWC_OK;
    hid_t type = H5I_INVALID_HID;
    char detail[DETAIL_MAX];

    st = check_writer(w, object_path, "attribute");
    if (st) return st;
    if (!value) {
        ewc_error_set("%s: attribute '%s' of %s set to NULL", w->final_path, name ? name : "",
                      object_path);
        w->failed = true;
        return EWC_EINVAL;
    }
    type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
        H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
        ewc_error_set("%s: cannot make a string type for attribute '%s' (%s)", w->final_path,
                      name ? name : "", h5_detail(detail));
        w->failed = true;
        st = EWC_EIO;
        goto fail;
    }
    st = write_attr(w, object_path, name, type, type, &value);
fail:
    if (type >= 0) H5Tclose(type);
    return st;
}

EwcStatus h5file_set_attr_i64(H5Writer *w, const char *object_path, const char *name,
                              int64_t value) {
    return write_attr(w, object_path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

EwcStatus h5file_set_attr_f64(H5Writer *w, const char *object_path, const char *name,
                              double value) {
    return write_attr(w, object_path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

/* ---- reading -------------------------------------------------------------------------------- */

EwcStatus h5file_open_read(H5Reader *r, const char *path) {
    EwcStatus st = EWC_OK;
    hid_t fapl = H5I_INVALID_HID;
    int fd = -1;
    struct stat sb;
    char detail[DETAIL_MAX];

    r->file = H5I_INVALID_HID;
    r->open = false;
    st = copy_path(r->path, path, "h5file_open_read");
    if (st) goto fail;
    h5_quiet();
    /* Missing or unreadable is an I/O problem, told apart here from bad content (HDF5 itself
     * reports both as "unable to open file"). */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        ewc_error_set("%s: %s", path, strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        ewc_error_set("%s: not a regular file", path);
        st = EWC_EIO;
        goto fail;
    }
    fapl = make_read_fapl();
    if (fapl >= 0) r->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (r->file < 0) {
        ewc_error_set("%s: not a readable HDF5 file (%s)", path, h5_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }
    r->open = true;

fail:
    if (fd >= 0) close(fd);
    if (fapl >= 0) H5Pclose(fapl);
    return st;
}

void h5file_close(H5Reader *r) {
    if (!r || !r->open) return;
    H5Fclose(r->file);
    r->file = H5I_INVALID_HID;
    r->open = false;
}

bool h5file_exists(const H5Reader *r, const char *path) {
    return r && r->open && path && path_exists(r->file, path);
}

bool h5file_attr_exists(const H5Reader *r, const char *object_path, const char *name) {
    return h5file_exists(r, object_path) && name && *name &&
           H5Aexists_by_name(r->file, object_path, name, H5P_DEFAULT) > 0;
}

static EwcStatus check_reader(const H5Reader *r, const char *path) {
    if (!r || !r->open || !path || !*path) {
        ewc_error_set("h5file: read of '%s' without an open file or with an empty path",
                      path ? path : "");
        return EWC_EINVAL;
    }
    return EWC_OK;
}

/* Open dataset PATH and get its shape. On success the caller closes *DSET. */
static EwcStatus open_dataset(const H5Reader *r, const char *path, hid_t *dset, int *rank,
                              hsize_t dims[H5FILE_MAX_RANK]) {
    EwcStatus st = EWC_OK;
    hid_t space = H5I_INVALID_HID;
    char detail[DETAIL_MAX];

    *dset = H5I_INVALID_HID;
    st = check_reader(r, path);
    if (st) return st;
    if (!path_exists(r->file, path)) {
        ewc_error_set("%s: no dataset %s", r->path, path);
        st = EWC_EFORMAT;
        goto fail;
    }
    *dset = H5Dopen2(r->file, path, H5P_DEFAULT);
    if (*dset < 0) {
        ewc_error_set("%s: %s is not a dataset (%s)", r->path, path, h5_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }
    space = H5Dget_space(*dset);
    H5S_class_t cls = space < 0 ? H5S_NO_CLASS : H5Sget_simple_extent_type(space);
    int n = cls == H5S_SIMPLE || cls == H5S_SCALAR ? H5Sget_simple_extent_ndims(space) : -1;
    if (n < 0) {
        ewc_error_set("%s: dataset %s has no data", r->path, path);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (n > H5FILE_MAX_RANK) {
        ewc_error_set("%s: dataset %s has %d dimensions, at most %d are supported", r->path,
                      path, n, H5FILE_MAX_RANK);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        ewc_error_set("%s: cannot read the shape of %s (%s)", r->path, path, h5_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }
    *rank = n;

fail:
    if (space >= 0) H5Sclose(space);
    if (st && *dset >= 0) {
        H5Dclose(*dset);
        *dset = H5I_INVALID_HID;
    }
    return st;
}

EwcStatus h5file_dims(const H5Reader *r, const char *path, int *rank,
                      uint64_t dims[H5FILE_MAX_RANK]) {
    hid_t dset;
    hsize_t hdims[H5FILE_MAX_RANK];
    int n = 0;
    EwcStatus st = open_dataset(r, path, &dset, &n, hdims);
    if (st) return st;
    H5Dclose(dset);
    *rank = n;
    for (int i = 0; i < n; i++) dims[i] = hdims[i];
    return EWC_OK;
}

static EwcStatus read_dataset(const H5Reader *r, const char *path, Kind kind, void *out,
                              int rank, const uint64_t *expect) {
    EwcStatus st = EWC_OK;
    hid_t dset = H5I_INVALID_HID, type = H5I_INVALID_HID;
    hsize_t dims[H5FILE_MAX_RANK], want[H5FILE_MAX_RANK];
    hsize_t count = 1;
    int n = 0;
    char detail[DETAIL_MAX], got_s[SHAPE_MAX], want_s[SHAPE_MAX], type_s[32];

    st = check_reader(r, path);
    if (st) return st;
    if (rank < 0 || rank > H5FILE_MAX_RANK || (rank > 0 && !expect)) {
        ewc_error_set("%s: %s read with invalid rank %d", r->path, path, rank);
        return EWC_EINVAL;
    }
    for (int i = 0; i < rank; i++) count *= (want[i] = expect[i]);
    if (!out && count > 0) {
        ewc_error_set("%s: %s read into a NULL buffer", r->path, path);
        return EWC_EINVAL;
    }
    st = open_dataset(r, path, &dset, &n, dims);
    if (st) goto fail;
    type = H5Dget_type(dset);
    if (type < 0) {
        ewc_error_set("%s: cannot read the type of %s (%s)", r->path, path, h5_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }
    if (!kind_matches(kind, type)) {
        ewc_error_set("%s: %s has type %s, expected %s", r->path, path,
                      format_type(type_s, type), KINDS[kind].name);
        st = EWC_EFORMAT;
        goto fail;
    }
    bool same = n == rank;
    for (int i = 0; same && i < n; i++) same = dims[i] == want[i];
    if (!same) {
        ewc_error_set("%s: %s has shape %s, expected %s", r->path, path,
                      format_shape(got_s, n, dims), format_shape(want_s, rank, want));
        st = EWC_EFORMAT;
        goto fail;
    }
    if (count > 0 &&
        H5Dread(dset, kind_mem_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        ewc_error_set("%s: cannot read %s (%s)", r->path, path, h5_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }

fail:
    if (type >= 0) H5Tclose(type);
    if (dset >= 0) H5Dclose(dset);
    return st;
}

EwcStatus h5file_read_f32(const H5Reader *r, const char *path, float *out, int rank,
                          const uint64_t *expect_dims) {
    return read_dataset(r, path, KIND_F32, out, rank, expect_dims);
}

EwcStatus h5file_read_f64(const H5Reader *r, const char *path, double *out, int rank,
                          const uint64_t *expect_dims) {
    return read_dataset(r, path, KIND_F64, out, rank, expect_dims);
}

EwcStatus h5file_read_i32(const H5Reader *r, const char *path, int32_t *out, int rank,
                          const uint64_t *expect_dims) {
    return read_dataset(r, path, KIND_I32, out, rank, expect_dims);
}

EwcStatus h5file_read_i64(const H5Reader *r, const char *path, int64_t *out, int rank,
                          const uint64_t *expect_dims) {
    return read_dataset(r, path, KIND_I64, out, rank, expect_dims);
}

/* Open single-valued attribute NAME of OBJ and its type. On success the caller closes both. */
static EwcStatus open_attr(const H5Reader *r, const char *obj, const char *name, hid_t *attr,
                           hid_t *type) {
    EwcStatus st = EWC_OK;
    hid_t space = H5I_INVALID_HID;
    char detail[DETAIL_MAX];

    *attr = *type = H5I_INVALID_HID;
    st = check_reader(r, obj);
    if (st) return st;
    if (!name || !*name) {
        ewc_error_set("%s: attribute of %s read with an empty name", r->path, obj);
        return EWC_EINVAL;
    }
    if (!path_exists(r->file, obj)) {
        ewc_error_set("%s: no object %s (for attribute '%s')", r->path, obj, name);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (H5Aexists_by_name(r->file, obj, name, H5P_DEFAULT) <= 0) {
        ewc_error_set("%s: %s has no attribute '%s'", r->path, obj, name);
        st = EWC_EFORMAT;
        goto fail;
    }
    *attr = H5Aopen_by_name(r->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (*attr >= 0) *type = H5Aget_type(*attr);
    if (*attr >= 0) space = H5Aget_space(*attr);
    if (*attr < 0 || *type < 0 || space < 0) {
        ewc_error_set("%s: cannot open attribute '%s' of %s (%s)", r->path, name, obj,
                      h5_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }
    if (H5Sget_simple_extent_type(space) == H5S_NULL ||
        H5Sget_simple_extent_npoints(space) != 1) {
        ewc_error_set("%s: attribute '%s' of %s is not a single value", r->path, name, obj);
        st = EWC_EFORMAT;
        goto fail;
    }

fail:
    if (space >= 0) H5Sclose(space);
    if (st && *type >= 0) H5Tclose(*type);
    if (st && *attr >= 0) H5Aclose(*attr);
    if (st) *attr = *type = H5I_INVALID_HID;
    return st;
}

static EwcStatus read_attr_number(const H5Reader *r, const char *obj, const char *name,
                                  Kind kind, void *value) {
    hid_t attr, type;
    char detail[DETAIL_MAX], type_s[32];
    EwcStatus st = open_attr(r, obj, name, &attr, &type);
    if (st) return st;
    if (!kind_matches(kind, type)) {
        ewc_error_set("%s: attribute '%s' of %s has type %s, expected %s", r->path, name, obj,
                      format_type(type_s, type), KINDS[kind].name);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (H5Aread(attr, kind_mem_type(kind), value) < 0) {
        ewc_error_set("%s: cannot read attribute '%s' of %s (%s)", r->path, name, obj,
                      h5_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }

fail:
    H5Tclose(type);
    H5Aclose(attr);
    return st;
}

EwcStatus h5file_get_attr_i64(const H5Reader *r, const char *object_path, const char *name,
                              int64_t *value) {
    return read_attr_number(r, object_path, name, KIND_I64, value);
}

EwcStatus h5file_get_attr_f64(const H5Reader *r, const char *object_path, const char *name,
                              double *value) {
    return read_attr_number(r, object_path, name, KIND_F64, value);
}

EwcStatus h5file_get_attr_str(const H5Reader *r, const char *object_path, const char *name,
                              char *buf, size_t size) {
    hid_t attr, type, mem = H5I_INVALID_HID;
    char *vstr = NULL, *fixed = NULL;
    char detail[DETAIL_MAX], type_s[32];
    EwcStatus st = open_attr(r, object_path, name, &attr, &type);
    if (st) return st;
    if (H5Tget_class(type) != H5T_STRING) {
        ewc_error_set("%s: attribute '%s' of %s has type %s, expected string", r->path, name,
                      object_path, format_type(type_s, type));
        st = EWC_EFORMAT;
        goto fail;
    }
    /* Read with the file's character set (HDF5 does not convert between ASCII and UTF-8). */
    htri_t variable = H5Tis_variable_str(type);
    size_t fixed_size = H5Tget_size(type);
    mem = H5Tcopy(H5T_C_S1);
    if (variable < 0 || mem < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0) goto h5_fail;
    const char *s;
    if (variable) {
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Aread(attr, mem, &vstr) < 0) goto h5_fail;
        s = vstr ? vstr : "";
    } else {
        /* NULLPAD in memory keeps all FIXED_SIZE characters of an unterminated string. */
        fixed = calloc(1, fixed_size + 1);
        if (!fixed) {
            ewc_error_set("%s: out of memory reading attribute '%s' of %s", r->path, name,
                          object_path);
            st = EWC_ENOMEM;
            goto fail;
        }
        if (H5Tset_size(mem, fixed_size) < 0 || H5Tset_strpad(mem, H5T_STR_NULLPAD) < 0 ||
            H5Aread(attr, mem, fixed) < 0)
            goto h5_fail;
        s = fixed;
    }
    size_t len = strlen(s);
    if (!buf || len >= size) {
        ewc_error_set("%s: attribute '%s' of %s is longer than %zu bytes", r->path, name,
                      object_path, size ? size - 1 : 0);
        st = EWC_EFORMAT;
        goto fail;
    }
    memcpy(buf, s, len + 1);
    goto fail;

h5_fail:
    ewc_error_set("%s: cannot read attribute '%s' of %s (%s)", r->path, name, object_path,
                  h5_detail(detail));
    st = EWC_EFORMAT;
fail:
    if (vstr) H5free_memory(vstr);
    free(fixed);
    if (mem >= 0) H5Tclose(mem);
    H5Tclose(type);
    H5Aclose(attr);
    return st;
}
