/* Tests of the run configuration: defaults, every flag in both --f v and --f=v forms, the
 * rejection (and message) of each kind of bad input, --help, JSON rendering and resume diffs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ewc/config.h"
#include "ewc/model.h"
#include "ewc/dataset.h"

#define MAX_ARGS 64

/* Parse the NULL-terminated ARGS after a program name. */
static EwcStatus parse_list(Config *c, const char *const *args) {
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "ewc-train";
    for (; *args && argc <= MAX_ARGS; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    ewc_error_clear();
    return config_parse(c, argc, argv);
}
#define PARSE(c, ...) parse_list(c, (const char *const[]){__VA_ARGS__, NULL})

/* ---- a minimal JSON syntax checker, so "valid" means more than "has braces" -------------- */

static const char *json_value(const char *p);

static const char *json_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static const char *json_string(const char *p) {
    if (*p++ != '"') return NULL;
    for (; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20) return NULL; /* raw control byte, including the NUL */
        if (*p != '\\') continue;
        p++;
        if (*p == 'u') {
            for (int i = 1; i <= 4; i++) {
                if (!p[i] || !strchr("0123456789abcdefABCDEF", p[i])) return NULL;
            }
            p += 4;
        } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
            return NULL;
        }
    }
    return p + 1;
}

static const char *json_digits(const char *p) {
    if (*p < '0' || *p > '9') return NULL;
    while (*p >= '0' && *p <= '9') p++;
    return p;
}

static const char *json_number(const char *p) {
    if (*p == '-') p++;
    if (*p == '0') p++;
    else if (!(p = json_digits(p))) return NULL;
    if (*p == '.' && !(p = json_digits(p + 1))) return NULL;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        p = json_digits(p);
    }
    return p;
}

static const char *json_list(const char *p, char close, int keyed) {
    p = json_ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
        if (keyed) {
            if (!(p = json_string(p))) return NULL;
            p = json_ws(p);
            if (*p++ != ':') return NULL;
        }
        if (!(p = json_value(p))) return NULL;
        p = json_ws(p);
        if (*p == close) return p + 1;
        if (*p++ != ',') return NULL;
        p = json_ws(p);
    }
}

static const char *json_value(const char *p) {
    p = json_ws(p);
    if (*p == '{') return json_list(p, '}', 1);
    if (*p == '[') return json_list(p, ']', 0);
    if (*p == '"') return json_string(p);
    if (strncmp(p, "true", 4) == 0) return p + 4;
    if (strncmp(p, "false", 5) == 0) return p + 5;
    if (strncmp(p, "null", 4) == 0) return p + 4;
    return json_number(p);
}

static int json_valid(const char *s) {
    if (*json_ws(s) != '{') return 0;
    const char *end = json_value(s);
    return end && *json_ws(end) == '\0';
}

static void test_json_checker_rejects_bad_json(void **state) {
    assert_true(json_valid("{\"a\":[1,2.5e-3],\"b\":\"x\\\"y\",\"c\":true,\"d\":null}"));
    assert_false(json_valid("{\"a\":\"x\"y\"}"));
    assert_false(json_valid("{\"a\":\"x\ny\"}"));
    assert_false(json_valid("{\"a\":1,}"));
    assert_false(json_valid("{\"a\":nan}"));
    assert_false(json_valid("{\"a\":01}"));
    assert_false(json_valid("{\"a\":1"));
}

/* ---- defaults and accepted input -------------------------------------------------------- */

static void test_defaults(void **state) {
    Config c;
    memset(&c, 0x5a, sizeof c);
    config_defaults(&c);
    assert_string_equal(c.data_dir, DATASET_DEFAULT_DIR);
    assert_string_equal(c.out_dir, "out");
    assert_int_equal(c.n_hidden, 2);
    assert_int_equal(c.hidden[0], 400);
    assert_int_equal(c.hidden[1], 400);
    assert_int_equal(c.tasks, 3);
    assert_true(c.lr == 0.1);
    assert_int_equal(c.batch, 100);
    assert_int_equal(c.epochs, 1);
    assert_true(c.momentum == 0.0);
    assert_true(c.seed == 1);
    assert_int_equal(c.train_samples, 0);
    assert_int_equal(c.test_samples, 0);
    assert_int_equal(c.method, METHOD_SGD);
    assert_true(c.lambda == 100.0);
    assert_true(c.gamma == 1.0);
    assert_int_equal(c.fisher, FISHER_SAMPLED);
    assert_int_equal(c.fisher_samples, 0);
    assert_true(c.dropout_input == 0.0);
    assert_true(c.dropout == 0.0);
    assert_int_equal(c.penalty_step, PENALTY_EXPLICIT);
    assert_int_equal(c.reduce, REDUCE_AUTO);
    assert_int_equal(c.micro_batch, 0);
    assert_int_equal(c.threads, 1);
    assert_int_equal(c.eval_every, 0);
    assert_int_equal(c.checkpoint_every, 0);
    assert_int_equal(c.resume, 0);
    assert_int_equal(c.quiet, 0);
    assert_string_equal(c.fisher_overlap, "");
    assert_true(c.permute_fraction == 1.0);
    assert_int_equal(c.optimizer, OPTIMIZER_SGD);
    assert_int_equal(OPTIMIZER_SGD, 0); /* what a checkpoint without the attribute means */
    assert_int_equal(c.init, MODEL_INIT_HE);
    assert_int_equal(MODEL_INIT_HE, 0); /* likewise */
    assert_true(c.adam_beta1 == 0.9);
    assert_true(c.adam_beta2 == 0.999);
    assert_true(c.adam_eps == 1e-8);
    assert_int_equal(c.overlap_layers, 0);
    assert_int_equal(c.help, 0);

    Config p;
    memset(&p, 0x5a, sizeof p);
    assert_int_equal(PARSE(&p, NULL), EWC_OK); /* no arguments at all */
    assert_null(config_experiment_diff(&c, &p));
    assert_string_equal(p.out_dir, "out");
    assert_int_equal(p.threads, 1);
}

