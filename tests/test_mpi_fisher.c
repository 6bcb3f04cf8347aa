/* The diagonal Fisher under MPI: trainer_fisher (empirical, sampled, expected; exact, fixed and
 * allreduce reductions) against a naive float64 per-sample loop written here, bitwise equality
 * between the world and a 1-rank communicator (exact reduction), and a sanity check that the
 * squared mean gradient - the classic bug - would not pass for the Fisher. Run under mpirun
 * at 1, 2 and 4 ranks. */
#include "mpitest.h"

#include "ewc/config.h"
#include "ewc/dataset.h"
#include "ewc/model.h"
#include "ewc/rng.h"
#include "ewc/train.h"

#define TASK 1       /* a task whose pixel permutation is not the first one drawn */
#define REL_TOL 1e-4 /* elementwise, against the float64 reference */

static const FisherKind kinds[] = {FISHER_EMPIRICAL, FISHER_SAMPLED, FISHER_EXPECTED};

/* The small net of the naive comparisons: 20 pixels, hidden 8,6, 4 classes, 60 training
 * samples of which the Fisher takes 50, in chunks of 16 (16, 16, 16, 2). */
typedef struct {
    int dim, classes, n_train, n_fisher, batch, hidden[2];
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
    c->seed = 3;
    c->reduce = reduce;
    c->micro_batch = 5; /* --reduce fixed: several micro-batches per chunk, a short last one */
    c->quiet = 1;
}

/* Move the freshly initialised parameters somewhere less symmetric: small positive biases (few
 * dead ReLUs), and weights scaled so the softmax is neither flat nor peaked (a peaked one would
 * make every sampled label the argmax, whatever the draw). Same on every rank. */
static void perturb_params(Trainer *t) {
    const ModelShape *s = &t->shape;
    for (int l = 0; l < s->n_layers; l++)
        for (int o = 0; o < s->dims[l + 1]; o++)
            for (int j = 0; j <= s->dims[l]; j++) {
                size_t k = s->offset[l] + (size_t)o * (s->dims[l] + 1) + j;
                float u = rng_uniform(5, RNG_INIT, 8000, 0, k);
                t->params[k] = j < s->dims[l] ? 0.7f * t->params[k] : 0.3f * u;
            }
}

/* Trainer on COMM for NET with perturbed parameters. */
static int make_trainer(Trainer *t, const Config *c, const Dataset *d, MPI_Comm comm) {
    if (trainer_init(t, c, d, comm) != EWC_OK) return 0;
    perturb_params(t);
    return 1;
}

/* The naive reference, in float64, one sample at a time: F (n_params) = mean over the first N
 * samples of rng_permutation(RNG_FISHER_ORDER) of the squared per-sample gradient of
 * log p(y|x) (for expected: the p-weighted sum over y). For the empirical kind also GMEAN, the
 * mean per-sample gradient, and CHUNKSQ, the sum over chunks of BATCH samples of the squared
 * chunk gradient sum, divided by N (what squaring each minibatch gradient would give). For
 * the sampled kind, *OFF_ARGMAX (may be NULL) gets the number of drawn labels that are not the
 * most probable class. */
