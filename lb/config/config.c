/* config.c - see config.h.
 *
 * Two passes over the file: jansson decodes it (and reports syntax errors and duplicate
 * keys with line:col), and a small scanner walks the same text to note the line:col of
 * every value by its JSON path, since decoded jansson values carry no position.  Each
 * object is then checked against one table of its keys (name, type, bounds): unknown
 * keys and wrong types first, then values, then the rules between fields.  Every error is
 * collected; nothing is applied unless there is none. */
#include "config/config.h"

/* JSON paths are built into fixed buffers; a path deep enough to be cut only shortens an
 * error message, so truncation warnings are not errors here. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------------------ */

void cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        char **m = realloc(e->msg, cap * sizeof *m);
        if (!m)
            return;
        e->msg = m;
        e->cap = cap;
    }
    e->msg[e->n] = strdup(buf);
    if (e->msg[e->n])
        e->n++;
}

void cfg_errors_free(struct cfg_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msg[i]);
    free(e->msg);
    memset(e, 0, sizeof *e);
}

/* ---- where each value is in the text ------------------------------------------------ */

struct pos {
    char *path;
    int line, col;
};

struct scan {
    const char *s;
    size_t i, len;
    int line, col;
    struct pos *pos;
    size_t n, cap;
    int bad;
};

static void sc_adv(struct scan *sc)
{
    if (sc->i >= sc->len)
        return;
    if (sc->s[sc->i] == '\n') {
        sc->line++;
        sc->col = 1;
    } else {
        sc->col++;
    }
    sc->i++;
}

static void sc_ws(struct scan *sc)
{
    while (sc->i < sc->len && strchr(" \t\r\n", sc->s[sc->i]))
        sc_adv(sc);
}

static void sc_note(struct scan *sc, const char *path)
{
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        struct pos *p = realloc(sc->pos, cap * sizeof *p);
        if (!p) {
            sc->bad = 1;
            return;
        }
        sc->pos = p;
        sc->cap = cap;
    }
    sc->pos[sc->n].path = strdup(path);
    sc->pos[sc->n].line = sc->line;
    sc->pos[sc->n].col = sc->col;
    if (sc->pos[sc->n].path)
        sc->n++;
}

/* A string token; its raw text (escapes kept, good enough for key names) into <out>. */
static void sc_string(struct scan *sc, char *out, size_t outlen)
{
    size_t o = 0;
    sc_adv(sc); /* opening quote */
    while (sc->i < sc->len && sc->s[sc->i] != '"') {
        if (sc->s[sc->i] == '\\') {
            if (o + 1 < outlen)
                out[o++] = sc->s[sc->i];
            sc_adv(sc);
        }
        if (o + 1 < outlen && sc->i < sc->len)
            out[o++] = sc->s[sc->i];
        sc_adv(sc);
    }
    sc_adv(sc);
    if (outlen)
        out[o] = 0;
}

static void sc_value(struct scan *sc, const char *path, int depth)
{
    sc_ws(sc);
    if (sc->i >= sc->len || depth > 64) {
        sc->bad = 1;
        return;
    }
    sc_note(sc, path);
    char c = sc->s[sc->i];
    char sub[512], key[256];
    if (c == '{') {
        sc_adv(sc);
        for (;;) {
            sc_ws(sc);
            if (sc->i >= sc->len || sc->s[sc->i] == '}')
                break;
            if (sc->s[sc->i] != '"') {
                sc->bad = 1;
                return;
            }
            sc_string(sc, key, sizeof key);
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
            sc_ws(sc);
            if (sc->i < sc->len && sc->s[sc->i] == ':')
                sc_adv(sc);
            sc_value(sc, sub, depth + 1);
            if (sc->bad)
                return;
            sc_ws(sc);
            if (sc->i < sc->len && sc->s[sc->i] == ',')
                sc_adv(sc);
        }
        sc_adv(sc);
    } else if (c == '[') {
        sc_adv(sc);
        for (int k = 0;; k++) {
            sc_ws(sc);
            if (sc->i >= sc->len || sc->s[sc->i] == ']')
                break;
            snprintf(sub, sizeof sub, "%s[%d]", path, k);
            sc_value(sc, sub, depth + 1);
            if (sc->bad)
                return;
            sc_ws(sc);
            if (sc->i < sc->len && sc->s[sc->i] == ',')
                sc_adv(sc);
        }
        sc_adv(sc);
    } else if (c == '"') {
        sc_string(sc, key, 0);
    } else {
        while (sc->i < sc->len && !strchr(",]} \t\r\n", sc->s[sc->i]))
            sc_adv(sc);
    }
}

