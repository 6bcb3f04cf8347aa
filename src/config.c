/* The run configuration: one flag table drives the command-line parser, --help, the JSON
 * rendering and the experiment comparison, so the four cannot drift apart. */
#include "ewc/config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/config_tasks.h"
#include "ewc/dataset.h"

#define HIDDEN_WIDTH_MAX 100000
#define HELP_INDENT 25 /* column where the description of a flag starts */
#define HELP_WIDTH 100
#define SHOWN_MAX 60 /* bytes of an offending value quoted in an error message */

typedef enum { K_PATH, K_WORD, K_INT, K_U64, K_DOUBLE, K_HIDDEN, K_ENUM, K_BOOL } Kind;

enum { G_DATA, G_MODEL, G_TRAIN, G_CONTINUAL, G_PARALLEL, G_OUTPUT, G_OTHER, G_COUNT };
static const char *const group_names[G_COUNT] = {
    "Data", "Model", "Training", "Continual learning", "Parallelism", "Output and checkpointing",
    "Other"};

static const char *const method_names[] = {"sgd", "l2", "ewc", "online-ewc", "si", "mas", NULL};
static const char *const fisher_names[] = {"empirical", "sampled", "expected", NULL};
static const char *const penalty_names[] = {"explicit", "implicit", NULL};
static const char *const reduce_names[] = {"exact", "allreduce", "fixed", "auto", NULL};
static const char *const optimizer_names[] = {"sgd", "adam", NULL};
static const char *const init_names[] = {"he", "torch", NULL}; /* ModelInit (model.h) */

/* Enum fields are read and written through the table as ints. */
_Static_assert(sizeof(Method) == sizeof(int) && sizeof(FisherKind) == sizeof(int) &&
                   sizeof(PenaltyStep) == sizeof(int) && sizeof(ReduceMode) == sizeof(int) &&
                   sizeof(Optimizer) == sizeof(int),
               "enum fields must be int-sized");

typedef struct {
    const char *flag;       /* "--lr" */
    const char *alias;      /* a short form such as "-h", or NULL */
    const char *key;        /* the Config member, also the JSON key */
    const char *arg;        /* metavariable in --help (enums list their names instead) */
    int group;              /* G_* section of --help */
    int experiment;         /* 1: changes the results, so a resume must keep it */
    Kind kind;
    size_t offset;          /* of the member in Config */
    long imin, imax;        /* K_INT: inclusive range */
    double dlo, dhi;        /* K_DOUBLE: range, each end closed unless *_open */
    int lo_open, hi_open;
    const char *const *names; /* K_ENUM: value i is names[i] */
    const char *help;
} Flag;

#define AT(m) .key = #m, .offset = offsetof(Config, m)
#define PATH(f, m, a, g, x, h) {.flag = f, AT(m), .arg = a, .group = g, .experiment = x, \
                                .kind = K_PATH, .help = h}
#define INT(f, m, g, x, lo, hi, h) {.flag = f, AT(m), .arg = "N", .group = g, .experiment = x, \
                                    .kind = K_INT, .imin = lo, .imax = hi, .help = h}
#define DBL(f, m, a, g, lo, lo_op, hi, hi_op, h)                                               \
    {.flag = f, AT(m), .arg = a, .group = g, .experiment = 1, .kind = K_DOUBLE, .dlo = lo,     \
     .lo_open = lo_op, .dhi = hi, .hi_open = hi_op, .help = h}
#define ENUM(f, m, g, nm, h) {.flag = f, AT(m), .group = g, .experiment = 1, .kind = K_ENUM, \
                              .names = nm, .help = h}
#define BOOL(f, m, g, h) {.flag = f, AT(m), .group = g, .kind = K_BOOL, .help = h}

