/* The fixed-point reduction (see fixsum.h): exact int64 conversion of float32 micro-batch
 * gradients, their bounds and exponents, and the reduce-scatter / all-gather that sum them. */
#include "ewc/fixsum.h"

#include <cblas.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixed-point arithmetic --------------------------------------------------------------- */

int fixsum_headroom(int terms) {
    int h = 0;
    while (h < 62 && (1LL << h) < (long long)terms) h++;
    return h;
}

int fixsum_exponent(double bound) {
    if (!(bound > 0.0)) return FIXSUM_EMIN;
    int e = ilogb(bound) + 2; /* 2^(ilogb + 1) > bound, and one more bit for the GEMM's rounding */
    return e < FIXSUM_EMIN ? FIXSUM_EMIN : e;
}

static inline int64_t bits_of(double d) {
    int64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static inline double double_of(int64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* acc += round-half-even(x 2^shift) without a float-to-int64 instruction (SSE2 and AVX2 have
 * none), so the loop vectorises: for |v| <= 2^62, v = 2^32 hi + lo with hi = rne(v 2^-32) and
 * lo = v - 2^32 hi exact in float64 (|lo| <= 2^31), and each of hi and lo is rounded by the
 * 1.5 * 2^52 trick, read back as integer bits. rne(v) = 2^32 hi + rne(lo), because 2^32 hi is
 * an even integer. Values beyond LIM (or NaN) are masked to 0 and counted. Needs the default
 * rounding mode; every variant below gives the same bits. */
#define ADD_FLOATS_BODY                                                                        \
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */                                  \
    const int64_t magic_bits = 0x4338000000000000LL;                                           \
    int64_t bad = 0;                                                                           \
    for (size_t i = 0; i < n; i++) {                                                           \
        double v = (double)x[i] * scale;                                                       \
        int64_t ok = -(int64_t)(fabs(v) <= lim); /* all ones when within the bound */          \
        bad += ok + 1;                                                                         \
        v = double_of(bits_of(v) & ok);                                                        \
        double th = v * 0x1p-32 + magic;                                                       \
        double lo = v - (th - magic) * 0x1p32;                                                 \
        int64_t hi = bits_of(th) - magic_bits, lq = bits_of(lo + magic) - magic_bits;          \
        acc[i] = (acc[i] & keep) + (int64_t)((uint64_t)hi << 32) + lq;                         \
    }                                                                                          \
    return bad;

static long long add_generic(int64_t *restrict acc, const float *restrict x, size_t n,
                             double scale, double lim, int64_t keep) {
    ADD_FLOATS_BODY
}

#if defined(__x86_64__) && defined(__GNUC__)
#define FIXSUM_X86 1
__attribute__((target("avx2"))) static long long add_avx2(int64_t *restrict acc,
                                                          const float *restrict x, size_t n,
                                                          double scale, double lim, int64_t keep) {
    ADD_FLOATS_BODY
}

/* AVX-512DQ has the float64 -> int64 conversion: round-to-nearest-even in one instruction
 * (explicit rounding, whatever the MXCSR says), the same bits as the trick above. */
__attribute__((target("avx512f,avx512dq,avx512vl"))) static long long add_avx512(
    int64_t *restrict acc, const float *restrict x, size_t n, double scale, double lim,
    int64_t keep) {
    const __m512d vscale = _mm512_set1_pd(scale), vlim = _mm512_set1_pd(lim);
    const __m512i vkeep = _mm512_set1_epi64(keep);
    long long bad = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512d v = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), vscale);
        __mmask8 ok = _mm512_cmp_pd_mask(_mm512_abs_pd(v), vlim, _CMP_LE_OQ); /* NaN: not ok */
        bad += 8 - __builtin_popcount(ok);
        __m512i q = _mm512_maskz_cvt_roundpd_epi64(ok, v, _MM_FROUND_TO_NEAREST_INT |
                                                          _MM_FROUND_NO_EXC);
        __m512i old = _mm512_and_si512(_mm512_loadu_si512(acc + i), vkeep);
        _mm512_storeu_si512(acc + i, _mm512_add_epi64(old, q));
    }
    return bad + add_generic(acc + i, x + i, n - i, scale, lim, keep);
}
#endif