/* ---- the loading context -------------------------------------------------------------- */

struct ctx {
    const char *file;
    struct cfg_errors *errs;
    struct scan sc;
};

static const struct pos *find_pos(const struct ctx *c, const char *path)
{
    for (size_t i = 0; i < c->sc.n; i++)
        if (!strcmp(c->sc.pos[i].path, path))
            return &c->sc.pos[i];
    return NULL;
}

static void err(struct ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err(struct ctx *c, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const struct pos *p = find_pos(c, path);
    if (p)
        cfg_errors_add(c->errs, "%s:%d:%d: %s: %s", c->file, p->line, p->col,
                       *path ? path : "(top level)", msg);
    else
        cfg_errors_add(c->errs, "%s: %s: %s", c->file, *path ? path : "(top level)", msg);
}

/* ---- key tables ---------------------------------------------------------------------- */

enum ktype { K_STR, K_INT, K_OBJ, K_ARR, K_BOOL };

struct key {
    const char *name;
    enum ktype type;
    int required;
};

static const char *type_name(enum ktype t)
{
    static const char *const n[] = {"a string", "an integer", "an object", "an array",
                                    "true or false"};
    return n[t];
}

static int type_ok(json_t *v, enum ktype t)
{
    switch (t) {
    case K_STR: return json_is_string(v);
    case K_INT: return json_is_integer(v);
    case K_OBJ: return json_is_object(v);
    case K_ARR: return json_is_array(v);
    case K_BOOL: return json_is_boolean(v);
    }
    return 0;
}

static void describe(json_t *v, char *out, size_t len)
{
    if (json_is_string(v))
        snprintf(out, len, "\"%s\"", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, len, "%g", json_real_value(v));
    else if (json_is_object(v))
        snprintf(out, len, "an object");
    else if (json_is_array(v))
        snprintf(out, len, "an array");
    else if (json_is_boolean(v))
        snprintf(out, len, "%s", json_is_true(v) ? "true" : "false");
    else
        snprintf(out, len, "null");
}

/* An array element that must be an object: 1, or 0 after reporting what it is. */
static int want_object(struct ctx *c, json_t *v, const char *path)
{
    if (json_is_object(v))
        return 1;
    char d[128];
    describe(v, d, sizeof d);
    err(c, path, "%s is not an object", d);
    return 0;
}

static void subpath(char *out, size_t len, const char *path, const char *key)
{
    snprintf(out, len, "%s%s%s", path, *path ? "." : "", key);
}

/* Unknown keys, wrong types, missing required keys.  Returns 0 when <obj> is usable:
 * every present known key has the right type. */
static int check_keys(struct ctx *c, json_t *obj, const char *path, const struct key *keys,
                      size_t nkeys)
{
    int ok = 1;
    const char *k;
    json_t *v;
    char sub[512];
    json_object_foreach(obj, k, v) {
        size_t i;
        for (i = 0; i < nkeys && strcmp(keys[i].name, k); i++)
            ;
        subpath(sub, sizeof sub, path, k);
        if (i == nkeys) {
            char expected[512] = "";
            for (size_t j = 0; j < nkeys; j++)
                snprintf(expected + strlen(expected), sizeof expected - strlen(expected),
                         "%s%s", j ? ", " : "", keys[j].name);
            err(c, sub, "unknown key (expected one of: %s)", expected);
            ok = 0;
        } else if (!type_ok(v, keys[i].type)) {
            char d[128];
            describe(v, d, sizeof d);
            err(c, sub, "%s is not %s", d, type_name(keys[i].type));
            ok = 0;
        }
    }
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i].required && !json_object_get(obj, keys[i].name)) {
            err(c, path, "missing required key \"%s\"", keys[i].name);
            ok = 0;
        }
    return ok ? 0 : -1;
}

