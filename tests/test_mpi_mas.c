/* The MAS importance under MPI (mas.h): mas_importance (exact and allreduce reductions)
 * against a naive float64 loop with an explicit per-sample backprop of ||logits||^2, bitwise
 * equality between the world and a 1-rank communicator (exact reduction), and a check that
 * the absolute value of minibatch gradients - what summing before the abs would give, as a
 * minibatch backward pass does - is far from it. Run under mpirun at 1, 2 and 4 ranks. */
#include "mpitest.h"

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/mas.h"
#include "ewc/model.h"
#include "ewc/rng.h"
#include "ewc/train.h"

#define TASK 1
#define REL_TOL 1e-4

typedef struct {
    int dim, classes, n_train, n_mas, batch, hidden[2];
} Net;

static const Net small_net = {20, 4, 60, 50, 16, {8, 6}};
static const Net wide_net = {100, 10, 196, 150, 37, {50, 30}};

static void net_config(Config *c, const Net *net, ReduceMode reduce) {
    config_defaults(c);
    c->tasks = 2;
    c->n_hidden = 2;
    c->hidden[0] = net->hidden[0];
    c->hidden[1] = net->hidden[1];
    c->batch = net->batch;
    c->seed = 5;
    c->method = METHOD_MAS;
    c->reduce = reduce;
    c->quiet = 1;
}

/* Small positive biases (few dead ReLUs) and some negative logits: same on every rank. */
static int make_trainer(Trainer *t, const Config *c, const Dataset *d, MPI_Comm comm) {
    if (trainer_init(t, c, d, comm) != EWC_OK) return 0;
    const ModelShape *s = &t->shape;
    for (int l = 0; l < s->n_layers; l++)
        for (int o = 0; o < s->dims[l + 1]; o++) {
            size_t k = s->offset[l] + (size_t)o * (s->dims[l] + 1) + s->dims[l];
            t->params[k] = rng_uniform(7, RNG_INIT, 8100, 0, k) - (l + 1 == s->n_layers ? 0.5f : 0.2f);
        }
    return 1;
}

/* Naive float64 MAS: REF (n_params) = mean over the first N samples of
 * rng_permutation(RNG_FISHER_ORDER) of |per-sample gradient of ||z||^2|, one sample at a
 * time (delta_L = 2 z, backprop through the ReLUs, outer products). BATCHABS (may be NULL)
 * gets the sum over chunks of BATCH samples of |the chunk's summed gradient|, divided by N. */
static int naive_mas(const Trainer *t, int task, int n, double *ref, double *batchabs) {
    const ModelShape *s = &t->shape;
    const Split *tr = &t->data->train;
    int L = s->n_layers, C = t->classes, N = tr->n, batch = t->cfg->batch;
    size_t np = s->n_params;
    int *idx = malloc((size_t)N * sizeof(int));
    double **h = mt_alloc_layers64(s), **d = mt_alloc_layers64(s);
    double *g = malloc(np * sizeof(double)), *chunk = calloc(np, sizeof(double));
    if (!idx || !h || !d || !g || !chunk) return 0;
    rng_permutation(idx, N, t->cfg->seed, RNG_FISHER_ORDER, (uint32_t)task, 0);
    memset(ref, 0, np * sizeof(double));
    if (batchabs) memset(batchabs, 0, np * sizeof(double));
    for (int i = 0; i < n; i++) {
        int sample = idx[i];
        for (int k = 0; k < t->dim; k++)
            h[0][k] = tr->x[(size_t)sample * t->dim + t->perm[task][k]] / 255.0;
        mt_forward64(s, t->params, h);
        for (int k = 0; k < C; k++) d[L][k] = 2.0 * h[L][k];
        for (int l = L - 1; l >= 1; l--) {
            int din = s->dims[l], dout = s->dims[l + 1];
            const float *wb = t->params + s->offset[l];
            for (int j = 0; j < din; j++) {
                double acc = 0.0;
                for (int o = 0; o < dout; o++) acc += (double)wb[(size_t)o * (din + 1) + j] * d[l + 1][o];
                d[l][j] = h[l][j] > 0.0 ? acc : 0.0;
            }
        }
        for (int l = 0; l < L; l++) {
            int din = s->dims[l], dout = s->dims[l + 1];
            double *gl = g + s->offset[l];
            for (int o = 0; o < dout; o++)
                for (int j = 0; j <= din; j++)
                    gl[(size_t)o * (din + 1) + j] = d[l + 1][o] * (j == din ? 1.0 : h[l][j]);
        }
        for (size_t k = 0; k < np; k++) {
            ref[k] += fabs(g[k]);
            chunk[k] += g[k];
        }
        if ((i + 1) % batch == 0 || i + 1 == n)
            for (size_t k = 0; k < np; k++) {
                if (batchabs) batchabs[k] += fabs(chunk[k]) / n;
                chunk[k] = 0.0;
            }
    }
    for (size_t k = 0; k < np; k++) ref[k] /= n;
    free(idx);
    free(g);
    free(chunk);
    mt_free_layers64(s, h);
    mt_free_layers64(s, d);
    return 1;
}

