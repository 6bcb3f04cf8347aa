/* SHA-256 (FIPS 180-4): the digest that seals every checkpoint file (h5file.h). Incremental:
 * init, update with any number of byte ranges, final. Not collective; no allocation. Uses the
 * x86 SHA extensions where the CPU has them. */
#ifndef EWC_SHA256_H
#define EWC_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32
#define SHA256_HEX (2 * SHA256_BYTES + 1) /* 64 lowercase hex digits and the NUL */

typedef struct {
    uint32_t h[8];          /* the running hash value H(i) */
    uint64_t length;        /* bytes hashed so far */
    unsigned char buf[64];  /* the incomplete last block */
    size_t used;            /* bytes in BUF */
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
/* Pad, finish and write the 32-byte digest to OUT; S must be re-initialised before reuse. */
void sha256_final(Sha256 *s, unsigned char out[SHA256_BYTES]);

/* The digest of N bytes at DATA, in one call. */
void sha256_digest(const void *data, size_t n, unsigned char out[SHA256_BYTES]);

/* Whether the CPU has the x86 SHA extensions, used by default when it has; sha256_set_hw(false)
 * forces the portable code (tests compare both). */
bool sha256_hw_available(void);
void sha256_set_hw(bool on);

/* DIGEST as 64 lowercase hex digits and a NUL, as sha256sum prints it. */
void sha256_hex(const unsigned char digest[SHA256_BYTES], char out[SHA256_HEX]);

#endif
