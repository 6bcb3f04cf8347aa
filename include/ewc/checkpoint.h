/* checkpoint.h: the HDF5 checkpoint of a run (layout in README.md, "Checkpoint"): the model,
 * optimizer and penalty state, position in the sequence, metrics, and per finished task its
 * anchor, Fisher and permutation. Written atomically by rank 0; read by every rank. */
#ifndef EWC_CHECKPOINT_H
#define EWC_CHECKPOINT_H

#include <stddef.h>

#include "ewc/error.h"
#include "ewc/train.h"

#define CHECKPOINT_FORMAT_VERSION 3 /* 3: sealed with a SHA-256 digest, a CRC-32 per dataset
                                     * (h5file.h); 2: --validation, --patience, --val-every (and
                                     * their data), the BLAS core and row quantum */
#define CHECKPOINT_FORMAT_OLDEST 3  /* older files have no digest: they cannot be verified, and
                                     * are refused (finish them with the ewc-train that wrote them) */
#define CHECKPOINT_NAME "checkpoint.h5"
/* next to it: checkpoint.prev.h5, the previous intact checkpoint (the fallback of --resume), and
 * checkpoint.damaged[.N].h5, a damaged checkpoint kept for inspection */

/* Per-task data handed to checkpoint_save when a task has just finished. */
typedef struct {
    int task;             /* index of the finished task */
    const float *anchor;  /* (n_params) theta* of the task */
    const float *fisher;  /* (n_params) its raw diagonal Fisher */
    FisherKind kind;
    int samples;          /* samples the Fisher averaged over */
    const char *measure;  /* what FISHER holds: "fisher", "si" or "mas" (the importance of
                           * --method si / mas); NULL means "fisher" */
} TaskRecord;

/* The importance measure a run of METHOD stores per task: "si", "mas", else "fisher". */
const char *checkpoint_measure_name(Method method);

/* Write PATH (replacing it atomically) with T's state; NEW_TASK (may be NULL) adds a finished
 * task, and the tasks already recorded in the previous PATH are carried over. The previous PATH
 * is verified first (a damaged one is EWC_EFORMAT, nothing written) and becomes PATH's sibling
 * "<stem>.prev.h5" (h5file_commit_keep). Rank 0 only. */
EwcStatus checkpoint_save(const Trainer *t, const char *path, const TaskRecord *new_task);

/* Restore T (already initialised from the same config) from PATH. Refuses a checkpoint whose
 * experiment config differs, naming the flag. Every rank calls it. */
EwcStatus checkpoint_load(Trainer *t, const char *path);

/* The same from the SIZE-byte file image at IMAGE (verified like a file; not kept), called NAME
 * in messages. For the fuzz harness: seal a mutated image with h5file_seal_image first so the
 * parsing behind the digest is reached. Not collective. */
EwcStatus checkpoint_load_image(Trainer *t, const char *name, const void *image, size_t size);

/* --resume from DIR: load DIR/checkpoint.h5; if it is damaged (or missing while
 * checkpoint.prev.h5 exists), load checkpoint.prev.h5 instead, keep the damaged file as
 * checkpoint.damaged[.N].h5, make checkpoint.h5 a copy of the previous one, and print one
 * warning line (rank 0). *RESUMED = 0 when neither file exists (a fresh start). When no intact
 * checkpoint is left: EWC_EFORMAT with one line naming the files, and nothing is moved. Any
 * other failure (a different experiment, an I/O error) is returned as is. Every rank loads the
 * same files and the ranks agree on each outcome. Collective. */
EwcStatus checkpoint_resume(Trainer *t, const char *dir, int *resumed);

/* A fresh run: remove DIR's checkpoint.h5 and checkpoint.prev.h5 (not the damaged ones kept).
 * Rank 0 only. */
EwcStatus checkpoint_discard(const char *dir);

#endif
