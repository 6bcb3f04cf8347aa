/* Sanitizer builds only: keep every shared object that is dlopen()ed loaded until exit, so that
 * LeakSanitizer can name the functions of Open MPI's and PMIx's MCA components in its stacks
 * (Open MPI dlclose()s them in MPI_Finalize, leaving "<unknown module>" frames that no suppression
 * can match). Linked into each executable, this definition interposes on libc's for all libraries.
 * ewc-train itself never calls dlclose. */
int dlclose(void *handle);

int dlclose(void *handle) {
    (void)handle;
    return 0;
}