/* Every valued flag with a non-default value. */
static const char *const every_flag[][2] = {
    {"--data", "/tmp/d"},      {"--out", "/tmp/o"},         {"--tasks", "7"},
    {"--hidden", "10,20,30"},  {"--lr", "0.025"},           {"--batch", "32"},
    {"--epochs", "4"},         {"--momentum", "0.9"},       {"--seed", "12345678901234567890"},
    {"--train-samples", "600"}, {"--test-samples", "50"},   {"--method", "online-ewc"},
    {"--lambda", "4000.5"},    {"--gamma", "0.25"},         {"--fisher", "empirical"},
    {"--fisher-samples", "200"}, {"--dropout-input", "0.2"}, {"--dropout", "0.5"},
    {"--penalty-step", "implicit"}, {"--reduce", "allreduce"}, {"--threads", "8"},
    {"--eval-every", "11"},    {"--checkpoint-every", "13"}, {"--fisher-overlap", "/tmp/f.h5"},
    {"--permute-fraction", "0.25"},
};
#define N_EVERY (sizeof every_flag / sizeof every_flag[0])

static void check_every_flag(const Config *c) {
    assert_string_equal(c->data_dir, "/tmp/d");
    assert_string_equal(c->out_dir, "/tmp/o");
    assert_int_equal(c->tasks, 7);
    assert_int_equal(c->n_hidden, 3);
    assert_int_equal(c->hidden[0], 10);
    assert_int_equal(c->hidden[1], 20);
    assert_int_equal(c->hidden[2], 30);
    assert_true(c->lr == 0.025);
    assert_int_equal(c->batch, 32);
    assert_int_equal(c->epochs, 4);
    assert_true(c->momentum == 0.9);
    assert_true(c->seed == 12345678901234567890ULL);
    assert_int_equal(c->train_samples, 600);
    assert_int_equal(c->test_samples, 50);
    assert_int_equal(c->method, METHOD_ONLINE_EWC);
    assert_true(c->lambda == 4000.5);
    assert_true(c->gamma == 0.25);
    assert_int_equal(c->fisher, FISHER_EMPIRICAL);
    assert_int_equal(c->fisher_samples, 200);
    assert_true(c->dropout_input == 0.2);
    assert_true(c->dropout == 0.5);
    assert_int_equal(c->penalty_step, PENALTY_IMPLICIT);
    assert_int_equal(c->reduce, REDUCE_ALLREDUCE);
    assert_int_equal(c->threads, 8);
    assert_int_equal(c->eval_every, 11);
    assert_int_equal(c->checkpoint_every, 13);
    assert_string_equal(c->fisher_overlap, "/tmp/f.h5");
    assert_true(c->permute_fraction == 0.25);
    assert_int_equal(c->resume, 1);
    assert_int_equal(c->quiet, 1);
    assert_int_equal(c->help, 0);
}

static void test_every_flag_both_forms(void **state) {
    for (int joined = 0; joined <= 1; joined++) {
        char storage[N_EVERY][64];
        char *argv[2 * N_EVERY + 4];
        int argc = 0;
        argv[argc++] = "ewc-train";
        for (size_t i = 0; i < N_EVERY; i++) {
            if (joined) {
                snprintf(storage[i], sizeof storage[i], "%s=%s", every_flag[i][0],
                         every_flag[i][1]);
                argv[argc++] = storage[i];
            } else {
                argv[argc++] = (char *)every_flag[i][0];
                argv[argc++] = (char *)every_flag[i][1];
            }
        }
        argv[argc++] = "--resume";
        argv[argc++] = "--quiet";
        argv[argc] = NULL;
        Config c;
        ewc_error_clear();
        assert_int_equal(config_parse(&c, argc, argv), EWC_OK);
        assert_string_equal(ewc_error_message(), "");
        check_every_flag(&c);
    }
}

