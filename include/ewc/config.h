/* The run configuration: command-line parsing, validation, --help, and a JSON rendering that
 * goes into summary.json and the checkpoint (so a resume can tell what changed). */
#ifndef EWC_CONFIG_H
#define EWC_CONFIG_H

#include <stddef.h>

#include "ewc/error.h"

#define CONFIG_MAX_HIDDEN 16
#define CONFIG_PATH_MAX 4096
#define CONFIG_WORD_MAX 32 /* a name such as an OpenBLAS core type, with its NUL */

/* appended values only: the checkpoint stores the method as its integer */
typedef enum { METHOD_SGD, METHOD_L2, METHOD_EWC, METHOD_ONLINE_EWC, METHOD_SI, METHOD_MAS } Method;
typedef enum { FISHER_EMPIRICAL, FISHER_SAMPLED, FISHER_EXPECTED } FisherKind;
typedef enum { PENALTY_EXPLICIT, PENALTY_IMPLICIT } PenaltyStep;
typedef enum { REDUCE_EXACT, REDUCE_ALLREDUCE, REDUCE_FIXED, REDUCE_AUTO } ReduceMode; /* fixsum.h */
typedef enum { OPTIMIZER_SGD, OPTIMIZER_ADAM } Optimizer; /* sgd = 0: what older checkpoints mean */
/* task families and scenarios (tasks.h); 0 = what runs before they existed did */
typedef enum { FAMILY_PERMUTED, FAMILY_SPLIT, FAMILY_ROTATED } TaskFamily;
typedef enum { SCENARIO_DOMAIN, SCENARIO_TASK, SCENARIO_CLASS } Scenario;
typedef enum { CLASS_ORDER_NATURAL, CLASS_ORDER_SEEDED } ClassOrder;

typedef struct {
    /* experiment: changing any of these changes the results, so a resume must refuse it */
    char data_dir[CONFIG_PATH_MAX]; /* --data, default DATASET_DEFAULT_DIR */
    int tasks;                      /* --tasks, >= 1, default 3 */
    int n_hidden;                   /* number of hidden layers (--hidden 0: softmax regression) */
    int hidden[CONFIG_MAX_HIDDEN];  /* --hidden W[,W...], each 1..100000, default 400,400 */
    double lr;                      /* --lr, > 0, default 0.1 */
    int batch;                      /* --batch, global minibatch, default 100 */
    int epochs;                     /* --epochs per task, default 1 */
    double momentum;                /* --momentum in [0, 1), default 0 */
    unsigned long long seed;        /* --seed, default 1 */
    int train_samples;              /* --train-samples N: first N training samples (0 = all) */
    int test_samples;               /* --test-samples N: first N test samples (0 = all) */
    Method method;                  /* --method sgd|l2|ewc|online-ewc|si|mas, default sgd */
    double lambda;                  /* --lambda >= 0, default 100 */
    double gamma;                   /* --gamma in (0, 1], online EWC decay, default 1 */
    FisherKind fisher;              /* --fisher empirical|sampled|expected, default sampled */
    int fisher_samples;             /* --fisher-samples N (0 = whole training set), default 0 */
    double dropout_input;           /* --dropout-input P in [0, 1), default 0 */
    double dropout;                 /* --dropout P in [0, 1) on hidden layers, default 0 */
    int init;                       /* --init he|torch (ModelInit, model.h), default he */
    PenaltyStep penalty_step;       /* --penalty-step explicit|implicit, default explicit */
    ReduceMode reduce;              /* --reduce exact|allreduce|fixed|auto, default auto */
    int validation;                 /* --validation N held-out training samples (0 = none) */
    int patience;                   /* --patience P: checks without improvement end a task */
    int val_every;                  /* --val-every STEPS of a task between checks (0: each epoch) */
    double permute_fraction;        /* --permute-fraction F in [0, 1]: pixels each task moves */
    Optimizer optimizer;            /* --optimizer sgd|adam, default sgd */
    double adam_beta1;              /* --adam-beta1 in [0, 1), default 0.9 */
    double adam_beta2;              /* --adam-beta2 in [0, 1), default 0.999 */
    double adam_eps;                /* --adam-eps > 0, default 1e-8 */
    int adam_persist;               /* --adam-persist: keep Adam's moments across tasks */
    int micro_batch;                /* --micro-batch: samples per micro-batch of --reduce fixed (0 = default) */

    TaskFamily task_family;         /* --task-family permuted|split|rotated, default permuted */
    Scenario scenario;              /* --scenario domain|task|class, default domain */
    int classes_per_task;           /* --classes-per-task K (split; default 2); 0 = all classes */
    ClassOrder class_order;         /* --class-order natural|seeded (split), default natural */
    char angles[CONFIG_PATH_MAX];   /* --angles A[,A...] degrees (rotated); "" = evenly spaced */
    int joint;                      /* --joint: all tasks' data at once (the upper bound) */

    double si_xi;                   /* --si-xi > 0, SI's damping of the total change, default 0.1 */

    /* execution: free to change between a run and its resume */
    char out_dir[CONFIG_PATH_MAX];  /* --out, default "out" */
    int threads;                    /* --threads, BLAS threads per rank, default 1 */
    char blas_core[CONFIG_WORD_MAX]; /* --blas-core auto|keep|NAME, default auto (blascore.h) */
    int eval_every;                 /* --eval-every STEPS, 0 = only at task ends */
    int checkpoint_every;           /* --checkpoint-every STEPS, 0 = only at task ends */
    int resume;                     /* --resume */
    int quiet;                      /* --quiet: no per-epoch progress lines */

    /* modes other than training */
    char fisher_overlap[CONFIG_PATH_MAX]; /* --fisher-overlap FILE: print overlaps and exit */
    int overlap_layers;                   /* --overlap-layers: per-layer overlaps (long CSV) */
    int help;                             /* --help was given */
} Config;

/* Fill C with the defaults, then apply ARGV (--flag VALUE or --flag=VALUE; a separate VALUE may
 * not start with "--", so "--out --quiet" is a missing value). Errors (EWC_EINVAL) set a one-line
 * message naming the flag and the value: unknown flags, stray arguments, missing, non-numeric or
 * out-of-range values, NaN/Inf, an empty --hidden, overlong paths, --patience without
 * --validation, --validation not below --train-samples, --momentum > 0 with --optimizer adam. --help or -h anywhere sets
 * C->help, even after an error; the status is then that of the first error, else EWC_OK. */
EwcStatus config_parse(Config *c, int argc, char **argv);
void config_defaults(Config *c);

/* Print usage, every flag grouped with its range and default, and the exit statuses to stdout. */
void config_print_help(const char *prog);

/* Render C as a one-line JSON object into BUF (NUL-terminated). Returns the length that the
 * full rendering needs (like snprintf), so a return >= SIZE means it was truncated. */
size_t config_to_json(const Config *c, char *buf, size_t size);

/* Compare the experiment-defining fields of A and B (execution fields are ignored). Returns
 * NULL when they agree, else the flag name of the first differing field (e.g. "--lambda"). */
const char *config_experiment_diff(const Config *a, const Config *b);

const char *config_method_name(Method m);
const char *config_fisher_name(FisherKind k);

#endif
