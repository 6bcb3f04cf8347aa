/* Choosing the OpenBLAS core (blascore.h): the CPU's instruction-set level, candidate cores,
 * probe children that self-test and time one core each, the re-exec, and the rank check. */
#include "ewc/blascore.h"

#include <cblas.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ewc/dist.h"
#include "ewc/signals.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#define ENV_PROBE "EWC_BLAS_PROBE"   /* set in a probe child */
#define ENV_CHOICE "EWC_BLAS_CHOICE" /* set across the re-exec: initial|seconds|reason */
#define ENV_CORE "OPENBLAS_CORETYPE"
#define PROBE_TIMEOUT_MS 20000
#define ASSUMED_INPUTS 784 /* before the data are read: the MNIST family */
#define ASSUMED_CLASSES 10

/* ---- levels and candidates ------------------------------------------------------------------ */

static const struct {
    const char *name;
    int level;
} core_levels[] = {
    {"SapphireRapids", BLASCORE_AVX512}, {"Cooperlake", BLASCORE_AVX512},
    {"SkylakeX", BLASCORE_AVX512},       {"Haswell", BLASCORE_AVX2},
    {"Zen", BLASCORE_AVX2},              {"Excavator", BLASCORE_AVX},
    {"Steamroller", BLASCORE_AVX},       {"Piledriver", BLASCORE_AVX},
    {"Bulldozer", BLASCORE_AVX},         {"Sandybridge", BLASCORE_AVX},
    {"Nehalem", BLASCORE_SSE3},          {"Dunnington", BLASCORE_SSE3},
    {"Penryn", BLASCORE_SSE3},           {"Core2", BLASCORE_SSE3},
    {"Atom", BLASCORE_SSE3},             {"Prescott", BLASCORE_SSE3},
    {"Barcelona", BLASCORE_SSE3},        {"Opteron_SSE3", BLASCORE_SSE3},
    {"Bobcat", BLASCORE_SSE3},           {"Nano", BLASCORE_SSE3},
};

/* The representative core of each level: the one whose SGEMM kernels need only that level. */
static const char *const level_core[] = {NULL, "Prescott", "Sandybridge", "Haswell", "SkylakeX"};

int blascore_core_level(const char *name) {
    for (size_t i = 0; i < sizeof core_levels / sizeof core_levels[0]; i++)
        if (strcasecmp(name, core_levels[i].name) == 0) return core_levels[i].level;
    return 0;
}

#if defined(__x86_64__) || defined(__i386__)
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}
#endif

int blascore_cpu_level(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE3)) return 0;
    int fma = (c & bit_FMA) != 0;
    /* AVX needs the OS to save the YMM state (XCR0 bits 1-2), AVX-512 also opmask and ZMM (5-7) */
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX)) return BLASCORE_SSE3;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return BLASCORE_SSE3;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX2) || !fma) return BLASCORE_AVX;
    unsigned avx512 = bit_AVX512F | bit_AVX512DQ | bit_AVX512CD | bit_AVX512BW | bit_AVX512VL;
    if ((b & avx512) != avx512 || (xcr0 & 0xe6) != 0xe6) return BLASCORE_AVX2;
    return BLASCORE_AVX512;
#else
    return 0;
#endif
}

int blascore_candidates(int current_level, int cpu_level, const char **out) {
    int n = 0;
    for (int l = cpu_level; l > current_level && l >= BLASCORE_SSE3; l--)
        if (l <= BLASCORE_AVX512) out[n++] = level_core[l];
    return n;
}

int blascore_pick(const BlasProbe *p, int n) {
    double need = p[0].passed ? BLASCORE_GAIN * p[0].gflops : 0.0, fastest = 0.0;
    for (int i = 1; i < n; i++)
        if (p[i].passed && p[i].gflops > need && p[i].gflops > fastest) fastest = p[i].gflops;
    if (fastest <= 0.0) return 0;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (p[i].passed && p[i].gflops > need && p[i].gflops >= BLASCORE_NEAR * fastest &&
            (best == 0 || p[i].level > p[best].level))
            best = i;
    return best;
}