static const Flag flags[] = {
    PATH("--data", data_dir, "DIR", G_DATA, 1,
         "directory of the IDX files (train-*-ubyte, t10k-*-ubyte, optionally .gz)"),
    INT("--train-samples", train_samples, G_DATA, 1, 0, INT_MAX,
        "use only the first N training samples; 0 = all"),
    INT("--test-samples", test_samples, G_DATA, 1, 0, INT_MAX,
        "use only the first N test samples; 0 = all"),
    INT("--validation", validation, G_DATA, 1, 0, INT_MAX,
        "hold out N training samples (a fixed seeded subset, the same images for every task) "
        "for validation; never trained on; 0 = none"),
    DBL("--permute-fraction", permute_fraction, "F", G_DATA, 0, 0, 1, 0,
        "fraction of the pixels each task permutes: 1 = all (a full random permutation), "
        "F < 1 = a random rearrangement of a random subset of round(F * pixels), the rest in place"),

    {.flag = "--hidden", AT(hidden), .arg = "W[,W...]", .group = G_MODEL, .experiment = 1,
     .kind = K_HIDDEN,
     .help = "hidden layer widths, each 1..100000, at most 16 layers; "
             "0 = none (softmax regression)"},
    DBL("--dropout-input", dropout_input, "P", G_MODEL, 0, 0, 1, 1,
        "dropout probability on the input pixels"),
    DBL("--dropout", dropout, "P", G_MODEL, 0, 0, 1, 1, "dropout probability on hidden layers"),
    ENUM("--init", init, G_MODEL, init_names,
         "initial parameters: he = He-uniform weights, zero biases; torch = weights and biases "
         "U(+-1/sqrt(fan-in)), PyTorch's nn.Linear default (as in van de Ven's code)"),

    DBL("--lr", lr, "X", G_TRAIN, 0, 1, INFINITY, 1, "learning rate"),
    INT("--batch", batch, G_TRAIN, 1, 1, INT_MAX,
        "global minibatch size, split across the MPI ranks"),
    INT("--epochs", epochs, G_TRAIN, 1, 1, INT_MAX, "epochs per task"),
    DBL("--momentum", momentum, "X", G_TRAIN, 0, 0, 1, 1, "SGD momentum coefficient"),
    ENUM("--optimizer", optimizer, G_TRAIN, optimizer_names,
         "SGD (with --momentum), or Adam with step size --lr (its moments are reset at the "
         "start of every task, unless --adam-persist)"),
    DBL("--adam-beta1", adam_beta1, "X", G_TRAIN, 0, 0, 1, 1, "Adam: decay of the first moment"),
    DBL("--adam-beta2", adam_beta2, "X", G_TRAIN, 0, 0, 1, 1, "Adam: decay of the second moment"),
    DBL("--adam-eps", adam_eps, "X", G_TRAIN, 0, 1, INFINITY, 1,
        "Adam: added to sqrt(second moment) in the step's denominator"),
    {.flag = "--adam-persist", AT(adam_persist), .group = G_TRAIN, .experiment = 1,
     .kind = K_BOOL,
     .help = "Adam: keep the moments and the step count across tasks (as code that creates "
             "the optimizer once does) instead of resetting them at every task"},
    INT("--patience", patience, G_TRAIN, 1, 0, INT_MAX,
        "early stopping: end a task after N validation checks without improvement and restore "
        "its best parameters (--epochs is then the maximum; needs --validation); 0 = off"),
    {.flag = "--val-every", AT(val_every), .arg = "STEPS", .group = G_TRAIN, .experiment = 1,
     .kind = K_INT, .imin = 0, .imax = INT_MAX,
     .help = "early stopping: check the validation accuracy every STEPS steps of a task; "
             "0 = at the end of every epoch"},
    {.flag = "--seed", AT(seed), .arg = "N", .group = G_TRAIN, .experiment = 1, .kind = K_U64,
     .help = "random seed (task permutations, initialization, batch order, dropout)"},

    INT("--tasks", tasks, G_CONTINUAL, 1, 1, 1000,
        "number of tasks learned in sequence (split: default classes / --classes-per-task;"
        " rotated with --angles: one per angle)"),
    ENUM("--method", method, G_CONTINUAL, method_names,
         "how earlier tasks are protected: none, an L2 pull to the old weights, EWC, "
         "online EWC, Synaptic Intelligence (si) or Memory Aware Synapses (mas)"),
    DBL("--lambda", lambda, "X", G_CONTINUAL, 0, 0, INFINITY, 1,
        "strength of the consolidation penalty"),
    DBL("--gamma", gamma, "X", G_CONTINUAL, 0, 1, 1, 0,
        "online EWC: decay of the accumulated Fisher at each new task"),
    DBL("--si-xi", si_xi, "X", G_CONTINUAL, 0, 1, INFINITY, 1,
        "si: damping xi of the importance w / ((total change)^2 + xi)"),
    ENUM("--fisher", fisher, G_CONTINUAL, fisher_names,
         "Fisher estimate: squared gradients of the true labels (empirical), of labels "
         "sampled from the model (sampled), or the expectation over the model's labels"),
    INT("--fisher-samples", fisher_samples, G_CONTINUAL, 1, 0, INT_MAX,
        "training samples used to estimate the Fisher (or the mas importance); 0 = the whole "
        "training set"),
    ENUM("--penalty-step", penalty_step, G_CONTINUAL, penalty_names,
         "add the penalty's gradient to the step (explicit), or take the exact proximal "
         "step of the penalty (implicit, stable for any lambda)"),
    ENUM("--task-family", task_family, G_CONTINUAL, config_family_names,
         "what distinguishes the tasks: a pixel permutation, a subset of the classes (split), or"
         " a rotation of the images (see README, Task families)"),
    ENUM("--scenario", scenario, G_CONTINUAL, config_scenario_names,
         "output heads: one shared head of a task's classes (domain), one head per task chosen"
         " by the task label (task), or one head over all classes seen so far (class)"),
    INT("--classes-per-task", classes_per_task, G_CONTINUAL, 1, 0, 256,
        "split: classes per task; task t has classes t*K..(t+1)*K-1 of the class order, and"
        " --tasks defaults to classes / K; 0 = 2 (only with split)"),
    ENUM("--class-order", class_order, G_CONTINUAL, config_class_order_names,
         "split: the classes in label order, or in an order drawn from --seed"),
    PATH("--angles", angles, "A[,A...]", G_CONTINUAL, 1,
         "rotated: the angle of each task in degrees (counter-clockwise); none = 180 t / tasks"
         " for task t"),
    {.flag = "--joint", AT(joint), .group = G_CONTINUAL, .experiment = 1, .kind = K_BOOL,
     .help = "train on all tasks' data at once (the joint-training upper bound), then evaluate"
             " every task; needs --method sgd"},

    ENUM("--reduce", reduce, G_PARALLEL, reduce_names,
         "gradient reduction: exact (gathers activations; bit-identical for any rank count), "
         "fixed (int64 fixed-point sum of micro-batch gradients: bit-identical, traffic "
         "independent of the batch), allreduce (float sum, equal only up to rounding), or auto "
         "(exact, or fixed once exact would move 4/3 of its bytes: from model and batch only)"),
    INT("--micro-batch", micro_batch, G_PARALLEL, 1, 0, 1 << 20,
        "--reduce fixed: samples per micro-batch (one rank computes each); 0 = 96, 84 or 72, "
        "whichever splits the batch most evenly over 2 and 4 ranks"),
    INT("--threads", threads, G_PARALLEL, 0, 1, 256, "BLAS threads per MPI rank"),
    {.flag = "--blas-core", AT(blas_core), .arg = "auto|keep|NAME", .group = G_PARALLEL,
     .kind = K_WORD,
     .help = "OpenBLAS kernel set: auto = the fastest one that passes a start-up self-test, "
             "unless OPENBLAS_CORETYPE is set; keep = the one OpenBLAS loaded; NAME (e.g. "
             "SkylakeX, Haswell) = that one, self-tested"},

    PATH("--out", out_dir, "DIR", G_OUTPUT, 0, "output directory (summary, checkpoint)"),
    INT("--eval-every", eval_every, G_OUTPUT, 0, 0, INT_MAX,
        "evaluate on all tasks seen so far every N steps; 0 = only at the end of each task"),
    INT("--checkpoint-every", checkpoint_every, G_OUTPUT, 0, 0, INT_MAX,
        "write a checkpoint every N steps; 0 = only at the end of each task"),
    BOOL("--resume", resume, G_OUTPUT,
         "continue from the checkpoint in --out (experiment flags must be unchanged)"),
    BOOL("--quiet", quiet, G_OUTPUT, "no per-epoch progress lines"),

    PATH("--fisher-overlap", fisher_overlap, "FILE", G_OTHER, 0,
         "print the Fisher overlaps between the tasks stored in FILE, then exit"),
    BOOL("--overlap-layers", overlap_layers, G_OTHER,
         "with --fisher-overlap: one overlap per task pair and layer, as CSV "
         "task_a,task_b,layer,overlap (layer 1 = input to first hidden, 'all' = whole network)"),
    {.flag = "--help", .alias = "-h", AT(help), .group = G_OTHER, .kind = K_BOOL,
     .help = "print this help and exit"},
};
#define N_FLAGS (sizeof flags / sizeof flags[0])

