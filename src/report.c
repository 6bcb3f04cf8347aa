/* Metrics (average accuracy, BWT, FWT, forgetting) and the CSV/JSON output files. */
#include "ewc/report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void report_metrics(Metrics *m, const double *acc, const double *initial, int T, int k) {
    memset(m, 0, sizeof *m);
    if (k < 1) return;
    const double *last = acc + (size_t)(k - 1) * T;
    for (int j = 0; j < T; j++) m->average += last[j] / T;
    for (int j = 0; j < k; j++) m->average_seen += last[j] / k;
    for (int j = 0; j + 1 < k; j++) {
        double best = acc[(size_t)j * T + j];
        for (int t = j; t + 1 < k; t++)
            best = acc[(size_t)t * T + j] > best ? acc[(size_t)t * T + j] : best;
        m->bwt += (last[j] - acc[(size_t)j * T + j]) / (k - 1);
        m->forgetting += (best - last[j]) / (k - 1);
    }
    for (int j = 1; j < k; j++) m->fwt += (acc[(size_t)(j - 1) * T + j] - initial[j]) / (k - 1);
}

/* A growable string for building a file in memory. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} Buf;

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static EwcStatus buf_write(Buf *b, const char *out_dir, const char *name) {
    char path[8192];
    EwcStatus st;
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    if (b->failed) {
        ewc_error_set("%s: out of memory building the file", path);
        st = EWC_ENOMEM;
    } else {
        st = report_write_file(path, b->s ? b->s : "", b->len);
    }
    free(b->s);
    return st;
}

EwcStatus report_write_file(const char *path, const char *content, size_t len) {
    char tmp[8300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) goto fail;
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, content + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    return EWC_OK;
fail:
    ewc_error_set("%s: cannot write: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    unlink(tmp);
    return EWC_EIO;
}

/* after_task,task,accuracy rows of the first K rows of ACC (T, T) into OUT_DIR/NAME. */
static EwcStatus write_matrix_csv(const char *out_dir, const char *name, const double *acc,
                                  int T, int k) {
    Buf b = {0};
    buf_printf(&b, "after_task,task,accuracy\n");
    for (int r = 0; r < k; r++)
        for (int j = 0; j < T; j++) buf_printf(&b, "%d,%d,%.4f\n", r, j, acc[(size_t)r * T + j]);
    return buf_write(&b, out_dir, name);
}

EwcStatus report_write_accuracy(const char *out_dir, const Trainer *t, int k) {
    return write_matrix_csv(out_dir, "accuracy.csv", t->acc, t->cfg->tasks, k);
}

EwcStatus report_write_validation(const char *out_dir, const Trainer *t, int k) {
    return write_matrix_csv(out_dir, "validation_accuracy.csv", t->val_acc, t->cfg->tasks, k);
}

EwcStatus report_write_curve(const char *out_dir, const Trainer *t) {
    Buf b = {0};
    buf_printf(&b, "step,task,accuracy\n");
    for (int i = 0; i < t->n_curve; i++)
        buf_printf(&b, "%lld,%d,%.4f\n", t->curve[i].step, t->curve[i].task, t->curve[i].accuracy);
    return buf_write(&b, out_dir, "curve.csv");
}

static void json_array(Buf *b, const double *v, int n) {
    buf_printf(b, "[");
    for (int i = 0; i < n; i++) buf_printf(b, "%s%.4f", i ? ", " : "", v[i]);
    buf_printf(b, "]");
}