/* An integer key already type-checked: its value, or <def> when absent; out of range is
 * an error (and <def> is returned). */
static uint32_t get_int(struct ctx *c, json_t *obj, const char *path, const char *key,
                        uint32_t def, long long lo, long long hi)
{
    json_t *v = json_object_get(obj, key);
    if (!v || !json_is_integer(v))
        return def;
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        char sub[512];
        subpath(sub, sizeof sub, path, key);
        err(c, sub, "%lld is out of range %lld..%lld", x, lo, hi);
        return def;
    }
    return (uint32_t)x;
}

static const char *get_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v && json_is_string(v) ? json_string_value(v) : NULL;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", s[i]))
            return 0;
    return 1;
}

static char *get_name(struct ctx *c, json_t *obj, const char *path)
{
    const char *s = get_str(obj, "name");
    if (!s)
        return NULL;
    if (!valid_name(s)) {
        char sub[512];
        subpath(sub, sizeof sub, path, "name");
        err(c, sub, "\"%s\" is not a valid name (1 to 64 of A-Z a-z 0-9 _ . -)", s);
    }
    return strdup(s);
}

/* ---- addresses ----------------------------------------------------------------------- */

int cfg_addr_parse(const char *s, int want_port, struct cfg_addr *out, const char **why)
{
    memset(out, 0, sizeof *out);
    snprintf(out->text, sizeof out->text, "%s", s);
    char host[64];
    const char *port = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']'";
            return -1;
        }
        hlen = (size_t)(rb - s - 1);
        if (hlen >= sizeof host) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, s + 1, hlen);
        host[hlen] = 0;
        if (rb[1] == ':')
            port = rb + 2;
        else if (rb[1]) {
            *why = "junk after ']'";
            return -1;
        }
    } else {
        const char *colon = strrchr(s, ':');
        if (want_port && colon && strchr(s, ':') == colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        } else {
            hlen = strlen(s);
        }
        if (hlen >= sizeof host) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, s, hlen);
        host[hlen] = 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1 && s[0] != '[') {
        a4->sin_family = AF_INET;
        out->len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        out->len = sizeof *a6;
    } else {
        *why = want_port ? "is not an IPv4 or IPv6 address with a port (expected \"IP:PORT\" or "
                           "\"[IPv6]:PORT\")"
                         : "is not an IPv4 or IPv6 address";
        return -1;
    }
    if (!want_port) {
        if (port) {
            *why = "must not have a port";
            return -1;
        }
        return 0;
    }
    if (!port || !*port) {
        *why = "has no port (expected \"IP:PORT\" or \"[IPv6]:PORT\")";
        return -1;
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (*end || errno || end == port) {
        *why = "has a port that is not a number";
        return -1;
    }
    if (p < 1 || p > 65535) {
        *why = "has a port out of range 1..65535";
        return -1;
    }
    if (out->ss.ss_family == AF_INET)
        a4->sin_port = htons((uint16_t)p);
    else
        a6->sin6_port = htons((uint16_t)p);
    return 0;
}

static void get_addr(struct ctx *c, json_t *obj, const char *path, const char *key, int want_port,
                     struct cfg_addr *out, const char *def)
{
    const char *s = get_str(obj, key);
    const char *why;
    if (!s) {
        if (def)
            cfg_addr_parse(def, want_port, out, &why);
        return;
    }
    if (cfg_addr_parse(s, want_port, out, &why) < 0) {
        char sub[512];
        subpath(sub, sizeof sub, path, key);
        err(c, sub, "\"%s\" %s", s, why);
    }
}

static int same_sockaddr(const struct cfg_addr *a, const struct cfg_addr *b)
{
    return a->len && a->len == b->len && !memcmp(&a->ss, &b->ss, a->len);
}

/* ---- sections ------------------------------------------------------------------------ */

static const struct key time_wait_keys[] = {{"rule", K_STR, 0}, {"seconds", K_INT, 0}};

