/* config.c - see config.h.
 *
 * Two passes over the file: jansson decodes it (and reports syntax errors and duplicate
 * keys with line:col), and jsonpos.c walks the same text to note the line:col of every
 * value by its JSON path, since decoded jansson values carry no position.  Each object is
 * then checked against its key table (keys.c: name, type, bounds, default): unknown keys
 * and wrong types first, then values, then the rules between fields, here.  Every error
 * is collected; nothing is applied unless there is none. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/keys.h"
#include "core/slowstart.h"

/* ---- errors ------------------------------------------------------------------------ */


/* An array element that must be an object: 1, or 0 after reporting what it is. */
static int want_object(struct keys_ctx *c, json_t *v, const char *path)
{
    if (json_is_object(v))
        return 1;
    char d[128];
    keys_describe(v, d, sizeof d);
    keys_err(c, path, "%s is not an object", d);
    return 0;
}

/* ---- sections: what the tables cannot say -------------------------------------------- */

static void parse_health(struct keys_ctx *c, json_t *obj, const char *path,
                         struct cfg_health *h, const struct cfg_health *def)
{
    if (def && def->enabled) {
        *h = *def;
        h->send = def->send ? strdup(def->send) : NULL;
        h->expect = def->expect ? strdup(def->expect) : NULL;
    }
    if (!obj || keys_check(c, obj, path, &keys_health) < 0)
        return;
    if (!h->enabled) {
        h->enabled = 1;
        keys_fill(&keys_health, h);
    }
    keys_apply(c, obj, path, &keys_health, h, NULL, NULL);
    if (json_object_get(obj, "timeout_ms"))
        h->timeout_set = 1;
    if (h->timeout_ms > h->interval_ms) {
        if (h->timeout_set) {
            /* A probe must be over before the next one of its backend is due. */
            char sub[512];
            int here = json_object_get(obj, "timeout_ms") != NULL;
            keys_subpath(sub, sizeof sub, path, here ? "timeout_ms" : "interval_ms");
            keys_err(c, sub, "timeout_ms %u is above interval_ms %u (a probe must end "
                     "before the next one starts: lower timeout_ms or raise interval_ms)",
                     h->timeout_ms, h->interval_ms);
        } else {
            h->timeout_ms = h->interval_ms; /* the default timeout, shortened to fit */
        }
    }
    h->send_len = h->send ? strlen(h->send) : 0;
    h->expect_len = h->expect ? strlen(h->expect) : 0;
}

static void parse_time_wait(struct keys_ctx *c, json_t *obj, const char *path,
                            struct cfg_time_wait *tw)
{
    if (keys_check(c, obj, path, &keys_time_wait) == 0)
        keys_apply(c, obj, path, &keys_time_wait, tw, NULL, NULL);
}

struct backend_arg {
    struct cfg_backend *b;
    const struct cfg_pool *p;
};

/* A backend's objects start from its pool's. */
static void backend_nested(struct keys_ctx *c, const struct key *k, json_t *v, const char *path,
                           void *arg)
{
    struct cfg_backend *b = ((struct backend_arg *)arg)->b;
    const struct cfg_pool *p = ((struct backend_arg *)arg)->p;
    if (!strcmp(k->name, "time_wait"))
        parse_time_wait(c, v, path, &b->time_wait);
    else if (!strcmp(k->name, "health"))
        parse_health(c, v, path, &b->health, &p->health);
}

static void parse_backend(struct keys_ctx *c, json_t *obj, const char *path,
                          const struct cfg_pool *pool, struct cfg_backend *b)
{
    keys_fill(&keys_backend, b);
    b->time_wait = pool->time_wait;
    b->slow_start_ms = pool->slow_start_ms;
    keys_check(c, obj, path, &keys_backend);
    struct backend_arg arg = {b, pool};
    keys_apply(c, obj, path, &keys_backend, b, backend_nested, &arg);
    if (!json_is_object(json_object_get(obj, "health")))
        parse_health(c, NULL, path, &b->health, &pool->health);
}

