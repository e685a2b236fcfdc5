/* keys.c - see keys.h.  The tables first, then what walks them. */
#include "config/keys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/slowstart.h"

/* ---- values that are words ----------------------------------------------------------- */

#define WORD_PARSER(fn, type, parse, what)                                                  \
    static int fn(const char *s, void *field, const char **why)                             \
    {                                                                                       \
        type v;                                                                             \
        if (parse(s, &v) < 0) {                                                             \
            *why = what;                                                                    \
            return -1;                                                                      \
        }                                                                                   \
        *(type *)field = v;                                                                 \
        return 0;                                                                           \
    }

WORD_PARSER(parse_balance, enum balance_algo, balance_algo_parse,
            "is not a balancing algorithm (expected round_robin, weighted_round_robin, "
            "least_conn, random_two or maglev)")
WORD_PARSER(parse_twrule, enum twrule_kind, twrule_kind_parse,
            "is not a TIME_WAIT rule (expected bsd, timestamps or strict)")
WORD_PARSER(parse_isn, enum isn_mode, isn_mode_parse,
            "is not an ISN mode (expected auto, explicit, kernel or off)")
WORD_PARSER(parse_local_tw, enum pm_local_tw, portmap_local_tw_parse,
            "is not a policy (expected avoid or destroy)")
WORD_PARSER(parse_level, enum log_level, log_level_parse,
            "is not a log level (expected error, warn, info or debug)")

static int proxy_protocol_parse(const char *s, enum proxy_protocol *out)
{
    static const char *const names[] = {[PROXY_NONE] = "none", [PROXY_V1] = "v1",
                                        [PROXY_V2] = "v2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i], s)) {
            *out = (enum proxy_protocol)i;
            return 0;
        }
    return -1;
}
WORD_PARSER(parse_proxy, enum proxy_protocol, proxy_protocol_parse,
            "is not a PROXY protocol version (expected v1, v2 or none)")

static int splice_parse(const char *s, enum cfg_splice *out)
{
    if (strcmp(s, "auto") && strcmp(s, "off"))
        return -1;
    *out = !strcmp(s, "off") ? CFG_SPLICE_OFF : CFG_SPLICE_AUTO;
    return 0;
}
WORD_PARSER(parse_splice, enum cfg_splice, splice_parse, "is not a splice mode (expected auto or off)")

/* "text" or "json" into an int that is 1 for json. */
static int format_parse(const char *s, int *json)
{
    if (strcmp(s, "text") && strcmp(s, "json"))
        return -1;
    *json = !strcmp(s, "json");
    return 0;
}
WORD_PARSER(parse_format, int, format_parse, "is not a format (expected text or json)")

/* "LO-HI" or "PORT" into cfg_pool.port_lo and port_hi (<field> is port_lo). */
static int parse_ports(const char *s, void *field, const char **why)
{
    struct cfg_pool *p = (struct cfg_pool *)((char *)field - offsetof(struct cfg_pool, port_lo));
    const char *syntax = "is not a port range (expected \"LO-HI\" or \"PORT\")";
    char *end;
    errno = 0;
    long lo = strtol(s, &end, 10), hi;
    if (end == s || errno) {
        *why = syntax;
        return -1;
    }
    if (*end == '-') {
        const char *h = end + 1;
        hi = strtol(h, &end, 10);
        if (end == h || *end || errno) {
            *why = syntax;
            return -1;
        }
    } else if (*end == 0) {
        hi = lo;
    } else {
        *why = syntax;
        return -1;
    }
    if (lo < 1 || hi > 65535 || lo > 65535 || hi < 1) {
        *why = "is out of range 1..65535";
        return -1;
    }
    if (lo > hi) {
        *why = "starts above its end (expected LO <= HI)";
        return -1;
    }
    p->port_lo = (uint16_t)lo;
    p->port_hi = (uint16_t)hi;
    return 0;
}

/* ---- the tables ---------------------------------------------------------------------- */

#define FIELD(T, m) .off = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define RELOAD .reloadable = 1
#define RESTART .reloadable = 0 /* a change takes effect at the next start */
#define REQUIRED .required = 1
#define INT(n, T, m, lo, hi, d, ...)                                                        \
    {.name = n, .type = KT_INT, .store = KS_U32, FIELD(T, m), .min = lo, .max = hi,         \
     .dint = d, __VA_ARGS__}