static void parse_time_wait(struct ctx *c, json_t *obj, const char *path,
                            struct cfg_time_wait *tw)
{
    if (!obj || check_keys(c, obj, path, time_wait_keys, 2) < 0)
        return;
    const char *r = get_str(obj, "rule");
    if (r && twrule_kind_parse(r, &tw->rule) < 0) {
        char sub[512];
        subpath(sub, sizeof sub, path, "rule");
        err(c, sub, "\"%s\" is not a TIME_WAIT rule (expected bsd, timestamps or strict)", r);
    }
    tw->seconds = get_int(c, obj, path, "seconds", tw->seconds, 1, 3600);
}

static const struct key health_keys[] = {
    {"interval_ms", K_INT, 0}, {"timeout_ms", K_INT, 0}, {"rise", K_INT, 0},
    {"fall", K_INT, 0},        {"send", K_STR, 0},       {"expect", K_STR, 0},
};

static void parse_health(struct ctx *c, json_t *obj, const char *path, struct cfg_health *h,
                         const struct cfg_health *def)
{
    if (def && def->enabled) {
        *h = *def;
        h->send = def->send ? strdup(def->send) : NULL;
        h->expect = def->expect ? strdup(def->expect) : NULL;
    }
    if (!obj || check_keys(c, obj, path, health_keys, 6) < 0)
        return;
    if (!h->enabled) {
        h->enabled = 1;
        h->interval_ms = 2000;
        h->timeout_ms = 1000;
        h->rise = 2;
        h->fall = 3;
    }
    h->interval_ms = get_int(c, obj, path, "interval_ms", h->interval_ms, 10, 3600000);
    h->timeout_ms = get_int(c, obj, path, "timeout_ms", h->timeout_ms, 1, 600000);
    h->rise = get_int(c, obj, path, "rise", h->rise, 1, 100);
    h->fall = get_int(c, obj, path, "fall", h->fall, 1, 100);
    const char *s;
    if ((s = get_str(obj, "send"))) {
        free(h->send);
        h->send = strdup(s);
        h->send_len = strlen(s);
    }
    if ((s = get_str(obj, "expect"))) {
        free(h->expect);
        h->expect = strdup(s);
        h->expect_len = strlen(s);
        if (h->expect_len == 0 || h->expect_len > 256) {
            char sub[512];
            subpath(sub, sizeof sub, path, "expect");
            err(c, sub, "must be 1 to 256 bytes");
        }
    }
}

static const struct key backend_keys[] = {
    {"name", K_STR, 1},      {"address", K_STR, 1}, {"weight", K_INT, 0},
    {"time_wait", K_OBJ, 0}, {"health", K_OBJ, 0},  {"proxy_protocol", K_STR, 0},
};

static void parse_backend(struct ctx *c, json_t *obj, const char *path, const struct cfg_pool *pool,
                          struct cfg_backend *b)
{
    b->weight = 1;
    b->time_wait = pool->time_wait;
    if (check_keys(c, obj, path, backend_keys, 6) < 0 && !json_is_object(obj))
        return;
    b->name = get_name(c, obj, path);
    get_addr(c, obj, path, "address", 1, &b->addr, NULL);
    b->weight = get_int(c, obj, path, "weight", 1, 1, 1000);
    char sub[512];
    subpath(sub, sizeof sub, path, "time_wait");
    parse_time_wait(c, json_object_get(obj, "time_wait"), sub, &b->time_wait);
    subpath(sub, sizeof sub, path, "health");
    json_t *h = json_object_get(obj, "health");
    parse_health(c, json_is_object(h) ? h : NULL, sub, &b->health, &pool->health);
    const char *pp = get_str(obj, "proxy_protocol");
    if (pp) {
        if (!strcmp(pp, "v1"))
            b->proxy_protocol = PROXY_V1;
        else if (!strcmp(pp, "v2"))
            b->proxy_protocol = PROXY_V2;
        else if (strcmp(pp, "none")) {
            subpath(sub, sizeof sub, path, "proxy_protocol");
            err(c, sub, "\"%s\" is not a PROXY protocol version (expected v1, v2 or none)", pp);
        }
    }
}

static const struct key pool_keys[] = {
    {"name", K_STR, 1},
    {"balance", K_STR, 0},
    {"inside", K_ARR, 1},
    {"source_ports", K_STR, 0},
    {"connect_timeout_ms", K_INT, 0},
    {"idle_timeout_ms", K_INT, 0},
    {"retries", K_INT, 0},
    {"buffer_bytes", K_INT, 0},
    {"time_wait", K_OBJ, 0},
    {"health", K_OBJ, 0},
    {"backends", K_ARR, 1},
};

