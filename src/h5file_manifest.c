/* The dataset manifest of our HDF5 files: a text trailer after the HDF5 bytes that lists where
 * each dataset's data lies and its CRC-32, written at commit and read without HDF5 (pure C over
 * the bytes) to name the damaged dataset after a digest mismatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "h5file_private.h"

#define MAGIC "EWC-MANIFEST v1\n"
#define FOOTER_TAG "EWC-MANIFEST-END "
#define FOOTER_LEN (sizeof FOOTER_TAG - 1 + 20 + 1 + 8 + 1) /* tag, length, ' ', crc, '\n' */
#define PATH_MAX_ 1024                                      /* longer names are cut */
#define LINE_MAX_ (20 + 1 + 20 + 1 + 8 + 1 + PATH_MAX_ + 1)

/* ---- writing -------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    EwcStatus st;
    const char *name; /* the file, for messages */
} Text;

static void text_add(Text *t, const char *s, size_t n) {
    if (t->st) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            ewc_error_set("%s: out of memory for its dataset manifest", t->name);
            t->st = EWC_ENOMEM;
            return;
        }
        t->buf = b, t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/* One line "OFFSET SIZE CRC /PATH\n" for dataset NAME below OBJ (the file root). */
static herr_t add_dataset(hid_t obj, const char *name, const H5O_info_t *info, void *client) {
    Text *t = client;
    char detail[DETAIL_MAX], line[LINE_MAX_ + 1], path[PATH_MAX_ + 1];
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t dset = H5Dopen2(obj, name, H5P_DEFAULT), attr = H5I_INVALID_HID;
    int64_t crc = -1;
    haddr_t offset = HADDR_UNDEF;
    hsize_t size = 0;
    if (dset >= 0) {
        offset = H5Dget_offset(dset);
        size = H5Dget_storage_size(dset);
        attr = H5Aopen(dset, CRC_ATTR, H5P_DEFAULT);
    }
    bool ok = attr >= 0 && H5Aread(attr, H5T_NATIVE_INT64, &crc) >= 0 && crc >= 0 &&
              crc <= 0xffffffffLL && (size == 0 || offset != HADDR_UNDEF);
    if (attr >= 0) H5Aclose(attr);
    if (dset >= 0) H5Dclose(dset);
    if (!ok) {
        ewc_error_set("%s: cannot record dataset /%s in the manifest (%s)", t->name, name,
                      h5file_detail(detail));
        t->st = EWC_EIO;
        return -1;
    }
    /* a label only: printable, one line, bounded */
    snprintf(path, sizeof path, "/%s", name);
    for (char *c = path; *c; c++)
        if (*c < ' ' || *c > '~') *c = '?';
    /* H5Dget_offset counts from the start of the file, user block included */
    int n = snprintf(line, sizeof line, "%llu %llu %08lx %s\n",
                     size ? (unsigned long long)offset : 0ULL, (unsigned long long)size,
                     (unsigned long)crc, path);
    text_add(t, line, (size_t)n);
    return t->st ? -1 : 0;
}

EwcStatus h5file_manifest_build(hid_t file, const char *name, char **text, size_t *len) {
    Text t = {NULL, 0, 0, EWC_OK, name};
    char footer[FOOTER_LEN + 1], detail[DETAIL_MAX];
    *text = NULL;
    *len = 0;
    text_add(&t, MAGIC, strlen(MAGIC));
#if H5_VERSION_GE(1, 12, 0)
    herr_t rc = H5Ovisit3(file, H5_INDEX_NAME, H5_ITER_INC, add_dataset, &t, H5O_INFO_BASIC);
#else
    herr_t rc = H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, add_dataset, &t, H5O_INFO_BASIC);
#endif
    if (rc < 0 && !t.st) {
        ewc_error_set("%s: cannot list its datasets (%s)", name, h5file_detail(detail));
        t.st = EWC_EIO;
    }
    if (!t.st) {
        unsigned long crc = crc32_z(crc32(0L, Z_NULL, 0), (const Bytef *)t.buf, t.len);
        snprintf(footer, sizeof footer, FOOTER_TAG "%020llu %08lx\n", (unsigned long long)t.len,
                 crc);
        text_add(&t, footer, FOOTER_LEN);
    }
    if (t.st) {
        free(t.buf);
        return t.st;
    }
    *text = t.buf;
    *len = t.len;
    return EWC_OK;
}

/* ---- reading (no HDF5: IMAGE is unverified) --------------------------------------------------- */

