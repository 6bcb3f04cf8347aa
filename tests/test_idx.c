/* Tests for idx_read: good raw and gzip files read back byte-exact, and every kind of bad file
 * (missing, empty, bad header, absurd sizes, truncated, trailing bytes, corrupt gzip, garbage)
 * gives the right status, a one-line message naming the file, and an empty IdxArray. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ewc/error.h"
#include "ewc/idx.h"

typedef struct {
    char dir[64];
    char path[256];
} Fixture;

/* A growable byte buffer for building IDX files in memory. */
typedef struct {
    uint8_t *p;
    size_t n;
} Bytes;

static void bytes_put(Bytes *b, const void *src, size_t n) {
    b->p = realloc(b->p, b->n + n);
    assert_non_null(b->p);
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bytes_put_be32(Bytes *b, uint32_t v) {
    uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    bytes_put(b, q, 4);
}

/* Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
static uint32_t test_rng_next(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* An IDX file: header (type, ndim, dims) and a payload of exactly the declared size, filled
 * with a pattern that makes misplaced bytes visible. */
static Bytes idx_build(uint8_t type, int ndim, const uint32_t *dims) {
    Bytes b = {NULL, 0};
    uint8_t magic[4] = {0, 0, type, (uint8_t)ndim};
    bytes_put(&b, magic, 4);
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        bytes_put_be32(&b, dims[i]);
        total *= dims[i];
    }
    uint8_t *payload = malloc(total);
    assert_non_null(payload);
    for (size_t i = 0; i < total; i++) payload[i] = (uint8_t)(i * 7 + i / 13);
    bytes_put(&b, payload, total);
    free(payload);
    return b;
}