/* ---- field access ---------------------------------------------------------------------- */

static void *field(Config *c, const Flag *f) { return (char *)c + f->offset; }
static const void *cfield(const Config *c, const Flag *f) { return (const char *)c + f->offset; }

static int get_int(const Config *c, const Flag *f) {
    int v;
    memcpy(&v, cfield(c, f), sizeof v);
    return v;
}

static void set_int(Config *c, const Flag *f, int v) { memcpy(field(c, f), &v, sizeof v); }

static double get_double(const Config *c, const Flag *f) {
    double v;
    memcpy(&v, cfield(c, f), sizeof v);
    return v;
}

static const char *enum_name(const char *const *names, int v) {
    for (int i = 0; names[i]; i++) {
        if (i == v) return names[i];
    }
    return "unknown";
}

const char *config_method_name(Method m) { return enum_name(method_names, (int)m); }
const char *config_fisher_name(FisherKind k) { return enum_name(fisher_names, (int)k); }

/* Shortest "%.*g" rendering that reads back as exactly V ("0.1", not "0.10000000000000001"). */
static void format_double(double v, char *buf, size_t size) {
    int prec = 1;
    while (prec < 17) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
        prec++;
    }
    /* "%g" switches to an exponent once it has more integer digits than PREC: "1e+02" */
    snprintf(buf, size, "%.*e", prec - 1, v);
    const char *e = strchr(buf, 'e');
    int exp10 = e ? atoi(e + 1) : 0;
    if (exp10 >= prec && exp10 < 17) prec = exp10 + 1;
    snprintf(buf, size, "%.*g", prec, v);
}