/* Elementwise: |got - ref| <= REL_TOL |ref| + 1e-6 max |ref|; returns the failures. */
static int compare_to_ref(const float *got, const double *ref, size_t n, size_t *worst_at) {
    double m = 0.0, worst = -1.0;
    for (size_t i = 0; i < n; i++) m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    int bad = 0;
    *worst_at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= REL_TOL * fabs(ref[i]) + 1e-6 * m)) bad++;
        double r = e / (fabs(ref[i]) + 1e-2 * m);
        if (!(r <= worst)) {
            worst = r;
            *worst_at = i;
        }
    }
    return bad;
}

static void mas_vs_naive(ReduceMode reduce) {
    const Net *net = &small_net;
    Dataset data;
    Config cfg;
    Trainer t;
    int ok = 1, have_t = 0;
    net_config(&cfg, net, reduce);
    MT_EXPECT(ok, mt_synth_dataset(&data, net->n_train, 10, net->dim, net->classes, 31), "data");
    if (ok) MT_EXPECT(ok, have_t = make_trainer(&t, &cfg, &data, MPI_COMM_WORLD), "trainer_init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = t.shape.n_params;
        float *f = malloc(np * sizeof(float));
        double *ref = malloc(np * sizeof(double));
        if (!f || !ref) abort();
        for (int c = 0; c < 2; c++) { /* a subset, then n = 0: the whole training set */
            int n = c == 0 ? net->n_mas : 0, want = n ? n : net->n_train, used = -1;
            EwcStatus st = mas_importance(&t, TASK, n, f, &used);
            MT_EXPECT(ok, st == EWC_OK && used == want, "n %d: status %d, used %d, want %d", n,
                      st, used, want);
            MT_EXPECT(ok, naive_mas(&t, TASK, want, ref, NULL), "out of memory");
            size_t at;
            int bad = compare_to_ref(f, ref, np, &at);
            MT_EXPECT(ok, bad == 0, "%s, n %d: %d of %zu elements off the float64 reference; worst"
                      " at %zu: %.9g vs %.9g", reduce == REDUCE_EXACT ? "exact" : "allreduce", n,
                      bad, np, at, f[at], ref[at]);
            int zero = 0;
            for (size_t k = 0; k < np; k++) zero += ref[k] == 0.0;
            MT_EXPECT(ok, zero < (int)np / 4, "%d of %zu reference importances are 0", zero, np);
        }
        free(f);
        free(ref);
    }
    if (have_t) trainer_free(&t);
    dataset_free(&data);
    MT_AGREE(ok);
}

static void test_mas_naive_exact(void **state) {
    (void)state;
    mas_vs_naive(REDUCE_EXACT);
}

static void test_mas_naive_allreduce(void **state) {
    (void)state;
    mas_vs_naive(REDUCE_ALLREDUCE);
}

