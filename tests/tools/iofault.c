/* LD_PRELOAD shim for tests/test_io_faults.sh: makes one system call of a checkpoint write fail
 * the way a full or failing disk does, in the real program (under mpirun too). It acts only on
 * the writer's temporary files ("*.tmp.<pid>.<n>"), directories and renames, so MPI, stdio and
 * the other outputs are untouched. Environment:
 *   EWC_IOFAULT       write-enospc  the first write(2) of a temporary file fails with ENOSPC
 *                     write-eio     ... with EIO
 *                     short-enospc  it writes half the bytes, the next write fails with ENOSPC
 *                     short-only    no failure: every write is cut to at most 1000 bytes and the
 *                                   first one of each file is interrupted (EINTR)
 *                     fsync-file    fsync(2) of the temporary file fails with EIO
 *                     fsync-dir     fsync(2) of a directory fails with EIO (after the rename)
 *                     rename        rename(2) of the temporary file fails with EIO
 *                     rename-prev   rename(2) onto a "*.prev.h5" (the kept previous checkpoint)
 *                                   fails with EIO
 *   EWC_IOFAULT_SKIP  let this many checkpoint writes (temporary files) succeed first (default 0)
 *   EWC_IOFAULT_SAVE  when the fault is injected: write the fault's name to SAVE.injected and copy
 *                     the checkpoint that the temporary file was to replace to SAVE (as it is
 *                     at that moment: the test compares it with what is left afterwards) */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fsync)(int);
static int (*real_rename)(const char *, const char *);

static long files_seen;  /* temporary files whose first write was seen */
static int injected;     /* the fault happened (once per process) */

static const char *mode(void) {
    const char *m = getenv("EWC_IOFAULT");
    return m ? m : "";
}

static long skip(void) {
    const char *s = getenv("EWC_IOFAULT_SKIP");
    return s ? atol(s) : 0;
}

/* The path of FD into BUF, or "" */
static const char *fd_path(int fd, char *buf, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* the writer's temporary file "<final>.tmp.<pid>.<n>" (not other "*.tmp.*" names) */
static int is_temp(const char *path) {
    const char *t = strstr(path, ".tmp.");
    return t && t[5] >= '0' && t[5] <= '9';
}

static int ends_with(const char *s, const char *end) {
    size_t n = strlen(s), k = strlen(end);
    return n >= k && !strcmp(s + n - k, end);
}

/* Copy the final checkpoint of temporary file TEMP (TEMP up to ".tmp.") to EWC_IOFAULT_SAVE and
 * record that the fault WHAT was injected. */
static void record(const char *temp, const char *what) {
    injected = 1;
    const char *save = getenv("EWC_IOFAULT_SAVE");
    if (!save) return;
    char path[4096], marker[4200];
    snprintf(marker, sizeof marker, "%s.injected", save);
    FILE *m = fopen(marker, "w");
    if (m) {
        fprintf(m, "%s %s\n", what, temp);
        fclose(m);
    }
    if (!temp) return;
    snprintf(path, sizeof path, "%s", temp);
    char *cut = strstr(path, ".tmp.");
    if (cut) *cut = '\0';
    FILE *in = fopen(path, "rb"), *out = in ? fopen(save, "wb") : NULL;
    char buf[65536];
    for (size_t n; in && out && (n = fread(buf, 1, sizeof buf, in)) > 0;) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
}

ssize_t write(int fd, const void *data, size_t n) {
    if (!real_write) real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *m = mode();
    if (!*m || injected || (strncmp(m, "write", 5) && strncmp(m, "short", 5)))
        return real_write(fd, data, n);
    char path[4096];
    if (!is_temp(fd_path(fd, path, sizeof path))) return real_write(fd, data, n);
    static int pending_enospc = -1; /* fd whose next write fails (short-enospc) */
    int first = lseek(fd, 0, SEEK_CUR) == 0;
    if (first) files_seen++;
    if (!strcmp(m, "short-only")) {
        static int interrupted = -1;
        if (first && interrupted != fd) {
            interrupted = fd;
            errno = EINTR;
            return -1;
        }
        if (!first) interrupted = -1;
        return real_write(fd, data, n < 1000 ? n : 1000);
    }
    if (files_seen <= skip()) return real_write(fd, data, n);
    if (!strcmp(m, "short-enospc")) {
        if (first) {
            pending_enospc = fd;
            return real_write(fd, data, n / 2);
        }
        if (fd != pending_enospc) return real_write(fd, data, n);
        record(path, m);
        errno = ENOSPC;
        return -1;
    }
    if (!first) return real_write(fd, data, n);
    record(path, m);
    errno = !strcmp(m, "write-enospc") ? ENOSPC : EIO;
    return -1;
}

int fsync(int fd) {
    if (!real_fsync) real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *m = mode();
    if (injected || strncmp(m, "fsync", 5)) return real_fsync(fd);
    char path[4096];
    struct stat sb;
    fd_path(fd, path, sizeof path);
    int dir = fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (!strcmp(m, "fsync-file") && is_temp(path) && ++files_seen > skip()) {
        record(path, m);
        errno = EIO;
        return -1;
    }
    if (!strcmp(m, "fsync-dir") && dir && ++files_seen > skip()) {
        record(NULL, m);
        errno = EIO;
        return -1;
    }
    return real_fsync(fd);
}

int rename(const char *from, const char *to) {
    if (!real_rename) real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    if (!injected && !strcmp(mode(), "rename") && is_temp(from) && ++files_seen > skip()) {
        record(from, "rename");
        errno = EIO;
        return -1;
    }
    if (!injected && !strcmp(mode(), "rename-prev") && ends_with(to, ".prev.h5") &&
        ++files_seen > skip()) {
        record(from, "rename-prev");
        errno = EIO;
        return -1;
    }
    return real_rename(from, to);
}
