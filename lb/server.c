/* server.c - one worker's runtime: pools and port maps built from the config, the
 * listeners, the drain on shutdown, and the choice of backend + inside address + port
 * for each new backend connection. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "admin.h"
#include "check.h"
#include "kdiag.h"
#include "log.h"
#include "session.h"
#include "statefile.h"
#include "upstream.h"

/* Explicit-ISN reuses that a backend must reject in a row before we stop believing its
 * configured rule and treat it as strict. */
#define REJECTS_BEFORE_DEMOTION 3

/* Passive ejection: this many failed connects in a row take a backend out for 1 s,
 * doubling per ejection in a row up to 60 s (health.h). */
#define PASSIVE_EJECT_AFTER 3
#define PASSIVE_EJECT_BASE_MS 1000
#define PASSIVE_EJECT_MAX_MS 60000

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void backend_policy(const struct server *srv, const struct backend_rt *be,
                           struct portmap_policy *pol)
{
    const struct config *c = srv->cfg;
    memset(pol, 0, sizeof *pol);
    pol->rule.kind = be->demoted ? TWRULE_STRICT : be->cfg->time_wait.rule;
    pol->rule.time_wait_ms = (uint64_t)be->cfg->time_wait.seconds * 1000;
    pol->mode = srv->isn_mode;
    pol->local_tw = c->reuse.local_time_wait;
    pol->local_tw_ms = (uint64_t)c->reuse.local_time_wait_seconds * 1000;
    pol->quarantine_ms = c->reuse.quarantine_ms;
    pol->kernel_margin = ISN_KERNEL_MARGIN;
}

/* auto -> explicit when TCP_REPAIR is allowed, else kernel.  An explicit request without
 * the capability is an error: silently guessing ISNs is what twlb exists to avoid. */
static int resolve_isn_mode(const struct config *c, enum isn_mode *out, char *err,
                            size_t errlen)
{
    int can = upstream_can_repair(AF_INET) || upstream_can_repair(AF_INET6);
    switch (c->reuse.isn) {
    case ISN_AUTO:
        *out = can ? ISN_EXPLICIT : ISN_KERNEL;
        break;
    case ISN_EXPLICIT:
        if (!can) {
            snprintf(err, errlen, "reuse.isn is \"explicit\" but TCP_REPAIR is not allowed "
                                  "(twlb needs CAP_NET_ADMIN)");
            return -1;
        }
        *out = ISN_EXPLICIT;
        break;
    default:
        *out = c->reuse.isn;
    }
    if (c->reuse.local_time_wait == PM_LOCAL_TW_DESTROY && !can) {
        snprintf(err, errlen, "reuse.local_time_wait is \"destroy\" but SOCK_DESTROY needs "
                              "CAP_NET_ADMIN");
        return -1;
    }
    return 0;
}