long long fixsum_add_floats_isa(int isa, int64_t *acc, const float *x, size_t n, int shift,
                                int lim_bits, int assign) {
    double scale = ldexp(1.0, shift), lim = ldexp(1.0, lim_bits < 62 ? lim_bits : 62);
    int64_t keep = assign ? 0 : -1;
    switch (isa) {
    case 0: return add_generic(acc, x, n, scale, lim, keep);
#ifdef FIXSUM_X86
    case 1:
        if (!__builtin_cpu_supports("avx2")) return -1;
        return add_avx2(acc, x, n, scale, lim, keep);
    case 2:
        if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq") ||
            !__builtin_cpu_supports("avx512vl"))
            return -1;
        return add_avx512(acc, x, n, scale, lim, keep);
#endif
    default: return -1;
    }
}

long long fixsum_add_floats(int64_t *acc, const float *x, size_t n, int shift, int lim_bits,
                            int assign) {
    static int isa = -1;
    if (isa < 0) {
        float probe = 0.0f;
        int64_t dummy = 0;
        isa = fixsum_add_floats_isa(2, &dummy, &probe, 1, 0, 0, 0) >= 0   ? 2
              : fixsum_add_floats_isa(1, &dummy, &probe, 1, 0, 0, 0) >= 0 ? 1
                                                                          : 0;
    }
    return fixsum_add_floats_isa(isa, acc, x, n, shift, lim_bits, assign);
}

/* Vectorised (an AVX2 clone where the CPU has it; the same bits, since ISO C mode keeps FMA
 * contraction off and nothing is reassociated). A row's max |x| is the max of the absolute
 * values' bit patterns, as unsigned integers: their order is the floats' own for non-negative
 * floats, and inf and NaN lie above every finite one. (A static function with a name unique
 * across files: clang 14 emits no resolver for a public target_clones function it does not
 * call itself, and global resolver symbols for static ones.) */
#ifdef FIXSUM_X86
__attribute__((target_clones("avx2", "default")))
#endif
static double fixsum_bound_rows(const float *d, int ldd, const float *x, int ldx, int k, int dout,
                                int cols, int square, double *colsum) {
    for (int i = 0; i < dout; i++) colsum[i] = 0.0;
    for (int r = 0; r < k; r++) {
        const float *xr = x + (size_t)r * ldx, *dr = d + (size_t)r * ldd;
        uint32_t mb = 0;
        for (int c = 0; c < cols; c++) {
            uint32_t b;
            memcpy(&b, xr + c, sizeof b);
            b &= 0x7fffffffu;
            mb = b > mb ? b : mb;
        }
        if (mb >= 0x7f800000u) return INFINITY;
        float m;
        memcpy(&m, &mb, sizeof m);
        double mr = square ? (double)m * m : (double)m;
        for (int i = 0; i < dout; i++) colsum[i] += fabs((double)dr[i]) * mr;
    }
    double b = 0.0;
    for (int i = 0; i < dout; i++) {
        if (!(colsum[i] <= 1.79e308)) return INFINITY; /* NaN or inf deltas */
        b = colsum[i] > b ? colsum[i] : b;
    }
    return b;
}

double fixsum_gemm_bound(const float *d, int ldd, const float *x, int ldx, int k, int dout,
                         int cols, int square, double *colsum) {
    return fixsum_bound_rows(d, ldd, x, ldx, k, dout, cols, square, colsum);
}

/* ---- the rule ------------------------------------------------------------------------------ */

double fixsum_exact_bytes_per_sample(const ModelShape *s) {
    double floats = 1.0; /* the loss */
    for (int l = 0; l < s->n_layers; l++) {
        if (l > 0) floats += s->dims[l] + 1; /* activations gathered for layers 1..L-1 */
        floats += s->dims[l + 1];            /* deltas of every layer */
    }
    return 4.0 * floats;
}

/* The largest share of the N rows that a rank of P gets, in micro-batches of M (fixsum_rows). */
static int largest_share(int n, int m, int p) {
    int count = (n + m - 1) / m, most = 0;
    for (int r = 0; r < p; r++) {
        long long j0 = (long long)count * r / p, j1 = (long long)count * (r + 1) / p;
        long long lo = j0 * m < n ? j0 * m : n, hi = j1 * m < n ? j1 * m : n;
        most = hi - lo > most ? (int)(hi - lo) : most;
    }
    return most;
}

int fixsum_default_micro(int batch) {
    static const int candidates[] = {96, 84, 72}, ranks[] = {2, 4};
    int best = candidates[0];
    double best_cost = INFINITY;
    for (int i = 0; i < 3; i++) {
        double cost = 0.0; /* the worst imbalance, as largest share x p / batch */
        for (int k = 0; k < 2; k++) {
            double c = (double)largest_share(batch, candidates[i], ranks[k]) * ranks[k] / batch;
            cost = c > cost ? c : cost;
        }
        if (cost < best_cost - 1e-12) {
            best = candidates[i];
            best_cost = cost;
        }
    }
    return best;
}

