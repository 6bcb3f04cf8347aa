/* IDX reader (raw or gzip) for the MNIST-family files. The header is validated, and for raw
 * files checked against the file size, before the payload buffer is allocated, so a corrupt or
 * hostile file gives a one-line error instead of a huge allocation or a crash. */
#include "ewc/idx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_ITEMS 10000000u
#define IDX_MAX_SIDE 4096u
#define IDX_MAX_BYTES (1ull << 31)
/* gzread takes an unsigned and returns an int: keep every request well inside INT_MAX. */
#define IDX_READ_CHUNK (1u << 30)
/* For gzip (or a pipe) the real size is unknown until the end, so grow towards the declared size
 * instead of trusting it: a tiny file claiming 2 GiB fails after reading, without allocating it. */
#define IDX_GZ_INITIAL (1u << 20)

static const char *idx_type_name(unsigned t) {
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
    }
}

/* What the payload holds, for messages such as "expected 60000 label bytes". */
static const char *idx_kind_name(int ndim) {
    return ndim == 1 ? "label" : ndim == 3 ? "image" : "data";
}

/* Map a failed gzread to a status and one line. zlib buffers ahead, so a fault may surface
 * while reading an earlier part of the file than the one at fault: do not say where. */
static EwcStatus idx_gz_failure(const char *path, gzFile gz) {
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    if (errnum == Z_ERRNO) {
        ewc_error_set("%s: read error: %s", path, strerror(errno));
        return EWC_EIO;
    }
    if (errnum == Z_MEM_ERROR) {
        ewc_error_set("%s: out of memory while decompressing", path);
        return EWC_ENOMEM;
    }
    /* gzerror prefixes the name zlib knows the file by, "<fd:N>" after gzdopen: drop it. */
    const char *sep = msg ? strstr(msg, ">: ") : NULL;
    if (msg && strncmp(msg, "<fd:", 4) == 0 && sep) msg = sep + 3;
    ewc_error_set("%s: corrupt gzip stream: %s", path, msg && *msg ? msg : "unknown error");
    return EWC_EFORMAT;
}

/* Read up to N bytes, looping over gzread's short reads. Returns the count read (< N only at
 * the end of the data) or -1 after a read error. */