struct server *server_new(uv_loop_t *loop, const struct config *cfg, char *err, size_t errlen)
{
    struct server *srv = calloc(1, sizeof *srv);
    if (!srv)
        goto oom;
    srv->loop = loop;
    srv->cfg = cfg;
    if (resolve_isn_mode(cfg, &srv->isn_mode, err, errlen) < 0) {
        free(srv);
        return NULL;
    }
    /* RFC 6528: the ISN hash key must be secret and unpredictable. */
    if (getrandom(srv->isn_key.k, sizeof srv->isn_key.k, 0) != sizeof srv->isn_key.k) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        free(srv);
        return NULL;
    }
    srv->listeners = calloc(cfg->n_listeners, sizeof *srv->listeners);
    srv->pools = calloc(cfg->n_pools, sizeof *srv->pools);
    if (!srv->listeners || !srv->pools)
        goto oom;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        srv->listeners[i].srv = srv;
        srv->listeners[i].cfg = &cfg->listeners[i];
    }
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = clock_ns(CLOCK_MONOTONIC);
    for (size_t p = 0; p < cfg->n_pools; p++) {
        struct pool_rt *pool = &srv->pools[p];
        const struct cfg_pool *pc = &cfg->pools[p];
        pool->cfg = pc;
        pool->index = p;
        pool->backends = calloc(pc->n_backends, sizeof *pool->backends);
        pool->view = calloc(pc->n_backends, sizeof *pool->view);
        pool->usable = calloc(pc->n_backends, 1);
        if (!pool->backends || !pool->view || !pool->usable)
            goto oom;
        for (size_t b = 0; b < pc->n_backends; b++) {
            struct backend_rt *be = &pool->backends[b];
            be->cfg = &pc->backends[b];
            be->pool = pool;
            be->index = b;
            pool->view[b].name = be->cfg->name;
            health_init(&be->health, be->cfg->health.enabled ? be->cfg->health.rise : 1,
                        be->cfg->health.enabled ? be->cfg->health.fall : 1,
                        PASSIVE_EJECT_AFTER, PASSIVE_EJECT_BASE_MS, PASSIVE_EJECT_MAX_MS);
            be->was_usable = 1;
            pool->view[b].weight = be->cfg->weight;
            be->paths = calloc(pc->n_inside, sizeof *be->paths);
            if (!be->paths)
                goto oom;
            struct portmap_policy pol;
            backend_policy(srv, be, &pol);
            for (size_t i = 0; i < pc->n_inside; i++) {
                if (pc->inside[i].ss.ss_family != be->cfg->addr.ss.ss_family)
                    continue; /* an IPv4 inside address cannot reach an IPv6 backend */
                be->paths[i].pm = portmap_new(pc->port_lo, pc->port_hi, &pol);
                if (!be->paths[i].pm)
                    goto oom;
            }
        }
        pool->bal = balancer_new(pc->balance, pool->view, pc->n_backends, seed + p);
        if (!pool->bal)
            goto oom;
    }
    return srv;
oom:
    snprintf(err, errlen, "out of memory building the runtime");
    server_free(srv);
    return NULL;
}

void server_isn_tuple(struct isn_tuple *t, const struct cfg_addr *inside, uint16_t sport,
                      const struct cfg_addr *backend)
{
    memset(t, 0, sizeof *t);
    if (inside->ss.ss_family == AF_INET) {
        t->addr_len = 4;
        memcpy(t->saddr, &((const struct sockaddr_in *)&inside->ss)->sin_addr, 4);
        memcpy(t->daddr, &((const struct sockaddr_in *)&backend->ss)->sin_addr, 4);
        t->dport = ntohs(((const struct sockaddr_in *)&backend->ss)->sin_port);
    } else {
        t->addr_len = 16;
        memcpy(t->saddr, &((const struct sockaddr_in6 *)&inside->ss)->sin6_addr, 16);
        memcpy(t->daddr, &((const struct sockaddr_in6 *)&backend->ss)->sin6_addr, 16);
        t->dport = ntohs(((const struct sockaddr_in6 *)&backend->ss)->sin6_port);
    }
    t->sport = sport;
}

void server_note_reuse_result(struct server *srv, struct backend_rt *be)
{
    if (be->demoted || srv->isn_mode != ISN_EXPLICIT ||
        be->reuse_rejects_in_row < REJECTS_BEFORE_DEMOTION)
        return;
    /* Our ISNs are "after" by construction, so a backend that keeps ignoring them does
     * not follow the rule it was configured with.  Stop reusing its TIME_WAIT. */
    be->demoted = 1;
    log_error("pool %s: backend %s (%s) rejected %u TIME_WAIT reuses in a row although "
              "their ISNs obeyed the \"%s\" rule; treating it as \"strict\" from now on "
              "(fix its time_wait.rule in the config)",
              be->pool->cfg->name, be->cfg->name, be->cfg->addr.text,
              be->reuse_rejects_in_row, twrule_kind_name(be->cfg->time_wait.rule));
    struct portmap_policy pol;
    backend_policy(srv, be, &pol);
    for (size_t i = 0; i < be->pool->cfg->n_inside; i++)
        if (be->paths[i].pm)
            portmap_set_policy(be->paths[i].pm, &pol);
}