ReduceMode fixsum_choose(const ModelShape *s, int batch) {
    return (double)batch * fixsum_exact_bytes_per_sample(s) >= 12.0 * (double)s->n_params
               ? REDUCE_FIXED
               : REDUCE_EXACT;
}

void fixsum_resolve_config(Config *c, int inputs, int classes) {
    if (c->reduce == REDUCE_AUTO) {
        ModelShape s;
        if (model_shape_init(&s, inputs, c->hidden, c->n_hidden, classes) != EWC_OK) {
            ewc_error_clear();
            return;
        }
        c->reduce = fixsum_choose(&s, c->batch);
    }
    if (c->reduce == REDUCE_FIXED && c->micro_batch == 0)
        c->micro_batch = fixsum_default_micro(c->batch);
}

/* ---- the collective reduction ------------------------------------------------------------------ */

/* Rows of layer l's gradient converted per GEMM call: about 4 MB of float32 scratch plus int64
 * sums, so a block's sums stay in cache while every micro-batch adds to it, and the inputs are
 * packed by the SGEMM once per block. Shape only. */
static int block_rows(int din, int dout) {
    int r = (1 << 22) / (12 * (din + 1));
    r = r < 32 ? 32 : r;
    return r < dout ? r : dout;
}

EwcStatus fixsum_init(FixSum *f, MPI_Comm comm, const ModelShape *s, int micro, int max_round,
                      int merged) {
    memset(f, 0, sizeof *f);
    f->comm = comm;
    f->micro = micro > 0 ? micro : fixsum_default_micro(max_round);
    for (int l = 0; l < s->n_layers; l++) f->calls.rows[l] = merged >> l & 1 ? 0 : f->micro;
    f->max_micro = (max_round + f->micro - 1) / f->micro;
    f->n = s->n_params;
    if (MPI_Comm_rank(comm, &f->rank) != MPI_SUCCESS || MPI_Comm_size(comm, &f->size) != MPI_SUCCESS) {
        ewc_error_set("MPI_Comm_rank/size failed");
        return EWC_EMPI;
    }
    int p = f->size, maxin = 0, maxout = 0, maxblock = 0;
    if ((size_t)p > f->n) {
        ewc_error_set("--reduce fixed: %d ranks for %zu parameters", p, f->n);
        return EWC_EINVAL;
    }
    for (int l = 0; l < s->n_layers; l++) {
        int din = s->dims[l], dout = s->dims[l + 1], b = block_rows(din, dout) * (din + 1);
        maxin = din + 1 > maxin ? din + 1 : maxin;
        maxout = dout > maxout ? dout : maxout;
        maxblock = b > maxblock ? b : maxblock;
    }
    f->counts = calloc((size_t)p, sizeof(int));
    f->displs = calloc((size_t)p, sizeof(int));
    f->fcounts = calloc((size_t)p, sizeof(int));
    int largest = 0;
    if (f->counts && f->displs && f->fcounts)
        for (int r = 0; r < p; r++) {
            size_t lo = (f->n + 1) * (size_t)r / (size_t)p, hi = (f->n + 1) * (size_t)(r + 1) / (size_t)p;
            f->displs[r] = (int)lo;
            f->counts[r] = (int)(hi - lo);
            f->fcounts[r] = (int)((hi > f->n ? f->n : hi) - lo);
            largest = f->counts[r] > largest ? f->counts[r] : largest;
        }
    f->acc = malloc((f->n + 1) * sizeof(int64_t));
    f->slice = malloc((size_t)(largest ? largest : 1) * sizeof(int64_t));
    f->sum = malloc((size_t)(largest ? largest : 1) * sizeof(double));
    f->scratch = malloc((size_t)maxblock * sizeof(float));
    f->colsum = malloc((size_t)maxout * sizeof(double));
    f->red = malloc((size_t)(s->n_layers + f->max_micro) * sizeof(double));
    if (!f->counts || !f->displs || !f->fcounts || !f->acc || !f->slice || !f->sum ||
        !f->scratch || !f->colsum || !f->red) {
        fixsum_free(f);
        ewc_error_set("out of memory for the fixed-point reduction (%zu parameters)", s->n_params);
        return EWC_ENOMEM;
    }
    (void)maxin;
    return EWC_OK;
}

