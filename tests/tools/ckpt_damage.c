/* Damage a real checkpoint in many seeded ways and load each damaged copy with checkpoint_load in
 * a child process (a crash or a hang is caught, not suffered): every copy must be refused with
 * one line naming the file. Used by tests/test_checkpoint_damage.sh.
 *
 *   ckpt_damage GOOD OTHER WORKDIR [EXTRA.h5 ...] -- EWC-TRAIN-FLAGS...
 *
 * GOOD: the checkpoint to damage (written by ewc-train with EWC-TRAIN-FLAGS); OTHER: a checkpoint
 * of another run with the same layout, for transplants; EXTRA: damaged files made elsewhere
 * (e.g. by h5py). Prints one line per case and the counts; exit 0 iff GOOD itself loads, no
 * damaged copy is accepted, crashes or hangs, and each bit flip in a dataset's data names
 * exactly that dataset (from the manifest). */
#include <errno.h>
#include <hdf5.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/h5file.h"
#include "ewc/run.h"
#include "ewc/train.h"
#include "ewc/validation.h"

#define CASE_SECONDS 60 /* a case still running after this is a hang */
#define MAX_RANGES 256

typedef struct {
    char name[128];
    uint64_t start, len; /* the dataset's raw data in the file */
} Range;

static struct {
    unsigned char *good, *other;
    size_t n_good, n_other;
    Range ranges[MAX_RANGES];
    int n_ranges;
    const char *work;
    Trainer t;
    int cases, refused, accepted, crashes, hangs, bad_messages, named;
    const char *expect; /* the dataset the case damaged, which the message must name */
    int expected, named_right;
} S;

static uint64_t rng_state;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return n ? next_u64() % n : 0; }

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static int write_file(const char *path, const unsigned char *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(buf, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* ---- where the datasets' data lie (from the intact file, with the raw HDF5 API) ------------ */

static herr_t visit(hid_t obj, const char *name, const H5O_info_t *info, void *client) {
    (void)client;
    if (info->type != H5O_TYPE_DATASET || S.n_ranges == MAX_RANGES) return 0;
    hid_t d = H5Dopen2(obj, name, H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    hsize_t size = H5Dget_storage_size(d);
    H5Dclose(d);
    if (off == HADDR_UNDEF || size == 0) return 0;
    Range *r = &S.ranges[S.n_ranges];
    snprintf(r->name, sizeof r->name, "/%s", name);
    /* H5Dget_offset may count from the superblock: find the data where it really is */
    r->start = off + 512 + size <= S.n_good ? off + 512 : off;
    r->len = size;
    S.n_ranges++;
    return 0;
}

static int find_ranges(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
#if H5_VERSION_GE(1, 12, 0)
    herr_t rc = H5Ovisit3(f, H5_INDEX_NAME, H5_ITER_INC, visit, NULL, H5O_INFO_BASIC);
#else
    herr_t rc = H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit, NULL, H5O_INFO_BASIC);
#endif
    /* check the offsets against the bytes HDF5 reads (float32 datasets) */
    for (int i = 0; i < S.n_ranges && rc >= 0; i++) {
        hid_t d = H5Dopen2(f, S.ranges[i].name, H5P_DEFAULT);
        unsigned char *buf = malloc(S.ranges[i].len);
        hid_t type = H5Dget_type(d);
        if (buf && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0 &&
            memcmp(buf, S.good + S.ranges[i].start, S.ranges[i].len) != 0 &&
            S.ranges[i].start >= 512 &&
            memcmp(buf, S.good + S.ranges[i].start - 512, S.ranges[i].len) == 0)
            S.ranges[i].start -= 512;
        free(buf);
        H5Tclose(type);
        H5Dclose(d);
    }
    H5Fclose(f);
    return rc < 0 ? -1 : 0;
}

/* ---- one case --------------------------------------------------------------------------- */

/* Load PATH in a child; classify the outcome. */
static void run_case(const char *what, const char *path) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        alarm(CASE_SECONDS);
        ewc_error_clear();
        EwcStatus st = checkpoint_load(&S.t, path);
        const char *msg = ewc_error_message();
        ssize_t ignored = write(fds[1], msg, strlen(msg));
        (void)ignored;
        _exit(st == EWC_OK ? 0 : 1);
    }
    close(fds[1]);
    char msg[1100];
    size_t used = 0;
    for (ssize_t k; used < sizeof msg - 1 && (k = read(fds[0], msg + used, sizeof msg - 1 - used));)
        if (k > 0) used += (size_t)k;
        else if (errno != EINTR) break;
    msg[used] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    S.cases++;
    const char *verdict;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        S.hangs++;
        verdict = "HANG";
    } else if (WIFSIGNALED(status)) {
        S.crashes++;
        verdict = "CRASH";
    } else if (WEXITSTATUS(status) == 0) {
        S.accepted++;
        verdict = "ACCEPTED";
    } else {
        S.refused++;
        verdict = "refused";
        if (!strstr(msg, path) || strchr(msg, '\n')) {
            S.bad_messages++;
            verdict = "refused, BAD MESSAGE";
        }
        if (strstr(msg, "first damaged dataset") || strstr(msg, "CRC-32 check")) S.named++;
    }
    if (S.expect) { /* named exactly: the name ends the message's parenthesis */
        char want[200];
        snprintf(want, sizeof want, "first damaged dataset: %s)", S.expect);
        S.expected++;
        if (strstr(msg, want)) S.named_right++;
        else verdict = "refused, DATASET NOT NAMED";
    }
    printf("case %3d %-40s %s: %s\n", S.cases, what, verdict, msg);
}

