/* HDF5 files for checkpoints, the reading side and the helpers shared with h5file_write.c and
 * h5file_image.c: reads check type, shape and CRC-32 before copying anything out. */
#include "ewc/h5file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5file_private.h"

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "H5Writer/H5Reader store hid_t as int64_t");
_Static_assert(sizeof(hsize_t) == sizeof(uint64_t), "dims are passed as uint64_t");

#define SHAPE_MAX 200

/* ---- helpers -------------------------------------------------------------------------------- */

/* HDF5 prints its whole error stack to stderr by default; errors are reported through
 * ewc_error_set instead (with the innermost HDF5 message as detail). */
void h5file_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

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
const char *h5file_detail(char *buf) {
    snprintf(buf, DETAIL_MAX, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, buf);
    return buf;
}

/* Whether every prefix of PATH exists as a link ("/" always does). H5Lexists fails rather than
 * answers no when a parent is missing, so the parents are checked first. */
bool h5file_path_exists(hid_t file, const char *path) {
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
hid_t h5file_kind_mem_type(Kind k) {
    switch (k) {
    case KIND_F32: return H5T_NATIVE_FLOAT;
    case KIND_F64: return H5T_NATIVE_DOUBLE;
    case KIND_I32: return H5T_NATIVE_INT32;
    default: return H5T_NATIVE_INT64;
    }
}

hid_t h5file_kind_file_type(Kind k) {
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
EwcStatus h5file_copy_path(char *dst, const char *src, const char *what) {
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
const char *h5file_split_dir(const char *path, char *dir) {
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

/* ---- reading -------------------------------------------------------------------------------- */

void h5file_close(H5Reader *r) {
    if (!r || !r->open) return;
    H5Fclose(r->file);
    r->file = H5I_INVALID_HID;
    r->open = false;
}

bool h5file_exists(const H5Reader *r, const char *path) {
    return r && r->open && path && h5file_path_exists(r->file, path);
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
    if (!h5file_path_exists(r->file, path)) {
        ewc_error_set("%s: no dataset %s", r->path, path);
        st = EWC_EFORMAT;
        goto fail;
    }
    *dset = H5Dopen2(r->file, path, H5P_DEFAULT);
    if (*dset < 0) {
        ewc_error_set("%s: %s is not a dataset (%s)", r->path, path, h5file_detail(detail));
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
        ewc_error_set("%s: cannot read the shape of %s (%s)", r->path, path, h5file_detail(detail));
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

/* The data just read from DSET (COUNT elements of SIZE bytes at DATA) against its CRC-32. */
static EwcStatus check_crc(const H5Reader *r, hid_t dset, const char *path, const void *data,
                           size_t count, size_t size) {
    int64_t stored = -1;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID;
    if (H5Aexists(dset, CRC_ATTR) > 0) attr = H5Aopen(dset, CRC_ATTR, H5P_DEFAULT);
    if (attr >= 0) type = H5Aget_type(attr);
    bool ok = type >= 0 && kind_matches(KIND_I64, type) &&
              H5Aread(attr, H5T_NATIVE_INT64, &stored) >= 0;
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    if (!ok) {
        ewc_error_set("%s: %s has no %s attribute (every dataset we write has one)", r->path, path,
                      CRC_ATTR);
        return EWC_EFORMAT;
    }
    uint32_t crc = h5file_crc_le(data, count, size);
    if (stored != (int64_t)crc) {
        ewc_error_set("%s: damaged: %s fails its CRC-32 check (stored %08llx, data %08x)", r->path,
                      path, (unsigned long long)stored, crc);
        return EWC_EFORMAT;
    }
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
        ewc_error_set("%s: cannot read the type of %s (%s)", r->path, path, h5file_detail(detail));
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
        H5Dread(dset, h5file_kind_mem_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        ewc_error_set("%s: cannot read %s (%s)", r->path, path, h5file_detail(detail));
        st = EWC_EFORMAT;
        goto fail;
    }
    st = check_crc(r, dset, path, out, (size_t)count, KINDS[kind].size);

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
    if (!h5file_path_exists(r->file, obj)) {
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
                      h5file_detail(detail));
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
    if (H5Aread(attr, h5file_kind_mem_type(kind), value) < 0) {
        ewc_error_set("%s: cannot read attribute '%s' of %s (%s)", r->path, name, obj,
                      h5file_detail(detail));
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
                  h5file_detail(detail));
    st = EWC_EFORMAT;
fail:
    if (vstr) H5free_memory(vstr);
    free(fixed);
    if (mem >= 0) H5Tclose(mem);
    H5Tclose(type);
    H5Aclose(attr);
    return st;
}