static void test_each_flag_alone(void **state) {
    /* one at a time: an experiment flag must be reported under its own name (so it set its
     * own field), an execution flag not at all */
    static const char *const execution[] = {"--out", "--threads", "--eval-every",
                                            "--checkpoint-every", "--fisher-overlap"};
    Config def;
    config_defaults(&def);
    for (size_t i = 0; i < N_EVERY; i++) {
        Config c;
        assert_int_equal(PARSE(&c, every_flag[i][0], every_flag[i][1]), EWC_OK);
        int is_execution = 0;
        for (size_t k = 0; k < sizeof execution / sizeof execution[0]; k++) {
            if (strcmp(every_flag[i][0], execution[k]) == 0) is_execution = 1;
        }
        const char *d = config_experiment_diff(&def, &c);
        if (is_execution ? d != NULL : !d || strcmp(d, every_flag[i][0]) != 0) {
            fail_msg("%s alone: diff says %s", every_flag[i][0], d ? d : "(none)");
        }
    }
}

static void test_enum_values(void **state) {
    Config c;
    static const char *const methods[] = {"sgd", "l2", "ewc", "online-ewc"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(PARSE(&c, "--method", methods[i]), EWC_OK);
        assert_int_equal(c.method, i);
        assert_string_equal(config_method_name(c.method), methods[i]);
    }
    static const char *const fishers[] = {"empirical", "sampled", "expected"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(PARSE(&c, "--fisher", fishers[i]), EWC_OK);
        assert_int_equal(c.fisher, i);
        assert_string_equal(config_fisher_name(c.fisher), fishers[i]);
    }
    assert_int_equal(PARSE(&c, "--penalty-step", "explicit", "--reduce", "exact"), EWC_OK);
    assert_int_equal(c.penalty_step, PENALTY_EXPLICIT);
    assert_int_equal(c.reduce, REDUCE_EXACT);
    assert_string_equal(config_method_name((Method)99), "unknown");
}

