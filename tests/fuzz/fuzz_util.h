/* Shared by the fuzz harnesses: a check that aborts (so libFuzzer and the replay runner both see
 * a finding), and an in-memory file for readers whose API takes a path. */
#ifndef EWC_FUZZ_UTIL_H
#define EWC_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ewc/error.h"

/* A property the code under test must keep on every input; a violation is a finding. */
#define FUZZ_CHECK(cond, ...)                                                            \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* After a failed call: the library left exactly one non-empty line for main to print. */
static inline void fuzz_check_error_line(EwcStatus st) {
    const char *msg = ewc_error_message();
    FUZZ_CHECK(msg[0] != '\0', "status %d without a message", (int)st);
    FUZZ_CHECK(strchr(msg, '\n') == NULL && strchr(msg, '\r') == NULL,
               "message is not one line: \"%s\"", msg);
}

static char fuzz_memfile_path[64];
static void fuzz_memfile_remove(void) { unlink(fuzz_memfile_path); }

/* Put DATA in a file in memory (tmpfs /dev/shm, else $TMPDIR or /tmp), created once per process,
 * rewritten on each call and deleted at exit, and return its name. A real name rather than a
 * memfd's /proc/self/fd/N, because HDF5 resolves the names of the files it opens. */
static inline const char *fuzz_memfile(const uint8_t *data, size_t size) {
    static int fd = -1;
    if (fd < 0) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(fuzz_memfile_path, sizeof fuzz_memfile_path, "%s/ewc-fuzz.XXXXXX",
                 dir && strlen(dir) < 40 ? dir : "/tmp");
        fd = mkstemp(fuzz_memfile_path);
        FUZZ_CHECK(fd >= 0, "cannot create %s", fuzz_memfile_path);
        atexit(fuzz_memfile_remove);
    }
    FUZZ_CHECK(ftruncate(fd, 0) == 0, "ftruncate failed");
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        FUZZ_CHECK(w > 0, "write to %s failed", fuzz_memfile_path);
        done += (size_t)w;
    }
    return fuzz_memfile_path;
}

#endif