/* The validation fields of summary.json (--validation), and early_stopping (--patience). */
static void summary_validation(Buf *b, const Trainer *t, int k) {
    int T = t->cfg->tasks;
    Metrics m;
    report_metrics(&m, t->val_acc, t->initial_acc, T, k);
    buf_printf(b, "  \"validation_samples\": %d,\n", t->data->val.n);
    buf_printf(b, "  \"validation_average_accuracy\": %.4f,\n", m.average);
    buf_printf(b, "  \"validation_average_accuracy_seen\": %.4f,\n", m.average_seen);
    buf_printf(b, "  \"validation_average_accuracy_after_task\": [");
    for (int r = 0; r < k; r++) {
        Metrics mr;
        report_metrics(&mr, t->val_acc, t->initial_acc, T, r + 1);
        buf_printf(b, "%s%.4f", r ? ", " : "", mr.average_seen);
    }
    buf_printf(b, "],\n  \"validation_accuracy_matrix\": [");
    for (int r = 0; r < k; r++) {
        buf_printf(b, "%s\n    ", r ? "," : "");
        json_array(b, t->val_acc + (size_t)r * T, T);
    }
    buf_printf(b, "\n  ],\n");
    if (!t->es.patience) return;
    buf_printf(b, "  \"early_stopping\": [");
    for (int r = 0; r < k; r++) {
        const EarlyStopRecord *e = &t->es.rec[r];
        buf_printf(b, "%s\n    {\"task\": %d, \"steps_trained\": %lld, \"best_step\": %lld, "
                   "\"best_validation_accuracy\": %.4f, \"stopped_early\": %s}", r ? "," : "", r,
                   e->steps_trained, e->best_step, e->best_accuracy,
                   e->stopped_early ? "true" : "false");
    }
    buf_printf(b, "\n  ],\n");
}

EwcStatus report_write_summary(const char *out_dir, const Trainer *t, int k, double wall_seconds) {
    const Config *c = t->cfg;
    int T = c->tasks;
    Buf b = {0};
    char config[16384];
    if (config_to_json(c, config, sizeof config) >= sizeof config) {
        ewc_error_set("%s/summary.json: configuration too long to record", out_dir);
        return EWC_EINVAL;
    }
    Metrics m;
    report_metrics(&m, t->acc, t->initial_acc, T, k);
    buf_printf(&b, "{\n  \"config\": %s,\n  \"ranks\": %d,\n  \"tasks_done\": %d,\n", config,
               t->dist.size, k);
    buf_printf(&b, "  \"parameters\": %zu,\n", t->shape.n_params);
    buf_printf(&b, "  \"blas_core\": \"%s\",\n  \"blas_quantum\": %d,\n",
               t->blas_core ? t->blas_core : "", t->dist.quantum);
    buf_printf(&b, "  \"average_accuracy\": %.4f,\n  \"average_accuracy_seen\": %.4f,\n",
               m.average, m.average_seen);
    buf_printf(&b, "  \"average_accuracy_after_task\": [");
    for (int r = 0; r < k; r++) {
        Metrics mr;
        report_metrics(&mr, t->acc, t->initial_acc, T, r + 1);
        buf_printf(&b, "%s%.4f", r ? ", " : "", mr.average_seen);
    }
    buf_printf(&b, "],\n  \"backward_transfer\": %.4f,\n  \"forward_transfer\": %.4f,\n", m.bwt,
               m.fwt);
    buf_printf(&b, "  \"forgetting\": %.4f,\n  \"initial_accuracy\": ", m.forgetting);
    json_array(&b, t->initial_acc, T);
    buf_printf(&b, ",\n  \"accuracy_matrix\": [");
    for (int r = 0; r < k; r++) {
        buf_printf(&b, "%s\n    ", r ? "," : "");
        json_array(&b, t->acc + (size_t)r * T, T);
    }
    buf_printf(&b, "\n  ],\n");
    if (t->val_acc) summary_validation(&b, t, k);
    buf_printf(&b, "  \"final_loss\": %.6f,\n", t->last_loss);
    double sps = t->train_seconds > 0 ? t->train_samples / t->train_seconds : 0.0;
    buf_printf(&b, "  \"wall_seconds\": %.3f,\n  \"train_seconds\": %.3f,\n", wall_seconds,
               t->train_seconds);
    buf_printf(&b, "  \"train_samples_per_second\": %.1f\n}\n", sps);
    return buf_write(&b, out_dir, "summary.json");
}
