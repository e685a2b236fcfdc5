/* keys.h - the key tables of the configuration, and what is done with them.
 *
 * One table per JSON object (top level, listener, pool, backend, time_wait, health,
 * queue, reuse, admin, log).  An entry says everything about its key: name, JSON type, bounds,
 * default, whether it is required, whether a reload may change it, and where its value
 * lives in struct config.  Loading (config.c) walks the tables; the defaults filled in
 * are the ones written here, once; docs/configuration.md is checked against them
 * (tests/unit/test_config.c).
 *
 * Internal to config/ (and its unit test).  Errors are collected in the context, as in
 * config.h: nothing here returns an errno. */
#ifndef TWLB_CONFIG_KEYS_H
#define TWLB_CONFIG_KEYS_H

#include <jansson.h>
#include <stddef.h>

#include "config/errors.h"
#include "config/types.h"
#include "config/jsonpos.h"

enum key_type {
    KT_STR, KT_INT, KT_OBJ, KT_ARR, KT_BOOL,
    KT_INT_OR_AUTO, /* an integer, or the string "auto" (stored as 0) */
    KT_STR_OR_NULL, /* a string, or null (nothing is stored: the field stays NULL) */
};

/* Where and how a value is stored in the section's struct. */
enum key_store {
    KS_NONE,  /* objects and arrays: the section's code handles them */
    KS_U32,   /* uint32_t, within min..max */
    KS_STR,   /* char *, a copy; length within min..max bytes when max or min is set */
    KS_NAME,  /* char *, a copy; a valid name (1 to CFG_NAME_MAX of A-Z a-z 0-9 _ . -) */
    KS_ADDR,  /* struct cfg_addr, "IP:PORT" or "[IPv6]:PORT" */
    KS_PARSE, /* whatever parse() writes */
    KS_BOOL,  /* int, 0 or 1; the default is def, "true" or "false" */
};

struct key_table;

struct key {
    const char *name;
    enum key_type type;
    int required;
    int reloadable;        /* 0: a reload does not apply a change (config_unreloadable_changes) */
    long long min, max;    /* KS_U32: value bounds; KS_STR: length bounds (0, 0: none) */
    long long dint;        /* KS_U32: the default */
    const char *def;       /* other stores: the default as written in the doc; NULL: none */
    const char *bad;       /* KS_STR: the error when the length is out of bounds */
    /* KS_PARSE keys that take a word: every word parse() accepts, NULL-terminated (the
     * enum of config/twlb.schema.json; test_config checks it against parse()). */
    const char *const *words;
    enum key_store store;
    size_t off, size;      /* the field in the section's struct */
    /* KS_PARSE: 0, or -1 with why ("is not ...", completed by the value in quotes). */
    int (*parse)(const char *s, void *field, const char **why);
    const struct key_table *sub; /* KT_OBJ, KT_ARR of objects: their table */
    size_t off_n, elem;    /* KT_ARR of objects: the count field, the element size */
};

struct key_table {
    const char *name; /* the object as docs/configuration.md heads it: "pools[]", "" top */
    const struct key *keys;
    size_t n;
};

extern const struct key_table keys_top, keys_listener, keys_pool, keys_backend,
    keys_time_wait, keys_health, keys_reuse, keys_admin, keys_log, keys_queue;
/* Every table, for tests and the documentation check. */
extern const struct key_table *const keys_all[];
extern const size_t keys_all_n;

const struct key *keys_find(const struct key_table *t, const char *name);

/* ---- loading ---- */

struct keys_ctx {
    const char *file;
    struct cfg_errors *errs;
    struct jsonpos pos;
};

/* "FILE[:LINE:COL]: PATH: <fmt>", the position looked up by <path>. */
void keys_err(struct keys_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "<path>.<key>" ("<key>" at the top) and "<path>[<i>]"; a path too long is cut. */
void keys_subpath(char *out, size_t len, const char *path, const char *key);
void keys_index(char *out, size_t len, const char *path, size_t i);
/* A JSON value as error messages show it: "\"text\"", 5, an object, ... */
void keys_describe(json_t *v, char *out, size_t len);

/* Unknown keys, wrong types, missing required keys, each reported.  Returns 0 when every
 * present known key has the right type, else -1. */
int keys_check(struct keys_ctx *c, json_t *obj, const char *path, const struct key_table *t);
/* Write every default of <t> into <base> (the section's struct). */
void keys_fill(const struct key_table *t, void *base);
/* Store every present, well-typed key of <obj> into <base>, in table order, reporting
 * bad values (the field then keeps what it had).  Keys stored as KS_NONE go to <nested>
 * (NULL: skipped) with their path. */
typedef void keys_nested_fn(struct keys_ctx *c, const struct key *k, json_t *v,
                            const char *path, void *arg);
void keys_apply(struct keys_ctx *c, json_t *obj, const char *path, const struct key_table *t,
                void *base, keys_nested_fn *nested, void *arg);

/* ---- reload ---- */

/* One message in <out> per non-reloadable key whose value differs between <old> and
 * <neu> (both <t>'s struct), recursing into objects and into array elements matched by
 * name.  Returns the count. */
int keys_diff(const struct key_table *t, const void *old, const void *neu, const char *path,
              struct cfg_errors *out);

#endif
