/* bench_pingpong: the α-β cost of a point-to-point message: half round trips of MPI_Send/Recv
 * between ranks 0 and 1 from 0 bytes to --max-bytes, latency α (0 bytes) and bandwidth β (largest
 * size). Across emulated hosts (tests/tools/netns-hosts.sh) it measures their TCP path. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_pingpong [--min-bytes N] [--max-bytes N] [--reps R] [--trips N] [--json FILE|-]\n"
                    "  --min-bytes N  smallest message (default 0: also measures the latency)\n"
                    "  --max-bytes N  largest message (default 4194304; sizes are 0, 8, 64, ...)\n"
                    "  --reps R       timed repetitions per size, each of several round trips;\n"
                    "                 the median and the best are reported (default 7)\n"
                    "  --trips N      round trips per repetition (default: about 4 MB moved,\n"
                    "                 4 to 200 trips)\n"
                    "  --json FILE    also write the results as JSON (- = print JSON only)\n");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long min_bytes = 0, max_bytes = 4194304;
    int reps = 7;
    long fixed_trips = 0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--min-bytes") && i + 1 < argc) min_bytes = atol(argv[++i]);
        else if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc) max_bytes = atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--trips") && i + 1 < argc) fixed_trips = atol(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else {
            if (rank == 0) usage();
            MPI_Finalize();
            return 2;
        }
    }
    if (size < 2 || max_bytes < 8 || min_bytes < 0 || min_bytes > max_bytes || max_bytes > (1L << 30) || reps < 1 || reps > 1000 ||
        fixed_trips < 0 || fixed_trips > 1000000) {
        if (rank == 0) {
            if (size < 2) fprintf(stderr, "bench_pingpong: needs at least 2 ranks\n");
            else usage();
        }
        MPI_Finalize();
        return 2;
    }
    char *buf = calloc((size_t)max_bytes, 1);
    double *times = malloc((size_t)reps * sizeof *times);
    if (!buf || !times) {
        fprintf(stderr, "bench_pingpong: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    char names[2][MPI_MAX_PROCESSOR_NAME] = {{0}};
    int len;
    MPI_Get_processor_name(names[rank < 2 ? rank : 0], &len);
    if (rank == 1) MPI_Send(names[1], MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
    if (rank == 0)
        MPI_Recv(names[1], MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 1, 1, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);

    FILE *js = NULL;
    if (rank == 0 && json) {
        js = strcmp(json, "-") ? fopen(json, "w") : stdout;
        if (!js) {
            fprintf(stderr, "bench_pingpong: cannot write %s\n", json);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        fprintf(js, "{\"from\": \"%s\", \"to\": \"%s\", \"ranks\": %d, \"sizes\": [", names[0],
                names[1], size);
    }
    if (rank == 0 && (!json || strcmp(json, "-")))
        printf("ping-pong %s <-> %s (%d ranks)\n%12s %8s %12s %12s %12s\n", names[0], names[1],
               size, "bytes", "trips", "best us", "median us", "MB/s (med)");
    double alpha = 0, last = 0;
    long last_bytes = 0;
    /* sizes min_bytes, then times 8 (0, 8, 64, ...), the last one max_bytes itself */
    for (long bytes = min_bytes, n = 0; bytes >= 0; n++,
              bytes = bytes == max_bytes ? -1 : bytes * 8 > max_bytes ? max_bytes : bytes ? bytes * 8 : 8) {
        /* about 4 MB moved per repetition, between 4 and 200 round trips */
        long trips = 4194304 / (bytes + 20000);
        trips = trips < 4 ? 4 : trips > 200 ? 200 : trips;
        if (fixed_trips) trips = fixed_trips;
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up (connections, buffers) */
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            for (long k = 0; k < trips && rank < 2; k++) {
                if (rank == 0) {
                    MPI_Send(buf, (int)bytes, MPI_CHAR, 1, 0, MPI_COMM_WORLD);
                    MPI_Recv(buf, (int)bytes, MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    MPI_Recv(buf, (int)bytes, MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    MPI_Send(buf, (int)bytes, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
                }
            }
            if (r >= 0) times[r] = (MPI_Wtime() - t0) / (2.0 * (double)trips);
        }
        if (rank != 0) continue;
        qsort(times, (size_t)reps, sizeof *times, cmp_double);
        double best = times[0], med = times[reps / 2];
        if (bytes == 0) alpha = med; /* else 0: beta is then the plain bytes / time */
        last = med;
        last_bytes = bytes;
        if (!json || strcmp(json, "-"))
            printf("%12ld %8ld %12.2f %12.2f %12.1f\n", bytes, trips, best * 1e6, med * 1e6,
                   (double)bytes / med / 1e6);
        if (js)
            fprintf(js, "%s\n  {\"bytes\": %ld, \"trips\": %ld, \"best_s\": %.9g, \"median_s\": %.9g}",
                    n ? "," : "", bytes, trips, best, med);
    }
    if (rank == 0) {
        double beta = last > alpha ? (double)last_bytes / (last - alpha) : 0;
        if (!json || strcmp(json, "-")) {
            if (min_bytes == 0)
                printf("alpha (latency, median of 0-byte half round trips) %.2f us\n", alpha * 1e6);
            printf("beta (bandwidth at %ld bytes%s) %.1f MB/s\n", last_bytes,
                   min_bytes == 0 ? ", alpha taken off" : "", beta / 1e6);
        }
        if (js) {
            fprintf(js, "\n], \"alpha_s\": %.9g, \"beta_bytes_per_s\": %.9g}\n", alpha, beta);
            if (js != stdout) fclose(js);
        }
    }
    free(buf);
    free(times);
    MPI_Finalize();
    return 0;
}