static void test_hidden(void **state) {
    Config c;
    assert_int_equal(PARSE(&c, "--hidden", "0"), EWC_OK);
    assert_int_equal(c.n_hidden, 0);
    assert_int_equal(PARSE(&c, "--hidden=0"), EWC_OK);
    assert_int_equal(c.n_hidden, 0);
    assert_int_equal(PARSE(&c, "--hidden", "100000"), EWC_OK);
    assert_int_equal(c.n_hidden, 1);
    assert_int_equal(c.hidden[0], 100000);
    assert_int_equal(PARSE(&c, "--hidden", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"), EWC_OK);
    assert_int_equal(c.n_hidden, CONFIG_MAX_HIDDEN);
    assert_int_equal(c.hidden[15], 16);
    /* a failed --hidden leaves the earlier value alone */
    assert_int_equal(PARSE(&c, "--hidden", "5,6", "--hidden", "7,x"), EWC_EINVAL);
    assert_int_equal(c.n_hidden, 2);
    assert_int_equal(c.hidden[1], 6);
}

static void test_limits_accepted(void **state) {
    Config c;
    assert_int_equal(PARSE(&c, "--seed", "18446744073709551615", "--tasks", "1000", "--threads",
                           "256", "--momentum", "0", "--gamma", "1", "--lambda", "0",
                           "--dropout", "0.999", "--batch", "2147483647"),
                     EWC_OK);
    assert_true(c.seed == 18446744073709551615ULL);
    assert_int_equal(c.tasks, 1000);
    assert_int_equal(c.threads, 256);
    assert_true(c.gamma == 1.0);
    assert_true(c.lambda == 0.0);
    assert_int_equal(c.batch, 2147483647);
    assert_int_equal(PARSE(&c, "--lr", "1e-3", "--momentum", "-0"), EWC_OK);
    assert_true(c.lr == 0.001);
    assert_false(signbit(c.momentum)); /* "-0" is stored as +0 */
    /* Adam: betas may be 0, --momentum 0 is allowed with it */
    assert_int_equal(PARSE(&c, "--optimizer", "adam", "--adam-beta1", "0", "--adam-beta2",
                           "0.99999", "--adam-eps", "1e-30", "--momentum", "0"),
                     EWC_OK);
    assert_int_equal(c.optimizer, OPTIMIZER_ADAM);
    assert_true(c.adam_beta1 == 0.0 && c.adam_beta2 == 0.99999 && c.adam_eps == 1e-30);
    assert_int_equal(PARSE(&c, "--init", "torch"), EWC_OK);
    assert_int_equal(c.init, MODEL_INIT_TORCH);
}

static void test_repeated_flag_last_wins(void **state) {
    Config c;
    assert_int_equal(PARSE(&c, "--lr", "0.5", "--lr=0.25", "--out", "a", "--out", "b"), EWC_OK);
    assert_true(c.lr == 0.25);
    assert_string_equal(c.out_dir, "b");
}

static void test_value_that_looks_like_a_flag(void **state) {
    Config c;
    /* "--out --quiet" forgot the value; "--out=--quiet" means it */
    assert_int_equal(PARSE(&c, "--out", "--quiet"), EWC_EINVAL);
    assert_non_null(strstr(ewc_error_message(), "--out: missing value"));
    assert_int_equal(PARSE(&c, "--out=--quiet"), EWC_OK);
    assert_string_equal(c.out_dir, "--quiet");
    assert_int_equal(c.quiet, 0);
    assert_int_equal(PARSE(&c, "--data=a=b"), EWC_OK); /* only the first '=' splits */
    assert_string_equal(c.data_dir, "a=b");
}

/* ---- rejected input --------------------------------------------------------------------- */

typedef struct {
    const char *args[4];
    const char *needles[2]; /* both must appear in the message */
} BadCase;

static const BadCase bad_cases[] = {
    {{"--lrr", "0.1"}, {"unknown flag \"--lrr\"", "--help"}},
    {{"--lrr=0.1"}, {"unknown flag \"--lrr\"", NULL}},
    {{"--l", "0.1"}, {"unknown flag \"--l\"", NULL}}, /* no abbreviations */
    {{"-x"}, {"unknown flag \"-x\"", NULL}},
    {{"--"}, {"unknown flag \"--\"", NULL}},
    {{"stray"}, {"unexpected argument \"stray\"", NULL}},
    {{"--lr", "0.1", "0.2"}, {"unexpected argument \"0.2\"", NULL}},
    {{"--lr"}, {"--lr: missing value", "> 0"}},
    {{"--hidden"}, {"--hidden: missing value", NULL}},
    {{"--data", "--lr", "0.1"}, {"--data: missing value", NULL}},
    {{"--lr", "abc"}, {"--lr", "\"abc\""}},
    {{"--lr", ""}, {"--lr", "\"\""}},
    {{"--lr", "0.1x"}, {"--lr", "\"0.1x\""}},
    {{"--lr", " 0.1"}, {"--lr", "\" 0.1\""}},
    {{"--lr", "nan"}, {"--lr", "\"nan\""}},
    {{"--lambda", "NaN"}, {"--lambda", "\"NaN\""}},
    {{"--lr", "inf"}, {"--lr", "\"inf\""}},
    {{"--lambda", "-Infinity"}, {"--lambda", "\"-Infinity\""}},
    {{"--lambda", "1e999"}, {"--lambda", "\"1e999\""}},
    {{"--lr", "0"}, {"--lr: expected a number > 0", "\"0\""}},
    {{"--lr", "-0.1"}, {"--lr", "\"-0.1\""}},
    {{"--lambda", "-1"}, {"--lambda: expected a number >= 0", "\"-1\""}},
    {{"--batch", "0"}, {"--batch: expected an integer >= 1", "\"0\""}},
    {{"--batch", "-5"}, {"--batch", "\"-5\""}},
    {{"--batch", "1.5"}, {"--batch", "\"1.5\""}},
    {{"--batch", "+5"}, {"--batch", "\"+5\""}},
    {{"--batch", "0x10"}, {"--batch", "\"0x10\""}},
    {{"--tasks", "0"}, {"--tasks", "\"0\""}},
    {{"--tasks", "1001"}, {"--tasks", "\"1001\""}},
    {{"--epochs", "0"}, {"--epochs", "\"0\""}},
    {{"--momentum", "1"}, {"--momentum: expected a number in [0, 1)", "\"1\""}},
    {{"--momentum", "-0.1"}, {"--momentum", "\"-0.1\""}},
    {{"--gamma", "0"}, {"--gamma: expected a number in (0, 1]", "\"0\""}},
    {{"--gamma", "1.0000001"}, {"--gamma", "\"1.0000001\""}},
    {{"--dropout", "1"}, {"--dropout", "\"1\""}},
    {{"--dropout-input", "1"}, {"--dropout-input", "\"1\""}},
    {{"--dropout-input", "-0.5"}, {"--dropout-input", "\"-0.5\""}},
    {{"--threads", "0"}, {"--threads", "\"0\""}},
    {{"--threads", "257"}, {"--threads", "\"257\""}},
    {{"--eval-every", "-1"}, {"--eval-every", "\"-1\""}},
    {{"--checkpoint-every", "-1"}, {"--checkpoint-every", "\"-1\""}},
    {{"--train-samples", "-1"}, {"--train-samples", "\"-1\""}},
    {{"--test-samples", "x"}, {"--test-samples", "\"x\""}},
    {{"--fisher-samples", "-3"}, {"--fisher-samples", "\"-3\""}},
    {{"--seed", "-1"}, {"--seed", "\"-1\""}},
    {{"--seed", "18446744073709551616"}, {"--seed", "\"18446744073709551616\""}},
    {{"--batch", "99999999999999999999"}, {"--batch", "\"99999999999999999999\""}},
    {{"--batch", "2147483648"}, {"--batch", "\"2147483648\""}},
    {{"--hidden", ""}, {"--hidden", "\"\""}},
    {{"--hidden="}, {"--hidden", "\"\""}},
    {{"--hidden", "400,0"}, {"--hidden", "\"400,0\""}},
    {{"--hidden", "0,400"}, {"--hidden", "\"0,400\""}},
    {{"--hidden", "400,,400"}, {"--hidden", "\"400,,400\""}},
    {{"--hidden", "400,"}, {"--hidden", "\"400,\""}},
    {{"--hidden", "-400"}, {"--hidden", "\"-400\""}},
    {{"--hidden", "100001"}, {"--hidden", "\"100001\""}},
    {{"--hidden", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"}, {"--hidden", "at most 16"}},
    {{"--method", "EWC"}, {"--method: expected one of sgd, l2, ewc, online-ewc", "\"EWC\""}},
    {{"--fisher", "exact"}, {"--fisher", "\"exact\""}},
    {{"--penalty-step", "proximal"}, {"--penalty-step", "\"proximal\""}},
    {{"--reduce", "sum"}, {"--reduce", "\"sum\""}},
    {{"--data", ""}, {"--data", "\"\""}},
    {{"--resume=1"}, {"--resume: takes no value", "\"1\""}},
    {{"--quiet=yes"}, {"--quiet", "\"yes\""}},
    {{"--validation", "-1"}, {"--validation", "\"-1\""}},
    {{"--patience", "-2"}, {"--patience", "\"-2\""}},
    {{"--val-every", "-1"}, {"--val-every", "\"-1\""}},
    {{"--patience", "3"}, {"--patience 3", "--validation"}},
    {{"--patience", "1", "--validation", "0"}, {"--patience", "--validation N > 0"}},
    {{"--train-samples", "100", "--validation", "100"}, {"--validation 100", "100 training"}},
    {{"--validation", "500", "--train-samples", "20"}, {"--validation 500", "--train-samples"}},
    {{"--permute-fraction", "1.5"}, {"--permute-fraction: expected a number in [0, 1]", "\"1.5\""}},
    {{"--permute-fraction", "-0.1"}, {"--permute-fraction", "\"-0.1\""}},
    {{"--overlap-layers=1"}, {"--overlap-layers: takes no value", NULL}},
    {{"--optimizer", "rmsprop"}, {"--optimizer: expected one of sgd, adam", "\"rmsprop\""}},
    {{"--init", "xavier"}, {"--init: expected one of he, torch", "\"xavier\""}},
    {{"--adam-beta1", "1"}, {"--adam-beta1: expected a number in [0, 1)", "\"1\""}},
    {{"--adam-beta1", "-0.1"}, {"--adam-beta1", "\"-0.1\""}},
    {{"--adam-beta2", "1"}, {"--adam-beta2: expected a number in [0, 1)", "\"1\""}},
    {{"--adam-beta2", "1.5"}, {"--adam-beta2", "\"1.5\""}},
    {{"--adam-eps", "0"}, {"--adam-eps: expected a number > 0", "\"0\""}},
    {{"--optimizer", "adam", "--momentum", "0.5"}, {"--momentum 0.5", "--optimizer adam"}},
    {{"--momentum", "0.9", "--optimizer", "adam"}, {"--momentum 0.9", "--optimizer adam"}},
    {{"--adam-persist"}, {"--adam-persist", "needs --optimizer adam"}},
};

static void test_bad_input_rejected(void **state) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const BadCase *b = &bad_cases[i];
        const char *args[6] = {b->args[0], b->args[1], b->args[2], b->args[3], NULL};
        Config c;
        EwcStatus st = parse_list(&c, args);
        const char *msg = ewc_error_message();
        int ok = st == EWC_EINVAL && strchr(msg, '\n') == NULL;
        for (int k = 0; k < 2; k++) {
            if (b->needles[k] && !strstr(msg, b->needles[k])) ok = 0;
        }
        if (!ok) {
            fail_msg("case %zu (%s %s): status %d, message \"%s\"", i, b->args[0],
                     b->args[1] ? b->args[1] : "", (int)st, msg);
        }
    }
}

static void test_overlong_path(void **state) {
    char *path = malloc(CONFIG_PATH_MAX + 1);
    assert_non_null(path);
    memset(path, 'a', CONFIG_PATH_MAX);
    path[CONFIG_PATH_MAX] = '\0'; /* one byte too long */
    Config c;
    assert_int_equal(PARSE(&c, "--data", path), EWC_EINVAL);
    assert_non_null(strstr(ewc_error_message(), "--data"));
    assert_non_null(strstr(ewc_error_message(), "too long"));
    assert_true(strlen(ewc_error_message()) < 200); /* the value is cut, not echoed whole */
    assert_int_equal(PARSE(&c, "--out", path), EWC_EINVAL);
    assert_non_null(strstr(ewc_error_message(), "--out"));
    assert_int_equal(PARSE(&c, "--fisher-overlap", path), EWC_EINVAL);
    assert_non_null(strstr(ewc_error_message(), "--fisher-overlap"));

    path[CONFIG_PATH_MAX - 1] = '\0'; /* the longest that fits */
    assert_int_equal(PARSE(&c, "--data", path), EWC_OK);
    assert_int_equal(strlen(c.data_dir), CONFIG_PATH_MAX - 1);
    free(path);
}

static void test_control_bytes_in_message(void **state) {
    Config c;
    assert_int_equal(PARSE(&c, "--lr", "1\n2"), EWC_EINVAL);
    assert_null(strchr(ewc_error_message(), '\n'));
    assert_non_null(strstr(ewc_error_message(), "--lr"));
}

static void test_help(void **state) {
    Config c;
    assert_int_equal(PARSE(&c, "--lr", "0.5", "--help"), EWC_OK);
    assert_int_equal(c.help, 1);
    assert_true(c.lr == 0.5);
    assert_int_equal(PARSE(&c, "-h"), EWC_OK);
    assert_int_equal(c.help, 1);
    assert_int_equal(PARSE(&c, "--help=1"), EWC_EINVAL);
    /* an error wins over --help, but help is still noticed */
    assert_int_equal(PARSE(&c, "--bogus", "--help"), EWC_EINVAL);
    assert_non_null(strstr(ewc_error_message(), "--bogus"));
    assert_int_equal(c.help, 1);
    assert_int_equal(PARSE(&c, "--lr", "0.5"), EWC_OK);
    assert_int_equal(c.help, 0);
}

/* Run config_print_help with stdout sent to a temporary file; returns its text (malloc'd). */
static char *capture_help(void) {
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    config_print_help("ewc-train");
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    assert_int_equal(fseek(tmp, 0, SEEK_END), 0);
    long n = ftell(tmp);
    assert_true(n > 0);
    char *text = calloc((size_t)n + 1, 1);
    assert_non_null(text);
    rewind(tmp);
    assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return text;
}

static void test_help_text(void **state) {
    char *text = capture_help();
    assert_non_null(strstr(text, "usage: ewc-train"));
    static const char *const names[] = {
        "--data DIR", "--out DIR", "--tasks N", "--hidden W", "--lr X", "--batch N",
        "--epochs N", "--momentum X", "--seed N", "--train-samples N", "--test-samples N",
        "--method sgd|l2|ewc|online-ewc", "--lambda X", "--gamma X",
        "--fisher empirical|sampled|expected", "--fisher-samples N", "--dropout-input P",
        "--dropout P", "--penalty-step explicit|implicit", "--reduce exact|allreduce|fixed|auto", "--micro-batch N",
        "--threads N", "--eval-every N", "--checkpoint-every N", "--resume", "--quiet",
        "--fisher-overlap FILE", "-h, --help", "Data:", "Model:", "Training:",
        "Continual learning:", "Parallelism:", "Output and checkpointing:", "Other:",
        "default 0.1", "default 400,400", "default 100)", "default sampled", DATASET_DEFAULT_DIR,
        "0 = none (softmax regression)", "0 = success", "1 = error",
        "3 = stopped by a signal after writing a checkpoint (requeue and run again with --resume)",
    };
    /* the same text with wrapped descriptions joined, so phrases can be found across lines */
    char *flat = strdup(text);
    assert_non_null(flat);
    size_t w = 0;
    for (size_t r = 0; text[r]; r++) {
        if (text[r] == '\n' && text[r + 1] == ' ' && text[r + 2] == ' ' && text[r + 3] == ' ') {
            while (text[r + 1] == ' ') r++;
            flat[w++] = ' ';
        } else {
            flat[w++] = text[r];
        }
    }
    flat[w] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strstr(flat, names[i])) fail_msg("help lacks \"%s\"", names[i]);
    }
    free(flat);
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        if (len > 100) fail_msg("help line of %zu columns: %.*s", len, (int)len, line);
        line += len + (line[len] == '\n');
    }
    free(text);
}

