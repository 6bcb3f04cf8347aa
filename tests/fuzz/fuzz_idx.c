/* Fuzz harness for the IDX reader (idx.h), raw and gzip: the input is read through an in-memory
 * file as images (3 dims), labels (1 dim) and 2 dims, twice: as it is (a raw file, or a gzip file
 * the fuzzer made), and gzip-compressed here (zlib is not instrumented, so this is how the gzip
 * path sees every IDX header and payload the fuzzer finds). Checked on every input: failures
 * leave one message line and an empty array; successes have the declared shape and, where the
 * decompressed content is known, exactly the bytes after its header. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <zlib.h>

#include "ewc/error.h"
#include "ewc/idx.h"
#include "fuzz_util.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Read PATH as NDIM dimensions. PLAIN (SIZE bytes) is its content after any decompression when
 * that is known (the file itself when raw), else NULL. */
static void check_one(const uint8_t *plain, size_t size, const char *path, int ndim) {
    IdxArray a;
    memset(&a, 0xa5, sizeof a); /* the reader must overwrite it either way */
    ewc_error_clear();
    EwcStatus st = idx_read(&a, path, ndim);
    if (st != EWC_OK) {
        FUZZ_CHECK(st == EWC_EFORMAT || st == EWC_EIO || st == EWC_ENOMEM, "status %d", (int)st);
        fuzz_check_error_line(st);
        FUZZ_CHECK(a.data == NULL && a.ndim == 0, "failed read left a non-empty array");
        return;
    }
    FUZZ_CHECK(a.ndim == ndim && a.data != NULL, "ndim %d (expected %d)", a.ndim, ndim);
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        FUZZ_CHECK(a.dims[i] > 0, "dimension %d is %d", i, a.dims[i]);
        total *= (size_t)a.dims[i];
    }
    if (plain) {
        /* an independent reading of the header must give the same array */
        const uint8_t *data = plain;
        size_t header = 4 + 4 * (size_t)ndim;
        FUZZ_CHECK(size == header + total, "content size %zu, header + payload %zu", size,
                   header + total);
        FUZZ_CHECK(data[0] == 0 && data[1] == 0 && data[2] == 8 && data[3] == ndim, "magic");
        for (int i = 0; i < ndim; i++)
            FUZZ_CHECK(be32(data + 4 + 4 * i) == (uint32_t)a.dims[i], "dimension %d", i);
        FUZZ_CHECK(memcmp(a.data, data + header, total) == 0, "payload differs from the file");
    }
    volatile uint8_t sink = 0; /* touch every byte: ASan checks the buffer is as large as said */
    for (size_t i = 0; i < total; i++) sink ^= a.data[i];
    (void)sink;
    idx_free(&a);
    FUZZ_CHECK(a.data == NULL, "idx_free left data");
}

/* DATA as one gzip member (header, deflate stream, CRC and length); *OUT_SIZE its size. */
static uint8_t *gzip_of(const uint8_t *data, size_t size, size_t *out_size) {
    z_stream z;
    memset(&z, 0, sizeof z);
    FUZZ_CHECK(deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflate");
    size_t cap = deflateBound(&z, size);
    uint8_t *out = malloc(cap);
    FUZZ_CHECK(out != NULL, "out of memory");
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate did not finish");
    *out_size = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* as it is: a raw file unless it starts with the gzip magic (as zlib decides) */
    const int gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const char *path = fuzz_memfile(data, size);
    for (int ndim = 1; ndim <= 3; ndim++) check_one(gzip ? NULL : data, size, path, ndim);
    /* gzip-compressed: decompresses to exactly DATA */
    size_t gz_size;
    uint8_t *gz = gzip_of(data, size, &gz_size);
    path = fuzz_memfile(gz, gz_size);
    for (int ndim = 1; ndim <= 3; ndim++) check_one(data, size, path, ndim);
    free(gz);
    return 0;
}
