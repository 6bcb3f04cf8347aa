/* Counter-based random numbers: Philox4x32-10 keyed by the seed, with (purpose, a, b, index)
 * as the counter, so any draw can be made on any rank without a shared generator state. */
#include "ewc/rng.h"

#include <Random123/philox.h>

void rng_words(uint32_t out[4], uint64_t seed, RngPurpose purpose, uint32_t a, uint32_t b,
               uint64_t index) {
    philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
    /* index uses 56 bits; the purpose takes the top byte of the last counter word */
    philox4x32_ctr_t ctr = {{a, b, (uint32_t)index,
                             (uint32_t)((index >> 32) & 0xffffffu) | ((uint32_t)purpose << 24)}};
    philox4x32_ctr_t r = philox4x32(ctr, key);
    for (int i = 0; i < 4; i++) out[i] = r.v[i];
}

float rng_uniform(uint64_t seed, RngPurpose purpose, uint32_t a, uint32_t b, uint64_t index) {
    uint32_t w[4];
    rng_words(w, seed, purpose, a, b, index);
    return (float)(w[0] >> 8) * 0x1p-24f;
}

/* Uniform integer in [0, bound) from a stream of 32-bit words (Lemire's method would be
 * faster, but rejection on the top of the range is simpler to check and this is not hot). */
static uint32_t draw_below(uint32_t bound, uint64_t seed, RngPurpose purpose, uint32_t a,
                           uint32_t b, uint64_t index) {
    uint32_t limit = UINT32_MAX - (uint32_t)(((uint64_t)UINT32_MAX + 1) % bound);
    for (uint32_t attempt = 0;; attempt++) {
        uint32_t w[4];
        /* attempts go in the top bits of the index so they never collide with another i */
        rng_words(w, seed, purpose, a, b, index | ((uint64_t)attempt << 40));
        for (int k = 0; k < 4; k++)
            if (w[k] <= limit) return w[k] % bound;
    }
}

void rng_permutation(int *perm, int n, uint64_t seed, RngPurpose purpose, uint32_t a,
                     uint32_t b) {
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)draw_below((uint32_t)i + 1, seed, purpose, a, b, (uint64_t)i);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
