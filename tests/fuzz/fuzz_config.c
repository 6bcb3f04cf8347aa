/* Fuzz harness for the command-line parser (config.h): the input is an argument list, split on
 * NUL bytes if it has any (so arguments may hold newlines), else on newlines. Checked on every
 * input: only EWC_OK or EWC_EINVAL, an error is one line; the JSON rendering is valid JSON, its
 * length is what config_to_json returns, and a truncated rendering is a prefix of it; a config
 * differs from itself in no experiment field. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ewc/config.h"
#include "ewc/error.h"
#include "fuzz_util.h"

#define MAX_ARGS 256

/* ---- a strict JSON syntax check (RFC 8259), independent of config.c ------------------------- */

static const char *json_value(const char *p, int depth);

static const char *json_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static int hexdigit(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string at P (at its opening quote); returns the position after it or NULL. Raw bytes >= 0x80
 * must form valid UTF-8 (config_to_json promises that). */
static const char *json_string(const char *p) {
    if (*p++ != '"') return NULL;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL; /* also the NUL: unterminated */
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!hexdigit(p[i])) return NULL;
                p += 5;
            } else if (*p && strchr("\"\\/bfnrt", *p)) {
                p++;
            } else {
                return NULL;
            }
            continue;
        }
        if (c < 0x80) {
            p++;
            continue;
        }
        int n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
        if (n == 0 || c > 0xf4) return NULL;
        for (int i = 1; i < n; i++)
            if (((unsigned char)p[i] & 0xc0) != 0x80) return NULL;
        unsigned cp = c & (0xff >> (n + 1));
        for (int i = 1; i < n; i++) cp = cp << 6 | ((unsigned char)p[i] & 0x3f);
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return NULL;
        p += n;
    }
}

static const char *json_number(const char *p) {
    if (*p == '-') p++;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
    else return NULL;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return NULL;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return NULL;
        while (*p >= '0' && *p <= '9') p++;
    }
    return p;
}

static const char *json_value(const char *p, int depth) {
    if (depth > 16) return NULL;
    p = json_ws(p);
    if (*p == '"') return json_string(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                if (!(p = json_string(json_ws(p)))) return NULL;
                p = json_ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = json_value(p, depth + 1))) return NULL;
            p = json_ws(p);
            if (*p == close) return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    if (strncmp(p, "true", 4) == 0) return p + 4;
    if (strncmp(p, "false", 5) == 0) return p + 5;
    if (strncmp(p, "null", 4) == 0) return p + 4;
    return json_number(p);
}

/* ---- the harness --------------------------------------------------------------------------- */

static void check_json(const Config *c) {
    size_t n = config_to_json(c, NULL, 0);
    FUZZ_CHECK(n > 2, "rendering of %zu bytes", n);
    char *full = malloc(n + 1);
    FUZZ_CHECK(full != NULL, "out of memory");
    FUZZ_CHECK(config_to_json(c, full, n + 1) == n, "length changed between calls");
    FUZZ_CHECK(strlen(full) == n, "rendering has %zu bytes, returned %zu", strlen(full), n);
    const char *end = json_value(full, 0);
    FUZZ_CHECK(end && *json_ws(end) == '\0', "not valid JSON: %s", full);
    FUZZ_CHECK(full[0] == '{', "not an object: %s", full);
    /* truncated renderings: a NUL-terminated prefix, same returned length */
    size_t sizes[] = {1, 2, n / 2 + 1, n};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t size = sizes[k];
        char *part = malloc(size);
        FUZZ_CHECK(part != NULL, "out of memory");
        FUZZ_CHECK(config_to_json(c, part, size) == n, "truncated call returned another length");
        FUZZ_CHECK(strlen(part) == size - 1 && memcmp(part, full, size - 1) == 0,
                   "truncated rendering (%zu bytes) is not a prefix", size);
        free(part);
    }
    free(full);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* argv[0], then the arguments; one copy of the input with a NUL after each argument */
    char *buf = malloc(size + 1);
    char **argv = malloc((MAX_ARGS + 2) * sizeof *argv);
    FUZZ_CHECK(buf && argv, "out of memory");
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char sep = memchr(data, '\0', size) ? '\0' : '\n';
    int argc = 0;
    argv[argc++] = "ewc-train";
    for (size_t start = 0; start < size && argc <= MAX_ARGS;) {
        char *end = memchr(buf + start, sep, size - start);
        size_t len = end ? (size_t)(end - (buf + start)) : size - start;
        buf[start + len] = '\0';
        argv[argc++] = buf + start;
        start += len + 1;
    }
    argv[argc] = NULL;

    Config c, d;
    ewc_error_clear();
    EwcStatus st = config_parse(&c, argc, argv);
    FUZZ_CHECK(st == EWC_OK || st == EWC_EINVAL, "status %d", (int)st);
    if (st) fuzz_check_error_line(st);
    else FUZZ_CHECK(ewc_error_message()[0] == '\0', "success left a message");
    FUZZ_CHECK(c.help == 0 || c.help == 1, "help %d", c.help);

    /* whatever was parsed (even after an error) renders and compares cleanly */
    check_json(&c);
    FUZZ_CHECK(config_experiment_diff(&c, &c) == NULL, "a config differs from itself");
    config_defaults(&d);
    const char *diff = config_experiment_diff(&d, &c);
    FUZZ_CHECK(diff == NULL || strncmp(diff, "--", 2) == 0, "diff names \"%s\"", diff);
    if (diff == NULL) {
        FUZZ_CHECK(config_experiment_diff(&c, &d) == NULL, "diff is not symmetric");
    }
    free(argv);
    free(buf);
    return 0;
}
