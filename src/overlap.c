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

EwcStatus overlap_print(const char *path, FILE *out) {
    H5Reader r = {0};
    float *all = NULL;
    int64_t tasks = 0;
    EwcStatus st = h5file_open_read(&r, path);
    if (st) return st;
    if ((st = h5file_get_attr_i64(&r, "/", "tasks_done", &tasks))) goto done;
    if (tasks < 1 || tasks > 100000) {
        ewc_error_set("%s: no finished task with a Fisher (tasks_done = %lld)", path,
                      (long long)tasks);
        st = EWC_EFORMAT;
        goto done;
    }
    /* the layer count and sizes come from task 0's Fisher; every task must match them */
    int layers = 0;
    size_t n = 0;
    for (;; layers++) {
        char p[96];
        int rank;
        uint64_t dims[H5FILE_MAX_RANK];
        snprintf(p, sizeof p, "/tasks/000/fisher/layer%d/W", layers);
        if (!h5file_exists(&r, p)) break;
        if ((st = h5file_dims(&r, p, &rank, dims))) goto done;
        if (rank != 2 || dims[0] > (1u << 24) || dims[1] > (1u << 24)) {
            ewc_error_set("%s: %s has an unexpected shape", path, p);
            st = EWC_EFORMAT;
            goto done;
        }
        n += dims[0] * (dims[1] + 1);
    }
    if (layers == 0 || n > (size_t)1 << 31) {
        ewc_error_set("%s: no Fisher found under /tasks/000/fisher", path);
        st = EWC_EFORMAT;
        goto done;
    }
    all = malloc((size_t)tasks * n * sizeof(float));
    if (!all) {
        ewc_error_set("%s: out of memory for %lld Fishers", path, (long long)tasks);
        st = EWC_ENOMEM;
        goto done;
    }
    for (int k = 0; k < tasks; k++)
        if ((st = read_fisher(&r, k, layers, all + (size_t)k * n, n))) goto done;
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
    free(all);
    h5file_close(&r);
    return st;
}