static void parse_inside(struct keys_ctx *c, json_t *inside, const char *sub, struct cfg_pool *p)
{
    if (json_array_size(inside) == 0)
        keys_err(c, sub, "is empty (expected at least one inside address)");
    p->inside = calloc(json_array_size(inside) + 1, sizeof *p->inside);
    size_t i;
    json_t *v;
    json_array_foreach(inside, i, v) {
        char ip[560];
        keys_index(ip, sizeof ip, sub, i);
        const char *why;
        if (!json_is_string(v)) {
            char d[128];
            keys_describe(v, d, sizeof d);
            keys_err(c, ip, "%s is not a string", d);
            continue;
        }
        struct cfg_addr *a = &p->inside[p->n_inside];
        if (cfg_addr_parse(json_string_value(v), 0, a, &why) < 0) {
            keys_err(c, ip, "\"%s\" %s", json_string_value(v), why);
            continue;
        }
        for (size_t j = 0; j < p->n_inside; j++)
            if (cfg_addr_same(&p->inside[j], a))
                keys_err(c, ip, "\"%s\" duplicates %s[%zu]", a->text, sub, j);
        p->n_inside++;
    }
}

static void parse_backends(struct keys_ctx *c, json_t *bs, const char *sub, struct cfg_pool *p)
{
    if (json_array_size(bs) == 0)
        keys_err(c, sub, "is empty (expected at least one backend)");
    p->backends = calloc(json_array_size(bs) + 1, sizeof *p->backends);
    size_t i;
    json_t *v;
    json_array_foreach(bs, i, v) {
        char bp[560], np[600];
        keys_index(bp, sizeof bp, sub, i);
        if (!want_object(c, v, bp))
            continue;
        struct cfg_backend *b = &p->backends[p->n_backends++];
        parse_backend(c, v, bp, p, b);
        /* One error per duplicate (naming the first of its kind), not one per pair. */
        int dup_name = 0, dup_addr = 0;
        for (size_t j = 0; j + 1 < p->n_backends && !(dup_name && dup_addr); j++) {
            if (!dup_name && b->name && p->backends[j].name &&
                !strcmp(b->name, p->backends[j].name)) {
                keys_subpath(np, sizeof np, bp, "name");
                keys_err(c, np, "\"%s\" duplicates %s[%zu].name", b->name, sub, j);
                dup_name = 1;
            }
            if (!dup_addr && cfg_addr_same(&b->addr, &p->backends[j].addr)) {
                keys_subpath(np, sizeof np, bp, "address");
                keys_err(c, np, "\"%s\" duplicates %s[%zu].address", b->addr.text, sub, j);
                dup_addr = 1;
            }
        }
        /* Some inside address must be able to reach it. */
        int reach = 0;
        for (size_t k = 0; k < p->n_inside; k++)
            reach |= p->inside[k].ss.ss_family == b->addr.ss.ss_family;
        if (b->addr.len && p->n_inside && !reach) {
            const char *fam = b->addr.ss.ss_family == AF_INET ? "IPv4" : "IPv6";
            keys_subpath(np, sizeof np, bp, "address");
            keys_err(c, np, "\"%s\" is %s but the pool has no %s inside address", b->addr.text,
                     fam, fam);
        }
    }
}

static void pool_nested(struct keys_ctx *c, const struct key *k, json_t *v, const char *path,
                        void *arg)
{
    struct cfg_pool *p = arg;
    if (!strcmp(k->name, "inside"))
        parse_inside(c, v, path, p);
    else if (!strcmp(k->name, "time_wait"))
        parse_time_wait(c, v, path, &p->time_wait);
    else if (!strcmp(k->name, "health"))
        parse_health(c, v, path, &p->health, NULL);
    else if (!strcmp(k->name, "queue")) {
        keys_fill(&keys_queue, &p->queue);
        if (keys_check(c, v, path, &keys_queue) == 0)
            keys_apply(c, v, path, &keys_queue, &p->queue, NULL, NULL);
    }
    else if (!strcmp(k->name, "backends"))
        parse_backends(c, v, path, p);
}

/* maglev is static (consistent hashing: the weights are fixed in its table), so a slow
 * start could not apply there: say so where it was written (the pool's, once, not again
 * for each backend that inherits it). */