void fixsum_free(FixSum *f) {
    free(f->acc);
    free(f->slice);
    free(f->sum);
    free(f->scratch);
    free(f->colsum);
    free(f->red);
    free(f->counts);
    free(f->displs);
    free(f->fcounts);
    memset(f, 0, sizeof *f);
}

/* Micro-batches [*J0, *J1) of M owned by RANK of SIZE. */
static void owned(int m, int rank, int size, int *j0, int *j1) {
    *j0 = (int)((long long)m * rank / size);
    *j1 = (int)((long long)m * (rank + 1) / size);
}

void fixsum_rows(const FixSum *f, int n, int *begin, int *end) {
    int m = (n + f->micro - 1) / f->micro, j0, j1;
    owned(m, f->rank, f->size, &j0, &j1);
    *begin = j0 * f->micro < n ? j0 * f->micro : n;
    *end = j1 * f->micro < n ? j1 * f->micro : n;
}

/* The int64 sums over ranks, in place: afterwards acc[displs[rank] ..][counts[rank]] holds this
 * rank's slice of the total. A ring of p - 1 steps: in step k, rank r sends its partial sum of
 * slice (r - 1 - k) mod p to rank r + 1 and adds the one of slice (r - 2 - k) mod p received from
 * rank r - 1; after the last step the slice received is r's own, with all p terms. Integer
 * addition makes the order irrelevant. Unlike MPI_Reduce_scatter (Open MPI's ring copies the
 * whole send buffer into a freshly allocated one every call: a page fault per 4 KB of it), it
 * needs only f->slice to receive into. Bytes received: those of the bandwidth-optimal bound. */
