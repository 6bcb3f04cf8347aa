/* Graceful stop: a signal only sets a flag; the trainer polls it at step boundaries and all ranks
 * agree on it with one allreduce, so every rank stops after the same step. */
#include "ewc/signals.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    if (stop_requested) _exit(128 + sig); /* second signal: stop now, like the default action */
    stop_requested = 1;
}

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    if (getenv(SIGNALS_ENV_PENDING)) {
        stop_requested = 1;
        unsetenv(SIGNALS_ENV_PENDING);
    }
}

int signals_stop_pending(void) { return stop_requested != 0; }

void signals_request_stop(void) { stop_requested = 1; }

int signals_stop_requested(MPI_Comm comm) {
    int mine = stop_requested ? 1 : 0, any = mine, size;
    MPI_Comm_size(comm, &size);
    if (size > 1) MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm);
    return any;
}