#define STR(n, T, m, ...) {.name = n, .type = KT_STR, .store = KS_STR, FIELD(T, m), __VA_ARGS__}
#define WORD(n, T, m, fn, w, d, ...)                                                        \
    {.name = n, .type = KT_STR, .store = KS_PARSE, FIELD(T, m), .parse = fn, .words = w,    \
     .def = d, __VA_ARGS__}
#define NAME(T) {.name = "name", .type = KT_STR, .store = KS_NAME, FIELD(T, name), REQUIRED, RELOAD}
#define BOOL(n, T, m, d, ...)                                                               \
    {.name = n, .type = KT_BOOL, .store = KS_BOOL, FIELD(T, m), .def = d, __VA_ARGS__}
#define ADDR(n, T, m, d, ...) {.name = n, .type = KT_STR, .store = KS_ADDR, FIELD(T, m), .def = d, __VA_ARGS__}
#define OBJ(n, T, m, t, ...) {.name = n, .type = KT_OBJ, FIELD(T, m), .sub = &t, __VA_ARGS__}
#define LIST(n, T, m, t, ...)                                                               \
    {.name = n, .type = KT_ARR, FIELD(T, m), .sub = &t, .off_n = offsetof(T, n_##m),        \
     .elem = sizeof(*((T *)0)->m), __VA_ARGS__}
#define TABLE(var, doc, arr) const struct key_table var = {doc, arr, sizeof arr / sizeof arr[0]}

/* The words each WORD key accepts. */
#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define W_BALANCE                                                                           \
    WORDS("round_robin", "weighted_round_robin", "least_conn", "random_two", "maglev")
#define W_TWRULE WORDS("bsd", "timestamps", "strict")
#define W_ISN WORDS("auto", "explicit", "kernel", "off")
#define W_LOCAL_TW WORDS("avoid", "destroy")
#define W_LEVEL WORDS("error", "warn", "info", "debug")
#define W_SPLICE WORDS("auto", "off")
#define W_PROXY WORDS("none", "v1", "v2")
#define W_FORMAT WORDS("text", "json")

static const struct key top[] = {
    LIST("listeners", struct config, listeners, keys_listener, REQUIRED, RELOAD),
    LIST("pools", struct config, pools, keys_pool, REQUIRED, RELOAD),
    OBJ("reuse", struct config, reuse, keys_reuse, RELOAD),
    OBJ("admin", struct config, admin, keys_admin, RELOAD),
    OBJ("log", struct config, log, keys_log, RELOAD),
    INT("drain_timeout_ms", struct config, drain_timeout_ms, 0, 3600000, 10000, RELOAD),
    INT("max_connections", struct config, max_connections, 0, 10000000, 0, RELOAD),
    INT("pipe_bytes", struct config, pipe_bytes, 65536, 67108864, 1048576, RELOAD),
    INT("max_pipes", struct config, max_pipes, 0, 65536, 256, RELOAD),
    {.name = "workers", .type = KT_INT_OR_AUTO, .store = KS_U32, FIELD(struct config, workers),
     .min = 1, .max = CFG_WORKERS_MAX, .dint = 0, .def = "auto", RESTART},
    STR("user", struct config, user, .min = 1, .max = CFG_NAME_MAX,
        .bad = "is empty or too long (expected a user name)", RESTART),
    STR("group", struct config, group, .min = 1, .max = CFG_NAME_MAX,
        .bad = "is empty or too long (expected a group name)", RESTART),
    STR("upgrade_socket", struct config, upgrade_socket, .min = 1, .max = 107,
        .bad = "is empty or longer than 107 bytes (expected a Unix socket path)", RESTART),
};
TABLE(keys_top, "", top);

static const struct key listener[] = {
    NAME(struct cfg_listener),
    ADDR("bind", struct cfg_listener, bind, NULL, REQUIRED, RELOAD),
    STR("pool", struct cfg_listener, pool_name, REQUIRED, RELOAD),
    INT("backlog", struct cfg_listener, backlog, 1, 65535, 511, RELOAD),
    INT("max_connections", struct cfg_listener, max_connections, 0, 10000000, 0, RELOAD),
    {.name = "allow", .type = KT_ARR, RELOAD},
    {.name = "deny", .type = KT_ARR, RELOAD},
    INT("max_connections_per_client", struct cfg_listener, max_conns_per_client, 0,
        CFG_PER_CLIENT_MAX, 0, RELOAD),
    INT("rate_per_client", struct cfg_listener, rate_per_client, 0, CFG_PER_CLIENT_MAX, 0,
        RELOAD),
    INT("burst_per_client", struct cfg_listener, burst_per_client, 0, CFG_PER_CLIENT_MAX, 0,
        RELOAD),
};
TABLE(keys_listener, "listeners[]", listener);

static const struct key pool[] = {
    NAME(struct cfg_pool),
    WORD("balance", struct cfg_pool, balance, parse_balance, W_BALANCE, "round_robin", RELOAD),
    {.name = "inside", .type = KT_ARR, REQUIRED, RELOAD},
    {.name = "source_ports", .type = KT_STR, .store = KS_PARSE, .parse = parse_ports,
     .def = "20000-29999", .off = offsetof(struct cfg_pool, port_lo),
     .size = offsetof(struct cfg_pool, port_hi) + sizeof(uint16_t) -
             offsetof(struct cfg_pool, port_lo),
     RELOAD},
    INT("connect_timeout_ms", struct cfg_pool, connect_timeout_ms, 1, 600000, 2000, RELOAD),
    INT("idle_timeout_ms", struct cfg_pool, idle_timeout_ms, 1, 86400000, 60000, RELOAD),
    INT("retries", struct cfg_pool, retries, 0, CFG_RETRIES_MAX, 2, RELOAD),
    INT("buffer_bytes", struct cfg_pool, buffer_bytes, 4096, 16777216, 65536, RELOAD),
    WORD("splice", struct cfg_pool, splice, parse_splice, W_SPLICE, "auto", RELOAD),
    OBJ("time_wait", struct cfg_pool, time_wait, keys_time_wait, RELOAD),
    OBJ("health", struct cfg_pool, health, keys_health, RELOAD),
    OBJ("queue", struct cfg_pool, queue, keys_queue, RELOAD),
    /* before "backends", which inherit it */
    INT("slow_start_ms", struct cfg_pool, slow_start_ms, 0, SLOWSTART_MAX_MS, 0, RELOAD),
    LIST("backends", struct cfg_pool, backends, keys_backend, REQUIRED, RELOAD),
};
TABLE(keys_pool, "pools[]", pool);

static const struct key backend[] = {
    NAME(struct cfg_backend),
    ADDR("address", struct cfg_backend, addr, NULL, REQUIRED, RELOAD),
    INT("weight", struct cfg_backend, weight, 1, 1000, 1, RELOAD),
    OBJ("time_wait", struct cfg_backend, time_wait, keys_time_wait, RELOAD),
    OBJ("health", struct cfg_backend, health, keys_health, RELOAD),
    WORD("proxy_protocol", struct cfg_backend, proxy_protocol, parse_proxy, W_PROXY, "none",
         RELOAD),
    INT("max_connections", struct cfg_backend, max_connections, 0, 10000000, 0, RELOAD),
    BOOL("backup", struct cfg_backend, backup, "false", RELOAD),
    /* default: the pool's (config.c), which is 0 unless set */
    INT("slow_start_ms", struct cfg_backend, slow_start_ms, 0, SLOWSTART_MAX_MS, 0, RELOAD),
};
TABLE(keys_backend, "pools[].backends[]", backend);

static const struct key time_wait[] = {
    WORD("rule", struct cfg_time_wait, rule, parse_twrule, W_TWRULE, "bsd", RELOAD),
    INT("seconds", struct cfg_time_wait, seconds, 1, 3600, 60, RELOAD),
};
TABLE(keys_time_wait, "time_wait", time_wait);

static const struct key health[] = {
    INT("interval_ms", struct cfg_health, interval_ms, 10, 3600000, 2000, RELOAD),
    INT("timeout_ms", struct cfg_health, timeout_ms, 1, 600000, 1000, RELOAD),
    INT("rise", struct cfg_health, rise, 1, 100, 2, RELOAD),
    INT("fall", struct cfg_health, fall, 1, 100, 3, RELOAD),
    STR("send", struct cfg_health, send, RELOAD),
    STR("expect", struct cfg_health, expect, .min = 1, .max = CFG_HEALTH_EXPECT_MAX, RELOAD),
};
TABLE(keys_health, "health", health);

static const struct key queue[] = {
    INT("max", struct cfg_queue, max, 1, 1000000, 1024, RELOAD),
    INT("timeout_ms", struct cfg_queue, timeout_ms, 1, 3600000, 5000, RELOAD),
};
TABLE(keys_queue, "queue", queue);

static const struct key reuse[] = {
    WORD("isn", struct cfg_reuse, isn, parse_isn, W_ISN, "auto", RELOAD),
    WORD("local_time_wait", struct cfg_reuse, local_time_wait, parse_local_tw, W_LOCAL_TW,
         "avoid", RELOAD),
    INT("local_time_wait_seconds", struct cfg_reuse, local_time_wait_seconds, 1, 3600, 60,
        RELOAD),
    INT("quarantine_ms", struct cfg_reuse, quarantine_ms, 1, 600000, 1000, RELOAD),
    INT("kernel_margin_us", struct cfg_reuse, kernel_margin_us, 1, 10000000,
        ISN_KERNEL_MARGIN_US, RELOAD),
    /* absent: a default path (config.c: default_state_file); null: none */
    {.name = "state_file", .type = KT_STR_OR_NULL, .store = KS_STR,
     FIELD(struct cfg_reuse, state_file), .min = 1,
     .bad = "is empty (expected a file path, or null for none)", RESTART},
};
TABLE(keys_reuse, "reuse", reuse);

static const struct key admin[] = {
    ADDR("bind", struct cfg_admin, bind, "127.0.0.1:9901", RELOAD),
    STR("token_file", struct cfg_admin, token_file, .min = 1,
        .bad = "is empty (expected a file path)", RELOAD),
    BOOL("allow_without_token", struct cfg_admin, allow_without_token, "false", RELOAD),
};
TABLE(keys_admin, "admin", admin);

/* A reload that changes the files opens the new ones before it applies anything, and
 * switches to them once the rest has succeeded (os/log.h: log_files_prepare). */
static const struct key log_keys[] = {
    WORD("level", struct cfg_log, level, parse_level, W_LEVEL, "info", RELOAD),
    STR("file", struct cfg_log, file, RELOAD),
    STR("access_log", struct cfg_log, access_log, RELOAD),
    WORD("access_log_format", struct cfg_log, access_log_json, parse_format, W_FORMAT, "text",
         RELOAD),
};
TABLE(keys_log, "log", log_keys);

const struct key_table *const keys_all[] = {&keys_top,       &keys_listener, &keys_pool,
                                            &keys_backend,   &keys_time_wait, &keys_health,
                                            &keys_reuse,     &keys_admin,    &keys_log,
                                            &keys_queue};
const size_t keys_all_n = sizeof keys_all / sizeof keys_all[0];

const struct key *keys_find(const struct key_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->keys[i].name, name))
            return &t->keys[i];
    return NULL;
}