static void parse_ports(struct ctx *c, json_t *obj, const char *path, struct cfg_pool *p)
{
    p->port_lo = 20000;
    p->port_hi = 29999;
    const char *s = get_str(obj, "source_ports");
    if (!s)
        return;
    char sub[512];
    subpath(sub, sizeof sub, path, "source_ports");
    long lo, hi;
    char *end;
    errno = 0;
    lo = strtol(s, &end, 10);
    if (end == s || errno) {
        err(c, sub, "\"%s\" is not a port range (expected \"LO-HI\" or \"PORT\")", s);
        return;
    }
    if (*end == '-') {
        const char *h = end + 1;
        hi = strtol(h, &end, 10);
        if (end == h || *end || errno) {
            err(c, sub, "\"%s\" is not a port range (expected \"LO-HI\" or \"PORT\")", s);
            return;
        }
    } else if (*end == 0) {
        hi = lo;
    } else {
        err(c, sub, "\"%s\" is not a port range (expected \"LO-HI\" or \"PORT\")", s);
        return;
    }
    if (lo < 1 || hi > 65535 || lo > 65535 || hi < 1) {
        err(c, sub, "\"%s\" is out of range 1..65535", s);
        return;
    }
    if (lo > hi) {
        err(c, sub, "\"%s\" starts above its end (expected LO <= HI)", s);
        return;
    }
    p->port_lo = (uint16_t)lo;
    p->port_hi = (uint16_t)hi;
}

static void parse_pool(struct ctx *c, json_t *obj, const char *path, struct cfg_pool *p)
{
    p->time_wait.rule = TWRULE_BSD;
    p->time_wait.seconds = 60;
    p->connect_timeout_ms = 2000;
    p->idle_timeout_ms = 60000;
    p->retries = 2;
    p->buffer_bytes = 65536;
    if (check_keys(c, obj, path, pool_keys, sizeof pool_keys / sizeof pool_keys[0]) < 0 &&
        !json_is_object(obj))
        return;
    char sub[512];
    p->name = get_name(c, obj, path);
    const char *bal = get_str(obj, "balance");
    if (bal && balance_algo_parse(bal, &p->balance) < 0) {
        subpath(sub, sizeof sub, path, "balance");
        err(c, sub,
            "\"%s\" is not a balancing algorithm (expected round_robin, weighted_round_robin, "
            "least_conn, random_two or maglev)",
            bal);
    }
    json_t *inside = json_object_get(obj, "inside");
    if (json_is_array(inside)) {
        subpath(sub, sizeof sub, path, "inside");
        if (json_array_size(inside) == 0)
            err(c, sub, "is empty (expected at least one inside address)");
        p->inside = calloc(json_array_size(inside) + 1, sizeof *p->inside);
        size_t i;
        json_t *v;
        json_array_foreach(inside, i, v) {
            char ip[560];
            snprintf(ip, sizeof ip, "%s[%zu]", sub, i);
            const char *why;
            if (!json_is_string(v)) {
                char d[128];
                describe(v, d, sizeof d);
                err(c, ip, "%s is not a string", d);
                continue;
            }
            struct cfg_addr *a = &p->inside[p->n_inside];
            if (cfg_addr_parse(json_string_value(v), 0, a, &why) < 0) {
                err(c, ip, "\"%s\" %s", json_string_value(v), why);
                continue;
            }
            for (size_t j = 0; j < p->n_inside; j++)
                if (same_sockaddr(&p->inside[j], a))
                    err(c, ip, "\"%s\" duplicates %s[%zu]", a->text, sub, j);
            p->n_inside++;
        }
    }
    parse_ports(c, obj, path, p);
    p->connect_timeout_ms = get_int(c, obj, path, "connect_timeout_ms", 2000, 1, 600000);
    p->idle_timeout_ms = get_int(c, obj, path, "idle_timeout_ms", 60000, 1, 86400000);
    p->retries = get_int(c, obj, path, "retries", 2, 0, 100);
    p->buffer_bytes = get_int(c, obj, path, "buffer_bytes", 65536, 4096, 16777216);
    subpath(sub, sizeof sub, path, "time_wait");
    parse_time_wait(c, json_object_get(obj, "time_wait"), sub, &p->time_wait);
    subpath(sub, sizeof sub, path, "health");
    json_t *h = json_object_get(obj, "health");
    parse_health(c, json_is_object(h) ? h : NULL, sub, &p->health, NULL);

    json_t *bs = json_object_get(obj, "backends");
    if (!json_is_array(bs))
        return;
    subpath(sub, sizeof sub, path, "backends");
    if (json_array_size(bs) == 0)
        err(c, sub, "is empty (expected at least one backend)");
    p->backends = calloc(json_array_size(bs) + 1, sizeof *p->backends);
    size_t i;
    json_t *v;
    json_array_foreach(bs, i, v) {
        char bp[560];
        snprintf(bp, sizeof bp, "%s[%zu]", sub, i);
        if (!want_object(c, v, bp))
            continue;
        struct cfg_backend *b = &p->backends[p->n_backends++];
        parse_backend(c, v, bp, p, b);
        for (size_t j = 0; j + 1 < p->n_backends; j++) {
            char np[600];
            if (b->name && p->backends[j].name && !strcmp(b->name, p->backends[j].name)) {
                snprintf(np, sizeof np, "%s.name", bp);
                err(c, np, "\"%s\" duplicates %s[%zu].name", b->name, sub, j);
            }
            if (same_sockaddr(&b->addr, &p->backends[j].addr)) {
                snprintf(np, sizeof np, "%s.address", bp);
                err(c, np, "\"%s\" duplicates %s[%zu].address", b->addr.text, sub, j);
            }
        }
        /* Some inside address must be able to reach it. */
        int reach = 0;
        for (size_t k = 0; k < p->n_inside; k++)
            reach |= p->inside[k].ss.ss_family == b->addr.ss.ss_family;
        if (b->addr.len && p->n_inside && !reach) {
            char np[600];
            snprintf(np, sizeof np, "%s.address", bp);
            err(c, np, "\"%s\" is %s but the pool has no %s inside address", b->addr.text,
                b->addr.ss.ss_family == AF_INET ? "IPv4" : "IPv6",
                b->addr.ss.ss_family == AF_INET ? "IPv4" : "IPv6");
        }
    }
}

