/* The HDF5 checkpoint: everything needed to continue a run bit-for-bit, plus per finished task
 * its anchor, raw Fisher and permutation (layout documented in README.md, "Checkpoint"). */
#include "ewc/checkpoint.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ewc/dist.h"
#include "ewc/h5file.h"

#define FORMAT_NAME "ewc-train checkpoint"

/* Experiment-defining config fields, stored one attribute each on /config so a resume can name
 * the flag that differs (config_experiment_diff). Enums are stored as their integer values. */
typedef enum { F_INT, F_U64, F_DBL, F_STR, F_ENUM } FieldType;
typedef struct {
    const char *name;
    FieldType type;
    size_t offset;
    int since;       /* format version that added it (0: always there); older files mean 0 */
    double missing;  /* F_DBL: the value an older file means instead (the flag's old behaviour) */
    int may_lack;    /* 1: a file of version `since` may lack it too (added within version 2) */
} Field;
#define FIELD(n, t) {#n, t, offsetof(Config, n), 0, 0, 0}
static const Field fields[] = {
    FIELD(data_dir, F_STR),     FIELD(tasks, F_INT),          FIELD(lr, F_DBL),
    FIELD(batch, F_INT),        FIELD(epochs, F_INT),         FIELD(momentum, F_DBL),
    FIELD(seed, F_U64),         FIELD(train_samples, F_INT),  FIELD(test_samples, F_INT),
    FIELD(method, F_ENUM),      FIELD(lambda, F_DBL),         FIELD(gamma, F_DBL),
    FIELD(fisher, F_ENUM),      FIELD(fisher_samples, F_INT), FIELD(dropout_input, F_DBL),
    FIELD(dropout, F_DBL),      FIELD(penalty_step, F_ENUM),  FIELD(reduce, F_ENUM),
    {"validation", F_INT, offsetof(Config, validation), 2, 0, 0},
    {"patience", F_INT, offsetof(Config, patience), 2, 0, 0},
    {"val_every", F_INT, offsetof(Config, val_every), 2, 0, 0},
    /* --optimizer: a file without it ran SGD (enum 0); Adam's constants are then unused, and
     * read as their defaults so that a resume with the default flags is accepted */
    {"optimizer", F_ENUM, offsetof(Config, optimizer), 2, 0, 1},
    {"adam_beta1", F_DBL, offsetof(Config, adam_beta1), 2, 0.9, 1},
    {"adam_beta2", F_DBL, offsetof(Config, adam_beta2), 2, 0.999, 1},
    {"adam_eps", F_DBL, offsetof(Config, adam_eps), 2, 1e-8, 1},
    /* --adam-persist: a file without it reset Adam at every task (0) */
    {"adam_persist", F_INT, offsetof(Config, adam_persist), 2, 0, 1},
    {"micro_batch", F_INT, offsetof(Config, micro_batch), 2, 0, 1}, /* --reduce fixed */

    /* task families (tasks.h): a file without them ran permuted tasks, one shared head (0, "") */
    {"task_family", F_ENUM, offsetof(Config, task_family), 2, 0, 1},
    {"scenario", F_ENUM, offsetof(Config, scenario), 2, 0, 1},
    {"classes_per_task", F_INT, offsetof(Config, classes_per_task), 2, 0, 1},
    {"class_order", F_ENUM, offsetof(Config, class_order), 2, 0, 1},
    {"angles", F_STR, offsetof(Config, angles), 2, 0, 1},
    {"joint", F_INT, offsetof(Config, joint), 2, 0, 1},

    /* --si-xi: files before --method si lack it; read as the default */
    {"si_xi", F_DBL, offsetof(Config, si_xi), 2, 0.1, 1},
    /* --init: files before it used He-uniform (0) */
    {"init", F_ENUM, offsetof(Config, init), 2, 0, 1},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

static void hidden_string(const Config *c, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->n_hidden && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%d", i ? "," : "", c->hidden[i]);
    if (c->n_hidden == 0) snprintf(buf, size, "0");
}

static EwcStatus write_config(H5Writer *w, const Config *c) {
    EwcStatus st = EWC_OK;
    for (size_t i = 0; i < N_FIELDS && !st; i++) {
        const char *p = (const char *)c + fields[i].offset;
        switch (fields[i].type) {
        case F_INT: st = h5file_set_attr_i64(w, "/config", fields[i].name, *(const int *)p); break;
        case F_ENUM: st = h5file_set_attr_i64(w, "/config", fields[i].name, *(const int *)p); break;
        case F_U64:
            st = h5file_set_attr_i64(w, "/config", fields[i].name,
                                     (int64_t) * (const unsigned long long *)p);
            break;
        /* cppcheck-suppress invalidPointerCast ; p points at a double member (fields[i].offset) */
        case F_DBL: st = h5file_set_attr_f64(w, "/config", fields[i].name, *(const double *)p); break;
        case F_STR: st = h5file_set_attr_str(w, "/config", fields[i].name, p); break;
        }
    }
    char hidden[CONFIG_MAX_HIDDEN * 12 + 2];
    hidden_string(c, hidden, sizeof hidden);
    if (!st) st = h5file_set_attr_str(w, "/config", "hidden", hidden);
    if (!st) st = h5file_set_attr_f64(w, "/config", "permute_fraction", c->permute_fraction);
    char json[16384];
    if (!st && config_to_json(c, json, sizeof json) < sizeof json)
        st = h5file_set_attr_str(w, "/", "config", json);
    return st;
}

/* Rebuild the experiment fields stored in R over a copy of CUR, then name the first difference. */
static EwcStatus check_config(const H5Reader *r, const Config *cur, const char *path,
                              int64_t version) {
    Config old = *cur;
    EwcStatus st = EWC_OK;
    for (size_t i = 0; i < N_FIELDS && !st; i++) {
        char *p = (char *)&old + fields[i].offset;
        int64_t v;
        if (fields[i].since > version ||
            (fields[i].may_lack && !h5file_attr_exists(r, "/config", fields[i].name))) {
            /* an older file: the flag did not exist, i.e. 0 (or the recorded old meaning) */
            /* cppcheck-suppress invalidPointerCast ; p points at a double member (fields[i].offset) */
            if (fields[i].type == F_DBL) *(double *)p = fields[i].missing;
            else *(int *)p = 0;
            continue;
        }
        switch (fields[i].type) {
        case F_INT:
        case F_ENUM:
            if (!(st = h5file_get_attr_i64(r, "/config", fields[i].name, &v))) *(int *)p = (int)v;
            break;
        case F_U64:
            if (!(st = h5file_get_attr_i64(r, "/config", fields[i].name, &v)))
                *(unsigned long long *)p = (unsigned long long)v;
            break;
        /* cppcheck-suppress invalidPointerCast ; p points at a double member (fields[i].offset) */
        case F_DBL: st = h5file_get_attr_f64(r, "/config", fields[i].name, (double *)p); break;
        case F_STR: st = h5file_get_attr_str(r, "/config", fields[i].name, p, CONFIG_PATH_MAX); break;
        }
    }
    char stored[CONFIG_MAX_HIDDEN * 12 + 2], mine[sizeof stored];
    if (!st) st = h5file_get_attr_str(r, "/config", "hidden", stored, sizeof stored);
    /* checkpoints written before --permute-fraction existed lack it: they permuted every pixel */
    old.permute_fraction = 1.0;
    if (!st && h5file_attr_exists(r, "/config", "permute_fraction"))
        st = h5file_get_attr_f64(r, "/config", "permute_fraction", &old.permute_fraction);
    if (st) return st;
    hidden_string(cur, mine, sizeof mine);
    const char *diff = strcmp(stored, mine) ? "--hidden" : config_experiment_diff(&old, cur);
    if (diff) {
        ewc_error_set("%s: was written with a different %s; resuming would change the experiment"
                      " (use the original flags, or a new --out)", path, diff);
        return EWC_EINVAL;
    }
    return EWC_OK;
}

/* Write a slab (n_params, layout of model.h) as GROUP/layer<K>/{W (out, in), b (out)}. */
/* Scratch for one layer's W (out, in) and b (out), the largest layer's size; NULL on failure. */
static float *layer_scratch(const ModelShape *s, float **bbuf) {
    size_t maxw = 0;
    for (int l = 0; l < s->n_layers; l++) {
        size_t n = (size_t)s->dims[l + 1] * s->dims[l];
        maxw = n > maxw ? n : maxw;
    }
    float *wbuf = malloc(maxw * sizeof(float));
    *bbuf = malloc(maxw * sizeof(float));
    if (!wbuf || !*bbuf) {
        free(wbuf);
        free(*bbuf);
        ewc_error_set("out of memory for the checkpoint's layer buffers");
        return NULL;
    }
    return wbuf;
}

static EwcStatus write_slab(H5Writer *w, const ModelShape *s, const char *group, const float *slab) {
    EwcStatus st = EWC_OK;
    float *bbuf, *wbuf = layer_scratch(s, &bbuf);
    if (!wbuf) return EWC_ENOMEM;
    for (int l = 0; l < s->n_layers && !st; l++) {
        int din = s->dims[l], dout = s->dims[l + 1];
        const float *wb = slab + s->offset[l];
        for (int i = 0; i < dout; i++) {
            memcpy(wbuf + (size_t)i * din, wb + (size_t)i * (din + 1), (size_t)din * sizeof(float));
            bbuf[i] = wb[(size_t)i * (din + 1) + din];
        }
        char path[256];
        uint64_t dw[2] = {(uint64_t)dout, (uint64_t)din}, db[1] = {(uint64_t)dout};
        snprintf(path, sizeof path, "%s/layer%d/W", group, l);
        if ((st = h5file_write_f32(w, path, wbuf, 2, dw))) break;
        snprintf(path, sizeof path, "%s/layer%d/b", group, l);
        st = h5file_write_f32(w, path, bbuf, 1, db);
    }
    free(wbuf);
    free(bbuf);
    return st;
}

/* Read GROUP/layer<K>/{W, b} into SLAB, checking every shape against S. */
static EwcStatus read_slab(const H5Reader *r, const ModelShape *s, const char *group, float *slab) {
    EwcStatus st = EWC_OK;
    float *bbuf, *wbuf = layer_scratch(s, &bbuf);
    if (!wbuf) return EWC_ENOMEM;
    for (int l = 0; l < s->n_layers && !st; l++) {
        int din = s->dims[l], dout = s->dims[l + 1];
        char path[256];
        uint64_t dw[2] = {(uint64_t)dout, (uint64_t)din}, db[1] = {(uint64_t)dout};
        snprintf(path, sizeof path, "%s/layer%d/W", group, l);
        if ((st = h5file_read_f32(r, path, wbuf, 2, dw))) break;
        snprintf(path, sizeof path, "%s/layer%d/b", group, l);
        if ((st = h5file_read_f32(r, path, bbuf, 1, db))) break;
        float *wb = slab + s->offset[l];
        for (int i = 0; i < dout; i++) {
            memcpy(wb + (size_t)i * (din + 1), wbuf + (size_t)i * din, (size_t)din * sizeof(float));
            wb[(size_t)i * (din + 1) + din] = bbuf[i];
        }
    }
    free(wbuf);
    free(bbuf);
    return st;
}

static EwcStatus write_task(H5Writer *w, const Trainer *t, const TaskRecord *rec) {
    char g[64], path[96];
    snprintf(g, sizeof g, "/tasks/%03d", rec->task);
    snprintf(path, sizeof path, "%s/anchor", g);
    EwcStatus st = write_slab(w, &t->shape, path, rec->anchor);
    snprintf(path, sizeof path, "%s/fisher", g);
    if (!st) st = write_slab(w, &t->shape, path, rec->fisher);
    snprintf(path, sizeof path, "%s/permutation", g);
    uint64_t dim[1] = {(uint64_t)t->dim};
    if (!st) st = h5file_write_i32(w, path, (const int32_t *)t->perm[rec->task], 1, dim);
    if (!st) st = h5file_set_attr_str(w, g, "fisher_kind", config_fisher_name(rec->kind));
    if (!st) st = h5file_set_attr_i64(w, g, "fisher_samples", rec->samples);
    if (!st) st = h5file_set_attr_str(w, g, "importance", rec->measure ? rec->measure : "fisher");
    return st;
}

const char *checkpoint_measure_name(Method method) {
    return method == METHOD_SI ? "si" : method == METHOD_MAS ? "mas" : "fisher";
}

/* Copy task K's group from the previous checkpoint R into W (read, then write). */
static EwcStatus copy_task(H5Writer *w, const H5Reader *r, const Trainer *t, int k, float *a,
                           float *f) {
    char g[64], path[96], kind[32];
    snprintf(g, sizeof g, "/tasks/%03d", k);
    snprintf(path, sizeof path, "%s/anchor", g);
    EwcStatus st = read_slab(r, &t->shape, path, a);
    snprintf(path, sizeof path, "%s/fisher", g);
    if (!st) st = read_slab(r, &t->shape, path, f);
    int64_t samples = 0;
    if (!st) st = h5file_get_attr_str(r, g, "fisher_kind", kind, sizeof kind);
    if (!st) st = h5file_get_attr_i64(r, g, "fisher_samples", &samples);
    if (st) return st;
    /* keep the kind recorded with the task (a resume requires the same --fisher anyway) */
    FisherKind fk = t->cfg->fisher;
    for (int i = FISHER_EMPIRICAL; i <= FISHER_EXPECTED; i++)
        if (strcmp(kind, config_fisher_name((FisherKind)i)) == 0) fk = (FisherKind)i;
    /* files before --method si / mas have no "importance": their tasks hold Fishers */
    char measure[16] = "fisher";
    if (h5file_attr_exists(r, g, "importance") &&
        (st = h5file_get_attr_str(r, g, "importance", measure, sizeof measure)))
        return st;
    TaskRecord rec = {k, a, f, fk, (int)samples, measure};
    return write_task(w, t, &rec);
}

/* The records of the TASKS_DONE finished tasks, which the next save copies over: check their
 * shapes and attributes (metadata only) so a damaged one is refused at load time, not after the
 * next task's training. */
static EwcStatus check_tasks(const H5Reader *r, const Trainer *t, int tasks_done, const char *path) {
    const ModelShape *s = &t->shape;
    EwcStatus st;
    for (int k = 0; k < tasks_done; k++) {
        char g[64], p[128], kind[32];
        int64_t samples;
        uint64_t dims[H5FILE_MAX_RANK];
        int rank;
        snprintf(g, sizeof g, "/tasks/%03d", k);
        for (int part = 0; part < 2; part++)
            for (int l = 0; l < s->n_layers; l++)
                for (int is_b = 0; is_b < 2; is_b++) {
                    snprintf(p, sizeof p, "%s/%s/layer%d/%s", g, part ? "fisher" : "anchor", l,
                             is_b ? "b" : "W");
                    if ((st = h5file_dims(r, p, &rank, dims))) return st;
                    if (rank != 2 - is_b || dims[0] != (uint64_t)s->dims[l + 1] ||
                        (!is_b && dims[1] != (uint64_t)s->dims[l])) {
                        ewc_error_set("%s: %s has the wrong shape for this model", path, p);
                        return EWC_EFORMAT;
                    }
                }
        snprintf(p, sizeof p, "%s/permutation", g);
        if ((st = h5file_dims(r, p, &rank, dims))) return st;
        if (rank != 1 || dims[0] != (uint64_t)t->dim) {
            ewc_error_set("%s: %s has the wrong shape for this model", path, p);
            return EWC_EFORMAT;
        }
        if ((st = h5file_get_attr_str(r, g, "fisher_kind", kind, sizeof kind)) ||
            (st = h5file_get_attr_i64(r, g, "fisher_samples", &samples)))
            return st;
    }
    return EWC_OK;
}

/* --patience: the best-so-far state of the current task and the finished tasks' records. */
static EwcStatus write_early_stopping(H5Writer *w, const Trainer *t) {
    const EarlyStop *e = &t->es;
    int T = t->cfg->tasks;
    uint64_t np[1] = {t->shape.n_params}, d3[2] = {(uint64_t)T, 3}, d1[1] = {(uint64_t)T};
    EwcStatus st;
    if ((st = h5file_set_attr_f64(w, "/state/early_stopping", "best_accuracy", e->best_accuracy)) ||
        (st = h5file_set_attr_i64(w, "/state/early_stopping", "best_step", e->best_step)) ||
        (st = h5file_set_attr_i64(w, "/state/early_stopping", "bad_checks", e->bad_checks)) ||
        (st = h5file_write_f32(w, "/state/early_stopping/best", e->best, 1, np)))
        return st;
    int64_t *rec = malloc((size_t)T * 3 * sizeof *rec);
    double *acc = malloc((size_t)T * sizeof *acc);
    if (!rec || !acc) {
        ewc_error_set("out of memory writing the checkpoint");
        st = EWC_ENOMEM;
    }
    for (int k = 0; !st && k < T; k++) {
        rec[3 * k] = e->rec[k].steps_trained;
        rec[3 * k + 1] = e->rec[k].best_step;
        rec[3 * k + 2] = e->rec[k].stopped_early;
        acc[k] = e->rec[k].best_accuracy;
    }
    if (!st) st = h5file_write_i64(w, "/metrics/early_stopping", rec, 2, d3);
    if (!st) st = h5file_write_f64(w, "/metrics/early_stopping_accuracy", acc, 1, d1);
    free(rec);
    free(acc);
    return st;
}

/* Read what write_early_stopping wrote, checking the values against the run. */
static EwcStatus read_early_stopping(const H5Reader *r, Trainer *t, const char *path) {
    EarlyStop *e = &t->es;
    int T = t->cfg->tasks;
    long long max_steps = (long long)t->cfg->epochs * trainer_steps_per_epoch(t);
    uint64_t np[1] = {t->shape.n_params}, d3[2] = {(uint64_t)T, 3}, d1[1] = {(uint64_t)T};
    int64_t best_step, bad;
    EwcStatus st;
    if ((st = h5file_get_attr_f64(r, "/state/early_stopping", "best_accuracy",
                                  &e->best_accuracy)) ||
        (st = h5file_get_attr_i64(r, "/state/early_stopping", "best_step", &best_step)) ||
        (st = h5file_get_attr_i64(r, "/state/early_stopping", "bad_checks", &bad)) ||
        (st = h5file_read_f32(r, "/state/early_stopping/best", e->best, 1, np)))
        return st;
    if (best_step < 0 || best_step > max_steps || bad < 0 || bad >= e->patience) {
        ewc_error_set("%s: inconsistent early-stopping state (best step %lld, %lld checks without"
                      " improvement)", path, (long long)best_step, (long long)bad);
        return EWC_EFORMAT;
    }
    e->best_step = best_step;
    e->bad_checks = (int)bad;
    int64_t *rec = malloc((size_t)T * 3 * sizeof *rec);
    double *acc = malloc((size_t)T * sizeof *acc);
    if (!rec || !acc) {
        ewc_error_set("out of memory reading the checkpoint");
        st = EWC_ENOMEM;
    }
    if (!st) st = h5file_read_i64(r, "/metrics/early_stopping", rec, 2, d3);
    if (!st) st = h5file_read_f64(r, "/metrics/early_stopping_accuracy", acc, 1, d1);
    for (int k = 0; !st && k < T; k++)
        e->rec[k] = (EarlyStopRecord){rec[3 * k], rec[3 * k + 1], acc[k], rec[3 * k + 2] != 0};
    free(rec);
    free(acc);
    return st;
}

/* --optimizer adam: the moments and the step count since the task's start (at most its steps),
 * or since the run's start with --adam-persist (at most every task's steps). */
static EwcStatus read_adam(const H5Reader *r, Trainer *t, const char *path) {
    uint64_t np[1] = {t->shape.n_params};
    long long max_steps = (long long)t->cfg->epochs * trainer_steps_per_epoch(t) *
                          (t->cfg->adam_persist ? t->cfg->tasks : 1);
    int64_t step;
    EwcStatus st;
    if ((st = h5file_read_f32(r, "/state/adam/m", t->adam.m, 1, np)) ||
        (st = h5file_read_f32(r, "/state/adam/v", t->adam.v, 1, np)) ||
        (st = h5file_get_attr_i64(r, "/state/adam", "step", &step)))
        return st;
    if (step < 0 || step > max_steps) {
        ewc_error_set("%s: inconsistent Adam state (step %lld of a task of %lld steps)", path,
                      (long long)step, max_steps);
        return EWC_EFORMAT;
    }
    t->adam.t = step;
    return EWC_OK;
}

static EwcStatus write_state(H5Writer *w, const Trainer *t, int tasks_done) {
    const Config *c = t->cfg;
    int T = c->tasks;
    EwcStatus st;
    uint64_t np[1] = {t->shape.n_params}, tt[2] = {(uint64_t)T, (uint64_t)T}, nc[1];
    if ((st = h5file_set_attr_str(w, "/", "format", FORMAT_NAME))) return st;
    if ((st = h5file_set_attr_i64(w, "/", "format_version", CHECKPOINT_FORMAT_VERSION))) return st;
    if ((st = h5file_set_attr_i64(w, "/", "tasks_done", tasks_done))) return st;
    if ((st = h5file_set_attr_i64(w, "/", "n_params", (int64_t)t->shape.n_params))) return st;
    if ((st = h5file_set_attr_str(w, "/", "blas_core", t->blas_core ? t->blas_core : ""))) return st;
    if ((st = h5file_set_attr_i64(w, "/", "blas_quantum", t->dist.quantum))) return st;
    if ((st = write_config(w, c))) return st;
    if ((st = write_slab(w, &t->shape, "/model", t->params))) return st;

    if ((st = h5file_set_attr_i64(w, "/state", "task", t->task))) return st;
    if ((st = h5file_set_attr_i64(w, "/state", "epoch", t->epoch))) return st;
    if ((st = h5file_set_attr_i64(w, "/state", "step", t->step))) return st;
    if ((st = h5file_set_attr_i64(w, "/state", "global_step", t->global_step))) return st;
    if ((st = h5file_set_attr_i64(w, "/state", "train_samples", t->train_samples))) return st;
    if ((st = h5file_set_attr_f64(w, "/state", "train_seconds", t->train_seconds))) return st;
    if ((st = h5file_set_attr_f64(w, "/state", "last_loss", t->last_loss))) return st;
    if (t->mom && (st = h5file_write_f32(w, "/state/momentum", t->mom, 1, np))) return st;
    if (t->adam.m && ((st = h5file_write_f32(w, "/state/adam/m", t->adam.m, 1, np)) ||
                      (st = h5file_write_f32(w, "/state/adam/v", t->adam.v, 1, np)) ||
                      (st = h5file_set_attr_i64(w, "/state/adam", "step", t->adam.t))))
        return st;
    if (t->es.patience && (st = write_early_stopping(w, t))) return st;
    if (t->si.w && ((st = h5file_write_f32(w, "/state/si/w", t->si.w, 1, np)) ||
                    (st = h5file_write_f32(w, "/state/si/start", t->si.start, 1, np))))
        return st;
    if ((st = h5file_set_attr_i64(w, "/state/penalty", "tasks_done", t->pen.tasks_done))) return st;
    if ((st = h5file_set_attr_f64(w, "/state/penalty", "c", t->pen.c))) return st;
    if (t->pen.a && (st = h5file_write_f32(w, "/state/penalty/a", t->pen.a, 1, np))) return st;
    if (t->pen.b && (st = h5file_write_f64(w, "/state/penalty/b", t->pen.b, 1, np))) return st;

    if ((st = h5file_write_f64(w, "/metrics/initial_accuracy", t->initial_acc, 1, tt))) return st;
    if ((st = h5file_write_f64(w, "/metrics/accuracy", t->acc, 2, tt))) return st;
    if (t->val_acc && (st = h5file_write_f64(w, "/metrics/validation_accuracy", t->val_acc, 2, tt)))
        return st;
    nc[0] = (uint64_t)t->n_curve;
    int64_t *steps = malloc(((size_t)t->n_curve + 1) * sizeof *steps);
    int32_t *tasks = malloc(((size_t)t->n_curve + 1) * sizeof *tasks);
    double *accs = malloc(((size_t)t->n_curve + 1) * sizeof *accs);
    if (!steps || !tasks || !accs) {
        ewc_error_set("out of memory writing the checkpoint");
        st = EWC_ENOMEM;
    }
    for (int i = 0; !st && i < t->n_curve; i++) {
        steps[i] = t->curve[i].step;
        tasks[i] = t->curve[i].task;
        accs[i] = t->curve[i].accuracy;
    }
    if (!st) st = h5file_set_attr_i64(w, "/metrics", "curve_points", t->n_curve);
    if (!st && t->n_curve) {
        st = h5file_write_i64(w, "/metrics/curve_step", steps, 1, nc);
        if (!st) st = h5file_write_i32(w, "/metrics/curve_task", tasks, 1, nc);
        if (!st) st = h5file_write_f64(w, "/metrics/curve_accuracy", accs, 1, nc);
    }
    free(steps);
    free(tasks);
    free(accs);
    return st;
}

/* "<dir>/checkpoint.prev.h5" for "<dir>/checkpoint.h5" (KIND = "prev"); "<path>.<KIND>" for a
 * name without ".h5". EWC_EINVAL if it does not fit in OUT[H5FILE_PATH_MAX]. */
static EwcStatus sibling_path(char *out, const char *path, const char *kind) {
    size_t n = strlen(path);
    int k = n > 3 && strcmp(path + n - 3, ".h5") == 0
                ? snprintf(out, H5FILE_PATH_MAX, "%.*s.%s.h5", (int)(n - 3), path, kind)
                : snprintf(out, H5FILE_PATH_MAX, "%s.%s", path, kind);
    if (k < 0 || k >= H5FILE_PATH_MAX) {
        ewc_error_set("%s: path too long", path);
        return EWC_EINVAL;
    }
    return EWC_OK;
}

EwcStatus checkpoint_save(const Trainer *t, const char *path, const TaskRecord *new_task) {
    H5Writer w = {0};
    H5Reader old = {0};
    int tasks_done = t->pen.tasks_done, carry = new_task ? new_task->task : tasks_done;
    float *a = NULL, *f = NULL;
    char prev[H5FILE_PATH_MAX];
    EwcStatus st;
    if ((st = sibling_path(prev, path, "prev"))) return st;
    /* the finished tasks before this one live in the previous checkpoint: copy them over. That
     * file also becomes checkpoint.prev.h5, so it is verified even when nothing is carried: a
     * damaged one stops the run here (--resume then falls back), never turns into the fallback */
    if (carry > 0 || access(path, F_OK) == 0) {
        if ((st = h5file_open_read(&old, path))) return st;
        int64_t old_done = 0;
        if (carry > 0 && (st = h5file_get_attr_i64(&old, "/", "tasks_done", &old_done))) goto fail;
        if (old_done < carry) {
            ewc_error_set("%s: records %lld finished tasks, expected at least %d", path,
                          (long long)old_done, carry);
            st = EWC_EFORMAT;
            goto fail;
        }
        a = malloc(t->shape.n_params * sizeof(float));
        f = malloc(t->shape.n_params * sizeof(float));
        if (!a || !f) {
            ewc_error_set("out of memory writing the checkpoint");
            st = EWC_ENOMEM;
            goto fail;
        }
    }
    if ((st = h5file_remove_stale_temps(path))) goto fail;
    if ((st = h5file_create_temp(&w, path))) goto fail;
    for (int k = 0; k < carry && !st; k++) st = copy_task(&w, &old, t, k, a, f);
    if (!st && new_task) st = write_task(&w, t, new_task);
    if (!st) st = write_state(&w, t, tasks_done);
    h5file_close(&old);
    if (st) goto fail;
    st = h5file_commit_keep(&w, prev);
    free(a);
    free(f);
    return st;
fail:
    h5file_abort(&w);
    h5file_close(&old);
    free(a);
    free(f);
    return st;
}

/* Restore T from the verified, open checkpoint R (called PATH in messages); closes R. */
static EwcStatus load_open(Trainer *t, H5Reader *r_open, const char *path) {
    H5Reader r = *r_open;
    const Config *c = t->cfg;
    int T = c->tasks;
    char format[64];
    int64_t version, tasks_done, np;
    EwcStatus st;
    if ((st = h5file_get_attr_str(&r, "/", "format", format, sizeof format)) ||
        strcmp(format, FORMAT_NAME) != 0) {
        ewc_error_clear();
        ewc_error_set("%s: not an ewc-train checkpoint", path);
        st = EWC_EFORMAT;
        goto done;
    }
    if ((st = h5file_get_attr_i64(&r, "/", "format_version", &version))) goto done;
    if (version < CHECKPOINT_FORMAT_OLDEST || version > CHECKPOINT_FORMAT_VERSION) {
        ewc_error_set("%s: checkpoint format version %lld, this ewc-train reads versions %d to"
                      " %d%s", path, (long long)version, CHECKPOINT_FORMAT_OLDEST,
                      CHECKPOINT_FORMAT_VERSION,
                      version > CHECKPOINT_FORMAT_VERSION ? " (written by a newer ewc-train)" : "");
        st = EWC_EFORMAT;
        goto done;
    }
    if ((st = check_config(&r, c, path, version))) goto done;
    if ((st = h5file_get_attr_i64(&r, "/", "tasks_done", &tasks_done))) goto done;
    if ((st = h5file_get_attr_i64(&r, "/", "n_params", &np))) goto done;
    int64_t quantum = 0; /* version 1 did not record the BLAS: "" means unknown */
    t->resumed_blas_core[0] = '\0';
    if (version >= 2 && ((st = h5file_get_attr_str(&r, "/", "blas_core", t->resumed_blas_core,
                                                   sizeof t->resumed_blas_core)) ||
                         (st = h5file_get_attr_i64(&r, "/", "blas_quantum", &quantum))))
        goto done;
    t->resumed_quantum = (int)quantum;
    if (np != (int64_t)t->shape.n_params || tasks_done < 0 || tasks_done > T) {
        ewc_error_set("%s: inconsistent checkpoint (%lld parameters, %lld tasks done)", path,
                      (long long)np, (long long)tasks_done);
        st = EWC_EFORMAT;
        goto done;
    }
    uint64_t npd[1] = {t->shape.n_params}, tt[2] = {(uint64_t)T, (uint64_t)T};
    if ((st = check_tasks(&r, t, (int)tasks_done, path))) goto done;
    if ((st = read_slab(&r, &t->shape, "/model", t->params))) goto done;
    int64_t task, epoch, step, gstep, samples, pen_done, n_curve;
    if ((st = h5file_get_attr_i64(&r, "/state", "task", &task)) ||
        (st = h5file_get_attr_i64(&r, "/state", "epoch", &epoch)) ||
        (st = h5file_get_attr_i64(&r, "/state", "step", &step)) ||
        (st = h5file_get_attr_i64(&r, "/state", "global_step", &gstep)) ||
        (st = h5file_get_attr_i64(&r, "/state", "train_samples", &samples)) ||
        (st = h5file_get_attr_f64(&r, "/state", "train_seconds", &t->train_seconds)) ||
        (st = h5file_get_attr_f64(&r, "/state", "last_loss", &t->last_loss)) ||
        (st = h5file_get_attr_i64(&r, "/state/penalty", "tasks_done", &pen_done)) ||
        (st = h5file_get_attr_f64(&r, "/state/penalty", "c", &t->pen.c)) ||
        (st = h5file_get_attr_i64(&r, "/metrics", "curve_points", &n_curve)))
        goto done;
    int spe = trainer_steps_per_epoch(t);
    if (task < 0 || task > T || epoch < 0 || epoch > c->epochs || step < 0 || step > spe ||
        gstep < 0 || gstep > (int64_t)T * c->epochs * spe || pen_done != tasks_done ||
        task < tasks_done || n_curve < 0 || n_curve > (gstep + T) * (int64_t)T) {
        ewc_error_set("%s: inconsistent position in the sequence (task %lld, epoch %lld, step %lld)",
                      path, (long long)task, (long long)epoch, (long long)step);
        st = EWC_EFORMAT;
        goto done;
    }
    if (t->mom && (st = h5file_read_f32(&r, "/state/momentum", t->mom, 1, npd))) goto done;
    if (t->adam.m && (st = read_adam(&r, t, path))) goto done;
    if (t->es.patience && (st = read_early_stopping(&r, t, path))) goto done;
    if (t->si.w && ((st = h5file_read_f32(&r, "/state/si/w", t->si.w, 1, npd)) ||
                    (st = h5file_read_f32(&r, "/state/si/start", t->si.start, 1, npd))))
        goto done;
    if (t->val_acc && (st = h5file_read_f64(&r, "/metrics/validation_accuracy", t->val_acc, 2, tt)))
        goto done;
    if (t->pen.a && (st = h5file_read_f32(&r, "/state/penalty/a", t->pen.a, 1, npd))) goto done;
    if (t->pen.b && (st = h5file_read_f64(&r, "/state/penalty/b", t->pen.b, 1, npd))) goto done;
    if ((st = h5file_read_f64(&r, "/metrics/initial_accuracy", t->initial_acc, 1, tt))) goto done;
    if ((st = h5file_read_f64(&r, "/metrics/accuracy", t->acc, 2, tt))) goto done;
    if (n_curve > 0) {
        uint64_t nc[1] = {(uint64_t)n_curve};
        int64_t *steps = malloc((size_t)n_curve * sizeof *steps);
        int32_t *tasks = malloc((size_t)n_curve * sizeof *tasks);
        double *accs = malloc((size_t)n_curve * sizeof *accs);
        CurvePoint *curve = malloc((size_t)n_curve * sizeof *curve);
        if (!steps || !tasks || !accs || !curve) {
            ewc_error_set("out of memory reading the checkpoint");
            st = EWC_ENOMEM;
        }
        if (!st) st = h5file_read_i64(&r, "/metrics/curve_step", steps, 1, nc);
        if (!st) st = h5file_read_i32(&r, "/metrics/curve_task", tasks, 1, nc);
        if (!st) st = h5file_read_f64(&r, "/metrics/curve_accuracy", accs, 1, nc);
        for (int64_t i = 0; !st && i < n_curve; i++)
            curve[i] = (CurvePoint){steps[i], tasks[i], accs[i]};
        free(steps);
        free(tasks);
        free(accs);
        if (st) {
            free(curve);
            goto done;
        }
        free(t->curve);
        t->curve = curve;
        t->n_curve = t->cap_curve = (int)n_curve;
    } else {
        t->n_curve = 0;
    }
    t->task = (int)task;
    t->epoch = (int)epoch;
    t->step = (int)step;
    t->global_step = gstep;
    t->train_samples = samples;
    t->pen.tasks_done = (int)pen_done;
done:
    h5file_close(&r);
    return st;
}

EwcStatus checkpoint_load(Trainer *t, const char *path) {
    H5Reader r = {0};
    EwcStatus st = h5file_open_read(&r, path);
    return st ? st : load_open(t, &r, path);
}

EwcStatus checkpoint_load_image(Trainer *t, const char *name, const void *image, size_t size) {
    H5Reader r = {0};
    EwcStatus st = h5file_open_image(&r, name, image, size);
    return st ? st : load_open(t, &r, name);
}

/* ---- resuming ------------------------------------------------------------------------------- */

/* Load PATH as checkpoint_load does; *DAMAGED: the file failed its integrity check (nothing was
 * restored into T then). */
static EwcStatus load_checked(Trainer *t, const char *path, int *damaged) {
    H5Reader r = {0};
    EwcStatus st = h5file_open_read(&r, path);
    *damaged = st != EWC_OK && r.damaged;
    return st ? st : load_open(t, &r, path);
}

/* The message of the lowest rank with REPORTER set, into MSG on every rank. Collective. */
static void share_message(MPI_Comm comm, int reporter, char *msg, size_t size) {
    int rank, nranks, from;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &nranks);
    int mine = reporter ? rank : nranks;
    MPI_Allreduce(&mine, &from, 1, MPI_INT, MPI_MIN, comm);
    if (rank == (from < nranks ? from : 0)) snprintf(msg, size, "%s", ewc_error_message());
    MPI_Bcast(msg, (int)size, MPI_CHAR, from < nranks ? from : 0, comm);
    msg[size - 1] = '\0';
}