static int naive_fisher(const Trainer *t, int task, FisherKind kind, int n, double *F,
                        double *gmean, double *chunksq, int *off_argmax) {
    const ModelShape *s = &t->shape;
    const Split *tr = &t->data->train;
    int L = s->n_layers, C = t->classes, N = tr->n, batch = t->cfg->batch;
    size_t np = s->n_params;
    int *idx = malloc((size_t)N * sizeof(int));
    double **h = mt_alloc_layers64(s), **d = mt_alloc_layers64(s);
    double *p = malloc((size_t)C * sizeof(double)), *g = malloc(np * sizeof(double));
    double *chunk = calloc(np, sizeof(double));
    if (!idx || !h || !d || !p || !g || !chunk) return 0;
    rng_permutation(idx, N, t->cfg->seed, RNG_FISHER_ORDER, (uint32_t)task, 0);
    memset(F, 0, np * sizeof(double));
    if (gmean) memset(gmean, 0, np * sizeof(double));
    if (chunksq) memset(chunksq, 0, np * sizeof(double));
    if (off_argmax) *off_argmax = 0;
    for (int i = 0; i < n; i++) {
        int sample = idx[i];
        for (int k = 0; k < t->dim; k++)
            h[0][k] = tr->x[(size_t)sample * t->dim + t->perm[task][k]] / 255.0;
        mt_forward64(s, t->params, h);
        mt_softmax64(h[L], p, C);
        int y_draw = 0;
        if (kind == FISHER_SAMPLED) { /* the trainer's inverse-CDF draw (fisher_deltas) */
            float u = rng_uniform(t->cfg->seed, RNG_FISHER_LABEL, (uint32_t)task, 0,
                                  (uint64_t)sample);
            float cum = 0.0f;
            for (y_draw = 0; y_draw < C - 1; y_draw++)
                if (u < (cum += (float)p[y_draw])) break;
            int top = 0;
            for (int k = 1; k < C; k++) top = p[k] > p[top] ? k : top;
            if (off_argmax) *off_argmax += y_draw != top;
        }
        for (int y = 0; y < C; y++) {
            double w;
            if (kind == FISHER_EXPECTED) w = p[y];
            else if (kind == FISHER_SAMPLED) w = y == y_draw;
            else w = y == tr->y[sample];
            if (w == 0.0) continue;
            /* per-sample gradient of -log p(y|x): deltas top-down, then outer products */
            for (int k = 0; k < C; k++) d[L][k] = p[k] - (k == y ? 1.0 : 0.0);
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
            for (size_t k = 0; k < np; k++) F[k] += w * g[k] * g[k];
            if (kind == FISHER_EMPIRICAL) {
                for (size_t k = 0; k < np; k++) chunk[k] += g[k];
                if (gmean)
                    for (size_t k = 0; k < np; k++) gmean[k] += g[k] / n;
            }
        }
        if (kind == FISHER_EMPIRICAL && ((i + 1) % batch == 0 || i + 1 == n)) {
            for (size_t k = 0; k < np; k++) {
                if (chunksq) chunksq[k] += chunk[k] * chunk[k] / n;
                chunk[k] = 0.0;
            }
        }
    }
    for (size_t k = 0; k < np; k++) F[k] /= n;
    free(idx);
    free(p);
    free(g);
    free(chunk);
    mt_free_layers64(s, h);
    mt_free_layers64(s, d);
    return 1;
}

/* Elementwise check of GOT against REF: |got - ref| <= REL_TOL |ref| + 1e-6 max |ref|. Returns
 * the number of failures; *WORST gets the largest |got - ref| / (|ref| + 1e-2 max |ref|). */
static int compare_to_ref(const float *got, const double *ref, size_t n, double *worst,
                          size_t *worst_at) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    int bad = 0;
    *worst = 0.0;
    *worst_at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= REL_TOL * fabs(ref[i]) + 1e-6 * m)) bad++;
        double r = e / (fabs(ref[i]) + 1e-2 * m);
        if (!(r <= *worst)) {
            *worst = r;
            *worst_at = i;
        }
    }
    return bad;
}

/* max |got - ref| / max |ref| over N elements. */
static double max_rel_diff(const float *got, const double *ref, size_t n) {
    double d = 0.0, m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        d = e > d || e != e ? e : d;
        m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    }
    return d / m;
}

