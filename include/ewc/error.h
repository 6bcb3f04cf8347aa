/* Error codes and the one-line error message a library call leaves for main to print.
 * Library functions return EwcStatus and never exit; only main decides to stop. */
#ifndef EWC_ERROR_H
#define EWC_ERROR_H

typedef enum {
    EWC_OK = 0,
    EWC_EINVAL,  /* bad flag or argument */
    EWC_EIO,     /* file missing, unreadable or unwritable */
    EWC_EFORMAT, /* file exists but its content is corrupt, truncated or foreign */
    EWC_ENOMEM,  /* allocation failed */
    EWC_ENAN,    /* training diverged (NaN or Inf loss) */
    EWC_EMPI,    /* an MPI call failed, or another rank reported an error */
    EWC_ESTOP,   /* stopped by a signal after writing a checkpoint (not a failure) */
    EWC_EBLAS    /* the BLAS failed its self-test, or the ranks run different kernels */
} EwcStatus;

/* Record the message for the current failure (printf format, no trailing newline).
 * The first message wins until ewc_error_clear(), so the innermost cause is kept. */
void ewc_error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ewc_error_message(void); /* "" when none */
void ewc_error_clear(void);

#endif