int server_backend_usable(struct server *srv, struct backend_rt *be, uint64_t now_ms)
{
    int usable = health_usable(&be->health, now_ms);
    if (usable != be->was_usable) {
        /* Logged and counted once per change, whoever notices it first. */
        be->was_usable = usable;
        be->st.state_changes_total++;
        if (usable)
            log_warn("pool %s: backend %s (%s) is up", be->pool->cfg->name, be->cfg->name,
                     be->cfg->addr.text);
        else
            log_warn("pool %s: backend %s (%s) is down%s", be->pool->cfg->name,
                     be->cfg->name, be->cfg->addr.text,
                     be->health.up ? " (ejected after consecutive connect failures)" : "");
    }
    return usable;
}

void server_connect_result(struct server *srv, struct backend_rt *be, int ok)
{
    uint64_t now = server_now_ms(srv);
    uint32_t before = be->health.ejections_in_row;
    health_connect_result(&be->health, ok, now);
    if (be->health.ejections_in_row > before)
        be->st.ejections_total++;
    server_backend_usable(srv, be, now);
}

const char *server_backend_admin_name(enum backend_admin a)
{
    switch (a) {
    case BE_ENABLED: return "enabled";
    case BE_DRAINING: return "draining";
    case BE_DISABLED: return "disabled";
    }
    return "?";
}

int server_backend_admin(struct server *srv, const char *pool, const char *backend,
                         const char *action)
{
    struct backend_rt *be = NULL;
    for (size_t p = 0; p < srv->cfg->n_pools && !be; p++) {
        if (strcmp(srv->cfg->pools[p].name, pool))
            continue;
        for (size_t b = 0; b < srv->cfg->pools[p].n_backends; b++)
            if (!strcmp(srv->cfg->pools[p].backends[b].name, backend))
                be = &srv->pools[p].backends[b];
    }
    if (!be)
        return -1;
    enum backend_admin to;
    if (!strcmp(action, "enable"))
        to = BE_ENABLED;
    else if (!strcmp(action, "disable"))
        to = BE_DISABLED;
    else if (!strcmp(action, "drain"))
        to = BE_DRAINING;
    else
        return -2;
    if (be->admin != to)
        log_warn("pool %s: backend %s %s by the operator (was %s)", pool, backend,
                 server_backend_admin_name(to), server_backend_admin_name(be->admin));
    be->admin = to;
    if (to == BE_DISABLED)
        session_abort_backend(srv, be);
    return 0;
}

int server_pick(struct server *srv, struct pool_rt *pool, uint64_t client_hash,
                const uint32_t *tried, size_t ntried, struct server_pick *out)
{
    const struct cfg_pool *pc = pool->cfg;
    uint64_t now_ms = server_now_ms(srv);
    for (size_t b = 0; b < pc->n_backends; b++) {
        struct backend_rt *be = &pool->backends[b];
        pool->usable[b] = be->admin == BE_ENABLED && server_backend_usable(srv, be, now_ms);
    }
    for (size_t t = 0; t < ntried; t++)
        pool->usable[tried[t]] = 0;
    for (;;) {
        int i = balancer_pick(pool->bal, pool->view, pool->usable, client_hash);
        if (i < 0)
            return -1;
        if (server_acquire(srv, &pool->backends[i], out) == 0)
            return 0;
        pool->usable[i] = 0;
    }
}

int server_acquire(struct server *srv, struct backend_rt *be, struct server_pick *out)
{
    struct pool_rt *pool = be->pool;
    size_t n = pool->cfg->n_inside;
    uint64_t now_ms = server_now_ms(srv);
    uint64_t real_ns = clock_ns(CLOCK_REALTIME), mono_ns = clock_ns(CLOCK_MONOTONIC);
    /* Rotate the inside addresses so they share the load. */
    for (size_t k = 0; k < n; k++) {
        size_t path = (pool->next_inside + k) % n;
        portmap *pm = be->paths[path].pm;
        if (pm && portmap_acquire(pm, now_ms, real_ns, mono_ns, &out->port) == 0) {
            pool->next_inside = path + 1;
            out->be = be;
            out->path = path;
            return 0;
        }
    }
    be->st.ports_exhausted_total++;
    return -1;
}