/* trainer_fisher on the world against the naive loop, for every kind. */
static void fisher_vs_naive(ReduceMode reduce) {
    const Net *net = &small_net;
    Dataset data;
    Config cfg;
    Trainer t;
    int ok = 1, have_t = 0;
    net_config(&cfg, net, reduce);
    MT_EXPECT(ok, mt_synth_dataset(&data, net->n_train, 10, net->dim, net->classes, 21), "data");
    if (ok) MT_EXPECT(ok, have_t = make_trainer(&t, &cfg, &data, MPI_COMM_WORLD), "trainer_init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = t.shape.n_params;
        float *f = malloc(np * sizeof(float)), *by_kind[3];
        double *ref = malloc(np * sizeof(double)), *ref_kind = malloc(np * sizeof(double));
        if (!f || !ref || !ref_kind) abort();
        for (int c = 0; c < 3; c++)
            if (!(by_kind[c] = malloc(np * sizeof(float)))) abort();
        /* n_fisher of n_train, then n = 0 (the whole training set) for the empirical kind */
        for (int c = 0; c < 4; c++) {
            FisherKind kind = kinds[c < 3 ? c : 0];
            int n = c < 3 ? net->n_fisher : 0, want = n ? n : net->n_train, used = -1;
            EwcStatus st = trainer_fisher(&t, TASK, kind, n, f, &used);
            MT_EXPECT(ok, st == EWC_OK, "%s: status %d", config_fisher_name(kind), st);
            MT_EXPECT(ok, used == want, "%s: used %d samples, want %d", config_fisher_name(kind),
                      used, want);
            int off = 0;
            MT_EXPECT(ok, naive_fisher(&t, TASK, kind, want, ref, NULL, NULL, &off),
                      "out of memory");
            /* the draw must matter: enough labels that are not simply the argmax */
            MT_EXPECT(ok, kind != FISHER_SAMPLED || off >= want / 10, "only %d of %d sampled "
                      "labels differ from the argmax", off, want);
            double worst;
            size_t at;
            int bad = compare_to_ref(f, ref, np, &worst, &at);
            MT_EXPECT(ok, bad == 0, "%s, n %d: %d of %zu elements off the float64 reference; "
                      "worst at %zu: %.9g vs %.9g", config_fisher_name(kind), n, bad, np, at,
                      f[at], ref[at]);
            if (getenv("EWC_TEST_VERBOSE") && mt_rank == 0)
                printf("%s n=%d: worst relative error %.3g\n", config_fisher_name(kind), n, worst);
            if (c < 3) memcpy(by_kind[c], f, np * sizeof(float));
        }
        /* the kinds must really differ here (sampled labels are not all the true ones), or the
         * comparisons above could not tell them apart */
        for (int a = 0; a < 3; a++)
            for (int b = a + 1; b < 3; b++) {
                for (size_t k = 0; k < np; k++) ref_kind[k] = by_kind[b][k];
                double r = max_rel_diff(by_kind[a], ref_kind, np);
                MT_EXPECT(ok, r > 0.01, "%s and %s Fishers differ by only %.3g relative",
                          config_fisher_name(kinds[a]), config_fisher_name(kinds[b]), r);
                if (getenv("EWC_TEST_VERBOSE") && mt_rank == 0)
                    printf("%s vs %s: %.3g\n", config_fisher_name(kinds[a]),
                           config_fisher_name(kinds[b]), r);
            }
        for (int c = 0; c < 3; c++) free(by_kind[c]);
        free(f);
        free(ref);
        free(ref_kind);
    }
    if (have_t) trainer_free(&t);
    dataset_free(&data);
    MT_AGREE(ok);
}

static void test_fisher_naive_exact(void **state) {
    (void)state;
    fisher_vs_naive(REDUCE_EXACT);
}

static void test_fisher_naive_allreduce(void **state) {
    (void)state;
    fisher_vs_naive(REDUCE_ALLREDUCE);
}

static void test_fisher_naive_fixed(void **state) {
    (void)state;
    fisher_vs_naive(REDUCE_FIXED);
}

/* Exact reduction: the Fisher on the world is bitwise the one on world rank 0 alone, and every
 * rank holds the same, for every kind, on the small and on a wider net. */