static const struct key listener_keys[] = {
    {"name", K_STR, 1}, {"bind", K_STR, 1}, {"pool", K_STR, 1}, {"backlog", K_INT, 0}};

static void parse_listener(struct ctx *c, json_t *obj, const char *path, struct cfg_listener *l)
{
    l->backlog = 511;
    if (check_keys(c, obj, path, listener_keys, 4) < 0 && !json_is_object(obj))
        return;
    l->name = get_name(c, obj, path);
    get_addr(c, obj, path, "bind", 1, &l->bind, NULL);
    const char *pool = get_str(obj, "pool");
    l->pool_name = pool ? strdup(pool) : NULL;
    l->backlog = get_int(c, obj, path, "backlog", 511, 1, 65535);
}

static const struct key top_keys[] = {
    {"listeners", K_ARR, 1}, {"pools", K_ARR, 1}, {"reuse", K_OBJ, 0},
    {"admin", K_OBJ, 0},     {"log", K_OBJ, 0},   {"drain_timeout_ms", K_INT, 0},
};
static const struct key reuse_keys[] = {
    {"isn", K_STR, 0},           {"local_time_wait", K_STR, 0},
    {"local_time_wait_seconds", K_INT, 0}, {"quarantine_ms", K_INT, 0},
    {"state_file", K_STR, 0},
};
static const struct key admin_keys[] = {{"bind", K_STR, 0}, {"token_file", K_STR, 0}};
static const struct key log_keys[] = {
    {"level", K_STR, 0}, {"file", K_STR, 0}, {"access_log", K_STR, 0},
    {"access_log_format", K_STR, 0}};

