/* signals.h: graceful stop on SIGTERM, SIGINT and SIGUSR1 (what Slurm sends before a time
 * limit): the first signal asks the run to checkpoint at the next step boundary and exit with
 * status 3; a second one exits at once (the last complete checkpoint stays in place). */
#ifndef EWC_SIGNALS_H
#define EWC_SIGNALS_H

#include <mpi.h>

#define SIGNALS_EXIT_STOPPED 3 /* checkpoint written: requeue and run again with --resume */
#define SIGNALS_ENV_PENDING "EWC_STOP_PENDING" /* carries a stop request across an exec */

/* Install the handlers (before MPI_Init, and again after it in case MPI replaced them). A
 * process started with SIGNALS_ENV_PENDING in its environment begins with a stop requested
 * (the program re-executes itself before MPI_Init, see blascore.h). */
void signals_install(void);

/* Whether a stop was requested on this process (local: no agreement). */
int signals_stop_pending(void);

/* Whether a stop was requested on ANY rank; all ranks get the same answer. Collective. */
int signals_stop_requested(MPI_Comm comm);

/* Ask for a stop as if a signal had arrived on this rank (tests). */
void signals_request_stop(void);

#endif