/* Parse 1..20 decimal digits at P (before END, no overflow) into *V: the byte after, or NULL. */
static const unsigned char *parse_u64(const unsigned char *p, const unsigned char *end,
                                      uint64_t *v) {
    const unsigned char *start = p;
    *v = 0;
    while (p < end && *p >= '0' && *p <= '9' && p - start < 20) {
        uint64_t d = (uint64_t)(*p - '0');
        if (*v > (UINT64_MAX - d) / 10) return NULL;
        *v = *v * 10 + d;
        p++;
    }
    return p > start && (p == end || *p < '0' || *p > '9') ? p : NULL;
}

/* Parse 8 lowercase hex digits at P (before END) into *V: the byte after, or NULL. */
static const unsigned char *parse_hex8(const unsigned char *p, const unsigned char *end,
                                       uint32_t *v) {
    *v = 0;
    if (end - p < 8) return NULL;
    for (int i = 0; i < 8; i++, p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0) return NULL;
        *v = *v << 4 | (uint32_t)d;
    }
    return p;
}

typedef struct {
    uint64_t offset, size;
    uint32_t crc;
    const unsigned char *path; /* not NUL-terminated: PATH_LEN bytes */
    size_t path_len;
} Entry;

/* Parse the line at P (ending before END) into E; the byte after its '\n', or NULL. */
static const unsigned char *parse_line(const unsigned char *p, const unsigned char *end,
                                       Entry *e) {
    const unsigned char *nl = memchr(p, '\n', (size_t)(end - p) < LINE_MAX_ ? (size_t)(end - p)
                                                                              : LINE_MAX_);
    if (!nl) return NULL;
    if (!(p = parse_u64(p, nl, &e->offset)) || p == nl || *p++ != ' ') return NULL;
    if (!(p = parse_u64(p, nl, &e->size)) || p == nl || *p++ != ' ') return NULL;
    if (!(p = parse_hex8(p, nl, &e->crc)) || p == nl || *p++ != ' ') return NULL;
    if (p == nl || *p != '/' || nl - p > PATH_MAX_) return NULL;
    for (const unsigned char *c = p; c < nl; c++)
        if (*c < ' ' || *c > '~') return NULL;
    e->path = p;
    e->path_len = (size_t)(nl - p);
    return nl + 1;
}

ManifestVerdict h5file_manifest_check(const unsigned char *image, size_t size, char *found,
                                      size_t found_size) {
    found[0] = '\0';
    size_t m = strlen(MAGIC), t = strlen(FOOTER_TAG);
    if (!image || size < H5FILE_USERBLOCK + m + FOOTER_LEN) return MANIFEST_ABSENT;
    const unsigned char *footer = image + size - FOOTER_LEN, *fend = image + size;
    uint64_t mlen;
    uint32_t want;
    const unsigned char *p = footer + t;
    if (memcmp(footer, FOOTER_TAG, t) != 0 || !(p = parse_u64(p, fend, &mlen)) ||
        p - (footer + t) != 20 || *p++ != ' ' || !(p = parse_hex8(p, fend, &want)) ||
        *p != '\n')
        return MANIFEST_ABSENT;
    /* the manifest ends where the footer starts; the HDF5 bytes end where it starts */
    size_t room = size - FOOTER_LEN - H5FILE_USERBLOCK;
    if (mlen < m || mlen > room) return MANIFEST_DAMAGED;
    const unsigned char *start = footer - mlen;
    size_t data_end = (size_t)(start - image); /* no dataset's data reaches past this */
    if (crc32_z(crc32(0L, Z_NULL, 0), start, (size_t)mlen) != want ||
        memcmp(start, MAGIC, m) != 0)
        return MANIFEST_DAMAGED;
    /* every line checked (bounds too) before any dataset is, so a lying manifest names none */
    Entry e;
    for (p = start + m; p < footer;) {
        if (!(p = parse_line(p, footer, &e))) return MANIFEST_DAMAGED;
        if (e.offset > data_end || e.size > data_end - e.offset ||
            (e.size > 0 && e.offset < H5FILE_USERBLOCK))
            return MANIFEST_DAMAGED;
    }
    for (p = start + m; p < footer;) {
        p = parse_line(p, footer, &e);
        uLong crc = crc32_z(crc32(0L, Z_NULL, 0), image + e.offset, (size_t)e.size);
        if ((uint32_t)crc != e.crc) {
            snprintf(found, found_size, "%.*s", (int)e.path_len, (const char *)e.path);
            return MANIFEST_DATASET;
        }
    }
    return MANIFEST_INTACT;
}
