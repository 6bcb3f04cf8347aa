/* The integrity of our HDF5 files: the SHA-256 digest in the 512-byte user block (sealed at
 * commit, checked before HDF5 parses a byte), per-dataset CRC-32s, the diagnosis of a damaged
 * file from its manifest (h5file_manifest.c), and verified in-memory opens. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ewc/sha256.h"
#include "h5file_private.h"

#define MAGIC H5FILE_DIGEST_MAGIC "\n"

/* ---- CRC-32 --------------------------------------------------------------------------------- */

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

uint32_t h5file_crc_le(const void *data, size_t count, size_t size) {
    uLong crc = crc32(0L, Z_NULL, 0);
    const unsigned char *p = data;
    size_t n = count * size;
    if (host_is_little_endian() || size == 1) return (uint32_t)crc32_z(crc, p, n);
    unsigned char swapped[4096];
    size_t per = sizeof swapped / size;
    for (size_t i = 0; i < count; i += per) {
        size_t k = count - i < per ? count - i : per;
        for (size_t e = 0; e < k; e++)
            for (size_t b = 0; b < size; b++) swapped[e * size + b] = p[(i + e) * size + size - 1 - b];
        crc = crc32_z(crc, swapped, k * size);
    }
    return (uint32_t)crc;
}

/* ---- the digest header ---------------------------------------------------------------------- */

/* The canonical user block for a file of LENGTH bytes whose bytes 512.. hash to HEX. */
static void format_header(unsigned char out[H5FILE_USERBLOCK], unsigned long long length,
                          const char *hex) {
    memset(out, 0, H5FILE_USERBLOCK);
    snprintf((char *)out, H5FILE_USERBLOCK,
             MAGIC "algorithm: sha256\nlength: %llu\nsha256: %s\n"
                   "covers: bytes %d to the end; check with: tail -c +%d FILE | sha256sum\n",
             length, hex, H5FILE_USERBLOCK, H5FILE_USERBLOCK + 1);
}

static void digest_hex(const unsigned char *image, size_t size, char hex[SHA256_HEX]) {
    unsigned char d[SHA256_BYTES];
    sha256_digest(image + H5FILE_USERBLOCK, size - H5FILE_USERBLOCK, d);
    sha256_hex(d, hex);
}

EwcStatus h5file_seal_image(void *image, size_t size) {
    if (!image || size < H5FILE_USERBLOCK) {
        ewc_error_set("h5file_seal_image: an image of %zu bytes has no %d-byte user block", size,
                      H5FILE_USERBLOCK);
        return EWC_EINVAL;
    }
    char hex[SHA256_HEX];
    digest_hex(image, size, hex);
    format_header(image, (unsigned long long)size, hex);
    return EWC_OK;
}

/* Parse the first 512 bytes of a file of SIZE bytes (HEAD holds min(SIZE, 512) of them) into
 * *LENGTH and HEX. EWC_EFORMAT naming NAME unless HEAD is exactly a header we write. */
static EwcStatus parse_header(const char *name, const unsigned char *head, size_t size,
                              unsigned long long *length, char hex[SHA256_HEX]) {
    static const unsigned char hdf5_signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    bool blank = size >= H5FILE_USERBLOCK; /* an empty user block: HDF5 with room for one */
    for (size_t i = 0; blank && i < H5FILE_USERBLOCK; i++) blank = head[i] == 0;
    if ((size >= 8 && memcmp(head, hdf5_signature, 8) == 0) || blank) {
        ewc_error_set("%s: no SHA-256 digest (written before checkpoint format 3, or rewritten by"
                      " another program), so it cannot be verified; finish that run with the"
                      " ewc-train that wrote it, or start over without --resume", name);
        return EWC_EFORMAT;
    }
    size_t m = strlen(MAGIC);
    if (size < m || memcmp(head, MAGIC, m) != 0) {
        ewc_error_set("%s: damaged (%s)", name,
                      size < H5FILE_USERBLOCK ? "shorter than its 512-byte digest header"
                                              : "its first bytes are not the digest header");
        return EWC_EFORMAT;
    }
    if (size < H5FILE_USERBLOCK) {
        ewc_error_set("%s: damaged (truncated to %zu bytes, shorter than its digest header)", name,
                      size);
        return EWC_EFORMAT;
    }
    char text[H5FILE_USERBLOCK + 1], digits[24] = "";
    unsigned char canonical[H5FILE_USERBLOCK];
    memcpy(text, head, H5FILE_USERBLOCK);
    text[H5FILE_USERBLOCK] = '\0';
    int end = 0;
    if (sscanf(text + m, "algorithm: sha256\nlength: %20[0-9]\nsha256: %64[0-9a-f]\n%n", digits,
               hex, &end) != 2 || end == 0 || strlen(hex) != 2 * SHA256_BYTES) {
        ewc_error_set("%s: damaged (its digest header is unreadable)", name);
        return EWC_EFORMAT;
    }
    *length = strtoull(digits, NULL, 10);
    format_header(canonical, *length, hex);
    if (memcmp(canonical, head, H5FILE_USERBLOCK) != 0) {
        ewc_error_set("%s: damaged (its digest header was altered)", name);
        return EWC_EFORMAT;
    }
    return EWC_OK;
}

static EwcStatus check_length(const char *name, unsigned long long length, size_t size) {
    if (length == size) return EWC_OK;
    /* truncated, extended, or the length in the header damaged: the bytes cannot tell which */
    ewc_error_set("%s: damaged (%zu bytes, its digest header records %llu)", name, size, length);
    return EWC_EFORMAT;
}