/* "> 0", "in [0, 1)", "1..1000", ... for --help and error messages. */
static void format_range(const Flag *f, char *buf, size_t size) {
    char lo[32], hi[32];
    switch (f->kind) {
    case K_INT:
        if (f->imax == INT_MAX) snprintf(buf, size, ">= %ld", f->imin);
        else snprintf(buf, size, "in [%ld, %ld]", f->imin, f->imax);
        break;
    case K_DOUBLE:
        format_double(f->dlo, lo, sizeof lo);
        format_double(f->dhi, hi, sizeof hi);
        if (isinf(f->dhi)) snprintf(buf, size, "%s %s", f->lo_open ? ">" : ">=", lo);
        else snprintf(buf, size, "in %c%s, %s%c", f->lo_open ? '(' : '[', lo, hi,
                      f->hi_open ? ')' : ']');
        break;
    default:
        buf[0] = '\0';
    }
}

/* What the flag accepts, as a phrase: "a number > 0", "one of exact, allreduce", ... */
static void format_expected(const Flag *f, char *buf, size_t size) {
    char range[96];
    format_range(f, range, sizeof range);
    switch (f->kind) {
    case K_PATH:
        snprintf(buf, size, "a path of 1 to %d bytes", CONFIG_PATH_MAX - 1);
        break;
    case K_WORD:
        snprintf(buf, size, "%s (a word of letters, digits, '_' or '-', at most %d)", f->arg,
                 CONFIG_WORD_MAX - 1);
        break;
    case K_INT:
        snprintf(buf, size, "an integer %s", range);
        break;
    case K_U64:
        snprintf(buf, size, "an unsigned 64-bit decimal integer");
        break;
    case K_DOUBLE:
        snprintf(buf, size, "a number %s", range);
        break;
    case K_HIDDEN:
        snprintf(buf, size, "comma-separated widths in [1, %d], or 0 for no hidden layer",
                 HIDDEN_WIDTH_MAX);
        break;
    case K_ENUM: {
        size_t n = (size_t)snprintf(buf, size, "one of");
        for (int i = 0; f->names[i] && n < size; i++) {
            n += (size_t)snprintf(buf + n, size - n, "%s %s", i ? "," : "", f->names[i]);
        }
        break;
    }
    case K_BOOL:
        snprintf(buf, size, "no value");
        break;
    }
}

/* ---- parsing --------------------------------------------------------------------------- */

/* V made safe for a one-line message: control bytes become '?', long values are cut. */
static const char *shown(const char *v, char buf[SHOWN_MAX + 4]) {
    size_t i = 0;
    for (; i < SHOWN_MAX && v[i]; i++) {
        unsigned char ch = (unsigned char)v[i];
        buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    strcpy(buf + i, v[i] ? "..." : "");
    return buf;
}

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
    }
    return 1;
}