static void parse_top(struct ctx *c, json_t *root, struct config *cfg)
{
    cfg->reuse.isn = ISN_AUTO;
    cfg->reuse.local_time_wait = PM_LOCAL_TW_AVOID;
    cfg->reuse.local_time_wait_seconds = 60;
    cfg->reuse.quarantine_ms = 1000;
    cfg->log.level = LOGL_INFO;
    cfg->drain_timeout_ms = 10000;
    if (check_keys(c, root, "", top_keys, 6) < 0 && !json_is_object(root))
        return;
    cfg->drain_timeout_ms = get_int(c, root, "", "drain_timeout_ms", 10000, 0, 3600000);

    json_t *pools = json_object_get(root, "pools");
    if (json_is_array(pools)) {
        if (json_array_size(pools) == 0)
            err(c, "pools", "is empty (expected at least one pool)");
        cfg->pools = calloc(json_array_size(pools) + 1, sizeof *cfg->pools);
        size_t i;
        json_t *v;
        json_array_foreach(pools, i, v) {
            char pp[64];
            snprintf(pp, sizeof pp, "pools[%zu]", i);
            if (!want_object(c, v, pp))
                continue;
            struct cfg_pool *p = &cfg->pools[cfg->n_pools++];
            parse_pool(c, v, pp, p);
            for (size_t j = 0; j + 1 < cfg->n_pools; j++)
                if (p->name && cfg->pools[j].name && !strcmp(p->name, cfg->pools[j].name)) {
                    char np[80];
                    snprintf(np, sizeof np, "%s.name", pp);
                    err(c, np, "\"%s\" duplicates pools[%zu].name", p->name, j);
                }
        }
    }
    json_t *ls = json_object_get(root, "listeners");
    if (json_is_array(ls)) {
        if (json_array_size(ls) == 0)
            err(c, "listeners", "is empty (expected at least one listener)");
        cfg->listeners = calloc(json_array_size(ls) + 1, sizeof *cfg->listeners);
        size_t i;
        json_t *v;
        json_array_foreach(ls, i, v) {
            char lp[64];
            snprintf(lp, sizeof lp, "listeners[%zu]", i);
            if (!want_object(c, v, lp))
                continue;
            struct cfg_listener *l = &cfg->listeners[cfg->n_listeners++];
            parse_listener(c, v, lp, l);
            char np[80];
            for (size_t j = 0; j + 1 < cfg->n_listeners; j++) {
                if (l->name && cfg->listeners[j].name && !strcmp(l->name, cfg->listeners[j].name)) {
                    snprintf(np, sizeof np, "%s.name", lp);
                    err(c, np, "\"%s\" duplicates listeners[%zu].name", l->name, j);
                }
                if (same_sockaddr(&l->bind, &cfg->listeners[j].bind)) {
                    snprintf(np, sizeof np, "%s.bind", lp);
                    err(c, np, "\"%s\" duplicates listeners[%zu].bind", l->bind.text, j);
                }
            }
            if (l->pool_name) {
                size_t k;
                for (k = 0; k < cfg->n_pools; k++)
                    if (cfg->pools[k].name && !strcmp(cfg->pools[k].name, l->pool_name))
                        break;
                if (k == cfg->n_pools) {
                    snprintf(np, sizeof np, "%s.pool", lp);
                    err(c, np, "\"%s\" is not the name of a pool", l->pool_name);
                } else {
                    l->pool = k;
                }
            }
        }
    }
    json_t *reuse = json_object_get(root, "reuse");
    if (json_is_object(reuse) && check_keys(c, reuse, "reuse", reuse_keys, 5) == 0) {
        const char *s;
        if ((s = get_str(reuse, "isn")) && isn_mode_parse(s, &cfg->reuse.isn) < 0)
            err(c, "reuse.isn", "\"%s\" is not an ISN mode (expected auto, explicit, kernel or off)", s);
        if ((s = get_str(reuse, "local_time_wait")) &&
            portmap_local_tw_parse(s, &cfg->reuse.local_time_wait) < 0)
            err(c, "reuse.local_time_wait", "\"%s\" is not a policy (expected avoid or destroy)", s);
        cfg->reuse.local_time_wait_seconds =
            get_int(c, reuse, "reuse", "local_time_wait_seconds", 60, 1, 3600);
        cfg->reuse.quarantine_ms = get_int(c, reuse, "reuse", "quarantine_ms", 1000, 1, 600000);
        if ((s = get_str(reuse, "state_file"))) {
            if (!*s)
                err(c, "reuse.state_file", "is empty (expected a file path)");
            else
                cfg->reuse.state_file = strdup(s);
        }
    }
    json_t *admin = json_object_get(root, "admin");
    if (json_is_object(admin) && check_keys(c, admin, "admin", admin_keys, 2) == 0) {
        cfg->admin.enabled = 1;
        get_addr(c, admin, "admin", "bind", 1, &cfg->admin.bind, "127.0.0.1:9901");
        const char *t = get_str(admin, "token_file");
        if (t)
            cfg->admin.token_file = strdup(t);
        for (size_t i = 0; i < cfg->n_listeners; i++)
            if (same_sockaddr(&cfg->admin.bind, &cfg->listeners[i].bind))
                err(c, "admin.bind", "\"%s\" is also listeners[%zu].bind", cfg->admin.bind.text, i);
    }
    json_t *log = json_object_get(root, "log");
    if (json_is_object(log) && check_keys(c, log, "log", log_keys, 4) == 0) {
        const char *s = get_str(log, "level");
        if (s) {
            enum log_level l;
            for (l = LOGL_ERROR; l <= LOGL_DEBUG && strcmp(log_level_name(l), s); l++)
                ;
            if (l > LOGL_DEBUG)
                err(c, "log.level", "\"%s\" is not a log level (expected error, warn, info or debug)", s);
            else
                cfg->log.level = l;
        }
        if ((s = get_str(log, "file")))
            cfg->log.file = strdup(s);
        if ((s = get_str(log, "access_log")))
            cfg->log.access_log = strdup(s);
        if ((s = get_str(log, "access_log_format"))) {
            if (!strcmp(s, "json"))
                cfg->log.access_log_json = 1;
            else if (strcmp(s, "text"))
                err(c, "log.access_log_format", "\"%s\" is not a format (expected text or json)", s);
        }
    }
}