static void fisher_world_vs_solo(const Net *net) {
    Dataset data;
    Config cfg;
    Trainer w, s;
    int ok = 1, have_w = 0, have_s = 0;
    MPI_Comm solo = mt_solo_comm();
    net_config(&cfg, net, REDUCE_EXACT);
    MT_EXPECT(ok, mt_synth_dataset(&data, net->n_train, 10, net->dim, net->classes, 22), "data");
    if (ok) MT_EXPECT(ok, have_w = make_trainer(&w, &cfg, &data, MPI_COMM_WORLD), "world init");
    if (ok && mt_rank == 0) MT_EXPECT(ok, have_s = make_trainer(&s, &cfg, &data, solo), "solo init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = w.shape.n_params;
        float *fw = malloc(np * sizeof(float)), *fs = malloc(np * sizeof(float));
        if (!fw || !fs) abort();
        for (int c = 0; c < 3; c++) {
            int uw = -1, us = -1;
            EwcStatus st = trainer_fisher(&w, TASK, kinds[c], net->n_fisher, fw, &uw);
            MT_EXPECT(ok, st == EWC_OK && uw == net->n_fisher, "%s: status %d, used %d",
                      config_fisher_name(kinds[c]), st, uw);
            MT_EXPECT(ok, mt_same_as_root(fw, np * sizeof(float), MPI_COMM_WORLD),
                      "%s: ranks hold different Fishers", config_fisher_name(kinds[c]));
            if (mt_rank != 0) continue;
            st = trainer_fisher(&s, TASK, kinds[c], net->n_fisher, fs, &us);
            MT_EXPECT(ok, st == EWC_OK && us == net->n_fisher, "%s: 1-rank status %d, used %d",
                      config_fisher_name(kinds[c]), st, us);
            long i = mt_first_diff(fw, fs, np);
            MT_EXPECT(ok, i < 0, "%s (dims %d-%d-%d-%d, batch %d): Fisher on %d ranks differs "
                      "from 1 rank at %ld of %zu: %.9g vs %.9g", config_fisher_name(kinds[c]),
                      net->dim, net->hidden[0], net->hidden[1], net->classes, net->batch,
                      mt_size, i, np, i < 0 ? 0.0 : fw[i], i < 0 ? 0.0 : fs[i]);
            double mx = 0.0;
            for (size_t k = 0; k < np; k++) mx = fw[k] > mx ? fw[k] : mx;
            MT_EXPECT(ok, mx > 0.0, "%s: Fisher is all zero", config_fisher_name(kinds[c]));
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

static void test_fisher_world_vs_solo_small(void **state) {
    (void)state;
    fisher_world_vs_solo(&small_net);
}

static void test_fisher_world_vs_solo_wide(void **state) {
    (void)state;
    fisher_world_vs_solo(&wide_net);
}

/* The squared mean gradient (or the squared gradient of each chunk) is not the Fisher: on this
 * net both differ from the trainer's empirical Fisher far beyond the tolerance of the naive
 * comparison, so that comparison would catch a trainer that squared batch gradients. */
static void test_squared_gradient_is_not_fisher(void **state) {
    (void)state;
    const Net *net = &small_net;
    Dataset data;
    Config cfg;
    Trainer t;
    int ok = 1, have_t = 0;
    net_config(&cfg, net, REDUCE_EXACT);
    MT_EXPECT(ok, mt_synth_dataset(&data, net->n_train, 10, net->dim, net->classes, 21), "data");
    if (ok) MT_EXPECT(ok, have_t = make_trainer(&t, &cfg, &data, MPI_COMM_WORLD), "trainer_init");
    if (mt_all(ok, MPI_COMM_WORLD)) {
        size_t np = t.shape.n_params;
        float *f = malloc(np * sizeof(float)), *sq = malloc(np * sizeof(float));
        double *ref = malloc(np * sizeof(double)), *gmean = malloc(np * sizeof(double));
        double *chunksq = malloc(np * sizeof(double));
        if (!f || !sq || !ref || !gmean || !chunksq) abort();
        int used = 0;
        EwcStatus st = trainer_fisher(&t, TASK, FISHER_EMPIRICAL, net->n_fisher, f, &used);
        MT_EXPECT(ok, st == EWC_OK, "status %d", st);
        MT_EXPECT(ok, naive_fisher(&t, TASK, FISHER_EMPIRICAL, net->n_fisher, ref, gmean, chunksq, NULL),
                  "out of memory");
        double worst;
        size_t at;
        MT_EXPECT(ok, compare_to_ref(f, ref, np, &worst, &at) == 0, "Fisher off the reference");
        for (size_t k = 0; k < np; k++) sq[k] = (float)(gmean[k] * gmean[k]);
        double r1 = max_rel_diff(sq, ref, np);
        int bad1 = compare_to_ref(sq, ref, np, &worst, &at);
        for (size_t k = 0; k < np; k++) sq[k] = (float)chunksq[k];
        double r2 = max_rel_diff(sq, ref, np);
        int bad2 = compare_to_ref(sq, ref, np, &worst, &at);
        /* most elements must fail the naive check, and by a wide margin overall */
        MT_EXPECT(ok, r1 > 0.1 && bad1 > (int)np / 2, "squared mean gradient: %.3g relative, "
                  "%d of %zu elements off", r1, bad1, np);
        MT_EXPECT(ok, r2 > 0.1 && bad2 > (int)np / 2, "squared chunk gradients: %.3g relative, "
                  "%d of %zu elements off", r2, bad2, np);
        if (getenv("EWC_TEST_VERBOSE") && mt_rank == 0)
            printf("squared mean gradient: %.3g (%d of %zu off); chunks: %.3g (%d off)\n", r1,
                   bad1, np, r2, bad2);
        free(f);
        free(sq);
        free(ref);
        free(gmean);
        free(chunksq);
    }
    if (have_t) trainer_free(&t);
    dataset_free(&data);
    MT_AGREE(ok);
}

int main(int argc, char **argv) {
    mt_init(&argc, &argv, 300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fisher_naive_exact),
        cmocka_unit_test(test_fisher_naive_allreduce),
        cmocka_unit_test(test_fisher_naive_fixed),
        cmocka_unit_test(test_fisher_world_vs_solo_small),
        cmocka_unit_test(test_fisher_world_vs_solo_wide),
        cmocka_unit_test(test_squared_gradient_is_not_fisher),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return mt_finish(failed);
}