static void file_write_raw(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void file_write_gz(const char *path, const void *p, size_t n) {
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    if (n) assert_int_equal(gzwrite(gz, p, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

static Bytes file_slurp(const char *path) {
    Bytes b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) bytes_put(&b, buf, r);
    fclose(f);
    return b;
}

static int unlink_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static int fixture_setup(void **state) {
    Fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    strcpy(fx->dir, "/tmp/ewc_test_idx_XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    *state = fx;
    ewc_error_clear();
    return 0;
}

static int fixture_teardown(void **state) {
    Fixture *fx = *state;
    int rc = nftw(fx->dir, unlink_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return rc;
}

static const char *fx_path(Fixture *fx, const char *name) {
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx->dir, name);
    return fx->path;
}

/* The contract of every failure: the status, one line naming the file, nothing left in OUT. */
static void expect_failure(const char *path, int ndim, EwcStatus want, const char *fragment) {
    IdxArray a;
    memset(&a, 0xAB, sizeof a);
    ewc_error_clear();
    EwcStatus st = idx_read(&a, path, ndim);
    const char *msg = ewc_error_message();
    if (st != want || !strstr(msg, path) || (fragment && !strstr(msg, fragment)))
        print_error("status %d (want %d), message: %s\n", st, want, msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(msg, path));
    if (fragment) assert_non_null(strstr(msg, fragment));
    assert_null(strchr(msg, '\n'));
    assert_null(a.data);
    assert_int_equal(a.ndim, 0);
    assert_int_equal(a.dims[0], 0);
}

static void expect_good(const char *path, int ndim, const uint32_t *dims, const Bytes *file) {
    IdxArray a;
    ewc_error_clear();
    assert_int_equal(idx_read(&a, path, ndim), EWC_OK);
    assert_string_equal(ewc_error_message(), "");
    assert_int_equal(a.ndim, ndim);
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(a.dims[i], (int)dims[i]);
        total *= dims[i];
    }
    size_t header = 4 + 4 * (size_t)ndim;
    assert_int_equal(file->n, header + total);
    assert_memory_equal(a.data, file->p + header, total);
    idx_free(&a);
    assert_null(a.data);
    assert_int_equal(a.ndim, 0);
}

/* ---- good files -------------------------------------------------------------------------- */

static void test_good_raw_images(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {5, 3, 4};
    Bytes b = idx_build(0x08, 3, dims);
    file_write_raw(fx_path(fx, "img"), b.p, b.n);
    expect_good(fx->path, 3, dims, &b);
    free(b.p);
}

static void test_good_gz_images(void **state) {
    Fixture *fx = *state;
    /* Larger than idx.c's initial gzip buffer (1 MiB) so the growth path runs. */
    const uint32_t dims[3] = {1500, 28, 28};
    Bytes b = idx_build(0x08, 3, dims);
    file_write_gz(fx_path(fx, "img.gz"), b.p, b.n);
    expect_good(fx->path, 3, dims, &b);
    free(b.p);
}

static void test_good_raw_and_gz_labels(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[1] = {257};
    Bytes b = idx_build(0x08, 1, dims);
    file_write_raw(fx_path(fx, "lab"), b.p, b.n);
    expect_good(fx->path, 1, dims, &b);
    /* Content decides, not the name: a gzip file without .gz is still decompressed. */
    file_write_gz(fx_path(fx, "lab-really-gz"), b.p, b.n);
    expect_good(fx->path, 1, dims, &b);
    free(b.p);
}

static void test_good_multi_member_gz(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[1] = {100};
    Bytes b = idx_build(0x08, 1, dims);
    /* Two concatenated gzip members (what `cat a.gz b.gz` gives) are one valid stream. */
    file_write_gz(fx_path(fx, "part1.gz"), b.p, 30);
    Bytes m1 = file_slurp(fx->path);
    file_write_gz(fx_path(fx, "part2.gz"), b.p + 30, b.n - 30);
    Bytes m2 = file_slurp(fx->path);
    bytes_put(&m1, m2.p, m2.n);
    file_write_raw(fx_path(fx, "multi.gz"), m1.p, m1.n);
    expect_good(fx->path, 1, dims, &b);
    free(b.p);
    free(m1.p);
    free(m2.p);
}

/* ---- unreadable or empty ----------------------------------------------------------------- */

static void test_missing_file(void **state) {
    Fixture *fx = *state;
    expect_failure(fx_path(fx, "no-such-file"), 1, EWC_EIO, "No such file");
}

static void test_directory(void **state) {
    Fixture *fx = *state;
    expect_failure(fx->dir, 1, EWC_EIO, "directory");
}

static void test_empty_file(void **state) {
    Fixture *fx = *state;
    file_write_raw(fx_path(fx, "empty"), "", 0);
    expect_failure(fx->path, 1, EWC_EFORMAT, "empty");
    file_write_gz(fx_path(fx, "empty.gz"), "", 0);
    expect_failure(fx->path, 1, EWC_EFORMAT, "empty");
}

static void test_bad_arguments(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[1] = {3};
    Bytes b = idx_build(0x08, 1, dims);
    file_write_raw(fx_path(fx, "lab"), b.p, b.n);
    IdxArray a;
    ewc_error_clear();
    assert_int_equal(idx_read(&a, fx->path, 0), EWC_EINVAL);
    assert_null(a.data);
    ewc_error_clear();
    assert_int_equal(idx_read(&a, fx->path, 4), EWC_EINVAL);
    assert_int_equal(idx_read(NULL, fx->path, 1), EWC_EINVAL);
    assert_int_equal(idx_read(&a, NULL, 1), EWC_EINVAL);
    idx_free(NULL); /* must be a no-op */
    free(b.p);
}

/* ---- bad headers ------------------------------------------------------------------------- */

static void test_truncated_header(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {2, 2, 2};
    Bytes b = idx_build(0x08, 3, dims);
    file_write_raw(fx_path(fx, "short2"), b.p, 2);
    expect_failure(fx->path, 3, EWC_EFORMAT, "truncated header");
    file_write_raw(fx_path(fx, "short10"), b.p, 10);
    expect_failure(fx->path, 3, EWC_EFORMAT, "truncated header");
    file_write_gz(fx_path(fx, "short10.gz"), b.p, 10);
    expect_failure(fx->path, 3, EWC_EFORMAT, "truncated header");
    free(b.p);
}

static void test_wrong_magic(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[1] = {4};
    Bytes b = idx_build(0x08, 1, dims);
    b.p[0] = 0x12;
    b.p[1] = 0x34;
    file_write_raw(fx_path(fx, "magic"), b.p, b.n);
    expect_failure(fx->path, 1, EWC_EFORMAT, "not an IDX file");
    file_write_gz(fx_path(fx, "magic.gz"), b.p, b.n);
    expect_failure(fx->path, 1, EWC_EFORMAT, "not an IDX file");
    free(b.p);
}

static void test_wrong_type(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {2, 2, 2};
    Bytes b = idx_build(0x0D, 3, dims); /* float32 */
    file_write_raw(fx_path(fx, "float"), b.p, b.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "0x0d (float32)");
    free(b.p);
}

static void test_wrong_ndim(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {2, 2, 2};
    Bytes b = idx_build(0x08, 3, dims);
    file_write_raw(fx_path(fx, "img"), b.p, b.n);
    expect_failure(fx->path, 1, EWC_EFORMAT, "has 3 dimensions, expected 1");
    free(b.p);
    Bytes l = idx_build(0x08, 1, dims);
    file_write_gz(fx_path(fx, "lab.gz"), l.p, l.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "has 1 dimensions, expected 3");
    free(l.p);
}

static void test_zero_dimension(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {3, 0, 2};
    Bytes b = idx_build(0x08, 3, dims);
    file_write_raw(fx_path(fx, "zero"), b.p, b.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "dimension 1 is 0");
    free(b.p);
    const uint32_t none[1] = {0};
    Bytes l = idx_build(0x08, 1, none);
    file_write_raw(fx_path(fx, "zero-items"), l.p, l.n);
    expect_failure(fx->path, 1, EWC_EFORMAT, "dimension 0 is 0");
    free(l.p);
}

/* Headers only: these must be rejected before anything of the declared size is allocated. */
static void write_header_only(const char *path, int ndim, const uint32_t *dims, int gz) {
    Bytes b = {NULL, 0};
    uint8_t magic[4] = {0, 0, 0x08, (uint8_t)ndim};
    bytes_put(&b, magic, 4);
    for (int i = 0; i < ndim; i++) bytes_put_be32(&b, dims[i]);
    bytes_put(&b, "0123456789", 10);
    if (gz) file_write_gz(path, b.p, b.n);
    else file_write_raw(path, b.p, b.n);
    free(b.p);
}

static void test_absurd_dimension(void **state) {
    Fixture *fx = *state;
    const uint32_t items[1] = {0xFFFFFFFFu};
    write_header_only(fx_path(fx, "huge-items"), 1, items, 0);
    expect_failure(fx->path, 1, EWC_EFORMAT, "above the limit");
    const uint32_t side[3] = {10, 4097, 28};
    write_header_only(fx_path(fx, "huge-side.gz"), 3, side, 1);
    expect_failure(fx->path, 3, EWC_EFORMAT, "dimension 1 is 4097");
    /* Each dimension within its limit, but the product is 1e7 * 4096 * 4096 bytes. */
    const uint32_t product[3] = {10000000, 4096, 4096};
    write_header_only(fx_path(fx, "huge-total"), 3, product, 0);
    expect_failure(fx->path, 3, EWC_EFORMAT, "declared payload");
    /* Just inside every limit (2^31 bytes) yet a tiny gzip file: fails as truncated after
     * reading 10 bytes, without having allocated 2 GiB up front. */
    const uint32_t big[3] = {131072, 128, 128};
    write_header_only(fx_path(fx, "big-claim.gz"), 3, big, 1);
    expect_failure(fx->path, 3, EWC_EFORMAT, "expected 2147483648 image bytes, got 10");
}

/* ---- bad payloads ------------------------------------------------------------------------ */

static void test_truncated_payload_raw(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[1] = {60000};
    Bytes b = idx_build(0x08, 1, dims);
    file_write_raw(fx_path(fx, "train-labels-idx1-ubyte"), b.p, 8 + 123);
    expect_failure(fx->path, 1, EWC_EFORMAT, "truncated: expected 60000 label bytes, got 123");
    free(b.p);
}

static void test_truncated_payload_gz(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {20, 28, 28};
    Bytes b = idx_build(0x08, 3, dims);
    /* A complete gzip stream of an incomplete IDX file... */
    file_write_gz(fx_path(fx, "short-content.gz"), b.p, b.n - 1);
    expect_failure(fx->path, 3, EWC_EFORMAT, "expected 15680 image bytes, got 15679");
    /* ...and a complete IDX file whose gzip stream is cut in half, or loses only its trailer. */
    file_write_gz(fx_path(fx, "whole.gz"), b.p, b.n);
    Bytes z = file_slurp(fx->path);
    file_write_raw(fx_path(fx, "cut-half.gz"), z.p, z.n / 2);
    expect_failure(fx->path, 3, EWC_EFORMAT, "truncated");
    file_write_raw(fx_path(fx, "cut-trailer.gz"), z.p, z.n - 4);
    expect_failure(fx->path, 3, EWC_EFORMAT, "truncated gzip stream");
    free(z.p);
    free(b.p);
}

static void test_trailing_bytes(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {3, 4, 4};
    Bytes b = idx_build(0x08, 3, dims);
    bytes_put(&b, "XYZ", 3);
    file_write_raw(fx_path(fx, "trail"), b.p, b.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "3 trailing bytes");
    file_write_gz(fx_path(fx, "trail.gz"), b.p, b.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "trailing bytes");
    b.n -= 2; /* a single extra byte is enough */
    file_write_gz(fx_path(fx, "trail1.gz"), b.p, b.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "trailing bytes");
    free(b.p);
}

/* Z (a gzip file without optional header fields) with a PAD-byte comment inserted in its
 * header, which shifts the compressed data by PAD bytes without changing its content. */
static Bytes gz_with_comment(const Bytes *z, size_t pad) {
    assert_true(z->n > 18 && pad >= 1);
    assert_int_equal(z->p[3], 0); /* FLG: no optional fields yet */
    Bytes out = {NULL, 0};
    bytes_put(&out, z->p, 10);
    out.p[3] = 0x10; /* FCOMMENT: a NUL-terminated string follows the fixed header */
    uint8_t *comment = calloc(pad, 1);
    assert_non_null(comment);
    memset(comment, 'x', pad - 1);
    bytes_put(&out, comment, pad);
    free(comment);
    bytes_put(&out, z->p + 10, z->n - 10);
    return out;
}

static void test_corrupt_gzip(void **state) {
    Fixture *fx = *state;
    const uint32_t dims[3] = {40, 28, 28};
    Bytes b = idx_build(0x08, 3, dims);
    uint32_t seed = 12345;
    for (size_t i = 16; i < b.n; i++) b.p[i] = (uint8_t)test_rng_next(&seed); /* compresses badly */
    file_write_gz(fx_path(fx, "good.gz"), b.p, b.n);
    Bytes z = file_slurp(fx->path);
    assert_true(z.n > 1000);

    Bytes bad = {NULL, 0};
    bytes_put(&bad, z.p, z.n);
    for (size_t i = z.n / 2; i < z.n / 2 + 8; i++) bad.p[i] ^= 0x5A;
    file_write_raw(fx_path(fx, "flipped.gz"), bad.p, bad.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, NULL);

    /* The data is intact, only the CRC-32 in the trailer is wrong. */
    memcpy(bad.p, z.p, z.n);
    bad.p[z.n - 8] ^= 0x01;
    file_write_raw(fx_path(fx, "bad-crc.gz"), bad.p, bad.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "corrupt gzip stream");

    /* Likewise the ISIZE (length mod 2^32) field. */
    memcpy(bad.p, z.p, z.n);
    bad.p[z.n - 1] ^= 0x01;
    file_write_raw(fx_path(fx, "bad-isize.gz"), bad.p, bad.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "corrupt gzip stream");

    /* A bad CRC that zlib can only see on the final probe read: a gzip comment (FCOMMENT)
     * pads the header so the deflate data ends exactly at a 128 KiB input-buffer boundary
     * (idx.c's gzbuffer size), and the payload fills the caller's buffer just before it. */
    const uint32_t big_dims[3] = {1000, 28, 28};
    Bytes big = idx_build(0x08, 3, big_dims);
    for (size_t i = 16; i < big.n; i++) big.p[i] = (uint8_t)test_rng_next(&seed);
    file_write_gz(fx_path(fx, "big.gz"), big.p, big.n);
    Bytes bz = file_slurp(fx->path);
    size_t pad = (131072 - (bz.n - 8) % 131072) % 131072;
    if (pad == 0) pad = 131072;
    Bytes padded = gz_with_comment(&bz, pad);
    assert_int_equal((padded.n - 8) % 131072, 0);
    file_write_raw(fx_path(fx, "big-padded.gz"), padded.p, padded.n);
    expect_good(fx->path, 3, big_dims, &big);
    free(padded.p);
    bz.p[bz.n - 6] ^= 0x80; /* a CRC-32 byte */
    padded = gz_with_comment(&bz, pad);
    file_write_raw(fx_path(fx, "big-bad-crc.gz"), padded.p, padded.n);
    expect_failure(fx->path, 3, EWC_EFORMAT, "incorrect data check");
    free(padded.p);
    free(bz.p);
    free(big.p);

    /* A gzip magic followed by nonsense. */
    const uint8_t fake[] = {0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x03, 0xff,
                            0xff, 0xff, 0xff, 0xff};
    file_write_raw(fx_path(fx, "fake.gz"), fake, sizeof fake);
    expect_failure(fx->path, 3, EWC_EFORMAT, NULL);
    file_write_raw(fx_path(fx, "magic-only.gz"), fake, 2);
    expect_failure(fx->path, 3, EWC_EFORMAT, "truncated gzip stream");

    free(bad.p);
    free(z.p);
    free(b.p);
}

/* Random garbage, and random damage to good files: never a crash, never a leak (run under
 * valgrind or ASan to see the latter), and a result that is either an error with an empty
 * IdxArray or exactly the declared data. */
static void test_random_garbage(void **state) {
    Fixture *fx = *state;
    uint32_t seed = 2463534242u;
    uint8_t buf[600];
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 1 + test_rng_next(&seed) % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)test_rng_next(&seed);
        if (iter % 3 == 1) buf[0] = 0x1f, buf[1] = 0x8b; /* looks gzipped */
        if (iter % 3 == 2) buf[0] = 0, buf[1] = 0, buf[2] = 8, buf[3] = 3; /* looks like IDX */
        file_write_raw(fx_path(fx, "garbage"), buf, n);
        expect_failure(fx->path, 3, EWC_EFORMAT, NULL);
    }

    const uint32_t dims[3] = {6, 5, 5};
    Bytes b = idx_build(0x08, 3, dims);
    file_write_gz(fx_path(fx, "good.gz"), b.p, b.n);
    Bytes z = file_slurp(fx->path);
    int failures = 0;
    for (int iter = 0; iter < 300; iter++) {
        const Bytes *src = iter % 2 ? &z : &b;
        Bytes m = {NULL, 0};
        bytes_put(&m, src->p, src->n);
        size_t at = test_rng_next(&seed) % m.n;
        if (iter % 4 < 2) m.n = at;                               /* cut */
        else m.p[at] ^= (uint8_t)(1 + test_rng_next(&seed) % 255); /* flip */
        file_write_raw(fx_path(fx, "mutant"), m.p, m.n);
        IdxArray a;
        ewc_error_clear();
        EwcStatus st = idx_read(&a, fx->path, 3);
        if (st == EWC_OK) {
            /* A flipped payload byte in a raw file is still a well-formed file. */
            assert_int_equal(a.dims[0] * a.dims[1] * a.dims[2] + 16, (int)b.n);
            idx_free(&a);
        } else {
            failures++;
            assert_int_equal(st, EWC_EFORMAT);
            assert_non_null(strstr(ewc_error_message(), fx->path));
            assert_null(a.data);
        }
        free(m.p);
    }
    assert_true(failures >= 150); /* every cut must fail; most flips too */
    free(z.p);
    free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_raw_images, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_good_gz_images, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_good_raw_and_gz_labels, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_good_multi_member_gz, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_directory, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_header, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_magic, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ndim, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_zero_dimension, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_absurd_dimension, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_payload_raw, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_payload_gz, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_trailing_bytes, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_gzip, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_random_garbage, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
