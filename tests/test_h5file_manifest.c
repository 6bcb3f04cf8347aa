/* Tests of the dataset manifest (src/h5file_manifest.c): the trailer a commit appends after the
 * HDF5 bytes, and the diagnosis of a damaged file from it, without HDF5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ewc/error.h"
#include "ewc/h5file.h"

#define MAGIC "EWC-MANIFEST v1\n"

typedef struct {
    char dir[64], path[H5FILE_PATH_MAX];
    unsigned char *image; /* the committed file */
    size_t n, hdf5_end;   /* its size; where the manifest starts */
    size_t at[3];         /* where the data of /a/x, /a/y, /b/z starts */
} Fixture;

static float X[300];
static int64_t Y[100];
static double Z[50];
static const char *NAMES[3] = {"/a/x", "/a/y", "/b/z"};
static const size_t SIZES[3] = {sizeof X, sizeof Y, sizeof Z};

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    if (b && fread(b, 1, *n, fp) != *n) {
        free(b);
        b = NULL;
    }
    if (b) b[*n] = '\0'; /* the manifest is text: strstr stops here */
    fclose(fp);
    return b;
}

static size_t find(const unsigned char *hay, size_t n, const void *needle, size_t k) {
    for (size_t i = 512; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return i;
    return 0;
}

static int teardown(void **state) {
    Fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f->image);
    free(f);
    return 0;
}

/* A file with three datasets (float32, int64, float64), an empty one, a scalar and attributes. */
static int setup(void **state) {
    Fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/test_h5file_manifest.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/m.h5", f->dir);
    for (int i = 0; i < 300; i++) X[i] = 1000.25f + (float)i;
    for (int i = 0; i < 100; i++) Y[i] = 7000000000LL + 3 * i;
    for (int i = 0; i < 50; i++) Z[i] = -1.0 / (i + 3);
    uint64_t dx[2] = {20, 15}, dy[1] = {100}, dz[1] = {50}, d0[1] = {0};
    int32_t s = 42;
    H5Writer w;
    if (h5file_create_temp(&w, f->path) || h5file_write_f32(&w, "/a/x", X, 2, dx) ||
        h5file_write_i64(&w, "/a/y", Y, 1, dy) || h5file_write_f64(&w, "/b/z", Z, 1, dz) ||
        h5file_write_f32(&w, "/empty", NULL, 1, d0) || h5file_write_i32(&w, "/s", &s, 0, NULL) ||
        h5file_set_attr_str(&w, "/a", "note", "hello") || h5file_commit(&w))
        goto fail;
    if (!(f->image = slurp(f->path, &f->n))) goto fail;
    const void *data[3] = {X, Y, Z};
    for (int i = 0; i < 3; i++)
        if (!(f->at[i] = find(f->image, f->n, data[i], SIZES[i]))) goto fail;
    for (size_t i = f->n - strlen(MAGIC); i > 512 && !f->hdf5_end; i--)
        if (memcmp(f->image + i, MAGIC, strlen(MAGIC)) == 0) f->hdf5_end = i;
    if (!f->hdf5_end) goto fail;
    ewc_error_clear();
    *state = f;
    return 0;
fail:
    fprintf(stderr, "setup: %s\n", ewc_error_message());
    *state = f;
    teardown(state);
    return -1;
}

/* STATUS is WANT and the message contains every string before NULL and none after it, up to a
 * second NULL; clears it. */
static void assert_message(EwcStatus status, EwcStatus want, ...) {
    const char *msg = ewc_error_message();
    va_list ap;
    va_start(ap, want);
    for (const char *sub; (sub = va_arg(ap, const char *));)
        if (!strstr(msg, sub)) fail_msg("message \"%s\" lacks \"%s\"", msg, sub);
    for (const char *sub; (sub = va_arg(ap, const char *));)
        if (strstr(msg, sub)) fail_msg("message \"%s\" has \"%s\"", msg, sub);
    va_end(ap);
    if (status != want) fail_msg("status %d, expected %d: %s", status, want, msg);
    if (strchr(msg, '\n')) fail_msg("message of more than one line: \"%s\"", msg);
    ewc_error_clear();
}

/* The trailer lists each dataset's data where it really is (found by its bytes), with its size
 * and CRC-32, and the file is still plain HDF5: opened from disk and from memory. */
