/* HDF5 files for checkpoints, the writing side: a file is built in memory, sealed with its
 * SHA-256 digest, written to a temp file that is fsynced and renamed into place. */
#include "ewc/h5file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5file_private.h"

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
    hid_t fapl = H5I_INVALID_HID, fcpl = H5I_INVALID_HID;
    char detail[DETAIL_MAX];
    struct stat sb;

    w->file = H5I_INVALID_HID;
    w->fd = -1;
    w->active = false;
    w->failed = false;
    w->temp_path[0] = '\0';
    st = h5file_copy_path(w->final_path, final_path, "h5file_create_temp");
    if (st) goto fail;
    char dir[H5FILE_PATH_MAX];
    if (!*h5file_split_dir(final_path, dir)) {
        ewc_error_set("%s: not a file name", final_path);
        st = EWC_EINVAL;
        goto fail;
    }
    if (stat(final_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        ewc_error_set("%s: is a directory", final_path);
        st = EWC_EIO;
        goto fail;
    }
    h5file_quiet();

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
    fcpl = H5Pcreate(H5P_FILE_CREATE); /* with the user block that will hold the digest */
    if (fapl >= 0 && fcpl >= 0 && H5Pset_userblock(fcpl, H5FILE_USERBLOCK) >= 0 &&
        H5Pset_fapl_core(fapl, CORE_INCREMENT, false) >= 0 &&
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0)
        w->file = H5Fcreate(w->temp_path, H5F_ACC_TRUNC, fcpl, fapl);
    if (w->file < 0) {
        ewc_error_set("%s: cannot create an HDF5 file in memory (%s)", final_path,
                      h5file_detail(detail));
        st = EWC_EIO;
        goto fail;
    }
    w->active = true;

fail:
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
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
    h5file_split_dir(path, dir);
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

/* Copy the file SRC to the new file DST (created exclusively) and fsync it; -1 with errno. */
static int copy_file(const char *src, const char *dst) {
    unsigned char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    if (in < 0) return -1;
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    for (ssize_t k; out >= 0;) {
        k = read(in, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 || (k > 0 && write_all(out, buf, (size_t)k) != 0)) break;
        if (k == 0) {
            rc = fsync(out);
            break;
        }
    }
    int saved = errno;
    close(in);
    if (out >= 0 && close(out) != 0 && rc == 0) rc = -1, saved = errno;
    if (rc != 0 && out >= 0) unlink(dst);
    errno = saved;
    return rc;
}

/* DST becomes SRC's file through TEMP: a hard link (COPY = 0; a copy where links are not
 * supported) or a copy. 1 if SRC does not exist, 0 on success, -1 with errno. */
static int link_over(const char *src, const char *temp, const char *dst, int copy) {
    unlink(temp); /* a stale one of ours */
    if (copy) {
        if (copy_file(src, temp) != 0) return errno == ENOENT ? 1 : -1;
    } else if (link(src, temp) != 0) {
        if (errno == ENOENT) return access(src, F_OK) == 0 ? -1 : 1;
        if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS && errno != EXDEV &&
            errno != EMLINK)
            return -1;
        if (copy_file(src, temp) != 0) return errno == ENOENT ? 1 : -1;
    }
    if (rename(temp, dst) != 0) {
        int saved = errno;
        unlink(temp);
        errno = saved;
        return -1;
    }
    unlink(temp); /* still there if DST already was the same file: rename then does nothing */
    return 0;
}

/* The file at FINAL (if any) also becomes PREV; FINAL is untouched. */
static EwcStatus keep_previous(const char *final, const char *prev) {
    char temp[H5FILE_PATH_MAX + 48];
    snprintf(temp, sizeof temp, "%s.tmp.prev.%ld", final, (long)getpid());
    if (link_over(final, temp, prev, 0) < 0) {
        ewc_error_set("%s: cannot keep the previous file as %s: %s", final, prev, strerror(errno));
        return EWC_EIO;
    }
    return EWC_OK;
}

EwcStatus h5file_install_copy(const char *src, const char *dst) {
    char temp[H5FILE_PATH_MAX + 48];
    if (!src || !dst || strlen(dst) >= H5FILE_PATH_MAX) {
        ewc_error_set("h5file_install_copy: missing or too long path");
        return EWC_EINVAL;
    }
    snprintf(temp, sizeof temp, "%s.tmp.link.%ld", dst, (long)getpid());
    int rc = link_over(src, temp, dst, 1);
    if (rc != 0) {
        ewc_error_set("%s: cannot make it a copy of %s: %s", dst, src,
                      rc > 0 ? "no such file" : strerror(errno));
        return EWC_EIO;
    }
    return sync_dir(dst);
}