/* ---- probes ------------------------------------------------------------------------------- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static EwcStatus assumed_shape(const Config *cfg, ModelShape *s) {
    return model_shape_init(s, ASSUMED_INPUTS, cfg->hidden, cfg->n_hidden, ASSUMED_CLASSES);
}

/* Self-test and time the loaded core in this process, 1 BLAS thread. */
static void probe_here(const Config *cfg, BlasProbe *p) {
    ModelShape s;
    double worst;
    memset(p, 0, sizeof *p);
    snprintf(p->core, sizeof p->core, "%s", openblas_get_corename());
    p->level = blascore_core_level(p->core);
    openblas_set_num_threads(1);
    if (assumed_shape(cfg, &s) || blascore_selftest(blascore_sgemm, &s, cfg->batch, &worst)) {
        snprintf(p->note, sizeof p->note, "%s", ewc_error_message());
        ewc_error_clear();
        return;
    }
    p->passed = 1;
    p->gflops = blascore_time(&s, cfg->batch);
}

int blascore_is_probe(void) { return getenv(ENV_PROBE) != NULL; }

int blascore_probe_main(const Config *cfg) {
    BlasProbe p;
    probe_here(cfg, &p);
    printf("%s %d %.3f %s\n", p.core, p.passed, p.gflops, p.note);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Run this program as a probe child on CORE and read its verdict into P. */
static void probe_child(char **argv, const char *core, BlasProbe *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->core, sizeof p->core, "%s", core);
    p->level = blascore_core_level(core);
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(p->note, sizeof p->note, "pipe: %s", strerror(errno));
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        close(fd[1]);
        FILE *null = freopen("/dev/null", "w", stderr); /* OpenBLAS complains about odd names */
        (void)null;
        setenv(ENV_CORE, core, 1);
        setenv(ENV_PROBE, "1", 1);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fd[1]);
    if (pid < 0) {
        close(fd[0]);
        snprintf(p->note, sizeof p->note, "fork: %s", strerror(errno));
        return;
    }
    char line[256];
    size_t len = 0;
    struct pollfd pfd = {fd[0], POLLIN, 0};
    double deadline = now() + PROBE_TIMEOUT_MS / 1000.0;
    for (;;) {
        int left = (int)((deadline - now()) * 1000.0);
        if (left <= 0 || poll(&pfd, 1, left) == 0) {
            kill(pid, SIGKILL);
            snprintf(p->note, sizeof p->note, "no answer in %d s", PROBE_TIMEOUT_MS / 1000);
            break;
        }
        ssize_t r = read(fd[0], line + len, sizeof line - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        if (len == sizeof line - 1) break;
    }
    close(fd[0]);
    line[len] = '\0';
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) continue;
    if (p->note[0]) return;
    if (WIFSIGNALED(status)) {
        snprintf(p->note, sizeof p->note, "the probe died of signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return;
    }
    char got[BLASCORE_NAME_MAX];
    int passed, used = 0;
    double gflops;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(line, "%31s %d %lf %n", got, &passed, &gflops, &used) < 3) {
        snprintf(p->note, sizeof p->note, "the probe failed (exit status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return;
    }
    if (strcasecmp(got, core) != 0) {
        snprintf(p->note, sizeof p->note, "this OpenBLAS has no %s kernels (it loaded %s)", core,
                 got);
        return;
    }
    line[strcspn(line, "\n")] = '\0';
    snprintf(p->note, sizeof p->note, "%s", passed ? "" : line + used);
    p->passed = passed;
    p->gflops = gflops;
}

/* ---- the choice --------------------------------------------------------------------------- */

static void describe_probes(char *buf, size_t size, const BlasProbe *p, int n) {
    size_t len = 0;
    for (int i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s %.0f GF/s%s%s", i ? ", " : "",
                                p[i].core, p[i].gflops, p[i].passed ? "" : " FAILED: ",
                                p[i].passed ? "" : p[i].note);
}

