/* Sanitizer build only: a leak of ours in an MPI program. Its ctest entry (sanitizers.cmake) passes
 * only if LeakSanitizer reports exactly this one allocation at every rank under mpirun: our leaks
 * reach the report, the Open MPI suppressions (lsan.supp) hide everything else. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

static void *volatile kept;

__attribute__((noinline)) static void *leak_canary_alloc(void) {
    char *p = malloc(4096);
    if (p) memset(p, 1, 4096);
    return p;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    kept = leak_canary_alloc();
    kept = NULL; /* the only pointer to it is gone */
    MPI_Finalize();
    return 0;
}