/* Write BUF as a damaged copy and load it. */
static void damaged_case(const char *what, const unsigned char *buf, size_t n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/damaged.h5", S.work);
    if (write_file(path, buf, n) != 0) {
        perror(path);
        exit(2);
    }
    run_case(what, path);
}

static unsigned char *copy_good(void) {
    unsigned char *b = malloc(S.n_good + 4096);
    if (!b) exit(2);
    memcpy(b, S.good, S.n_good);
    return b;
}

static void flip_case(const char *kind, int flips, uint64_t lo, uint64_t hi) {
    unsigned char *b = copy_good();
    char what[96];
    uint64_t first = 0;
    for (int i = 0; i < flips; i++) {
        uint64_t at = lo + below(hi - lo);
        if (i == 0) first = at;
        b[at] ^= (unsigned char)(1u << below(8));
    }
    /* two flips of the same bit cancel: then flip one more elsewhere in the range */
    if (memcmp(b, S.good, S.n_good) == 0) b[first] ^= 1;
    snprintf(what, sizeof what, "%s x%d @%llu", kind, flips, (unsigned long long)first);
    damaged_case(what, b, S.n_good);
    free(b);
}

/* A position after the user block that is in no dataset's data: HDF5 metadata (or free space). */
static uint64_t metadata_position(void) {
    for (;;) {
        uint64_t at = 512 + below(S.n_good - 512);
        int in_data = 0;
        for (int i = 0; i < S.n_ranges && !in_data; i++)
            in_data = at >= S.ranges[i].start && at < S.ranges[i].start + S.ranges[i].len;
        if (!in_data) return at;
    }
}