/* ---- diagnosis of a damaged image ----------------------------------------------------------- */

static atomic_bool no_diagnosis;

void h5file_set_diagnosis(bool on) { atomic_store(&no_diagnosis, !on); }

/* What a damaged image's manifest says, as "; ..." for the error message (OUT[OUT_SIZE]): pure C
 * over the bytes, HDF5 never sees them. */
static void diagnose(const unsigned char *image, size_t size, char *out, size_t out_size) {
    char found[256];
    out[0] = '\0';
    if (atomic_load(&no_diagnosis)) return;
    switch (h5file_manifest_check(image, size, found, sizeof found)) {
    case MANIFEST_DATASET:
        snprintf(out, out_size, "; first damaged dataset: %.200s", found);
        break;
    case MANIFEST_INTACT:
        snprintf(out, out_size, "; every dataset matches its CRC-32, so the damage is in HDF5"
                                " metadata, an attribute, the manifest or the digest header");
        break;
    case MANIFEST_DAMAGED:
        snprintf(out, out_size, "; its dataset manifest is damaged too, so no dataset is named");
        break;
    case MANIFEST_ABSENT:
        snprintf(out, out_size, "; no dataset manifest at its end (truncated or damaged there),"
                                " so no dataset is named");
        break;
    }
}

/* ---- verification and opening --------------------------------------------------------------- */

EwcStatus h5file_verify_image(const char *name, const void *image, size_t size) {
    unsigned long long length;
    char want[SHA256_HEX], got[SHA256_HEX], why[256];
    EwcStatus st = parse_header(name, image, size, &length, want);
    if (st || (st = check_length(name, length, size))) return st;
    digest_hex(image, size, got);
    if (strcmp(want, got) == 0) return EWC_OK;
    diagnose(image, size, why, sizeof why);
    ewc_error_set("%s: damaged (SHA-256 mismatch over bytes %d..%zu%s)", name, H5FILE_USERBLOCK,
                  size - 1, why);
    return EWC_EFORMAT;
}

/* Open the verified IMAGE read-only in memory (HDF5 copies it); < 0 on failure. */
static hid_t open_verified_image(const void *image, size_t size) {
    static atomic_uint counter;
    char name[64];
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = H5I_INVALID_HID;
    /* a name of its own: HDF5 takes two open in-memory files of one name for the same file */
    snprintf(name, sizeof name, "ewc-image-%ld-%u", (long)getpid(), atomic_fetch_add(&counter, 1));
    h5file_quiet();
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1u << 20, false) >= 0 &&
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0 &&
        H5Pset_file_image(fapl, (void *)image, size) >= 0)
        file = H5Fopen(name, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    return file;
}

EwcStatus h5file_open_image(H5Reader *r, const char *name, const void *image, size_t size) {
    char detail[DETAIL_MAX];
    r->file = H5I_INVALID_HID;
    r->open = r->damaged = false;
    EwcStatus st = h5file_copy_path(r->path, name, "h5file_open_image");
    if (st) return st;
    if ((st = h5file_verify_image(name, image, size))) {
        r->damaged = true;
        return st;
    }
    r->file = open_verified_image(image, size);
    if (r->file < 0) {
        ewc_error_set("%s: not a readable HDF5 file (%s)", name, h5file_detail(detail));
        return EWC_EFORMAT;
    }
    r->open = true;
    return EWC_OK;
}

/* read(2) exactly N bytes at OFFSET; -1 with errno set, or EIO for a file that got shorter. */
static int read_exact(int fd, unsigned char *buf, size_t n, off_t offset) {
    while (n > 0) {
        ssize_t k = pread(fd, buf, n, offset);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return -1;
        }
        buf += k, n -= (size_t)k, offset += k;
    }
    return 0;
}

EwcStatus h5file_open_read(H5Reader *r, const char *path) {
    EwcStatus st = EWC_OK;
    unsigned char head[H5FILE_USERBLOCK], *image = NULL;
    unsigned long long length = 0;
    char hex[SHA256_HEX];
    struct stat sb;
    int fd = -1;

    r->file = H5I_INVALID_HID;
    r->open = r->damaged = false;
    if ((st = h5file_copy_path(r->path, path, "h5file_open_read"))) return st;
    /* missing or unreadable is an I/O problem, told apart from bad content */
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
    /* the header first: a wrong length is found without reading (or allocating) the rest */
    size_t size = (size_t)sb.st_size, head_n = size < sizeof head ? size : sizeof head;
    if (read_exact(fd, head, head_n, 0) != 0) {
        ewc_error_set("%s: cannot read: %s", path, strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    if ((st = parse_header(path, head, size, &length, hex)) ||
        (st = check_length(path, length, size))) {
        r->damaged = true;
        goto fail;
    }
    if (!(image = malloc(size))) {
        ewc_error_set("%s: out of memory for its %zu bytes", path, size);
        st = EWC_ENOMEM;
        goto fail;
    }
    if (read_exact(fd, image, size, 0) != 0) {
        ewc_error_set("%s: cannot read: %s", path, strerror(errno));
        st = EWC_EIO;
        goto fail;
    }
    /* HDF5 keeps a copy of its own, so the image is freed at once */
    st = h5file_open_image(r, path, image, size);

fail:
    free(image);
    if (fd >= 0) close(fd);
    return st;
}