/* Exact reduction: the world's importance is bitwise world rank 0's alone, on every rank. */
static void mas_world_vs_solo(const Net *net) {
    Dataset data;
    Config cfg;
    Trainer w, s;
    int ok = 1, have_w = 0, have_s = 0;
    MPI_Comm solo = mt_solo_comm();
    net_config(&cfg, net, REDUCE_EXACT);
    MT_EXPECT(ok, mt_synth_dataset(&data, net->n_train, 10, net->dim, net->classes, 32), "data");
    if (ok) MT_EXPECT(ok, have_w = make_trainer(&w, &cfg, &data, MPI_COMM_WORLD), "world init");
    if (ok && mt_rank == 0) MT_EXPECT(ok, have_s = make_trainer(&s, &cfg, &data, solo), "solo init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = w.shape.n_params;
        float *fw = malloc(np * sizeof(float)), *fs = malloc(np * sizeof(float));
        if (!fw || !fs) abort();
        int uw = -1, us = -1;
        EwcStatus st = mas_importance(&w, TASK, net->n_mas, fw, &uw);
        MT_EXPECT(ok, st == EWC_OK && uw == net->n_mas, "status %d, used %d", st, uw);
        MT_EXPECT(ok, mt_same_as_root(fw, np * sizeof(float), MPI_COMM_WORLD),
                  "ranks hold different importances");
        if (mt_rank == 0) {
            st = mas_importance(&s, TASK, net->n_mas, fs, &us);
            MT_EXPECT(ok, st == EWC_OK && us == net->n_mas, "1-rank status %d", st);
            long i = mt_first_diff(fw, fs, np);
            MT_EXPECT(ok, i < 0, "dims %d-%d-%d-%d, batch %d: importance on %d ranks differs from"
                      " 1 rank at %ld of %zu: %.9g vs %.9g", net->dim, net->hidden[0],
                      net->hidden[1], net->classes, net->batch, mt_size, i, np,
                      i < 0 ? 0.0 : fw[i], i < 0 ? 0.0 : fs[i]);
        }
        free(fw);
        free(fs);
    }
    if (have_w) trainer_free(&w);
    if (have_s) trainer_free(&s);
    if (solo != MPI_COMM_NULL) MPI_Comm_free(&solo);
    dataset_free(&data);
    MT_AGREE(ok);
}

static void test_mas_world_vs_solo_small(void **state) {
    (void)state;
    mas_world_vs_solo(&small_net);
}

static void test_mas_world_vs_solo_wide(void **state) {
    (void)state;
    mas_world_vs_solo(&wide_net);
}

/* |sum of a chunk's gradients| (the abs taken after summing, as a minibatch backward would)
 * is not MAS: most elements fail the naive comparison, so that comparison would catch it. */
static void test_batch_abs_is_not_mas(void **state) {
    (void)state;
    const Net *net = &small_net;
    Dataset data;
    Config cfg;
    Trainer t;
    int ok = 1, have_t = 0;
    net_config(&cfg, net, REDUCE_EXACT);
    MT_EXPECT(ok, mt_synth_dataset(&data, net->n_train, 10, net->dim, net->classes, 31), "data");
    if (ok) MT_EXPECT(ok, have_t = make_trainer(&t, &cfg, &data, MPI_COMM_WORLD), "trainer_init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = t.shape.n_params, at;
        double *ref = malloc(np * sizeof(double)), *babs = malloc(np * sizeof(double));
        float *f = malloc(np * sizeof(float));
        if (!ref || !babs || !f) abort();
        MT_EXPECT(ok, naive_mas(&t, TASK, net->n_mas, ref, babs), "out of memory");
        for (size_t k = 0; k < np; k++) f[k] = (float)babs[k];
        int bad = compare_to_ref(f, ref, np, &at);
        double d = 0.0, m = 0.0;
        for (size_t k = 0; k < np; k++) {
            d += fabs(babs[k] - ref[k]);
            m += ref[k];
        }
        /* the gradients of ||z||^2 often keep their sign across samples (inputs and ReLU
         * outputs are >= 0), so many elements agree; enough must not, and by a margin */
        MT_EXPECT(ok, bad > (int)np / 5 && d > 0.05 * m, "abs of chunk gradients: only %d of %zu"
                  " elements off, L1 distance %.3g of %.3g", bad, np, d, m);
        if (getenv("EWC_TEST_VERBOSE") && mt_rank == 0)
            printf("abs of chunk gradients: %d of %zu off, L1 %.3g of %.3g\n", bad, np, d, m);
        free(ref);
        free(babs);
        free(f);
    }
    if (have_t) trainer_free(&t);
    dataset_free(&data);
    MT_AGREE(ok);
}

int main(int argc, char **argv) {
    mt_init(&argc, &argv, 300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mas_naive_exact),
        cmocka_unit_test(test_mas_naive_allreduce),
        cmocka_unit_test(test_mas_world_vs_solo_small),
        cmocka_unit_test(test_mas_world_vs_solo_wide),
        cmocka_unit_test(test_batch_abs_is_not_mas),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return mt_finish(failed);
}