static void sockaddr_with_port(struct sockaddr_storage *out, const struct cfg_addr *a,
                               uint16_t port)
{
    memcpy(out, &a->ss, a->len);
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)out)->sin6_port = htons(port);
}

/* Ports the kernel may refuse in a row toward one backend before we pick another. */
#define REFUSED_PORTS_MAX 16

int server_upstream_socket(struct server *srv, struct server_pick *pick, int *isn_known,
                           uint32_t *isn)
{
    for (int tries = 0; tries < REFUSED_PORTS_MAX; tries++) {
        struct backend_rt *be = pick->be;
        const struct cfg_addr *inside = &be->pool->cfg->inside[pick->path];
        portmap *pm = be->paths[pick->path].pm;
        struct sockaddr_storage local;
        sockaddr_with_port(&local, inside, pick->port.port);
        int refused = 0;

        /* Our own TIME_WAIT on this 4-tuple: destroy it when the policy says so, and
         * always in explicit mode, where otherwise the kernel would override our ISN
         * (kernel-facts 4). */
        if (pick->port.kind == PM_PICK_LOCAL_TW &&
            (pick->port.destroy_local_tw || srv->isn_mode == ISN_EXPLICIT)) {
            int r = kdiag_destroy((struct sockaddr *)&local,
                                  (const struct sockaddr *)&be->cfg->addr.ss);
            if (r < 0 && r != -ENOENT && pick->port.destroy_local_tw) {
                log_debug("SOCK_DESTROY %s:%u failed: %s", inside->text, pick->port.port,
                          strerror(-r));
                refused = 1;
            }
        }
        int fd = -EADDRINUSE;
        if (!refused) {
            *isn_known = 0;
            if (srv->isn_mode == ISN_EXPLICIT) {
                struct isn_tuple t;
                server_isn_tuple(&t, inside, pick->port.port, &be->cfg->addr);
                uint64_t now = clock_ns(CLOCK_REALTIME);
                *isn = pick->port.kind == PM_PICK_REMOTE_TW
                           ? isn_reuse(&srv->isn_key, &t, pick->port.rcv_nxt, now)
                           : isn_fresh(&srv->isn_key, &t, now);
                *isn_known = 1;
            }
            fd = upstream_socket((struct sockaddr *)&inside->ss, pick->port.port, *isn_known,
                                 *isn);
        }
        if (fd != -EADDRINUSE && fd != -EADDRNOTAVAIL)
            return fd; /* a socket, or an error that is not about the port */
        /* The kernel refused the port: set it aside, take another toward the same
         * backend. */
        portmap_quarantine(pm, pick->port.port, server_now_ms(srv));
        if (server_acquire(srv, be, pick) < 0)
            return -ENOSPC;
    }
    struct backend_rt *be = pick->be;
    log_warn("pool %s: %d source ports toward %s refused by the kernel in a row",
             be->pool->cfg->name, REFUSED_PORTS_MAX, be->cfg->name);
    portmap_quarantine(be->paths[pick->path].pm, pick->port.port, server_now_ms(srv));
    return -ENOSPC;
}

/* ---- listeners ------------------------------------------------------------------- */

static void on_connection(uv_stream_t *h, int status)
{
    struct listener_rt *lis = h->data;
    if (status < 0) {
        log_warn("listener %s: accept: %s", lis->cfg->name, uv_strerror(status));
        return;
    }
    session_accept(lis);
}

