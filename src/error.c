/* The last error message, kept for main to print as one line. */
#include "ewc/error.h"

#include <stdarg.h>
#include <stdio.h>

static char error_message[1024];

void ewc_error_set(const char *fmt, ...) {
    if (error_message[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
}

const char *ewc_error_message(void) { return error_message; }

void ewc_error_clear(void) { error_message[0] = '\0'; }