static int reduce_scatter_ring(FixSum *f) {
    int p = f->size, r = f->rank, right = (r + 1) % p, left = (r + p - 1) % p;
    for (int k = 0; k < p - 1; k++) {
        int out = ((r - 1 - k) % p + p) % p, in = ((r - 2 - k) % p + p) % p;
        int rc = MPI_Sendrecv(f->acc + f->displs[out], f->counts[out], MPI_INT64_T, right, 0,
                              f->slice, f->counts[in], MPI_INT64_T, left, 0, f->comm,
                              MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        int64_t *restrict acc = f->acc + f->displs[in];
        const int64_t *restrict got = f->slice;
        for (int i = 0; i < f->counts[in]; i++) acc[i] += got[i];
    }
    return MPI_SUCCESS;
}

EwcStatus fixsum_add(FixSum *f, Dist *d, const ModelShape *s, const Activations *a, float **sq,
                     int n, int fisher, float *in_sq, const float *loss) {
    int L = s->n_layers, mu = f->micro, M = (n + mu - 1) / mu, j0, j1, p = f->size;
    owned(M, f->rank, p, &j0, &j1);
    int r0 = j0 * mu < n ? j0 * mu : n, r1 = j1 * mu < n ? j1 * mu : n;
    f->loss = 0.0;
    if (M > f->max_micro) {
        ewc_error_set("fixed-point reduction: a round of %d samples (at most %d micro-batches)", n,
                      f->max_micro);
        return EWC_EINVAL;
    }
    /* 1. bounds of this rank's micro-batches (max over them), loss sums; one MAX over ranks */
    double *red = f->red;
    for (int l = 0; l < L; l++) {
        int din = s->dims[l], dout = s->dims[l + 1];
        double b = 0.0;
        for (int j = j0; j < j1; j++) {
            int k0 = j * mu, k1 = k0 + mu < n ? k0 + mu : n;
            double bj = fixsum_gemm_bound(sq[l] + (size_t)k0 * dout, dout,
                                          a->act[l] + (size_t)k0 * (din + 1), din + 1, k1 - k0,
                                          dout, din + 1, fisher, f->colsum);
            b = bj > b || bj != bj ? bj : b;
        }
        red[l] = b == b ? b : INFINITY;
    }
    for (int j = 0; j < M; j++) {
        double sum = -INFINITY; /* MAX picks the owner's value: exact */
        if (loss && j >= j0 && j < j1) {
            sum = 0.0;
            for (int k = j * mu; k < (j + 1) * mu && k < n; k++) sum += loss[k];
            sum = sum == sum ? sum : INFINITY;
        }
        red[L + j] = sum;
    }
    if (p > 1) {
        if (MPI_Allreduce(MPI_IN_PLACE, red, L + M, MPI_DOUBLE, MPI_MAX, f->comm) != MPI_SUCCESS) {
            ewc_error_set("MPI_Allreduce of the fixed-point bounds failed");
            return EWC_EMPI;
        }
        d->bytes += 2 * 8 * (long long)(L + M) * (p - 1) / p;
    }
    f->loss = 0.0;
    for (int j = 0; j < M && loss; j++) f->loss += red[L + j];
    int h = fixsum_headroom(M), shift[MODEL_MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        if (!(red[l] <= 1.79e308)) {
            ewc_error_set("training diverged: the %s of layer %d is not finite (a NaN or inf in "
                          "its inputs or deltas)", fisher ? "Fisher" : "gradient", l + 1);
            f->open = 0; /* the sum in progress is abandoned */
            return EWC_ENAN;
        }
        shift[l] = 62 - h - fixsum_exponent(red[l]);
    }
    /* 2. this rank's micro-batch gradients, block by block, in fixed point */
    int first_round = !f->open;
    if (first_round) {
        f->violations = 0;
        f->open = 1;
    }
    /* each block's first micro-batch assigns its sums; a rank without micro-batches adds 0s */
    if (r1 <= r0) memset(f->acc, 0, (f->n + 1) * sizeof(int64_t));
    long long bad = 0;
    for (int l = 0; l < L; l++) {
        int din = s->dims[l], dout = s->dims[l + 1], ld = din + 1, R = block_rows(din, dout);
        const float *x = a->act[l];
        if (fisher && r1 > r0) { /* squared inputs of this rank's rows (last column 1) */
            for (size_t i = (size_t)r0 * ld; i < (size_t)r1 * ld; i++) in_sq[i] = x[i] * x[i];
            x = in_sq;
        }
        int64_t *acc = f->acc + s->offset[l];
        for (int b0 = 0; b0 < dout && r1 > r0; b0 += R) {
            int b1 = b0 + R < dout ? b0 + R : dout;
            for (int j = j0; j < j1; j++) {
                int k0 = j * mu, k1 = k0 + mu < n ? k0 + mu : n;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b1 - b0, ld, k1 - k0, 1.0f,
                            sq[l] + (size_t)k0 * dout + b0, dout, x + (size_t)k0 * ld, ld, 0.0f,
                            f->scratch, ld);
                bad += fixsum_add_floats(acc + (size_t)b0 * ld, f->scratch, (size_t)(b1 - b0) * ld,
                                         shift[l], 62 - h, j == j0);
            }
        }
    }
    f->acc[f->n] = bad;
    /* 3. integer sum over ranks; this rank's slice into the float64 round sum */
    int lo = f->displs[f->rank], cnt = f->counts[f->rank];
    if (p > 1) {
        if (reduce_scatter_ring(f) != MPI_SUCCESS) {
            ewc_error_set("the ring reduce-scatter of the fixed-point sums failed");
            return EWC_EMPI;
        }
        d->bytes += 8 * (long long)(f->n + 1 - (size_t)cnt);
    }
    const int64_t *slice = f->acc + lo;
    for (int l = 0; l < L; l++) {
        size_t a0 = s->offset[l], a1 = s->offset[l + 1];
        size_t i0 = a0 > (size_t)lo ? a0 : (size_t)lo, i1 = a1 < (size_t)(lo + cnt) ? a1 : (size_t)(lo + cnt);
        double unit = ldexp(1.0, -shift[l]);
        if (first_round)
            for (size_t i = i0; i < i1; i++) f->sum[i - lo] = (double)slice[i - lo] * unit;
        else
            for (size_t i = i0; i < i1; i++) f->sum[i - lo] += (double)slice[i - lo] * unit;
    }
    if ((size_t)(lo + cnt) == f->n + 1) f->violations += slice[cnt - 1];
    return EWC_OK;
}

EwcStatus fixsum_finish(FixSum *f, Dist *d, float *out) {
    int lo = f->displs[f->rank], cnt = f->fcounts[f->rank], p = f->size;
    for (int i = 0; i < cnt; i++) out[lo + i] = (float)f->sum[i];
    /* a bound violation, known to the owner of the status word, poisons the last element */
    if (f->violations && cnt > 0) out[f->n - 1] = NAN;
    f->open = 0;
    if (p > 1) {
        if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, f->fcounts, f->displs,
                           MPI_FLOAT, f->comm) != MPI_SUCCESS) {
            ewc_error_set("MPI_Allgatherv of the fixed-point result failed");
            return EWC_EMPI;
        }
        d->bytes += 4 * (long long)(f->n - (size_t)cnt);
    }
    if (isnan(out[f->n - 1])) {
        ewc_error_set("training diverged: a micro-batch gradient is not finite or beyond its "
                      "bound (a float overflow)");
        return EWC_ENAN;
    }
    return EWC_OK;
}