/* ---- entry points -------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len, int *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *e = errno;
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (n < cap - 1) {
            if (ferror(f)) {
                *e = EIO;
                free(buf);
                buf = NULL;
            }
            break;
        }
        if (cap > (64u << 20)) { /* a config larger than 64 MiB is a mistake */
            *e = EFBIG;
            free(buf);
            buf = NULL;
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            *e = ENOMEM;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

struct config *config_load(const char *path, struct cfg_errors *errs)
{
    size_t len = 0;
    int e = 0;
    char *text = read_file(path, &len, &e);
    if (!text) {
        cfg_errors_add(errs, "%s: cannot read: %s", path, strerror(e));
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        cfg_errors_add(errs, "%s:%d:%d: syntax error: %s", path, jerr.line, jerr.column,
                       jerr.text);
        free(text);
        return NULL;
    }
    struct ctx c = {.file = path, .errs = errs};
    c.sc = (struct scan){.s = text, .len = len, .line = 1, .col = 1};
    sc_value(&c.sc, "", 0);
    size_t before = errs->n;
    struct config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        cfg_errors_add(errs, "%s: out of memory", path);
    } else if (!json_is_object(root)) {
        err(&c, "", "the configuration must be a JSON object");
    } else {
        cfg->path = strdup(path);
        parse_top(&c, root, cfg);
    }
    json_decref(root);
    for (size_t i = 0; i < c.sc.n; i++)
        free(c.sc.pos[i].path);
    free(c.sc.pos);
    free(text);
    if (errs->n > before || !cfg) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void free_health(struct cfg_health *h)
{
    free(h->send);
    free(h->expect);
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_listeners; i++) {
        free(c->listeners[i].name);
        free(c->listeners[i].pool_name);
    }
    free(c->listeners);
    for (size_t p = 0; p < c->n_pools; p++) {
        struct cfg_pool *pool = &c->pools[p];
        free(pool->name);
        free(pool->inside);
        free_health(&pool->health);
        for (size_t b = 0; b < pool->n_backends; b++) {
            free(pool->backends[b].name);
            free_health(&pool->backends[b].health);
        }
        free(pool->backends);
    }
    free(c->pools);
    free(c->reuse.state_file);
    free(c->admin.token_file);
    free(c->log.file);
    free(c->log.access_log);
    free(c->path);
    free(c);
}