static void test_manifest_lists_the_data(void **state) {
    Fixture *f = *state;
    const unsigned char *p = f->image + f->hdf5_end + strlen(MAGIC);
    char want[128];
    const void *data[3] = {X, Y, Z};
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "%zu %zu %08lx %s\n", f->at[i], SIZES[i],
                 crc32(0L, data[i], (uInt)SIZES[i]), NAMES[i]);
        const char *line = strstr((const char *)p, want);
        if (!line) fail_msg("the manifest lacks the line \"%s\"", want);
    }
    assert_non_null(strstr((const char *)p, "0 0 00000000 /empty\n"));
    assert_non_null(strstr((const char *)p, " 4 "));
    /* the footer: the length and CRC-32 of what lies between the HDF5 bytes and it */
    size_t mlen = f->n - 47 - f->hdf5_end;
    snprintf(want, sizeof want, "EWC-MANIFEST-END %020zu %08lx\n", mlen,
             crc32(0L, f->image + f->hdf5_end, (uInt)mlen));
    assert_int_equal(f->n - f->hdf5_end - mlen, strlen(want));
    assert_memory_equal(f->image + f->n - strlen(want), want, strlen(want));
    /* HDF5 ignores what lies after its end of allocation */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(f->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(file >= 0);
    float x[300];
    hid_t d = H5Dopen2(file, "/a/x", H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    assert_memory_equal(x, X, sizeof X);
    assert_true((size_t)H5Dget_offset(d) == f->at[0]);
    H5Dclose(d);
    H5Fclose(file);
    H5Reader r;
    assert_int_equal(h5file_open_image(&r, "image", f->image, f->n), EWC_OK);
    uint64_t dx[2] = {20, 15};
    assert_int_equal(h5file_read_f32(&r, "/a/x", x, 2, dx), EWC_OK);
    assert_memory_equal(x, X, sizeof X);
    h5file_close(&r);
}

/* A flipped bit anywhere in a dataset's data names exactly that dataset; one in the HDF5
 * metadata names none. */
static void test_flip_names_that_dataset(void **state) {
    Fixture *f = *state;
    char want[64];
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "; first damaged dataset: %s)", NAMES[i]);
        for (size_t j = 0; j <= SIZES[i] / 13; j++) { /* every 13th byte, and the last */
            size_t k = j < SIZES[i] / 13 ? 13 * j : SIZES[i] - 1, at = f->at[i] + k;
            f->image[at] ^= (unsigned char)(1u << (k % 8));
            EwcStatus st = h5file_verify_image("img", f->image, f->n);
            f->image[at] ^= (unsigned char)(1u << (k % 8));
            assert_message(st, EWC_EFORMAT, "img: damaged (SHA-256 mismatch", want, NULL, NULL);
        }
    }
    f->image[512 + 9] ^= 1; /* in the superblock */
    assert_message(h5file_verify_image("img", f->image, f->n), EWC_EFORMAT,
                   "every dataset matches its CRC-32", NULL, "first damaged", NULL);
    f->image[512 + 9] ^= 1;
    assert_int_equal(h5file_verify_image("img", f->image, f->n), EWC_OK);
}

/* Damage to the manifest itself: refused, saying so, naming no dataset. */
static void test_damaged_manifest(void **state) {
    Fixture *f = *state;
    for (size_t at = f->hdf5_end; at < f->n; at++) {
        f->image[at] ^= 0x10;
        EwcStatus st = h5file_verify_image("img", f->image, f->n);
        f->image[at] ^= 0x10;
        if (at < f->n - 47) /* the lines: the manifest's CRC-32 fails */
            assert_message(st, EWC_EFORMAT, "img: damaged (", "dataset manifest is damaged", NULL,
                           "first damaged", NULL);
        else /* the footer: a wrong length or CRC, or no footer at all */
            assert_message(st, EWC_EFORMAT, "img: damaged (", "manifest", NULL, "first damaged",
                           NULL);
    }
}

/* The SIZE-byte copy of F's file whose manifest lines are LINES (NULL: no manifest at all), with
 * a footer that matches them (or the footer length MLEN if not 0), sealed, then one bit of
 * /a/x's data flipped; *SIZE is its length. */