EwcStatus h5file_commit(H5Writer *w) { return h5file_commit_keep(w, NULL); }

EwcStatus h5file_commit_keep(H5Writer *w, const char *prev_path) {
    EwcStatus st = EWC_OK;
    unsigned char *image = NULL;
    char detail[DETAIL_MAX], *manifest = NULL;
    size_t mlen = 0;

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
    /* the manifest of the datasets goes after the HDF5 bytes (h5file_private.h) */
    if (size > 0 && (st = h5file_manifest_build(w->file, w->final_path, &manifest, &mlen)))
        goto fail;
    /* HDF5's image starts at the superblock: the user block (the digest header) goes first */
    size_t total = size > 0 ? H5FILE_USERBLOCK + (size_t)size + mlen : 0;
    if (size > 0 && !(image = calloc(1, total))) {
        ewc_error_set("%s: out of memory for a %zu-byte file image", w->final_path, total);
        st = EWC_ENOMEM;
        goto fail;
    }
    if (size <= 0 ||
        H5Fget_file_image(w->file, image + H5FILE_USERBLOCK, (size_t)size) != size) {
        ewc_error_set("%s: cannot serialise the HDF5 file (%s)", w->final_path,
                      h5file_detail(detail));
        st = EWC_EIO;
        goto fail;
    }
    memcpy(image + H5FILE_USERBLOCK + size, manifest, mlen);
    /* the manifest must describe these very bytes: what a diagnosis will read, checked now */
    char found[256];
    ManifestVerdict v = h5file_manifest_check(image, total, found, sizeof found);
    if (v != MANIFEST_INTACT) {
        ewc_error_set("%s: its dataset manifest does not match the file it describes (%s%s)",
                      w->final_path, v == MANIFEST_DATASET ? "dataset " : "unreadable",
                      v == MANIFEST_DATASET ? found : "");
        st = EWC_EIO;
        goto fail;
    }
    herr_t rc = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (rc < 0) {
        ewc_error_set("%s: cannot close the HDF5 file (%s)", w->final_path, h5file_detail(detail));
        st = EWC_EIO;
        goto fail;
    }
    h5file_seal_image(image, total);
    if (write_all(w->fd, image, total) != 0 || fsync(w->fd) != 0) {
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
    if (prev_path && (st = keep_previous(w->final_path, prev_path))) goto fail;
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
    free(manifest);
    h5file_abort(w);
    return st;
}

EwcStatus h5file_remove_stale_temps(const char *final_path) {
    EwcStatus st = EWC_OK;
    DIR *d = NULL;
    char dir[H5FILE_PATH_MAX], prefix[H5FILE_PATH_MAX + 8];

    st = h5file_copy_path(dir, final_path, "h5file_remove_stale_temps");
    if (st) goto fail;
    const char *base = h5file_split_dir(final_path, dir);
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
    hid_t attr = H5I_INVALID_HID;
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
    if (h5file_path_exists(w->file, path)) {
        ewc_error_set("%s: dataset %s written twice", w->final_path, path);
        st = EWC_EINVAL;
        goto fail;
    }
    space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, hdims, NULL);
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (space < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) goto h5_fail;
    dset = H5Dcreate2(w->file, path, h5file_kind_file_type(kind), space, lcpl, H5P_DEFAULT,
                      H5P_DEFAULT);
    if (dset < 0) goto h5_fail;
    if (count > 0 &&
        H5Dwrite(dset, h5file_kind_mem_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        goto h5_fail;
    int64_t crc = h5file_crc_le(data, (size_t)count, H5Tget_size(h5file_kind_mem_type(kind)));
    if (H5Sclose(space) < 0 || (space = H5Screate(H5S_SCALAR)) < 0) goto h5_fail;
    attr = H5Acreate2(dset, CRC_ATTR, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, H5T_NATIVE_INT64, &crc) < 0) goto h5_fail;
    herr_t rc = H5Aclose(attr);
    attr = H5I_INVALID_HID;
    if (rc < 0) goto h5_fail;
    rc = H5Dclose(dset);
    dset = H5I_INVALID_HID;
    if (rc < 0) goto h5_fail;
    goto fail;

h5_fail:
    ewc_error_set("%s: cannot write dataset %s (%s)", w->final_path, path, h5file_detail(detail));
    st = EWC_EIO;
fail:
    if (attr >= 0) H5Aclose(attr);
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
    if (!h5file_path_exists(w->file, obj)) {
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
                  h5file_detail(detail));
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
                      name ? name : "", h5file_detail(detail));
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