/* Strict decimal: optional '-', digits only, no spaces or '+', no overflow of long. */
static int parse_long(const char *s, long *out) {
    if (!all_digits(s[0] == '-' ? s + 1 : s)) return 0;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno == ERANGE) return 0;
    *out = v;
    return 1;
}

/* The whole string must be a finite number (no NaN, Inf, spaces or trailing junk). */
static int parse_double(const char *s, double *out) {
    if (!*s || (*s >= '\t' && *s <= '\r') || *s == ' ') return 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return 0;
    *out = v + 0.0; /* -0 becomes +0, so "-0" and "0" compare and print alike */
    return 1;
}

/* W[,W...] with each W in [1, HIDDEN_WIDTH_MAX], or the single width 0 for none. */
static EwcStatus parse_hidden(Config *c, const Flag *f, const char *v) {
    int w[CONFIG_MAX_HIDDEN], n = 0;
    char msg[SHOWN_MAX + 4], expected[128];
    const char *p = v;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[16];
        long x = -1;
        if (len < sizeof item) {
            memcpy(item, p, len);
            item[len] = '\0';
            if (!all_digits(item) || !parse_long(item, &x)) x = -1;
        }
        if (x < 0 || x > HIDDEN_WIDTH_MAX) goto bad;
        if (n == CONFIG_MAX_HIDDEN) {
            ewc_error_set("%s: at most %d hidden layers, got \"%s\"", f->flag, CONFIG_MAX_HIDDEN,
                          shown(v, msg));
            return EWC_EINVAL;
        }
        w[n++] = (int)x;
        if (!comma) break;
        p = comma + 1;
    }
    if (n == 1 && w[0] == 0) n = 0;
    for (int i = 0; i < n; i++) {
        if (w[i] == 0) goto bad;
    }
    c->n_hidden = n;
    memcpy(c->hidden, w, (size_t)n * sizeof w[0]);
    return EWC_OK;
bad:
    format_expected(f, expected, sizeof expected);
    ewc_error_set("%s: expected %s, got \"%s\"", f->flag, expected, shown(v, msg));
    return EWC_EINVAL;
}

static EwcStatus set_value(Config *c, const Flag *f, const char *v) {
    char msg[SHOWN_MAX + 4], expected[128];
    long l;
    double d;
    switch (f->kind) {
    case K_PATH: {
        size_t len = strlen(v);
        if (len == 0 || len >= CONFIG_PATH_MAX) break;
        memcpy(field(c, f), v, len + 1);
        return EWC_OK;
    }
    case K_WORD: {
        size_t len = strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
        if (len == 0 || len != strlen(v) || len >= CONFIG_WORD_MAX) break;
        memcpy(field(c, f), v, len + 1);
        return EWC_OK;
    }
    case K_INT:
        if (!parse_long(v, &l) || l < f->imin || l > f->imax) break;
        set_int(c, f, (int)l);
        return EWC_OK;
    case K_U64: {
        if (!all_digits(v)) break;
        errno = 0;
        unsigned long long u = strtoull(v, NULL, 10);
        if (errno == ERANGE) break;
        memcpy(field(c, f), &u, sizeof u);
        return EWC_OK;
    }
    case K_DOUBLE:
        if (!parse_double(v, &d) || d < f->dlo || (f->lo_open && d == f->dlo) || d > f->dhi ||
            (f->hi_open && d == f->dhi)) {
            break;
        }
        memcpy(field(c, f), &d, sizeof d);
        return EWC_OK;
    case K_HIDDEN:
        return parse_hidden(c, f, v);
    case K_ENUM:
        for (int i = 0; f->names[i]; i++) {
            if (strcmp(v, f->names[i]) == 0) {
                set_int(c, f, i);
                return EWC_OK;
            }
        }
        break;
    case K_BOOL:
        set_int(c, f, 1);
        return EWC_OK;
    }
    format_expected(f, expected, sizeof expected);
    if (f->kind == K_PATH && *v) {
        ewc_error_set("%s: path of %zu bytes is too long (at most %d), got \"%s\"", f->flag,
                      strlen(v), CONFIG_PATH_MAX - 1, shown(v, msg));
    } else {
        ewc_error_set("%s: expected %s, got \"%s\"", f->flag, expected, shown(v, msg));
    }
    return EWC_EINVAL;
}

