/* What the checkpoint's integrity checks cost: the CPU time of checkpoint_save and
 * checkpoint_load for a 784-1000-1000-10 EWC model with momentum and 10 finished tasks (anchors
 * and Fishers), against the CPU time of the SHA-256 and CRC-32 passes over the same bytes.
 *
 *   mpirun -np 1 bench_digest [--data DIR] [--out DIR] [--reps R]
 *
 * A save hashes twice (it verifies the checkpoint it replaces, then seals the new one) and takes
 * the CRC-32 of every dataset it writes and of every carried task it reads; a load hashes once
 * and takes the CRC-32 of every dataset it reads. */
#define BENCH_NAME "bench_digest"
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include "benchutil.h"
#include "ewc/checkpoint.h"
#include "ewc/config.h"
#include "ewc/sha256.h"
#include "ewc/train.h"

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n);
    if (!b || fread(b, 1, *n, f) != *n) die("read");
    fclose(f);
    return b;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    (void)frand01; /* (a helper of benchutil.h the other benchmarks use) */
    const char *data_dir = default_data_dir(), *out = "/tmp";
    int reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data")) data_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    Config cfg;
    config_defaults(&cfg);
    cfg.hidden[0] = cfg.hidden[1] = 1000;
    cfg.n_hidden = 2;
    cfg.tasks = 10;
    cfg.method = METHOD_EWC;
    cfg.momentum = 0.9;
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", data_dir);
    Dataset data = {0};
    Trainer t;
    if (dataset_load(&data, data_dir, 1000, 1000)) die("dataset_load");
    if (trainer_init(&t, &cfg, &data, MPI_COMM_SELF)) die("trainer_init");
    t.blas_core = "bench";
    size_t np = t.shape.n_params;
    float *anchor = malloc(np * sizeof(float)), *fisher = malloc(np * sizeof(float));
    if (!anchor || !fisher) die("malloc");
    uint64_t s = 12345;
    for (size_t i = 0; i < np; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        anchor[i] = (float)(s >> 40) * 1e-7f;
        fisher[i] = (float)(s >> 44) * 1e-9f;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_digest.%ld/checkpoint.h5", out, (long)getpid());
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bench_digest.%ld", out, (long)getpid());
    if (mkdir(dir, 0777) != 0) die(dir);
    for (int k = 0; k < cfg.tasks; k++) { /* the 10 finished tasks, as run.c saves them */
        TaskRecord rec = {k, anchor, fisher, cfg.fisher, 100, NULL};
        t.pen.tasks_done = k + 1;
        t.task = k + 1;
        if (checkpoint_save(&t, path, &rec)) die("checkpoint_save");
    }
    double save = 1e30, load = 1e30, sha = 1e30, crc = 1e30;
    size_t n = 0;
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_seconds();
        if (checkpoint_save(&t, path, NULL)) die("checkpoint_save"); /* carries all 10 tasks */
        double c1 = cpu_seconds();
        if (checkpoint_load(&t, path)) die("checkpoint_load");
        double c2 = cpu_seconds();
        unsigned char *image = slurp(path, &n), d[SHA256_BYTES];
        double c3 = cpu_seconds();
        sha256_digest(image + 512, n - 512, d);
        double c4 = cpu_seconds();
        volatile uLong x = crc32_z(0, image, n);
        (void)x;
        double c5 = cpu_seconds();
        free(image);
        save = c1 - c0 < save ? c1 - c0 : save;
        load = c2 - c1 < load ? c2 - c1 : load;
        sha = c4 - c3 < sha ? c4 - c3 : sha;
        crc = c5 - c4 < crc ? c5 - c4 : crc;
    }
    double mb = (double)n / 1e6;
    char la[32];
    loadavg(la, sizeof la);
    printf("784-1000-1000-10, 10 tasks, EWC + momentum: checkpoint %.1f MB (best of %d, CPU time,"
           " load average %s)\n", mb, reps, la);
    printf("  SHA-256 %.3f s (%.0f MB/s), CRC-32 %.3f s (%.0f MB/s) over the file\n", sha,
           mb / sha, crc, mb / crc);
    printf("  save %.3f s, of which digests ~%.3f s (2 x SHA-256) and CRCs ~%.3f s (%.0f %%)\n",
           save, 2 * sha, 2 * crc, 100 * (2 * sha + 2 * crc) / save);
    printf("  load %.3f s, of which digest ~%.3f s and CRCs ~%.3f s (%.0f %%)\n", load, sha, crc,
           100 * (sha + crc) / load);
    char prev[4200];
    snprintf(prev, sizeof prev, "%s/checkpoint.prev.h5", dir);
    unlink(path);
    unlink(prev);
    rmdir(dir);
    trainer_free(&t);
    dataset_free(&data);
    free(anchor);
    free(fisher);
    MPI_Finalize();
    return 0;
}