static unsigned char *with_manifest(const Fixture *f, const char *lines, size_t mlen,
                                    size_t *size) {
    size_t body = lines ? strlen(MAGIC) + strlen(lines) : 0;
    unsigned char *b = malloc(f->hdf5_end + body + 64);
    assert_non_null(b);
    memcpy(b, f->image, f->hdf5_end);
    size_t n = f->hdf5_end;
    if (lines) {
        memcpy(b + n, MAGIC, strlen(MAGIC));
        memcpy(b + n + strlen(MAGIC), lines, strlen(lines));
        n += body;
        n += (size_t)sprintf((char *)b + n, "EWC-MANIFEST-END %020zu %08lx\n", mlen ? mlen : body,
                             crc32(0L, b + f->hdf5_end, (uInt)body));
    }
    assert_int_equal(h5file_seal_image(b, n), EWC_OK);
    b[f->at[0] + 5] ^= 2;
    *size = n;
    return b;
}

/* A manifest with a valid CRC-32 whose lines lie (out of the file, overflowing, malformed) is
 * refused as damaged and names nothing; no byte outside the image is read (ASan checks). */
static void test_lying_manifest(void **state) {
    Fixture *f = *state;
    char lines[6000], truth[512];
    size_t n;
    snprintf(truth, sizeof truth, "%zu %zu %08lx /a/x\n", f->at[0], sizeof X,
             crc32(0L, (const Bytef *)X, sizeof X));
    /* the control: a true manifest made the same way names the dataset */
    unsigned char *b = with_manifest(f, truth, 0, &n);
    assert_message(h5file_verify_image("img", b, n), EWC_EFORMAT,
                   "first damaged dataset: /a/x)", NULL, NULL);
    free(b);
    b = with_manifest(f, "", 0, &n);
    assert_message(h5file_verify_image("img", b, n), EWC_EFORMAT,
                   "every dataset matches", NULL, NULL);
    free(b);
    b = with_manifest(f, NULL, 0, &n);
    assert_message(h5file_verify_image("img", b, n), EWC_EFORMAT,
                   "no dataset manifest at its end", NULL, "first damaged", NULL);
    free(b);

    char long_path[5000];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    const char *lies[] = {
        "18446744073709551615 1 00000000 /a/x\n",  /* offset at the end of uint64 */
        "600 18446744073709551615 00000000 /a/x\n", /* offset + size overflows */
        "99999999999999999999 4 00000000 /a/x\n",  /* more than uint64 */
        "123456789012345678901 4 00000000 /a/x\n", /* 21 digits */
        "100 4 00000000 /a/x\n",                   /* inside the user block */
        "-1 4 00000000 /a/x\n",
        "600 4 0000000G /a/x\n",
        "600 4 ABCDEF01 /a/x\n",
        "600 4 00000000 a/x\n",
        "600 4 00000000 /a\tx\n",
        "600 4 00000000 \n",
        "600  4 00000000 /a/x\n",
        "600 4 00000000 /a/x",                     /* no newline */
        NULL,                                      /* data reaching into the manifest */
        NULL,                                      /* a line far too long */
    };
    size_t count = sizeof lies / sizeof *lies;
    char lie[5100];
    for (size_t c = 0; c < 2 * count; c++) { /* each lie before a true line, then after it */
        size_t i = c % count;
        if (i == count - 2)
            snprintf(lie, sizeof lie, "%zu 2 00000000 /a/x\n", f->hdf5_end - 1);
        else if (i == count - 1)
            snprintf(lie, sizeof lie, "600 4 00000000 %s\n", long_path);
        else
            snprintf(lie, sizeof lie, "%s", lies[i]);
        if (c < count && i != 12) /* (the lie without a newline must end the manifest) */
            snprintf(lines, sizeof lines, "%s%s", lie, truth);
        else
            snprintf(lines, sizeof lines, "%s%s", truth, lie);
        b = with_manifest(f, lines, 0, &n);
        EwcStatus st = h5file_verify_image("img", b, n);
        free(b);
        if (!strstr(ewc_error_message(), "dataset manifest is damaged"))
            fail_msg("lie %zu (%s): \"%s\"", i, c < count ? "before" : "after",
                     ewc_error_message());
        assert_message(st, EWC_EFORMAT, "img: damaged (", NULL, "first damaged", NULL);
    }
    /* footers that lie about the manifest's length: longer than the file, or too short */
    size_t mlens[] = {(size_t)1 << 62, f->hdf5_end, 3};
    for (size_t i = 0; i < 3; i++) {
        b = with_manifest(f, truth, mlens[i], &n);
        assert_message(h5file_verify_image("img", b, n), EWC_EFORMAT, "manifest is damaged", NULL,
                       "first damaged", NULL);
        free(b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_manifest_lists_the_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_names_that_dataset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lying_manifest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
