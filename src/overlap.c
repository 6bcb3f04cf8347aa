/* Fisher overlap between the tasks recorded in a checkpoint (Kirkpatrick et al. 2017, Fig. 2C). */
#include "ewc/overlap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/h5file.h"

double overlap_fisher(const float *f1, const float *f2, size_t n) {
    double s1 = 0.0, s2 = 0.0, d = 0.0;
    for (size_t i = 0; i < n; i++) {
        s1 += f1[i];
        s2 += f2[i];
    }
    if (!(s1 > 0.0) || !(s2 > 0.0)) return 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = sqrt(f1[i] / s1) - sqrt(f2[i] / s2);
        d += e * e;
    }
    return 1.0 - 0.5 * d;
}

/* Read task K's Fisher (every layer's W then b, concatenated) into F (n). */
static EwcStatus read_fisher(const H5Reader *r, int k, int layers, float *f, size_t n) {
    size_t off = 0;
    for (int l = 0; l < layers; l++)
        for (int part = 0; part < 2; part++) {
            char path[96];
            int rank;
            uint64_t dims[H5FILE_MAX_RANK];
            snprintf(path, sizeof path, "/tasks/%03d/fisher/layer%d/%s", k, l, part ? "b" : "W");
            EwcStatus st = h5file_dims(r, path, &rank, dims);
            if (st) return st;
            size_t len = rank == 2 ? dims[0] * dims[1] : rank == 1 ? dims[0] : 0;
            if ((rank != 1 && rank != 2) || off + len > n) {
                ewc_error_set("checkpoint: %s has an unexpected shape", path);
                return EWC_EFORMAT;
            }
            if ((st = h5file_read_f32(r, path, f + off, rank, dims))) return st;
            off += len;
        }
    return EWC_OK;
}

/* Every task's Fisher from an open checkpoint: *ALL gets (tasks x n) floats, task k at k * n,
 * each the concatenation of the layers' [W | b] (LEN[l] = out * (in + 1) floats of layer l). */
typedef struct {
    int64_t tasks;
    int layers;
    size_t n;
    size_t len[OVERLAP_MAX_LAYERS];
    float *all;
} Fishers;

static EwcStatus load_fishers(const H5Reader *r, const char *path, Fishers *f) {
    EwcStatus st;
    if ((st = h5file_get_attr_i64(r, "/", "tasks_done", &f->tasks))) return st;
    if (f->tasks < 1 || f->tasks > 100000) {
        ewc_error_set("%s: no finished task with a Fisher (tasks_done = %lld)", path,
                      (long long)f->tasks);
        return EWC_EFORMAT;
    }
    /* the layer count and sizes come from task 0's Fisher; every task must match them */
    for (f->layers = 0;; f->layers++) {
        char p[96];
        int rank;
        uint64_t dims[H5FILE_MAX_RANK];
        snprintf(p, sizeof p, "/tasks/000/fisher/layer%d/W", f->layers);
        if (!h5file_exists(r, p)) break;
        if ((st = h5file_dims(r, p, &rank, dims))) return st;
        if (rank != 2 || dims[0] > (1u << 24) || dims[1] > (1u << 24) ||
            f->layers == OVERLAP_MAX_LAYERS) {
            ewc_error_set("%s: %s has an unexpected shape", path, p);
            return EWC_EFORMAT;
        }
        f->len[f->layers] = dims[0] * (dims[1] + 1);
        f->n += f->len[f->layers];
    }
    if (f->layers == 0 || f->n > (size_t)1 << 31) {
        ewc_error_set("%s: no Fisher found under /tasks/000/fisher", path);
        return EWC_EFORMAT;
    }
    f->all = malloc((size_t)f->tasks * f->n * sizeof(float));
    if (!f->all) {
        ewc_error_set("%s: out of memory for %lld Fishers", path, (long long)f->tasks);
        return EWC_ENOMEM;
    }
    for (int k = 0; k < f->tasks; k++)
        if ((st = read_fisher(r, k, f->layers, f->all + (size_t)k * f->n, f->n))) return st;
    return EWC_OK;
}

EwcStatus overlap_print(const char *path, FILE *out) {
    H5Reader r = {0};
    Fishers f = {0};
    EwcStatus st = h5file_open_read(&r, path);
    if (st) return st;
    if ((st = load_fishers(&r, path, &f))) goto done;
    int64_t tasks = f.tasks;
    size_t n = f.n;
    float *all = f.all;
    fprintf(out, "task");
    for (int k = 0; k < tasks; k++) fprintf(out, ",%d", k);
    fprintf(out, "\n");
    for (int a = 0; a < tasks; a++) {
        fprintf(out, "%d", a);
        for (int b = 0; b < tasks; b++)
            fprintf(out, ",%.4f", overlap_fisher(all + (size_t)a * n, all + (size_t)b * n, n));
        fprintf(out, "\n");
    }
done:
    free(f.all);
    h5file_close(&r);
    return st;
}

void overlap_per_layer(const float *f1, const float *f2, const size_t *len, int layers,
                       double *out) {
    size_t off = 0;
    for (int l = 0; l < layers; l++) {
        out[l] = overlap_fisher(f1 + off, f2 + off, len[l]);
        off += len[l];
    }
}

EwcStatus overlap_print_layers(const char *path, FILE *out) {
    H5Reader r = {0};
    Fishers f = {0};
    EwcStatus st = h5file_open_read(&r, path);
    if (st) return st;
    if ((st = load_fishers(&r, path, &f))) goto done;
    if (f.tasks < 2) {
        ewc_error_set("%s: per-layer overlaps need at least 2 finished tasks (tasks_done = %lld)",
                      path, (long long)f.tasks);
        st = EWC_EFORMAT;
        goto done;
    }
    fprintf(out, "task_a,task_b,layer,overlap\n");
    for (int a = 0; a < f.tasks; a++)
        for (int b = a + 1; b < f.tasks; b++) {
            const float *fa = f.all + (size_t)a * f.n, *fb = f.all + (size_t)b * f.n;
            double per[OVERLAP_MAX_LAYERS];
            overlap_per_layer(fa, fb, f.len, f.layers, per);
            for (int l = 0; l < f.layers; l++) fprintf(out, "%d,%d,%d,%.6f\n", a, b, l + 1, per[l]);
            fprintf(out, "%d,%d,all,%.6f\n", a, b, overlap_fisher(fa, fb, f.n));
        }
done:
    free(f.all);
    h5file_close(&r);
    return st;
}