static const Flag *find_flag(const char *name, size_t len) {
    for (size_t i = 0; i < N_FLAGS; i++) {
        const Flag *f = &flags[i];
        if (strlen(f->flag) == len && strncmp(f->flag, name, len) == 0) return f;
        if (f->alias && strlen(f->alias) == len && strncmp(f->alias, name, len) == 0) return f;
    }
    return NULL;
}

/* Apply ARGV[*I], consuming the next element too when it is the flag's value. */
static EwcStatus parse_arg(Config *c, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    char msg[SHOWN_MAX + 4], expected[128];
    if (a[0] != '-' || a[1] == '\0') {
        ewc_error_set("unexpected argument \"%s\" (see --help)", shown(a, msg));
        return EWC_EINVAL;
    }
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
    const Flag *f = find_flag(a, name_len);
    if (!f) {
        char name[SHOWN_MAX + 1];
        size_t n = name_len < SHOWN_MAX ? name_len : SHOWN_MAX;
        memcpy(name, a, n);
        name[n] = '\0';
        ewc_error_set("unknown flag \"%s\" (see --help)", shown(name, msg));
        return EWC_EINVAL;
    }
    if (f->kind == K_BOOL) {
        if (eq) {
            ewc_error_set("%s: takes no value, got \"%s\"", f->flag, shown(eq + 1, msg));
            return EWC_EINVAL;
        }
        return set_value(c, f, "");
    }
    const char *v;
    if (eq) {
        v = eq + 1;
    } else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        v = argv[++*i];
    } else {
        /* a following "--flag" is taken as a forgotten value; use --flag=--x to mean "--x" */
        format_expected(f, expected, sizeof expected);
        ewc_error_set("%s: missing value (expected %s)", f->flag, expected);
        return EWC_EINVAL;
    }
    return set_value(c, f, v);
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", DATASET_DEFAULT_DIR);
    c->tasks = 3;
    c->n_hidden = 2;
    c->hidden[0] = 400;
    c->hidden[1] = 400;
    c->lr = 0.1;
    c->batch = 100;
    c->epochs = 1;
    c->momentum = 0.0;
    c->seed = 1;
    c->train_samples = 0;
    c->test_samples = 0;
    c->method = METHOD_SGD;
    c->lambda = 100.0;
    c->gamma = 1.0;
    c->fisher = FISHER_SAMPLED;
    c->fisher_samples = 0;
    c->dropout_input = 0.0;
    c->dropout = 0.0;
    c->penalty_step = PENALTY_EXPLICIT;
    c->reduce = REDUCE_AUTO;
    c->permute_fraction = 1.0;
    c->optimizer = OPTIMIZER_SGD;
    c->adam_beta1 = 0.9;
    c->adam_beta2 = 0.999;
    c->adam_eps = 1e-8;
    c->si_xi = 0.1;
    snprintf(c->out_dir, sizeof c->out_dir, "out");
    c->threads = 1;
    snprintf(c->blas_core, sizeof c->blas_core, "auto");
    c->eval_every = 0;
    c->checkpoint_every = 0;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

EwcStatus config_parse(Config *c, int argc, char **argv) {
    config_defaults(c);
    EwcStatus st = EWC_OK;
    for (int i = 1; i < argc; i++) {
        if (st == EWC_OK) st = parse_arg(c, argc, argv, &i);
        else if (is_help(argv[i])) c->help = 1; /* after an error, only look for --help */
    }
    if (st == EWC_OK && c->patience > 0 && c->validation == 0) {
        ewc_error_set("--patience %d needs a validation split: give --validation N > 0",
                      c->patience);
        st = EWC_EINVAL;
    }
    if (st == EWC_OK && c->train_samples > 0 && c->validation >= c->train_samples) {
        ewc_error_set("--validation %d: must be less than the %d training samples of"
                      " --train-samples", c->validation, c->train_samples);
        st = EWC_EINVAL;
    }
    if (st == EWC_OK && c->optimizer == OPTIMIZER_ADAM && c->momentum > 0) {
        ewc_error_set("--momentum %g: not used with --optimizer adam (its first moment is"
                      " --adam-beta1); give --momentum 0 or --optimizer sgd", c->momentum);
        st = EWC_EINVAL;
    }
    if (st == EWC_OK && c->adam_persist && c->optimizer != OPTIMIZER_ADAM) {
        ewc_error_set("--adam-persist: needs --optimizer adam");
        st = EWC_EINVAL;
    }
    if (st == EWC_OK) st = config_tasks_check(c, argc, argv);
    return st;
}