int main(int argc, char **argv) {
    int sep = 1;
    while (sep < argc && strcmp(argv[sep], "--") != 0) sep++;
    if (sep < 4 || sep == argc) {
        fprintf(stderr, "usage: %s GOOD OTHER WORKDIR [EXTRA...] -- EWC-TRAIN-FLAGS...\n", argv[0]);
        return 2;
    }
    MPI_Init(&argc, &argv);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    S.work = argv[3];
    Config cfg;
    Dataset data = {0};
    argv[sep] = "ewc-train";
    if (config_parse(&cfg, argc - sep, argv + sep) || dataset_load(&data, cfg.data_dir,
        cfg.train_samples, cfg.test_samples) || validation_split(&data, cfg.validation, cfg.seed) ||
        run_resolve_config(&cfg, &data) || trainer_init(&S.t, &cfg, &data, MPI_COMM_SELF)) {
        fprintf(stderr, "ckpt_damage: %s\n", ewc_error_message());
        return 2;
    }
    S.good = slurp(argv[1], &S.n_good);
    S.other = slurp(argv[2], &S.n_other);
    if (!S.good || !S.other || S.n_good < 4096 || find_ranges(argv[1]) != 0 || S.n_ranges < 5) {
        fprintf(stderr, "ckpt_damage: cannot read %s / %s or find its datasets\n", argv[1], argv[2]);
        return 2;
    }
    printf("%s: %zu bytes, %d datasets with data\n", argv[1], S.n_good, S.n_ranges);

    /* the control: the intact file loads */
    run_case("intact (control)", argv[1]);
    int control_ok = S.accepted == 1;
    S.cases = S.accepted = S.refused = S.named = 0;

    size_t n = S.n_good;
    rng_state = 20261201;
    for (int i = 0; i < 60; i++) flip_case("bit flip anywhere", 1, 0, n);
    for (int i = 0; i < 10; i++) flip_case("bit flip in the user block", 1, 0, 512);
    for (int i = 0; i < 40; i++) {
        unsigned char *b = copy_good();
        uint64_t at = metadata_position();
        b[at] ^= (unsigned char)(1u << below(8));
        char what[96];
        snprintf(what, sizeof what, "bit flip in HDF5 metadata @%llu", (unsigned long long)at);
        damaged_case(what, b, n);
        free(b);
    }
    for (int i = 0; i < S.n_ranges; i++) {
        char what[200];
        snprintf(what, sizeof what, "bit flip in %s", S.ranges[i].name);
        S.expect = S.ranges[i].name;
        flip_case(what, 1, S.ranges[i].start, S.ranges[i].start + S.ranges[i].len);
        S.expect = NULL;
    }
    for (int i = 0; i < 30; i++) flip_case("multiple bit flips", 2 + (int)below(15), 0, n);
    static const size_t fixed[] = {0, 1, 8, 511, 512, 513, 520, 1024};
    for (int i = 0; i < 30; i++) {
        size_t len = i < 8 ? fixed[i] : i == 8 ? n - 1 : (size_t)below(n);
        char what[96];
        snprintf(what, sizeof what, "truncated to %zu", len);
        damaged_case(what, S.good, len);
    }
    for (int i = 0; i < 40; i++) { /* runs of zeros, then of garbage */
        unsigned char *b = copy_good();
        uint64_t len = 1 + below(i % 2 ? 64 : 4096), at = below(n - len);
        int changed = 0;
        for (uint64_t k = at; k < at + len; k++) {
            unsigned char v = i < 20 ? 0 : (unsigned char)next_u64();
            changed |= b[k] != v;
            b[k] = v;
        }
        if (!changed) b[at] ^= 0xff;
        char what[96];
        snprintf(what, sizeof what, "%s run of %llu @%llu", i < 20 ? "zeroed" : "garbage",
                 (unsigned long long)len, (unsigned long long)at);
        damaged_case(what, b, n);
        free(b);
    }
    for (int i = 0; i < 3; i++) {
        unsigned char *b = copy_good();
        for (int k = 0; k < 1 + 1000 * i; k++) b[n + k] = (unsigned char)next_u64();
        damaged_case("bytes appended", b, n + 1 + 1000 * (size_t)i);
        free(b);
    }
    /* transplants from the other run: each dataset's bytes at the same place, and the header */
    int transplants = 0;
    for (int i = 0; i < S.n_ranges; i++) {
        Range *r = &S.ranges[i];
        if (r->start + r->len > S.n_other ||
            memcmp(S.good + r->start, S.other + r->start, r->len) == 0)
            continue;
        unsigned char *b = copy_good();
        memcpy(b + r->start, S.other + r->start, r->len);
        char what[200];
        snprintf(what, sizeof what, "%s from the other run", r->name);
        damaged_case(what, b, n);
        free(b);
        transplants++;
    }
    {
        unsigned char *b = copy_good();
        memcpy(b, S.other, 512);
        damaged_case("user block from the other run", b, n);
        free(b);
    }
    for (int i = 4; i < sep; i++) run_case(argv[i], argv[i]);

    printf("damage test: %d cases (%d dataset transplants), %d refused, %d accepted, %d crashes, "
           "%d hangs, %d refusals without a one-line message naming the file; %d named the "
           "damaged dataset; %d of %d flips in dataset data named exactly it; intact control"
           " %s\n", S.cases, transplants, S.refused, S.accepted, S.crashes, S.hangs,
           S.bad_messages, S.named, S.named_right, S.expected, control_ok ? "loaded" : "NOT LOADED");
    trainer_free(&S.t);
    dataset_free(&data);
    MPI_Finalize();
    return control_ok && S.cases >= 200 && S.refused == S.cases && !S.bad_messages &&
                   S.named_right == S.expected
               ? 0
               : 1;
}
