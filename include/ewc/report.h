/* Continual-learning metrics from the accuracy matrix, and the run's output files
 * (accuracy.csv, validation_accuracy.csv, curve.csv, summary.json), each regenerated whole from
 * the trainer's state and replaced atomically, so a resumed run writes exactly what an
 * uninterrupted one would. */
#ifndef EWC_REPORT_H
#define EWC_REPORT_H

#include "ewc/error.h"
#include "ewc/train.h"

typedef struct {
    double average;           /* mean of R[k-1][j] over j < T (all tasks, seen or not) */
    double average_seen;      /* mean of R[k-1][j] over j < k */
    double bwt;               /* backward transfer: mean over j < k-1 of R[k-1][j] - R[j][j] */
    double fwt;               /* forward transfer: mean over 0 < j < k of R[j-1][j] - initial[j] */
    double forgetting;        /* mean over j < k-1 of max_{j<=t<k-1} R[t][j] - R[k-1][j] */
} Metrics;

/* Metrics after K finished tasks from ACC (T, T) row-major and INITIAL (T). Quantities with no
 * term (e.g. BWT after one task) are 0. */
void report_metrics(Metrics *m, const double *acc, const double *initial, int T, int k);

/* Write OUT_DIR/accuracy.csv with the rows of the K finished tasks. Rank 0 only. */
EwcStatus report_write_accuracy(const char *out_dir, const Trainer *t, int k);

/* Write OUT_DIR/validation_accuracy.csv (same columns, from t->val_acc). Rank 0 only. */
EwcStatus report_write_validation(const char *out_dir, const Trainer *t, int k);

/* Write OUT_DIR/curve.csv from t->curve. Rank 0 only. */
EwcStatus report_write_curve(const char *out_dir, const Trainer *t);

/* Write OUT_DIR/summary.json after K finished tasks. Rank 0 only. */
EwcStatus report_write_summary(const char *out_dir, const Trainer *t, int k, double wall_seconds);

/* Write CONTENT to PATH through a temporary file and rename (readers never see half a file). */
EwcStatus report_write_file(const char *path, const char *content, size_t len);

#endif