/* Re-execute this program on CORE; returns only if exec failed. */
static void reexec(char **argv, const char *core, const BlasCore *b) {
    char choice[sizeof b->reason + 96];
    snprintf(choice, sizeof choice, "%s|%.6f|%s", b->initial, b->seconds, b->reason);
    setenv(ENV_CORE, core, 1);
    setenv(ENV_CHOICE, choice, 1);
    /* a stop asked for while probing must survive the exec (signals.h) */
    if (signals_stop_pending()) setenv(SIGNALS_ENV_PENDING, "1", 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    unsetenv(ENV_CHOICE);
}

/* After the re-exec: the record the first image left, and whether OpenBLAS obeyed it. */
static EwcStatus resume_choice(const char *choice, BlasCore *b) {
    const char *want = getenv(ENV_CORE);
    const char *bar1 = strchr(choice, '|'), *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
    if (bar1 && bar2) {
        snprintf(b->initial, sizeof b->initial, "%.*s", (int)(bar1 - choice), choice);
        b->seconds = atof(bar1 + 1);
        snprintf(b->reason, sizeof b->reason, "%s", bar2 + 1);
    }
    unsetenv(ENV_CHOICE);
    if (!bar2 || !want || strcasecmp(want, b->core) != 0) {
        ewc_error_set("--blas-core: OpenBLAS loaded %s after the re-exec, not the chosen %s",
                      b->core, want ? want : "(unset)");
        return EWC_EBLAS;
    }
    return EWC_OK;
}

EwcStatus blascore_choose(const Config *cfg, char **argv, BlasCore *out) {
    double t0 = now();
    memset(out, 0, sizeof *out);
    snprintf(out->core, sizeof out->core, "%s", openblas_get_corename());
    snprintf(out->initial, sizeof out->initial, "%s", out->core);
    const char *choice = getenv(ENV_CHOICE), *env = getenv(ENV_CORE), *mode = cfg->blas_core;
    if (choice) return resume_choice(choice, out);
    int dynamic = strstr(openblas_get_config(), "DYNAMIC_ARCH") != NULL;
    int forced = strcmp(mode, "auto") != 0 && strcmp(mode, "keep") != 0;

    if (strcmp(mode, "keep") == 0) {
        snprintf(out->reason, sizeof out->reason, "kept (--blas-core keep)");
        return EWC_OK;
    }
    if (forced && strcasecmp(mode, out->core) == 0) {
        snprintf(out->reason, sizeof out->reason, "forced (--blas-core %s)", mode);
        return EWC_OK;
    }
    if (!forced && env && *env) {
        snprintf(out->reason, sizeof out->reason,
                 "kept: %s=%s is set in the environment", ENV_CORE, env);
        return EWC_OK;
    }
    if (!dynamic) {
        snprintf(out->reason, sizeof out->reason, "kept: this OpenBLAS is built for one CPU "
                 "(no DYNAMIC_ARCH)");
        if (!forced) return EWC_OK;
        ewc_error_set("--blas-core %s: this OpenBLAS is built for one CPU (no DYNAMIC_ARCH), it "
                      "runs %s only", mode, out->core);
        return EWC_EBLAS;
    }

    BlasProbe p[BLASCORE_MAX_PROBES];
    int n = 1;
    if (forced) {
        probe_child(argv, mode, &p[0]);
        out->seconds = now() - t0;
        if (!p[0].passed) {
            ewc_error_set("--blas-core %s: %s", mode,
                          p[0].note[0] ? p[0].note : "the SGEMM self-test failed");
            return EWC_EBLAS;
        }
        snprintf(out->reason, sizeof out->reason, "forced (--blas-core %s%s%s%s), %.0f GF/s",
                 mode, env && *env ? ", overriding " : "", env && *env ? ENV_CORE "=" : "",
                 env && *env ? env : "", p[0].gflops);
        reexec(argv, p[0].core, out);
        ewc_error_set("--blas-core %s: cannot re-execute %s: %s", mode, argv[0], strerror(errno));
        return EWC_EBLAS;
    }

    const char *cand[4];
    int nc = blascore_candidates(blascore_core_level(out->core), blascore_cpu_level(), cand);
    if (nc == 0) {
        snprintf(out->reason, sizeof out->reason, "kept: OpenBLAS chose the CPU's best level");
        return EWC_OK;
    }
    probe_here(cfg, &p[0]);
    for (int i = 0; i < nc; i++) probe_child(argv, cand[i], &p[n++]);
    int best = blascore_pick(p, n);
    char tried[320];
    describe_probes(tried, sizeof tried, p, n);
    out->seconds = now() - t0;
    if (best == 0 && !p[0].passed) {
        ewc_error_set("--blas-core auto: OpenBLAS's %s kernels fail the SGEMM self-test and no "
                      "other core passes (%s)", out->core, tried);
        return EWC_EBLAS;
    }
    snprintf(out->reason, sizeof out->reason, "auto: OpenBLAS chose %s below the CPU's level; "
             "tried %s", out->core, tried);
    if (best == 0) return EWC_OK;
    reexec(argv, p[best].core, out);
    /* exec failed: carry on with the core already loaded, which passed its self-test */
    snprintf(out->reason, sizeof out->reason, "kept: re-executing on %s failed (%s); tried %s",
             p[best].core, strerror(errno), tried);
    return EWC_OK;
}

/* ---- after MPI_Init ----------------------------------------------------------------------- */

EwcStatus blascore_verify(BlasCore *b, const ModelShape *s, int batch, MPI_Comm comm,
                          int *reporter) {
    int size, rank;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    double t0 = now(), worst;
    EwcStatus st = blascore_selftest(blascore_sgemm, s, batch, &worst);
    b->selftest_seconds = now() - t0;
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ewc_error_message());
        ewc_error_clear();
        ewc_error_set("OpenBLAS core %s: %s (choose another with --blas-core NAME)", b->core, msg);
    }
    if ((st = dist_agree(comm, st, reporter))) return st;

    /* one row per rank: core name, then host name */
    enum { ROW = BLASCORE_NAME_MAX + MPI_MAX_PROCESSOR_NAME };
    char mine[ROW] = {0}, *all = malloc((size_t)size * ROW);
    int len = 0;
    if (!all) ewc_error_set("out of memory gathering the ranks' OpenBLAS cores");
    /* agreed before the gather, so a rank out of memory leaves no other waiting in it */
    if ((st = dist_agree(comm, all ? EWC_OK : EWC_ENOMEM, reporter))) {
        free(all);
        return st;
    }
    snprintf(mine, BLASCORE_NAME_MAX, "%s", b->core);
    MPI_Get_processor_name(mine + BLASCORE_NAME_MAX, &len);
    if (MPI_Allgather(mine, ROW, MPI_CHAR, all, ROW, MPI_CHAR, comm) != MPI_SUCCESS) {
        free(all);
        ewc_error_set("cannot gather the ranks' OpenBLAS cores");
        return EWC_EMPI; /* the same on every rank: no agreement needed */
    }
    for (int r = 1; r < size; r++) {
        const char *row = all + (size_t)r * ROW;
        if (strcmp(row, all) == 0) continue;
        ewc_error_set("ranks run different OpenBLAS cores, so results would not be bit-identical: "
                      "rank 0 on %s runs %s, rank %d on %s runs %s (use one CPU kind, or the "
                      "same --blas-core NAME everywhere)", all + BLASCORE_NAME_MAX, all, r,
                      row + BLASCORE_NAME_MAX, row);
        st = EWC_EBLAS;
        if (reporter) *reporter = rank == 0; /* the same message on every rank */
        break;
    }
    free(all);
    return st;
}