/* ---- help ------------------------------------------------------------------------------ */

/* Print TEXT word by word from column COL, wrapping at HELP_WIDTH to column HELP_INDENT. */
static void print_wrapped(const char *text, int col) {
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        int len = (int)strcspn(p, " ");
        if (len == 0) break;
        if (col > HELP_INDENT && col + 1 + len > HELP_WIDTH) {
            printf("\n%*s", HELP_INDENT, "");
            col = HELP_INDENT;
        } else if (col > HELP_INDENT) {
            putchar(' ');
            col++;
        }
        printf("%.*s", len, p);
        col += len;
        p += len;
    }
    putchar('\n');
}

/* The value of flag F in C as a user would type it. */
static void format_value(const Config *c, const Flag *f, char *buf, size_t size) {
    switch (f->kind) {
    case K_PATH:
    case K_WORD:
        snprintf(buf, size, "%s", (const char *)cfield(c, f));
        break;
    case K_INT:
        snprintf(buf, size, "%d", get_int(c, f));
        break;
    case K_U64:
        snprintf(buf, size, "%llu", *(const unsigned long long *)cfield(c, f));
        break;
    case K_DOUBLE:
        format_double(get_double(c, f), buf, size);
        break;
    case K_HIDDEN: {
        size_t n = (size_t)snprintf(buf, size, "%s", c->n_hidden > 0 ? "" : "0");
        for (int i = 0; i < c->n_hidden && i < CONFIG_MAX_HIDDEN && n < size; i++) {
            n += (size_t)snprintf(buf + n, size - n, "%s%d", i ? "," : "", c->hidden[i]);
        }
        break;
    }
    case K_ENUM:
        snprintf(buf, size, "%s", enum_name(f->names, get_int(c, f)));
        break;
    case K_BOOL:
        buf[0] = '\0';
        break;
    }
}

void config_print_help(const char *prog) {
    Config d;
    config_defaults(&d);
    printf("usage: %s [options]\n", prog && *prog ? prog : "ewc-train");
    printf("Train an MLP on a sequence of permuted-pixel tasks, with optional elastic weight\n"
           "consolidation, data-parallel over MPI. Give values as --flag VALUE or --flag=VALUE.\n");
    for (int g = 0; g < G_COUNT; g++) {
        printf("\n%s:\n", group_names[g]);
        for (size_t i = 0; i < N_FLAGS; i++) {
            const Flag *f = &flags[i];
            if (f->group != g) continue;
            char left[128], text[512], range[96], value[256];
            int col = snprintf(left, sizeof left, "  %s%s%s", f->alias ? f->alias : "",
                               f->alias ? ", " : "", f->flag);
            if (f->kind == K_ENUM) {
                for (int k = 0; f->names[k]; k++) {
                    col += snprintf(left + col, sizeof left - (size_t)col, "%c%s", k ? '|' : ' ',
                                    f->names[k]);
                }
            } else if (f->kind != K_BOOL) {
                col += snprintf(left + col, sizeof left - (size_t)col, " %s", f->arg);
            }
            printf("%s", left);
            if (col + 1 >= HELP_INDENT) printf("\n%*s", HELP_INDENT, "");
            else printf("%*s", HELP_INDENT - col, "");
            format_range(f, range, sizeof range);
            format_value(&d, f, value, sizeof value);
            snprintf(text, sizeof text, "%s%s%s%s%s%s", f->help, *range || *value ? " (" : "",
                     range, *range && *value ? ", " : "", *value ? "default " : "", value);
            if (*range || *value) strncat(text, ")", sizeof text - strlen(text) - 1);
            print_wrapped(text, HELP_INDENT);
        }
    }
    printf("\nExit status:\n"
           "  0 = success\n"
           "  1 = error (the message names its cause), including divergence: a training loss\n"
           "      that is not finite or above 100 x ln(classes) (230 for 10 classes) stops the\n"
           "      run at that step\n"
           "  3 = stopped by a signal after writing a checkpoint (requeue and run again with "
           "--resume)\n");
}

/* ---- JSON ------------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t size, len; /* len counts every byte, written or not */
} Out;

static void out_raw(Out *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++, o->len++) {
        if (o->len + 1 < o->size) o->buf[o->len] = s[i];
    }
}

static void out_str(Out *o, const char *s) { out_raw(o, s, strlen(s)); }