int server_start(struct server *srv, char *err, size_t errlen)
{
    const struct config *c = srv->cfg;
    /* What the backends and our kernel still remember, before the first connect. */
    if (c->reuse.state_file)
        statefile_load(srv, c->reuse.state_file);
    server_load_kernel_time_wait(srv);
    for (size_t i = 0; i < c->n_listeners; i++) {
        struct listener_rt *lis = &srv->listeners[i];
        uv_tcp_init(srv->loop, &lis->handle);
        lis->handle.data = lis;
        lis->open = 1;
        int r = uv_tcp_bind(&lis->handle, (const struct sockaddr *)&lis->cfg->bind.ss, 0);
        if (r == 0)
            r = uv_listen((uv_stream_t *)&lis->handle, (int)lis->cfg->backlog, on_connection);
        if (r < 0) {
            snprintf(err, errlen, "listener %s: cannot listen on %s: %s", lis->cfg->name,
                     lis->cfg->bind.text, uv_strerror(r));
            return r;
        }
        log_info("listener %s on %s -> pool %s", lis->cfg->name, lis->cfg->bind.text,
                 lis->cfg->pool_name);
    }
    if (c->admin.enabled) {
        int r = admin_start(srv, &c->admin.bind, &srv->admin, err, errlen);
        if (r < 0)
            return r;
        log_info("admin endpoint on http://%s/ (/metrics, /stats, /healthz)",
                 c->admin.bind.text);
    }
    uv_timer_init(srv->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    int nchecks = check_start_all(srv);
    if (nchecks < 0) {
        snprintf(err, errlen, "health checks: %s", strerror(-nchecks));
        return nchecks;
    }
    log_info("isn mode %s (configured %s)", isn_mode_name(srv->isn_mode),
             isn_mode_name(c->reuse.isn));
    return 0;
}

/* ---- shutdown -------------------------------------------------------------------- */

static void on_drain_deadline(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_warn("drain time (%u ms) is over: closing %llu remaining connections",
             srv->cfg->drain_timeout_ms, (unsigned long long)srv->sessions_active);
    session_abort_all(srv);
}

static void drained(struct server *srv)
{
    if (srv->draining != 1)
        return;
    srv->draining = 2; /* on_drained runs once */
    uv_timer_stop(&srv->drain_timer);
    /* Every connection is gone, so the TIME_WAIT table is final: keep it for the next
     * start. */
    if (srv->cfg->reuse.state_file)
        statefile_save(srv, srv->cfg->reuse.state_file);
    if (srv->on_drained)
        srv->on_drained(srv);
}

void server_session_gone(struct server *srv)
{
    if (srv->draining == 1 && srv->sessions_active == 0)
        drained(srv);
}

void server_drain(struct server *srv)
{
    if (srv->draining)
        return;
    srv->draining = 1;
    for (size_t i = 0; i < srv->cfg->n_listeners; i++) {
        struct listener_rt *lis = &srv->listeners[i];
        if (lis->open) {
            lis->open = 0;
            uv_close((uv_handle_t *)&lis->handle, NULL);
        }
    }
    log_info("draining: %llu connections open, waiting up to %u ms",
             (unsigned long long)srv->sessions_active, srv->cfg->drain_timeout_ms);
    if (srv->sessions_active == 0) {
        drained(srv);
        return;
    }
    uv_timer_start(&srv->drain_timer, on_drain_deadline, srv->cfg->drain_timeout_ms, 0);
}

void server_close(struct server *srv)
{
    for (size_t i = 0; i < srv->cfg->n_listeners; i++) {
        struct listener_rt *lis = &srv->listeners[i];
        if (lis->open) {
            lis->open = 0;
            uv_close((uv_handle_t *)&lis->handle, NULL);
        }
    }
    check_stop_all(srv);
    if (srv->admin) {
        admin_close(srv->admin);
        srv->admin = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&srv->drain_timer))
        uv_close((uv_handle_t *)&srv->drain_timer, NULL);
}

void server_free(struct server *srv)
{
    if (!srv)
        return;
    session_free_cache(srv);
    if (srv->pools) {
        for (size_t p = 0; p < srv->cfg->n_pools; p++) {
            struct pool_rt *pool = &srv->pools[p];
            if (!pool->cfg)
                continue; /* never built (out of memory earlier) */
            if (pool->backends)
                for (size_t b = 0; b < pool->cfg->n_backends; b++) {
                    struct backend_rt *be = &pool->backends[b];
                    if (be->paths)
                        for (size_t i = 0; i < pool->cfg->n_inside; i++)
                            portmap_free(be->paths[i].pm);
                    free(be->paths);
                }
            balancer_free(pool->bal);
            free(pool->backends);
            free(pool->view);
            free(pool->usable);
        }
    }
    free(srv->pools);
    free(srv->listeners);
    free(srv);
}