/* ---- JSON -------------------------------------------------------------------------------- */

/* The number after "KEY": in JSON. */
static double json_number_of(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    assert_non_null(p);
    char *end;
    double v = strtod(p + strlen(pat), &end);
    assert_true(end > p + strlen(pat));
    return v;
}

static void test_json_defaults(void **state) {
    Config c;
    config_defaults(&c);
    char buf[8192];
    size_t n = config_to_json(&c, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    assert_true(json_valid(buf));
    assert_null(strchr(buf, '\n'));
    static const char *const parts[] = {
        "\"data_dir\":\"" DATASET_DEFAULT_DIR "\"", "\"out_dir\":\"out\"", "\"tasks\":3",
        "\"hidden\":[400,400]", "\"lr\":0.1,", "\"batch\":100", "\"epochs\":1,",
        "\"momentum\":0,", "\"seed\":1,", "\"train_samples\":0", "\"test_samples\":0",
        "\"method\":\"sgd\"", "\"lambda\":100,", "\"gamma\":1,", "\"fisher\":\"sampled\"",
        "\"fisher_samples\":0", "\"dropout_input\":0,", "\"dropout\":0,",
        "\"penalty_step\":\"explicit\"", "\"reduce\":\"auto\"", "\"micro_batch\":0", "\"threads\":1,",
        "\"eval_every\":0", "\"checkpoint_every\":0", "\"resume\":false", "\"quiet\":false",
        "\"fisher_overlap\":\"\"", "\"help\":false", "\"permute_fraction\":1,",
        "\"overlap_layers\":false",
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (!strstr(buf, parts[i])) fail_msg("JSON lacks %s: %s", parts[i], buf);
    }
}

static void test_json_values_and_escapes(void **state) {
    Config c;
    config_defaults(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "a\"b\\c");
    snprintf(c.data_dir, sizeof c.data_dir, "tab\there\nnl\x01\x7f/caf\xc3\xa9/bad\xff");
    c.n_hidden = 0;
    c.lr = nextafter(0.1, 1.0);
    c.lambda = 1.0 / 3.0;
    c.gamma = 1e-300;
    c.seed = 18446744073709551615ULL;
    c.method = METHOD_ONLINE_EWC;
    c.fisher = FISHER_EXPECTED;
    c.penalty_step = PENALTY_IMPLICIT;
    c.reduce = REDUCE_ALLREDUCE;
    c.resume = 1;
    char buf[8192];
    size_t n = config_to_json(&c, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    if (!json_valid(buf)) fail_msg("invalid JSON: %s", buf);
    assert_non_null(strstr(buf, "\"out_dir\":\"a\\\"b\\\\c\""));
    assert_non_null(strstr(buf, "\"data_dir\":\"tab\\there\\nnl\\u0001\\u007f/caf\xc3\xa9/bad"
                                "\\ufffd\""));
    assert_non_null(strstr(buf, "\"hidden\":[]"));
    assert_non_null(strstr(buf, "\"seed\":18446744073709551615"));
    assert_non_null(strstr(buf, "\"method\":\"online-ewc\""));
    assert_non_null(strstr(buf, "\"fisher\":\"expected\""));
    assert_non_null(strstr(buf, "\"penalty_step\":\"implicit\""));
    assert_non_null(strstr(buf, "\"reduce\":\"allreduce\""));
    assert_non_null(strstr(buf, "\"resume\":true"));
    /* doubles read back exactly */
    assert_true(json_number_of(buf, "lr") == c.lr);
    assert_true(json_number_of(buf, "lambda") == c.lambda);
    assert_true(json_number_of(buf, "gamma") == c.gamma);

    c.lambda = NAN; /* not from the parser, but JSON must stay valid */
    config_to_json(&c, buf, sizeof buf);
    assert_true(json_valid(buf));
    assert_non_null(strstr(buf, "\"lambda\":null"));
}

static void test_json_small_buffers(void **state) {
    Config c;
    config_defaults(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "q\"b\\");
    char full[8192];
    size_t n = config_to_json(&c, full, sizeof full);
    assert_true(n > 100 && n < sizeof full);
    assert_int_equal(config_to_json(&c, NULL, 0), n);
    char buf[8192 + 16];
    for (size_t size = 0; size <= n + 1; size++) {
        memset(buf, 'Z', sizeof buf);
        size_t got = config_to_json(&c, buf, size);
        if (got != n) fail_msg("size %zu: returned %zu, want %zu", size, got, n);
        for (size_t k = size; k < size + 16; k++) {
            if (buf[k] != 'Z') fail_msg("size %zu: wrote byte %zu", size, k);
        }
        if (size == 0) continue;
        size_t len = size - 1 < n ? size - 1 : n;
        if (buf[len] != '\0' || memcmp(buf, full, len) != 0) {
            fail_msg("size %zu: not a NUL-terminated prefix of the full rendering", size);
        }
    }
}

/* ---- resume comparison ------------------------------------------------------------------- */

/* The validation flags: values in range are accepted together; --patience needs --validation. */
static void test_validation_flags(void **state) {
    Config c, d;
    config_defaults(&d);
    assert_int_equal(d.validation, 0);
    assert_int_equal(d.patience, 0);
    assert_int_equal(d.val_every, 0);
    assert_int_equal(PARSE(&c, "--train-samples", "100", "--validation", "99", "--patience", "2",
                           "--val-every", "7"), EWC_OK);
    assert_int_equal(c.validation, 99);
    assert_int_equal(c.patience, 2);
    assert_int_equal(c.val_every, 7);
    /* without --train-samples the size of the training set is checked after loading it */
    assert_int_equal(PARSE(&c, "--validation", "1000000"), EWC_OK);
    assert_int_equal(PARSE(&c, "--val-every", "3"), EWC_OK);
    c = d;
    c.patience = 1;
    assert_string_equal(config_experiment_diff(&d, &c), "--patience");
    /* --help still wins after the cross-flag error */
    assert_int_equal(PARSE(&c, "--patience", "2", "--help"), EWC_EINVAL);
    assert_int_equal(c.help, 1);
}

static void test_experiment_diff(void **state) {
    Config a, b;
    config_defaults(&a);
    b = a;
    assert_null(config_experiment_diff(&a, &b));

    /* execution fields may change freely */
    b.threads = 16;
    snprintf(b.out_dir, sizeof b.out_dir, "elsewhere");
    b.eval_every = 5;
    b.checkpoint_every = 7;
    b.resume = 1;
    b.quiet = 1;
    b.help = 1;
    snprintf(b.fisher_overlap, sizeof b.fisher_overlap, "f.h5");
    assert_null(config_experiment_diff(&a, &b));

    b = a;
    b.lambda = 100.00000000000001;
    assert_string_equal(config_experiment_diff(&a, &b), "--lambda");
    b = a;
    b.hidden[1] = 401;
    assert_string_equal(config_experiment_diff(&a, &b), "--hidden");
    b = a;
    b.n_hidden = 1;
    assert_string_equal(config_experiment_diff(&a, &b), "--hidden");
    b = a;
    b.hidden[5] = 7; /* beyond n_hidden: not part of the model */
    assert_null(config_experiment_diff(&a, &b));
    b = a;
    b.seed = 2;
    assert_string_equal(config_experiment_diff(&a, &b), "--seed");
    b = a;
    b.reduce = REDUCE_ALLREDUCE;
    assert_string_equal(config_experiment_diff(&a, &b), "--reduce");
    b = a;
    snprintf(b.data_dir, sizeof b.data_dir, "/other");
    assert_string_equal(config_experiment_diff(&a, &b), "--data");

    /* every experiment flag from the command line is detected under its own name */
    static const char *const exp_flags[][2] = {
        {"--tasks", "4"}, {"--lr", "0.2"}, {"--batch", "50"}, {"--epochs", "2"},
        {"--momentum", "0.5"}, {"--train-samples", "9"}, {"--test-samples", "9"},
        {"--method", "ewc"}, {"--gamma", "0.5"}, {"--fisher", "expected"},
        {"--fisher-samples", "9"}, {"--dropout-input", "0.1"}, {"--dropout", "0.1"},
        {"--penalty-step", "implicit"}, {"--validation", "9"}, {"--val-every", "5"},
        {"--optimizer", "adam"}, {"--adam-beta1", "0.8"}, {"--adam-beta2", "0.99"},
        {"--adam-eps", "1e-6"}, {"--init", "torch"},
    };
    for (size_t i = 0; i < sizeof exp_flags / sizeof exp_flags[0]; i++) {
        assert_int_equal(PARSE(&b, exp_flags[i][0], exp_flags[i][1]), EWC_OK);
        const char *d = config_experiment_diff(&a, &b);
        if (!d || strcmp(d, exp_flags[i][0]) != 0) {
            fail_msg("%s changed, diff says %s", exp_flags[i][0], d ? d : "(none)");
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_checker_rejects_bad_json),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_flag_both_forms),
        cmocka_unit_test(test_each_flag_alone),
        cmocka_unit_test(test_enum_values),
        cmocka_unit_test(test_hidden),
        cmocka_unit_test(test_limits_accepted),
        cmocka_unit_test(test_repeated_flag_last_wins),
        cmocka_unit_test(test_value_that_looks_like_a_flag),
        cmocka_unit_test(test_bad_input_rejected),
        cmocka_unit_test(test_overlong_path),
        cmocka_unit_test(test_control_bytes_in_message),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_help_text),
        cmocka_unit_test(test_json_defaults),
        cmocka_unit_test(test_json_values_and_escapes),
        cmocka_unit_test(test_json_small_buffers),
        cmocka_unit_test(test_experiment_diff),
        cmocka_unit_test(test_validation_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