static void check_slow_start(struct keys_ctx *c, json_t *obj, const char *path,
                             const struct cfg_pool *p)
{
    if (p->balance != BAL_MAGLEV)
        return;
    static const char why[] = "%lld has no effect with balance \"maglev\" (static "
                              "consistent hashing: the weights are fixed in its table); "
                              "remove it or choose another balance";
    char sub[512], bp[560], kp[600];
    json_t *v = json_object_get(obj, "slow_start_ms");
    if (json_is_integer(v) && p->slow_start_ms) { /* 0 or out of range: nothing to add */
        keys_subpath(sub, sizeof sub, path, "slow_start_ms");
        keys_err(c, sub, why, (long long)p->slow_start_ms);
    }
    /* From the JSON: an element that is not an object has no cfg_backend. */
    json_t *bs = json_object_get(obj, "backends");
    keys_subpath(sub, sizeof sub, path, "backends");
    for (size_t i = 0; i < json_array_size(bs); i++) {
        v = json_object_get(json_array_get(bs, i), "slow_start_ms");
        long long ms = json_is_integer(v) ? json_integer_value(v) : 0;
        if (ms <= 0 || ms > SLOWSTART_MAX_MS) /* out of range was reported already */
            continue;
        keys_index(bp, sizeof bp, sub, i);
        keys_subpath(kp, sizeof kp, bp, "slow_start_ms");
        keys_err(c, kp, why, ms);
    }
}

static void parse_pool(struct keys_ctx *c, json_t *obj, const char *path, struct cfg_pool *p)
{
    keys_fill(&keys_pool, p);
    keys_fill(&keys_time_wait, &p->time_wait);
    keys_check(c, obj, path, &keys_pool);
    keys_apply(c, obj, path, &keys_pool, p, pool_nested, p);
    check_slow_start(c, obj, path, p);
}

/* "allow" or "deny": prefixes (core/cidr.h).  One with bits set past its length is an
 * error that names the prefix it probably meant: masking it silently could let in (or
 * shut out) a network nobody wrote. */
static void parse_prefixes(struct keys_ctx *c, json_t *arr, const char *sub,
                           struct cidr **out, size_t *n)
{
    if (json_array_size(arr) == 0)
        keys_err(c, sub, "is empty (expected at least one prefix; leave the key out for "
                 "no list)");
    *out = calloc(json_array_size(arr) + 1, sizeof **out);
    if (!*out) {
        keys_err(c, sub, "out of memory");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        char ip[560];
        keys_index(ip, sizeof ip, sub, i);
        if (!json_is_string(v)) {
            char d[128];
            keys_describe(v, d, sizeof d);
            keys_err(c, ip, "%s is not a string", d);
            continue;
        }
        const char *s = json_string_value(v), *why = NULL;
        struct cidr *p = &(*out)[*n];
        int r = cidr_parse(s, p, &why);
        if (r == CIDR_HOST_BITS) {
            char net[INET6_ADDRSTRLEN];
            inet_ntop(p->family == CIDR_INET ? AF_INET : AF_INET6, p->addr, net, sizeof net);
            keys_err(c, ip, "\"%s\" has bits set past its prefix length (the prefix is "
                     "\"%s/%u\"; write that, or the address alone for one host)", s, net,
                     p->len);
        } else if (r < 0) {
            keys_err(c, ip, "\"%s\" %s", s, why);
        } else {
            (*n)++;
        }
    }
}

static void listener_nested(struct keys_ctx *c, const struct key *k, json_t *v,
                            const char *path, void *arg)
{
    struct cfg_listener *l = arg;
    if (!strcmp(k->name, "allow"))
        parse_prefixes(c, v, path, &l->allow, &l->n_allow);
    else if (!strcmp(k->name, "deny"))
        parse_prefixes(c, v, path, &l->deny, &l->n_deny);
}

/* Listeners come after the pools: each names one. */
static void parse_listener(struct keys_ctx *c, json_t *obj, const char *lp, struct config *cfg)
{
    struct cfg_listener *l = &cfg->listeners[cfg->n_listeners++];
    keys_fill(&keys_listener, l);
    keys_check(c, obj, lp, &keys_listener);
    keys_apply(c, obj, lp, &keys_listener, l, listener_nested, l);
    char np[80];
    if (l->burst_per_client && !l->rate_per_client) {
        keys_subpath(np, sizeof np, lp, "burst_per_client");
        keys_err(c, np, "%u needs rate_per_client (a burst of new connections is only "
                 "limited with a rate)", l->burst_per_client);
    } else if (!l->burst_per_client) {
        l->burst_per_client = l->rate_per_client; /* the default: a second's worth */
    }
    int dup_name = 0, dup_bind = 0;
    for (size_t j = 0; j + 1 < cfg->n_listeners && !(dup_name && dup_bind); j++) {
        if (!dup_name && l->name && cfg->listeners[j].name &&
            !strcmp(l->name, cfg->listeners[j].name)) {
            keys_subpath(np, sizeof np, lp, "name");
            keys_err(c, np, "\"%s\" duplicates listeners[%zu].name", l->name, j);
            dup_name = 1;
        }
        if (!dup_bind && cfg_addr_same(&l->bind, &cfg->listeners[j].bind)) {
            keys_subpath(np, sizeof np, lp, "bind");
            keys_err(c, np, "\"%s\" duplicates listeners[%zu].bind", l->bind.text, j);
            dup_bind = 1;
        }
    }
    if (!l->pool_name)
        return;
    size_t k;
    for (k = 0; k < cfg->n_pools; k++)
        if (cfg->pools[k].name && !strcmp(cfg->pools[k].name, l->pool_name))
            break;
    if (k == cfg->n_pools) {
        keys_subpath(np, sizeof np, lp, "pool");
        keys_err(c, np, "\"%s\" is not the name of a pool", l->pool_name);
    } else {
        l->pool = k;
    }
}

