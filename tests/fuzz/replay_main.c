/* Replay runner: the same harness source without libFuzzer. Feeds every file named on the
 * command line (directories: every regular file in them, in name order) to
 * LLVMFuzzerTestOneInput, so ctest replays the regression cases and seed corpus with the normal
 * compiler. Exits 1 if an argument is unreadable, no input was found at all, or the harness's
 * fuzz_replay_summary (if it has one) fails. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
/* A harness may define it to check its own totals after the last input (0 = good). */
int fuzz_replay_summary(void) __attribute__((weak));

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            uint8_t *g = realloc(buf, cap *= 2);
            if (!g) free(buf);
            buf = g;
        }
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        return -1;
    }
    /* a copy of exactly N bytes, so ASan catches reads past the end as libFuzzer would */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    long inputs = 0;
    int errors = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: not found\n", argv[i]);
            errors++;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            int r = replay_file(argv[i]);
            if (r < 0) errors++;
            else inputs += r;
            continue;
        }
        struct dirent **list;
        int n = scandir(argv[i], &list, NULL, by_name);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list %s\n", argv[i]);
            errors++;
            continue;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], list[k]->d_name);
            if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                fprintf(stderr, "replay: %s\n", path);
                int r = replay_file(path);
                if (r < 0) errors++;
                else inputs += r;
            }
            free(list[k]);
        }
        free(list);
    }
    printf("replayed %ld inputs, %d unreadable\n", inputs, errors);
    int summary = fuzz_replay_summary ? fuzz_replay_summary() : 0;
    return errors || inputs == 0 || summary ? 1 : 0;
}
