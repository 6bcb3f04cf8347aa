/* SHA-256 as specified in FIPS 180-4 (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2): 64-byte blocks,
 * big-endian words, the message padded with 0x80, zeros and its bit length; the compression in
 * portable C, or with the x86 SHA extensions where the CPU has them (same digests). */
#include "ewc/sha256.h"

#include <stdatomic.h>
#include <string.h>

/* The first 32 bits of the fractional parts of the cube roots of the first 64 primes (4.2.2). */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* One block M (64 bytes) into the hash value H (6.2.2). */
static void compress(uint32_t h[8], const unsigned char *m) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)m[4 * t] << 24 | (uint32_t)m[4 * t + 1] << 16 |
               (uint32_t)m[4 * t + 2] << 8 | (uint32_t)m[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = s1 + w[t - 7] + s0 + w[t - 16];
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] +
                      w[t];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

/* ---- x86 SHA extensions: the same compression, 4 rounds per pair of instructions ----------- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_NI 1

/* Blocks M[0..N) into H with SHA256RNDS2 / SHA256MSG1 / SHA256MSG2. The hash value is kept as
 * the lane pairs (A, B, E, F) and (C, D, G, H) that the instructions use. */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_ni(uint32_t h[8],
                                                                    const unsigned char *m,
                                                                    size_t n) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bull, 0x0405060700010203ull);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0xB1);      /* C D A B */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(h + 4)), 0x1B); /* E F G H */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                           /* A B E F */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                                /* C D G H */
    for (; n > 0; n--, m += 64) {
        __m128i save0 = s0, save1 = s1, w[4];
        for (int g = 0; g < 16; g++) { /* rounds 4g .. 4g+3 with the words W[4g .. 4g+3] */
            if (g < 4) w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(m + 16 * g)), bswap);
            __m128i k = _mm_add_epi32(w[g & 3], _mm_loadu_si128((const __m128i *)(K + 4 * g)));
            s1 = _mm_sha256rnds2_epu32(s1, s0, k);
            if (g >= 3 && g <= 14) /* W[4g+4 ..]: the next group, from the msg1 of group g-3 */
                w[(g + 1) & 3] = _mm_sha256msg2_epu32(
                    _mm_add_epi32(w[(g + 1) & 3], _mm_alignr_epi8(w[g & 3], w[(g - 1) & 3], 4)),
                    w[g & 3]);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(k, 0x0E));
            if (g >= 1 && g <= 12) w[(g - 1) & 3] = _mm_sha256msg1_epu32(w[(g - 1) & 3], w[g & 3]);
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
    }
    t = _mm_shuffle_epi32(s0, 0x1B);                                        /* F E B A */
    s1 = _mm_shuffle_epi32(s1, 0xB1);                                       /* D C H G */
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(t, s1, 0xF0));          /* D C B A */
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(s1, t, 8));        /* H G F E */
}

static bool cpu_has_sha_ni(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) return false;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)); /* CPUID.7.0:EBX.SHA */
}
#else
#define HAVE_SHA_NI 0
static bool cpu_has_sha_ni(void) { return false; }
#endif

static atomic_int use_hw = -1; /* -1: not decided yet */

bool sha256_hw_available(void) { return cpu_has_sha_ni(); }

void sha256_set_hw(bool on) { atomic_store(&use_hw, on && cpu_has_sha_ni()); }

/* N whole blocks at M into H, with the SHA extensions where the CPU has them. */
static void compress_blocks(uint32_t h[8], const unsigned char *m, size_t n) {
    int hw = atomic_load(&use_hw);
    if (hw < 0) atomic_store(&use_hw, hw = cpu_has_sha_ni());
#if HAVE_SHA_NI
    if (hw) {
        compress_ni(h, m, n);
        return;
    }
#endif
    for (; n > 0; n--, m += 64) compress(h, m);
}

void sha256_init(Sha256 *s) {
    /* the first 32 bits of the fractional parts of the square roots of the first 8 primes */
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->length = 0;
    s->used = 0;
}

void sha256_update(Sha256 *s, const void *data, size_t n) {
    const unsigned char *p = data;
    s->length += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->buf + s->used, p, take);
        s->used += take, p += take, n -= take;
        if (s->used < 64) return;
        compress_blocks(s->h, s->buf, 1);
        s->used = 0;
    }
    compress_blocks(s->h, p, n / 64);
    p += n / 64 * 64;
    n %= 64;
    memcpy(s->buf, p, n);
    s->used = n;
}

void sha256_final(Sha256 *s, unsigned char out[SHA256_BYTES]) {
    uint64_t bits = s->length * 8;
    s->buf[s->used++] = 0x80;
    if (s->used > 56) {
        memset(s->buf + s->used, 0, 64 - s->used);
        compress_blocks(s->h, s->buf, 1);
        s->used = 0;
    }
    memset(s->buf + s->used, 0, 56 - s->used);
    for (int i = 0; i < 8; i++) s->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    compress_blocks(s->h, s->buf, 1);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(s->h[i] >> (24 - 8 * j));
}

void sha256_digest(const void *data, size_t n, unsigned char out[SHA256_BYTES]) {
    Sha256 s;
    sha256_init(&s);
    sha256_update(&s, data, n);
    sha256_final(&s, out);
}

void sha256_hex(const unsigned char digest[SHA256_BYTES], char out[SHA256_HEX]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_BYTES; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[2 * SHA256_BYTES] = '\0';
}