/* Where the state file is when the config does not say: in the directory systemd made
 * for the unit (StateDirectory=, given as $STATE_DIRECTORY, the first of a list), else
 * next to the configuration file: FILE.state.  NULL on OOM (then none). */
static char *default_state_file(const char *config_path)
{
    const char *dir = getenv("STATE_DIRECTORY");
    char buf[4200];
    size_t n = dir ? strcspn(dir, ":") : 0;
    if (n && n < 4096)
        snprintf(buf, sizeof buf, "%.*s/state", (int)n, dir);
    else
        snprintf(buf, sizeof buf, "%s.state", config_path ? config_path : "twlb.json");
    return strdup(buf);
}

static void parse_top(struct keys_ctx *c, json_t *root, struct config *cfg)
{
    keys_fill(&keys_top, cfg);
    keys_fill(&keys_reuse, &cfg->reuse);
    keys_fill(&keys_log, &cfg->log);
    keys_check(c, root, "", &keys_top);
    keys_apply(c, root, "", &keys_top, cfg, NULL, NULL); /* the scalars; then in order: */

    json_t *pools = json_object_get(root, "pools");
    if (json_is_array(pools)) {
        if (json_array_size(pools) == 0)
            keys_err(c, "pools", "is empty (expected at least one pool)");
        cfg->pools = calloc(json_array_size(pools) + 1, sizeof *cfg->pools);
        size_t i;
        json_t *v;
        json_array_foreach(pools, i, v) {
            char pp[64], np[80];
            keys_index(pp, sizeof pp, "pools", i);
            if (!want_object(c, v, pp))
                continue;
            struct cfg_pool *p = &cfg->pools[cfg->n_pools++];
            parse_pool(c, v, pp, p);
            for (size_t j = 0; j + 1 < cfg->n_pools; j++)
                if (p->name && cfg->pools[j].name && !strcmp(p->name, cfg->pools[j].name)) {
                    keys_subpath(np, sizeof np, pp, "name");
                    keys_err(c, np, "\"%s\" duplicates pools[%zu].name", p->name, j);
                    break;
                }
        }
    }
    json_t *ls = json_object_get(root, "listeners");
    if (json_is_array(ls)) {
        if (json_array_size(ls) == 0)
            keys_err(c, "listeners", "is empty (expected at least one listener)");
        cfg->listeners = calloc(json_array_size(ls) + 1, sizeof *cfg->listeners);
        size_t i;
        json_t *v;
        json_array_foreach(ls, i, v) {
            char lp[64];
            keys_index(lp, sizeof lp, "listeners", i);
            if (want_object(c, v, lp))
                parse_listener(c, v, lp, cfg);
        }
    }
    json_t *reuse = json_object_get(root, "reuse");
    if (json_is_object(reuse) && keys_check(c, reuse, "reuse", &keys_reuse) == 0)
        keys_apply(c, reuse, "reuse", &keys_reuse, &cfg->reuse, NULL, NULL);
    if (!json_is_object(reuse) || !json_object_get(reuse, "state_file")) {
        cfg->reuse.state_file = default_state_file(cfg->path);
        cfg->reuse.state_file_default = 1;
    }
    json_t *admin = json_object_get(root, "admin");
    if (json_is_object(admin) && keys_check(c, admin, "admin", &keys_admin) == 0) {
        cfg->admin.enabled = 1;
        keys_fill(&keys_admin, &cfg->admin);
        keys_apply(c, admin, "admin", &keys_admin, &cfg->admin, NULL, NULL);
        for (size_t i = 0; i < cfg->n_listeners; i++)
            if (cfg_addr_same(&cfg->admin.bind, &cfg->listeners[i].bind))
                keys_err(c, "admin.bind", "\"%s\" is also listeners[%zu].bind",
                         cfg->admin.bind.text, i);
        /* POST disables backends: off loopback, that needs a token or a clear yes. */
        if (!cfg->admin.token_file && !cfg->admin.allow_without_token &&
            cfg->admin.bind.len && !cfg_addr_is_loopback(&cfg->admin.bind))
            keys_err(c, "admin.bind",
                     "\"%s\" is not a loopback address and admin.token_file is not set: "
                     "anyone who reaches it could disable every backend (set "
                     "admin.token_file, or admin.allow_without_token: true to mean it)",
                     cfg->admin.bind.text);
    }
    if (cfg->group && !cfg->user)
        keys_err(c, "group", "\"%s\" needs \"user\" (twlb changes group only when it "
                 "changes user)", cfg->group);
    json_t *log = json_object_get(root, "log");
    if (json_is_object(log) && keys_check(c, log, "log", &keys_log) == 0)
        keys_apply(c, log, "log", &keys_log, &cfg->log, NULL, NULL);
}