/* PATH kept for inspection under the first free name "<stem>.damaged[.N].h5", as a hard link
 * (PATH itself stays until it is replaced). The name into KEPT. Rank 0 only. */
static EwcStatus keep_damaged(const char *path, char *kept) {
    char base[H5FILE_PATH_MAX];
    EwcStatus st = sibling_path(base, path, "damaged");
    for (int n = 0; !st && n < 1000; n++) {
        if (n == 0) snprintf(kept, H5FILE_PATH_MAX, "%s", base);
        else if ((st = sibling_path(kept, path, "damaged"))) break;
        else {
            char suffix[16];
            snprintf(suffix, sizeof suffix, "damaged.%d", n);
            if ((st = sibling_path(kept, path, suffix))) break;
        }
        if (link(path, kept) == 0) return EWC_OK;
        if (errno == EEXIST) continue;
        if (rename(path, kept) == 0) return EWC_OK; /* no hard links here */
        break;
    }
    if (!st) ewc_error_set("%s: damaged, and cannot be kept as %s: %s", path, kept, strerror(errno));
    return st ? st : EWC_EIO;
}

EwcStatus checkpoint_resume(Trainer *t, const char *dir, int *resumed) {
    MPI_Comm comm = t->dist.comm;
    int root = t->dist.rank == 0, exists[2] = {0, 0}, reporter;
    char path[2][H5FILE_PATH_MAX], why[2][1024] = {"", ""};
    EwcStatus st = EWC_OK;
    *resumed = 0;
    if (snprintf(path[0], H5FILE_PATH_MAX, "%s/%s", dir, CHECKPOINT_NAME) >= H5FILE_PATH_MAX) {
        ewc_error_set("--out %s: path too long", dir);
        return EWC_EINVAL;
    }
    if ((st = sibling_path(path[1], path[0], "prev"))) return st;
    for (int i = 0; i < 2; i++) exists[i] = root && access(path[i], F_OK) == 0;
    MPI_Bcast(exists, 2, MPI_INT, 0, comm);
    if (!exists[0] && !exists[1]) return EWC_OK; /* nothing to resume: a fresh start */
    if (!exists[0]) snprintf(why[0], sizeof why[0], "%s: missing", path[0]);
    for (int i = 0; i < 2; i++) {
        if (!exists[i]) continue;
        int damaged = 0;
        EwcStatus local = load_checked(t, path[i], &damaged);
        MPI_Allreduce(MPI_IN_PLACE, &damaged, 1, MPI_INT, MPI_MAX, comm);
        st = dist_agree(comm, local, &reporter);
        if (st == EWC_OK) {
            *resumed = 1;
            break;
        }
        share_message(comm, reporter, why[i], sizeof why[i]);
        if (!damaged) { /* not damage (a different experiment, an I/O error): stop here */
            ewc_error_clear();
            ewc_error_set("%s", why[i]);
            return st;
        }
        ewc_error_clear();
    }
    if (!*resumed) {
        if (!exists[1])
            ewc_error_set("%s; kept for inspection, and there is no %s to fall back to (move it "
                          "away to start over)", why[0], path[1]);
        else if (!exists[0])
            ewc_error_set("%s, and %s; kept for inspection, no intact checkpoint left", why[0],
                          why[1]);
        else
            ewc_error_set("%s; %s; both kept for inspection, no intact checkpoint left (move them "
                          "away to start over)", why[0], why[1]);
        return EWC_EFORMAT;
    }
    if (exists[0] && why[0][0] == '\0') return EWC_OK; /* checkpoint.h5 itself was intact */
    /* resumed from checkpoint.prev.h5: keep the damaged file, and make checkpoint.h5 a copy of
     * the previous one again, so that the next save keeps the intact file as the fallback */
    char kept[H5FILE_PATH_MAX] = "";
    st = EWC_OK;
    if (root && exists[0]) st = keep_damaged(path[0], kept);
    if (root && !st) st = h5file_install_copy(path[1], path[0]);
    if (root && !st)
        fprintf(stderr, "ewc-train: warning: %s%s%s; resuming from %s (task %d, epoch %d, step %d)"
                "\n", why[0], kept[0] ? "; kept as " : "", kept, path[1], t->task, t->epoch, t->step);
    return dist_agree(comm, st, NULL);
}

EwcStatus checkpoint_discard(const char *dir) {
    char path[H5FILE_PATH_MAX], prev[H5FILE_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_NAME) >= (int)sizeof path ||
        sibling_path(prev, path, "prev")) {
        ewc_error_set("--out %s: path too long", dir);
        return EWC_EINVAL;
    }
    /* the fallback first: no moment with a previous checkpoint but no current one */
    const char *both[2] = {prev, path};
    for (int i = 0; i < 2; i++)
        if (unlink(both[i]) != 0 && errno != ENOENT) {
            ewc_error_set("%s: cannot remove the previous run's checkpoint: %s", both[i],
                          strerror(errno));
            return EWC_EIO;
        }
    return EWC_OK;
}
