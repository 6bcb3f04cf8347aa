/* Tests for sha256: the FIPS 180-4 / NIST example vectors, and random messages of every length
 * around the block and padding boundaries (hashed whole and in random pieces) against python3's
 * hashlib, an independent implementation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ewc/sha256.h"
#include "testutil.h"

static void assert_hex(const void *data, size_t n, const char *want) {
    unsigned char d[SHA256_BYTES];
    char hex[SHA256_HEX];
    sha256_digest(data, n, d);
    sha256_hex(d, hex);
    assert_string_equal(hex, want);
}

/* The examples of FIPS 180-4's companion document (NIST "SHA256.pdf") and the empty message. */
static void nist_vectors(void) {
    assert_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 448 bits */
    assert_hex(two, strlen(two),
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *four = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"; /* 896 bits */
    assert_hex(four, strlen(four),
               "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* one million 'a', fed in pieces of 1000 bytes */
    char a[1000];
    memset(a, 'a', sizeof a);
    Sha256 s;
    unsigned char d[SHA256_BYTES];
    char hex[SHA256_HEX];
    sha256_init(&s);
    for (int i = 0; i < 1000; i++) sha256_update(&s, a, sizeof a);
    sha256_final(&s, d);
    sha256_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_nist_vectors(void **state) {
    (void)state;
    sha256_set_hw(false);
    nist_vectors();
    sha256_set_hw(true);
    nist_vectors();
}

/* Hash message LEN with random split points; must equal the one-call digest. */
static void digest_in_pieces(TestRng *r, const unsigned char *m, size_t len,
                             unsigned char out[SHA256_BYTES]) {
    Sha256 s;
    sha256_init(&s);
    size_t done = 0;
    while (done < len) {
        size_t k = (size_t)(trng_next(r) % 150);
        if (k > len - done) k = len - done;
        sha256_update(&s, m + done, k);
        done += k;
    }
    sha256_final(&s, out);
}

static void test_random_messages_match_hashlib(void **state) {
    (void)state;
    enum { N = 300 };
    static size_t lens[N];
    static unsigned char *msgs[N];
    TestRng r = {20261201};
    /* every length 0..260 (all padding cases: 55, 56, 63, 64, 119, 120, ...), then larger */
    for (int i = 0; i < N; i++) {
        lens[i] = i <= 260 ? (size_t)i : (size_t)(trng_next(&r) % (3u << 20));
        msgs[i] = malloc(lens[i] + 1);
        assert_non_null(msgs[i]);
        for (size_t k = 0; k < lens[i]; k++) msgs[i][k] = (unsigned char)trng_next(&r);
    }
    char dir[] = "/tmp/test_sha256.XXXXXX", path[64], cmd[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/msgs", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int i = 0; i < N; i++) {
        fprintf(fp, "%zu\n", lens[i]);
        assert_int_equal(fwrite(msgs[i], 1, lens[i], fp), lens[i]);
    }
    assert_int_equal(fclose(fp), 0);
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    snprintf(cmd, sizeof cmd,
             "%s -c 'import hashlib, sys\n"
             "f = open(sys.argv[1], \"rb\")\n"
             "while True:\n"
             "    n = f.readline()\n"
             "    if not n: break\n"
             "    print(hashlib.sha256(f.read(int(n))).hexdigest())' %s",
             py, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int checked = 0;
    char line[128];
    int paths = sha256_hw_available() ? 2 : 1; /* the SHA extensions, then the portable code */
    for (int i = 0; i < N && fgets(line, sizeof line, p); i++) {
        line[strcspn(line, "\n")] = '\0';
        for (int hw = paths - 1; hw >= 0; hw--) {
            unsigned char d[SHA256_BYTES], d2[SHA256_BYTES];
            char hex[SHA256_HEX];
            sha256_set_hw(hw);
            sha256_digest(msgs[i], lens[i], d);
            sha256_hex(d, hex);
            if (strcmp(hex, line) != 0)
                fail_msg("message %d (%zu bytes, %s): %s, hashlib says %s", i, lens[i],
                         hw ? "SHA extensions" : "portable", hex, line);
            digest_in_pieces(&r, msgs[i], lens[i], d2);
            assert_memory_equal(d, d2, SHA256_BYTES);
            checked++;
        }
    }
    sha256_set_hw(true);
    printf("checked %d digests (%s)\n", checked,
           paths == 2 ? "SHA extensions and portable code" : "portable code only");
    assert_int_equal(checked, N * paths);
    assert_int_equal(pclose(p), 0);
    for (int i = 0; i < N; i++) free(msgs[i]);
    unlink(path);
    rmdir(dir);
}

/* A single flipped bit anywhere changes the digest (here: every bit of a 3-block message). */
static void test_every_bit_flip_changes_the_digest(void **state) {
    (void)state;
    unsigned char m[150], d0[SHA256_BYTES], d[SHA256_BYTES];
    for (size_t i = 0; i < sizeof m; i++) m[i] = (unsigned char)(i * 37 + 1);
    sha256_digest(m, sizeof m, d0);
    for (size_t bit = 0; bit < 8 * sizeof m; bit++) {
        m[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        sha256_digest(m, sizeof m, d);
        m[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        assert_memory_not_equal(d, d0, SHA256_BYTES);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_vectors),
        cmocka_unit_test(test_random_messages_match_hashlib),
        cmocka_unit_test(test_every_bit_flip_changes_the_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