/* ---- errors and paths ---------------------------------------------------------------- */

void keys_err(struct keys_ctx *c, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const struct jsonpos_entry *p = jsonpos_find(&c->pos, path);
    const char *shown = *path ? path : "(top level)";
    if (p)
        cfg_errors_add(c->errs, "%s:%d:%d: %s: %s", c->file, p->line, p->col, shown, msg);
    else
        cfg_errors_add(c->errs, "%s: %s: %s", c->file, shown, msg);
}

void keys_subpath(char *out, size_t len, const char *path, const char *key)
{
    if (snprintf(out, len, "%s%s%s", path, *path ? "." : "", key) < 0)
        out[0] = 0;
}

void keys_index(char *out, size_t len, const char *path, size_t i)
{
    if (snprintf(out, len, "%s[%zu]", path, i) < 0)
        out[0] = 0;
}

void keys_describe(json_t *v, char *out, size_t len)
{
    int n;
    if (json_is_string(v))
        n = snprintf(out, len, "\"%s\"", json_string_value(v));
    else if (json_is_integer(v))
        n = snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        n = snprintf(out, len, "%g", json_real_value(v));
    else if (json_is_object(v))
        n = snprintf(out, len, "an object");
    else if (json_is_array(v))
        n = snprintf(out, len, "an array");
    else if (json_is_boolean(v))
        n = snprintf(out, len, "%s", json_is_true(v) ? "true" : "false");
    else
        n = snprintf(out, len, "null");
    if (n < 0)
        out[0] = 0;
}