static long long idx_gz_read_full(gzFile gz, uint8_t *buf, unsigned long long n) {
    unsigned long long got = 0;
    while (got < n) {
        unsigned long long left = n - got;
        unsigned want = left > IDX_READ_CHUNK ? IDX_READ_CHUNK : (unsigned)left;
        int r = gzread(gz, buf + got, want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (unsigned)r;
    }
    return (long long)got;
}

/* A read that came back short is either a clean end of data or a truncated gzip stream:
 * zlib reports the latter as Z_BUF_ERROR only through gzerror. */
static int idx_gz_stream_truncated(gzFile gz) {
    int errnum = Z_OK;
    gzerror(gz, &errnum);
    return errnum == Z_BUF_ERROR;
}

static uint32_t idx_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

EwcStatus idx_read(IdxArray *out, const char *path, int expect_ndim) {
    EwcStatus st = EWC_OK;
    gzFile gz = NULL;
    int fd = -1;
    uint8_t *data = NULL;

    if (out) memset(out, 0, sizeof *out);
    if (!out || !path || expect_ndim < 1 || expect_ndim > 3) {
        ewc_error_set("idx_read: bad arguments (path %s, ndim %d)", path ? path : "(null)",
                      expect_ndim);
        return EWC_EINVAL;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ewc_error_set("%s: cannot open: %s", path, strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        ewc_error_set("%s: cannot stat: %s", path, strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        ewc_error_set("%s: is a directory, not an IDX file", path);
        st = EWC_EIO;
        goto fail;
    }
    if (S_ISREG(sb.st_mode) && sb.st_size == 0) {
        ewc_error_set("%s: empty file", path);
        st = EWC_EFORMAT;
        goto fail;
    }

    /* gzdopen takes over fd (gzclose closes it); zlib reads a non-gzip file transparently. */
    gz = gzdopen(fd, "rb");
    if (!gz) {
        ewc_error_set("%s: cannot open for reading: out of memory", path);
        st = EWC_ENOMEM;
        goto fail;
    }
    fd = -1;
    gzbuffer(gz, 1u << 17);
    /* gzdirect() looks at the first bytes: 1 = no gzip magic (1f 8b), read as a raw file. */
    const int is_raw = gzdirect(gz);
    const char *form = is_raw ? "" : " (after gunzip)";

    uint8_t head[16];
    long long got = idx_gz_read_full(gz, head, 4);
    if (got < 0) {
        st = idx_gz_failure(path, gz);
        goto fail;
    }
    if (got < 4 && idx_gz_stream_truncated(gz)) {
        ewc_error_set("%s: truncated gzip stream: %lld of 4 magic bytes", path, got);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (got == 0) {
        ewc_error_set("%s: empty file%s", path, form);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (got < 4) {
        ewc_error_set("%s: truncated header: %lld of 4 magic bytes%s", path, got, form);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (head[0] != 0 || head[1] != 0) {
        ewc_error_set("%s: not an IDX file: magic bytes %02x %02x %02x %02x, "
                      "expected 00 00 08 %02x", path, head[0], head[1], head[2], head[3],
                      (unsigned)expect_ndim);
        st = EWC_EFORMAT;
        goto fail;
    }
    if (head[2] != IDX_TYPE_UBYTE) {
        ewc_error_set("%s: unsupported IDX element type 0x%02x (%s), expected 0x08 (unsigned byte)",
                      path, head[2], idx_type_name(head[2]));
        st = EWC_EFORMAT;
        goto fail;
    }
    if (head[3] != expect_ndim) {
        ewc_error_set("%s: IDX array has %u dimensions, expected %d (%s file)", path, head[3],
                      expect_ndim, expect_ndim == 1 ? "a labels" : "an images");
        st = EWC_EFORMAT;
        goto fail;
    }

    const unsigned long long header_bytes = 4 + 4ull * (unsigned)expect_ndim;
    got = idx_gz_read_full(gz, head + 4, header_bytes - 4);
    if (got < 0) {
        st = idx_gz_failure(path, gz);
        goto fail;
    }
    if ((unsigned long long)got < header_bytes - 4) {
        ewc_error_set("%s: truncated %s: %lld of %llu dimension bytes%s", path,
                      idx_gz_stream_truncated(gz) ? "gzip stream" : "header", got,
                      header_bytes - 4, form);
        st = EWC_EFORMAT;
        goto fail;
    }

    unsigned long long total = 1;
    int dims[3] = {0, 0, 0};
    for (int i = 0; i < expect_ndim; i++) {
        uint32_t d = idx_be32(head + 4 + 4 * i);
        uint32_t limit = i == 0 ? IDX_MAX_ITEMS : IDX_MAX_SIDE;
        if (d == 0) {
            ewc_error_set("%s: dimension %d is 0", path, i);
            st = EWC_EFORMAT;
            goto fail;
        }
        if (d > limit) {
            ewc_error_set("%s: dimension %d is %lu, above the limit %lu (corrupt header?)", path,
                          i, (unsigned long)d, (unsigned long)limit);
            st = EWC_EFORMAT;
            goto fail;
        }
        dims[i] = (int)d;
        total *= d; /* at most 1e7 * 4096 * 4096 < 2^64: cannot overflow */
    }
    if (total > IDX_MAX_BYTES) {
        ewc_error_set("%s: declared payload of %llu bytes is above the limit of %llu", path, total,
                      IDX_MAX_BYTES);
        st = EWC_EFORMAT;
        goto fail;
    }
    const char *kind = idx_kind_name(expect_ndim);

    /* A raw regular file's size is known: settle truncation and trailing bytes before
     * allocating anything. */
    const int size_known = is_raw && S_ISREG(sb.st_mode);
    if (size_known) {
        unsigned long long have = (unsigned long long)sb.st_size - header_bytes;
        if (have < total) {
            ewc_error_set("%s: truncated: expected %llu %s bytes, got %llu", path, total, kind,
                          have);
            st = EWC_EFORMAT;
            goto fail;
        }
        if (have > total) {
            ewc_error_set("%s: %llu trailing bytes after the declared %llu %s bytes", path,
                          have - total, total, kind);
            st = EWC_EFORMAT;
            goto fail;
        }
    }

    /* Size verified: allocate it all. Gzip (or a pipe): grow geometrically up to the cap. */
    unsigned long long cap = total;
    if (!size_known && cap > IDX_GZ_INITIAL) cap = IDX_GZ_INITIAL;
    data = malloc(cap);
    if (!data) {
        ewc_error_set("%s: out of memory for %llu bytes", path, cap);
        st = EWC_ENOMEM;
        goto fail;
    }
    unsigned long long filled = 0;
    for (;;) {
        got = idx_gz_read_full(gz, data + filled, cap - filled);
        if (got < 0) {
            st = idx_gz_failure(path, gz);
            goto fail;
        }
        filled += (unsigned long long)got;
        if (filled < cap) break; /* end of data (or a truncated stream) */
        if (cap == total) break;
        unsigned long long next = cap * 2 > total ? total : cap * 2;
        uint8_t *grown = realloc(data, next);
        if (!grown) {
            ewc_error_set("%s: out of memory for %llu bytes", path, next);
            st = EWC_ENOMEM;
            goto fail;
        }
        data = grown;
        cap = next;
    }
    if (filled < total) {
        ewc_error_set("%s: truncated%s: expected %llu %s bytes, got %llu", path,
                      idx_gz_stream_truncated(gz) ? " gzip stream" : "", total, kind, filled);
        st = EWC_EFORMAT;
        goto fail;
    }

    /* One more read: data means trailing bytes; for gzip it also makes zlib consume the
     * stream trailer, which is where a corrupt CRC or length is detected. (zlib silently
     * ignores non-gzip bytes after the last gzip member; what it decompresses is still
     * checked against the header and the member's CRC, so that is harmless.) */
    uint8_t probe;
    int r = gzread(gz, &probe, 1);
    if (r < 0) {
        st = idx_gz_failure(path, gz);
        goto fail;
    }
    if (r > 0) {
        ewc_error_set("%s: trailing bytes after the declared %llu %s bytes%s", path, total,
                      kind, is_raw ? "" : " (in the decompressed data)");
        st = EWC_EFORMAT;
        goto fail;
    }
    if (idx_gz_stream_truncated(gz)) {
        ewc_error_set("%s: truncated gzip stream: the trailer (CRC and length) is missing", path);
        st = EWC_EFORMAT;
        goto fail;
    }
    int zr = gzclose_r(gz);
    gz = NULL;
    if (zr != Z_OK) {
        ewc_error_set("%s: error closing the file (zlib status %d)", path, zr);
        st = zr == Z_BUF_ERROR ? EWC_EFORMAT : EWC_EIO;
        goto fail;
    }

    out->ndim = expect_ndim;
    memcpy(out->dims, dims, sizeof dims);
    out->data = data;
    return EWC_OK;

fail:
    free(data);
    if (gz) gzclose_r(gz);
    if (fd >= 0) close(fd);
    memset(out, 0, sizeof *out);
    return st;
}

void idx_free(IdxArray *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