static void out_fmt(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(Out *o, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) out_raw(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the valid UTF-8 sequence at S, or 0 when the byte there starts none. */
static size_t utf8_len(const unsigned char *s) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) n = 3;
    else if (c >= 0xf0 && c <= 0xf4) n = 4;
    else return 0;
    if (c == 0xe0) lo = 0xa0; /* overlong */
    if (c == 0xed) hi = 0x9f; /* surrogates */
    if (c == 0xf0) lo = 0x90; /* overlong */
    if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) return 0; /* also stops at the NUL */
    }
    return n;
}

/* A JSON string of the first MAX bytes of S; bytes that are not UTF-8 become U+FFFD. */
static void out_json_string(Out *o, const char *s, size_t max) {
    size_t n = strnlen(s, max);
    out_str(o, "\"");
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        size_t k = utf8_len((const unsigned char *)s + i);
        if (k == 0 || i + k > n) {
            out_str(o, "\\ufffd");
            i++;
            continue;
        }
        if (ch == '"') out_str(o, "\\\"");
        else if (ch == '\\') out_str(o, "\\\\");
        else if (ch == '\n') out_str(o, "\\n");
        else if (ch == '\r') out_str(o, "\\r");
        else if (ch == '\t') out_str(o, "\\t");
        else if (ch < 0x20 || ch == 0x7f) out_fmt(o, "\\u%04x", ch);
        else out_raw(o, s + i, k);
        i += k;
    }
    out_str(o, "\"");
}

size_t config_to_json(const Config *c, char *buf, size_t size) {
    Out o = {buf, buf ? size : 0, 0};
    char num[32];
    for (size_t i = 0; i < N_FLAGS; i++) {
        const Flag *f = &flags[i];
        out_fmt(&o, "%s\"%s\":", i ? "," : "{", f->key);
        switch (f->kind) {
        case K_PATH:
            out_json_string(&o, cfield(c, f), CONFIG_PATH_MAX);
            break;
        case K_WORD:
            out_json_string(&o, cfield(c, f), CONFIG_WORD_MAX);
            break;
        case K_INT:
            out_fmt(&o, "%d", get_int(c, f));
            break;
        case K_U64:
            out_fmt(&o, "%llu", *(const unsigned long long *)cfield(c, f));
            break;
        case K_DOUBLE: {
            double d = get_double(c, f);
            if (isfinite(d)) format_double(d, num, sizeof num);
            out_str(&o, isfinite(d) ? num : "null");
            break;
        }
        case K_HIDDEN:
            out_str(&o, "[");
            for (int k = 0; k < c->n_hidden && k < CONFIG_MAX_HIDDEN; k++) {
                out_fmt(&o, "%s%d", k ? "," : "", c->hidden[k]);
            }
            out_str(&o, "]");
            break;
        case K_ENUM:
            out_fmt(&o, "\"%s\"", enum_name(f->names, get_int(c, f)));
            break;
        case K_BOOL:
            out_str(&o, get_int(c, f) ? "true" : "false");
            break;
        }
    }
    out_str(&o, "}");
    if (o.size > 0) o.buf[o.len < o.size ? o.len : o.size - 1] = '\0';
    return o.len;
}

/* ---- resume check ---------------------------------------------------------------------- */

const char *config_experiment_diff(const Config *a, const Config *b) {
    for (size_t i = 0; i < N_FLAGS; i++) {
        const Flag *f = &flags[i];
        if (!f->experiment) continue;
        int same = 1;
        switch (f->kind) {
        case K_PATH:
        case K_WORD:
            same = strncmp(cfield(a, f), cfield(b, f), CONFIG_PATH_MAX) == 0;
            break;
        case K_INT:
        case K_ENUM:
        case K_BOOL:
            same = get_int(a, f) == get_int(b, f);
            break;
        case K_U64:
            same = memcmp(cfield(a, f), cfield(b, f), sizeof(unsigned long long)) == 0;
            break;
        case K_DOUBLE: {
            double x = get_double(a, f), y = get_double(b, f);
            same = x == y || (isnan(x) && isnan(y));
            break;
        }
        case K_HIDDEN:
            same = a->n_hidden == b->n_hidden;
            for (int k = 0; same && k < a->n_hidden && k < CONFIG_MAX_HIDDEN; k++) {
                same = a->hidden[k] == b->hidden[k];
            }
            break;
        }
        if (!same) return f->flag;
    }
    return NULL;
}