/* ---- checking and storing ------------------------------------------------------------ */

static const char *type_name(enum key_type t)
{
    static const char *const n[] = {[KT_STR] = "a string", [KT_INT] = "an integer",
                                    [KT_OBJ] = "an object", [KT_ARR] = "an array",
                                    [KT_BOOL] = "true or false",
                                    [KT_INT_OR_AUTO] = "an integer or \"auto\"",
                                    [KT_STR_OR_NULL] = "a string or null"};
    return n[t];
}

static int type_ok(json_t *v, enum key_type t)
{
    switch (t) {
    case KT_STR: return json_is_string(v);
    case KT_INT: return json_is_integer(v);
    case KT_OBJ: return json_is_object(v);
    case KT_ARR: return json_is_array(v);
    case KT_BOOL: return json_is_boolean(v);
    case KT_INT_OR_AUTO: return json_is_integer(v) || json_is_string(v);
    case KT_STR_OR_NULL: return json_is_string(v) || json_is_null(v);
    }
    return 0;
}

int keys_check(struct keys_ctx *c, json_t *obj, const char *path, const struct key_table *t)
{
    int ok = 1;
    const char *name;
    json_t *v;
    char sub[512];
    json_object_foreach(obj, name, v) {
        const struct key *k = keys_find(t, name);
        keys_subpath(sub, sizeof sub, path, name);
        if (!k) {
            char expected[512] = "";
            size_t used = 0;
            for (size_t j = 0; j < t->n && used < sizeof expected; j++) {
                int w = snprintf(expected + used, sizeof expected - used, "%s%s",
                                 j ? ", " : "", t->keys[j].name);
                used += w > 0 ? (size_t)w : 0;
            }
            keys_err(c, sub, "unknown key (expected one of: %s)", expected);
            ok = 0;
        } else if (!type_ok(v, k->type)) {
            char d[128];
            keys_describe(v, d, sizeof d);
            keys_err(c, sub, "%s is not %s", d, type_name(k->type));
            ok = 0;
        }
    }
    for (size_t i = 0; i < t->n; i++)
        if (t->keys[i].required && !json_object_get(obj, t->keys[i].name)) {
            keys_err(c, path, "missing required key \"%s\"", t->keys[i].name);
            ok = 0;
        }
    return ok ? 0 : -1;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CFG_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", s[i]))
            return 0;
    return 1;
}