/* ---- entry points -------------------------------------------------------------------- */

char *config_read_file(const char *path, size_t *len, int *e)
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
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        cfg_errors_add(errs, "%s: is a directory, not a configuration file", path);
        return NULL;
    }
    char *text = config_read_file(path, &len, &e);
    if (!text) {
        cfg_errors_add(errs, "%s: cannot read: %s", path, strerror(e));
        return NULL;
    }
    struct config *cfg = config_load_text(path, text, len, errs);
    free(text);
    return cfg;
}

struct config *config_load_text(const char *path, const char *text, size_t len,
                                struct cfg_errors *errs)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        cfg_errors_add(errs, "%s:%d:%d: syntax error: %s", path, jerr.line, jerr.column,
                       jerr.text);
        return NULL;
    }
    struct keys_ctx c = {.file = path, .errs = errs};
    (void)jsonpos_scan(&c.pos, text, len); /* what it could not note has no position */
    size_t before = errs->n;
    struct config *cfg = calloc(1, sizeof *cfg);
    if (cfg)
        cfg->refs = 1;
    if (!cfg) {
        cfg_errors_add(errs, "%s: out of memory", path);
    } else if (!json_is_object(root)) {
        keys_err(&c, "", "the configuration must be a JSON object");
    } else {
        cfg->path = strdup(path);
        parse_top(&c, root, cfg);
    }
    json_decref(root);
    jsonpos_free(&c.pos);
    if (errs->n > before || !cfg) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

void config_state_limits(const struct config *c, uint64_t *max_ms, uint64_t *max_entries)
{
    uint64_t ms = (uint64_t)c->reuse.local_time_wait_seconds * 1000;
    if (c->reuse.quarantine_ms > ms)
        ms = c->reuse.quarantine_ms;
    uint64_t n = 0;
    for (size_t p = 0; p < c->n_pools; p++) {
        const struct cfg_pool *pc = &c->pools[p];
        uint64_t ports = (uint64_t)pc->port_hi - pc->port_lo + 1;
        n += (uint64_t)pc->n_backends * pc->n_inside * ports;
        for (size_t b = 0; b < pc->n_backends; b++)
            if ((uint64_t)pc->backends[b].time_wait.seconds * 1000 > ms)
                ms = (uint64_t)pc->backends[b].time_wait.seconds * 1000;
    }
    *max_ms = ms;
    *max_entries = n;
}

int config_unreloadable_changes(const struct config *old, const struct config *neu,
                                struct cfg_errors *out)
{
    return keys_diff(&keys_top, old, neu, "", out);
}


static void free_health(struct cfg_health *h)
{
    free(h->send);
    free(h->expect);
}

struct config *config_ref(struct config *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void config_free(struct config *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < c->n_listeners; i++) {
        free(c->listeners[i].name);
        free(c->listeners[i].pool_name);
        free(c->listeners[i].allow);
        free(c->listeners[i].deny);
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
    free(c->user);
    free(c->group);
    free(c->upgrade_socket);
    free(c->path);
    free(c);
}