#define DIGITS_(n) #n
#define DIGITS(n) DIGITS_(n) /* a number macro as a string literal */

static void set_str(void *field, const char *s)
{
    char **p = field;
    free(*p);
    *p = strdup(s);
}

/* Store string <s> for <k> into <field>.  Returns 0, or -1 with the error: <why> to
 * follow the value in quotes, or <plain> to stand alone. */
static int store_str(const struct key *k, const char *s, void *field, const char **why,
                     const char **plain)
{
    struct cfg_addr *a = field;
    size_t n = strlen(s);
    switch (k->store) {
    case KS_STR:
        if ((k->min || k->max) && (n < (size_t)k->min || (k->max && n > (size_t)k->max))) {
            *plain = k->bad;
            if (!k->bad) /* the copy is kept: the config fails anyway */
                set_str(field, s);
            return -1;
        }
        set_str(field, s);
        return 0;
    case KS_NAME:
        set_str(field, s);
        *why = "is not a valid name (1 to " DIGITS(CFG_NAME_MAX) " of A-Z a-z 0-9 _ . -)";
        return valid_name(s) ? 0 : -1;
    case KS_ADDR:
        return cfg_addr_parse(s, 1, a, why);
    case KS_PARSE:
        return k->parse(s, field, why);
    case KS_NONE:
    case KS_U32:
    case KS_BOOL:
        break;
    }
    return 0;
}

void keys_fill(const struct key_table *t, void *base)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct key *k = &t->keys[i];
        void *field = (char *)base + k->off;
        const char *why, *plain;
        if (k->store == KS_U32)
            *(uint32_t *)field = (uint32_t)k->dint;
        else if (k->store == KS_BOOL)
            *(int *)field = k->def && !strcmp(k->def, "true");
        else if (k->def)
            (void)store_str(k, k->def, field, &why, &plain); /* test_config: defaults parse */
    }
}

void keys_apply(struct keys_ctx *c, json_t *obj, const char *path, const struct key_table *t,
                void *base, keys_nested_fn *nested, void *arg)
{
    char sub[512];
    for (size_t i = 0; i < t->n; i++) {
        const struct key *k = &t->keys[i];
        json_t *v = json_object_get(obj, k->name);
        if (!v || !type_ok(v, k->type) || json_is_null(v))
            continue;
        keys_subpath(sub, sizeof sub, path, k->name);
        void *field = (char *)base + k->off;
        if (k->store == KS_NONE) {
            if (nested)
                nested(c, k, v, sub, arg);
        } else if (k->store == KS_U32 && json_is_string(v)) { /* KT_INT_OR_AUTO */
            if (!strcmp(json_string_value(v), "auto"))
                *(uint32_t *)field = 0;
            else
                keys_err(c, sub, "\"%s\" is not an integer or \"auto\"", json_string_value(v));
        } else if (k->store == KS_BOOL) {
            *(int *)field = json_is_true(v);
        } else if (k->store == KS_U32) {
            long long x = json_integer_value(v);
            if (x < k->min || x > k->max)
                keys_err(c, sub, "%lld is out of range %lld..%lld", x, k->min, k->max);
            else
                *(uint32_t *)field = (uint32_t)x;
        } else {
            const char *s = json_string_value(v), *why = NULL, *plain = NULL;
            if (store_str(k, s, field, &why, &plain) == 0)
                continue;
            if (plain)
                keys_err(c, sub, "%s", plain);
            else if (why)
                keys_err(c, sub, "\"%s\" %s", s, why);
            else
                keys_err(c, sub, "must be %lld to %lld bytes", k->min, k->max);
        }
    }
}

/* ---- reload -------------------------------------------------------------------------- */

static int field_differs(const struct key *k, const void *a, const void *b)
{
    if (k->store == KS_STR || k->store == KS_NAME) {
        const char *x = *(char *const *)a, *y = *(char *const *)b;
        return (x == NULL) != (y == NULL) || (x && strcmp(x, y));
    }
    return memcmp(a, b, k->size) != 0;
}

/* The element of array key <k> in <base> whose name is <name>, or NULL. */
static const void *find_named(const struct key *k, const void *base, const char *name)
{
    const struct key *nk = keys_find(k->sub, "name");
    const char *elems = *(char *const *)((const char *)base + k->off);
    size_t n = *(const size_t *)((const char *)base + k->off_n);
    for (size_t i = 0; nk && name && i < n; i++) {
        const char *other = *(char *const *)(elems + i * k->elem + nk->off);
        if (other && !strcmp(other, name))
            return elems + i * k->elem;
    }
    return NULL;
}

int keys_diff(const struct key_table *t, const void *old, const void *neu, const char *path,
              struct cfg_errors *out)
{
    int count = 0;
    char sub[512];
    for (size_t i = 0; i < t->n; i++) {
        const struct key *k = &t->keys[i];
        const char *a = (const char *)old + k->off, *b = (const char *)neu + k->off;
        keys_subpath(sub, sizeof sub, path, k->name);
        if (k->type == KT_OBJ && k->sub) {
            count += keys_diff(k->sub, a, b, sub, out);
        } else if (k->type == KT_ARR && k->sub) {
            /* Elements are matched by name: a new or renamed one has nothing to keep. */
            const struct key *nk = keys_find(k->sub, "name");
            const char *elems = *(char *const *)b;
            size_t n = *(const size_t *)((const char *)neu + k->off_n);
            for (size_t e = 0; nk && e < n; e++) {
                const char *el = elems + e * k->elem;
                const void *was = find_named(k, old, *(char *const *)(el + nk->off));
                char ep[560];
                keys_index(ep, sizeof ep, sub, e);
                if (was)
                    count += keys_diff(k->sub, was, el, ep, out);
            }
        } else if (!k->reloadable && k->store != KS_NONE && field_differs(k, a, b)) {
            cfg_errors_add(out, "%s: changed; takes effect at the next restart", sub);
            count++;
        }
    }
    return count;
}
