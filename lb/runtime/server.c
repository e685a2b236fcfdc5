/* server.c - one worker's runtime: pools and port maps built from the config, the
 * listeners, the drain on shutdown, and the choice of backend + inside address + port
 * for each new backend connection. */
#include "runtime/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "admin/admin.h"
#include "runtime/check.h"
#include "os/kdiag.h"
#include "os/log.h"
#include "runtime/session.h"
#include "os/statefile.h"
#include "os/sockprep.h"

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
    pol->rule.kind = be->sh->demoted ? TWRULE_STRICT : be->cfg->time_wait.rule;
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
    int can = sockprep_can_repair(AF_INET) || sockprep_can_repair(AF_INET6);
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

static int same_addr(const struct cfg_addr *a, const struct cfg_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* The previous generation's backend with the same pool name, backend name and address:
 * its counters, health and port maps carry over a reload. */
static struct backend_rt *find_prev_backend(const struct server *prev, const char *pool,
                                            const struct cfg_backend *b)
{
    if (!prev)
        return NULL;
    for (size_t p = 0; p < prev->cfg->n_pools; p++) {
        const struct cfg_pool *pc = &prev->cfg->pools[p];
        if (strcmp(pc->name, pool))
            continue;
        for (size_t i = 0; i < pc->n_backends; i++)
            if (!strcmp(pc->backends[i].name, b->name) && same_addr(&pc->backends[i].addr, &b->addr))
                return &prev->pools[p].backends[i];
    }
    return NULL;
}

struct carry {
    portmap *to;
};

static void carry_entry(void *arg, const struct portmap_entry *e)
{
    struct carry *c = arg;
    if (e->state != PM_BUSY)
        (void)portmap_restore(c->to, e->port, e->state, e->until_ms, e->isn_known, e->rcv_nxt);
}

/* The path toward <be> from inside address <k>: shared with the previous generation when
 * it had the same one; a new port range starts a new map that keeps what the old one
 * remembered about the ports still in range. */
static struct path_rt *make_path(struct server *srv, struct backend_rt *be,
                                 struct backend_rt *prev_be, size_t k,
                                 const struct portmap_policy *pol)
{
    const struct cfg_pool *pc = be->pool->cfg;
    const struct cfg_addr *inside = &pc->inside[k];
    struct path_rt *old = NULL;
    if (prev_be)
        for (size_t j = 0; j < prev_be->pool->cfg->n_inside; j++)
            if (same_addr(&prev_be->pool->cfg->inside[j], inside))
                old = prev_be->paths[j];
    int same_range = prev_be && prev_be->pool->cfg->port_lo == pc->port_lo &&
                     prev_be->pool->cfg->port_hi == pc->port_hi;
    if (old && old->pm && same_range) {
        old->refs++;
        portmap_set_policy(old->pm, pol);
        return old;
    }
    struct path_rt *path = calloc(1, sizeof *path);
    if (!path)
        return NULL;
    path->refs = 1;
    if (inside->ss.ss_family != be->cfg->addr.ss.ss_family)
        return path; /* an IPv4 inside address cannot reach an IPv6 backend: no map */
    path->pm = portmap_new(pc->port_lo, pc->port_hi, pol);
    if (!path->pm) {
        free(path);
        return NULL;
    }
    if (old && old->pm) {
        struct carry c = {path->pm};
        portmap_foreach(old->pm, carry_entry, &c);
        path->reuses_total = old->reuses_total;
    }
    (void)srv;
    return path;
}

struct server *server_new(uv_loop_t *loop, const struct config *cfg, const struct server *prev,
                          char *err, size_t errlen)
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
    if (prev) {
        srv->isn_key = prev->isn_key;
    } else if (getrandom(srv->isn_key.k, sizeof srv->isn_key.k, 0) != sizeof srv->isn_key.k) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        free(srv);
        return NULL;
    }
    srv->listeners = calloc(cfg->n_listeners, sizeof *srv->listeners);
    srv->pools = calloc(cfg->n_pools, sizeof *srv->pools);
    if (!srv->listeners || !srv->pools)
        goto oom;
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
            pool->view[b].weight = be->cfg->weight;
            struct backend_rt *prev_be = find_prev_backend(prev, pc->name, be->cfg);
            uint32_t rise = be->cfg->health.enabled ? be->cfg->health.rise : 1;
            uint32_t fall = be->cfg->health.enabled ? be->cfg->health.fall : 1;
            if (prev_be) {
                be->sh = prev_be->sh;
                be->sh->refs++;
                be->sh->health.rise = rise;
                be->sh->health.fall = fall;
            } else {
                be->sh = calloc(1, sizeof *be->sh);
                if (!be->sh)
                    goto oom;
                be->sh->refs = 1;
                health_init(&be->sh->health, rise, fall, PASSIVE_EJECT_AFTER,
                            PASSIVE_EJECT_BASE_MS, PASSIVE_EJECT_MAX_MS);
                be->sh->was_usable = 1;
            }
            be->paths = calloc(pc->n_inside, sizeof *be->paths);
            if (!be->paths)
                goto oom;
            struct portmap_policy pol;
            backend_policy(srv, be, &pol);
            for (size_t i = 0; i < pc->n_inside; i++)
                if (!(be->paths[i] = make_path(srv, be, prev_be, i, &pol)))
                    goto oom;
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
    if (be->sh->demoted || srv->isn_mode != ISN_EXPLICIT ||
        be->sh->reuse_rejects_in_row < REJECTS_BEFORE_DEMOTION)
        return;
    /* Our ISNs are "after" by construction, so a backend that keeps ignoring them does
     * not follow the rule it was configured with.  Stop reusing its TIME_WAIT. */
    be->sh->demoted = 1;
    log_error("pool %s: backend %s (%s) rejected %u TIME_WAIT reuses in a row although "
              "their ISNs obeyed the \"%s\" rule; treating it as \"strict\" from now on "
              "(fix its time_wait.rule in the config)",
              be->pool->cfg->name, be->cfg->name, be->cfg->addr.text,
              be->sh->reuse_rejects_in_row, twrule_kind_name(be->cfg->time_wait.rule));
    struct portmap_policy pol;
    backend_policy(srv, be, &pol);
    for (size_t i = 0; i < be->pool->cfg->n_inside; i++)
        if (be->paths[i]->pm)
            portmap_set_policy(be->paths[i]->pm, &pol);
}

int server_backend_usable(struct server *srv, struct backend_rt *be, uint64_t now_ms)
{
    int usable = health_usable(&be->sh->health, now_ms);
    if (usable != be->sh->was_usable) {
        /* Logged and counted once per change, whoever notices it first. */
        be->sh->was_usable = usable;
        be->sh->st.state_changes_total++;
        if (usable)
            log_warn("pool %s: backend %s (%s) is up", be->pool->cfg->name, be->cfg->name,
                     be->cfg->addr.text);
        else
            log_warn("pool %s: backend %s (%s) is down%s", be->pool->cfg->name,
                     be->cfg->name, be->cfg->addr.text,
                     be->sh->health.up ? " (ejected after consecutive connect failures)" : "");
    }
    return usable;
}

void server_connect_result(struct server *srv, struct backend_rt *be, int ok)
{
    uint64_t now = server_now_ms(srv);
    uint32_t before = be->sh->health.ejections_in_row;
    health_connect_result(&be->sh->health, ok, now);
    if (be->sh->health.ejections_in_row > before)
        be->sh->st.ejections_total++;
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
    if (be->sh->admin != to)
        log_warn("pool %s: backend %s %s by the operator (was %s)", pool, backend,
                 server_backend_admin_name(to), server_backend_admin_name(be->sh->admin));
    be->sh->admin = to;
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
        pool->usable[b] = be->sh->admin == BE_ENABLED && server_backend_usable(srv, be, now_ms);
        /* Live connections of every generation count, also those from before a reload. */
        pool->view[b].active = be->sh->active;
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
        portmap *pm = be->paths[path]->pm;
        if (pm && portmap_acquire(pm, now_ms, real_ns, mono_ns, &out->port) == 0) {
            pool->next_inside = path + 1;
            out->be = be;
            out->path = path;
            return 0;
        }
    }
    be->sh->st.ports_exhausted_total++;
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

int server_sockprep_socket(struct server *srv, struct server_pick *pick, int *isn_known,
                           uint32_t *isn)
{
    for (int tries = 0; tries < REFUSED_PORTS_MAX; tries++) {
        struct backend_rt *be = pick->be;
        const struct cfg_addr *inside = &be->pool->cfg->inside[pick->path];
        portmap *pm = be->paths[pick->path]->pm;
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
            fd = sockprep_socket((struct sockaddr *)&inside->ss, pick->port.port, *isn_known,
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
    portmap_quarantine(be->paths[pick->path]->pm, pick->port.port, server_now_ms(srv));
    return -ENOSPC;
}

/* ---- what our kernel remembers -------------------------------------------------- */

struct tw_load {
    struct server *srv;
    size_t pool, inside;
    uint64_t now;
    int loaded;
};

static void on_kernel_tw(void *arg, const struct kdiag_tw *tw)
{
    struct tw_load *l = arg;
    const struct cfg_pool *pc = &l->srv->cfg->pools[l->pool];
    for (size_t b = 0; b < pc->n_backends; b++) {
        const struct cfg_addr *ba = &pc->backends[b].addr;
        if (ba->ss.ss_family != tw->remote.ss_family)
            continue;
        int same = ba->ss.ss_family == AF_INET
                       ? !memcmp(&((const struct sockaddr_in *)&ba->ss)->sin_addr,
                                 &((const struct sockaddr_in *)&tw->remote)->sin_addr, 4) &&
                             ((const struct sockaddr_in *)&ba->ss)->sin_port ==
                                 ((const struct sockaddr_in *)&tw->remote)->sin_port
                       : !memcmp(&((const struct sockaddr_in6 *)&ba->ss)->sin6_addr,
                                 &((const struct sockaddr_in6 *)&tw->remote)->sin6_addr, 16) &&
                             ((const struct sockaddr_in6 *)&ba->ss)->sin6_port ==
                                 ((const struct sockaddr_in6 *)&tw->remote)->sin6_port;
        if (!same)
            continue;
        portmap *pm = l->srv->pools[l->pool].backends[b].paths[l->inside]->pm;
        if (pm && portmap_restore(pm, tw->local_port, PM_LOCAL_TW, l->now + tw->expires_ms, 0,
                                  0) == 0)
            l->loaded++;
    }
}

/* Our own TIME_WAIT sockets toward the backends survive a restart in the kernel: load
 * them (inet_diag, kernel-facts 5) so a port whose TIME_WAIT our kernel still holds is
 * treated as such.  Without the netlink permission this is skipped, with a warning. */
static void server_load_kernel_time_wait(struct server *srv)
{
    const struct config *c = srv->cfg;
    struct tw_load l = {.srv = srv, .now = server_now_ms(srv)};
    for (size_t p = 0; p < c->n_pools; p++)
        for (size_t i = 0; i < c->pools[p].n_inside; i++) {
            const struct cfg_addr *in = &c->pools[p].inside[i];
            const void *addr = in->ss.ss_family == AF_INET
                                   ? (const void *)&((const struct sockaddr_in *)&in->ss)->sin_addr
                                   : (const void *)&((const struct sockaddr_in6 *)&in->ss)->sin6_addr;
            l.pool = p;
            l.inside = i;
            int r = kdiag_list_time_wait(in->ss.ss_family, addr, on_kernel_tw, &l);
            if (r < 0)
                log_warn("cannot list TIME_WAIT sockets of %s: %s", in->text, strerror(-r));
        }
    if (l.loaded)
        log_info("loaded %d of our own TIME_WAIT sockets toward the backends from the kernel",
                 l.loaded);
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

static void listener_closed(uv_handle_t *h)
{
    free(h->data); /* sessions keep no pointer to their listener */
}

static void listener_close(struct listener_rt *lis)
{
    if (lis)
        uv_close((uv_handle_t *)&lis->handle, listener_closed);
}

static struct listener_rt *listener_open(struct server *srv, const struct cfg_listener *lc,
                                         char *err, size_t errlen)
{
    struct listener_rt *lis = calloc(1, sizeof *lis);
    if (!lis) {
        snprintf(err, errlen, "listener %s: out of memory", lc->name);
        return NULL;
    }
    lis->srv = srv;
    lis->cfg = lc;
    uv_tcp_init(srv->loop, &lis->handle);
    lis->handle.data = lis;
    int r = uv_tcp_bind(&lis->handle, (const struct sockaddr *)&lc->bind.ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&lis->handle, (int)lc->backlog, on_connection);
    if (r < 0) {
        snprintf(err, errlen, "listener %s: cannot listen on %s: %s", lc->name, lc->bind.text,
                 uv_strerror(r));
        listener_close(lis);
        return NULL;
    }
    log_info("listener %s on %s -> pool %s", lc->name, lc->bind.text, lc->pool_name);
    return lis;
}

/* Listeners whose address did not change move to the new generation: the socket stays
 * open, so no client is refused during a reload.  On failure everything taken is given
 * back and everything opened is closed. */
static int take_listeners(struct server *srv, struct server *prev, char *err, size_t errlen)
{
    const struct config *c = srv->cfg;
    size_t *from = calloc(c->n_listeners, sizeof *from); /* prev index + 1, 0: new */
    if (!from) {
        snprintf(err, errlen, "out of memory");
        return UV_ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < c->n_listeners && rc == 0; i++) {
        const struct cfg_listener *lc = &c->listeners[i];
        for (size_t j = 0; prev && j < prev->cfg->n_listeners && !srv->listeners[i]; j++) {
            struct listener_rt *old = prev->listeners[j];
            if (old && old->cfg->bind.len == lc->bind.len &&
                !memcmp(&old->cfg->bind.ss, &lc->bind.ss, lc->bind.len) &&
                old->cfg->backlog == lc->backlog) {
                srv->listeners[i] = old;
                prev->listeners[j] = NULL;
                from[i] = j + 1;
            }
        }
        if (!srv->listeners[i] && !(srv->listeners[i] = listener_open(srv, lc, err, errlen)))
            rc = UV_EADDRINUSE;
    }
    if (rc < 0) {
        for (size_t i = 0; i < c->n_listeners; i++) {
            if (from[i])
                prev->listeners[from[i] - 1] = srv->listeners[i];
            else
                listener_close(srv->listeners[i]);
            srv->listeners[i] = NULL;
        }
    } else {
        for (size_t i = 0; i < c->n_listeners; i++) {
            srv->listeners[i]->srv = srv;
            srv->listeners[i]->cfg = &c->listeners[i];
        }
    }
    free(from);
    return rc;
}

/* The admin endpoint outlives a generation (a reload keeps its socket), so its hooks read
 * whichever server holds it now.  One endpoint per process: one slot. */
static struct server *admin_current;

static const struct view *admin_view(void *arg)
{
    return (const struct view *)*(struct server **)arg;
}

static int admin_backend_action(void *arg, const char *pool, const char *backend,
                                const char *action)
{
    struct server *srv = *(struct server **)arg;
    return srv ? server_backend_admin(srv, pool, backend, action) : -1;
}

int server_start(struct server *srv, struct server *prev, char *err, size_t errlen)
{
    const struct config *c = srv->cfg;
    if (!prev) {
        /* What the backends and our kernel still remember, before the first connect. */
        if (c->reuse.state_file)
            statefile_load(srv, c->reuse.state_file);
        server_load_kernel_time_wait(srv);
    }
    struct admin *admin = NULL;
    char token[ADMIN_TOKEN_MAX] = "";
    if (c->admin.enabled && admin_read_token(c->admin.token_file, token, err, errlen) < 0)
        return UV_EINVAL;
    if (c->admin.enabled) {
        const struct cfg_addr *was = prev && prev->admin ? &prev->cfg->admin.bind : NULL;
        if (was && was->len == c->admin.bind.len &&
            !memcmp(&was->ss, &c->admin.bind.ss, was->len)) {
            admin = prev->admin; /* same address: keep the socket */
        } else {
            const struct admin_hooks hooks = {admin_view, admin_backend_action, &admin_current};
            int r = admin_start(srv->loop, &c->admin.bind, &hooks, &admin, err, errlen);
            if (r < 0)
                return r;
            log_info("admin endpoint on http://%s/ (/metrics, /stats, /healthz)",
                     c->admin.bind.text);
        }
    }
    int r = take_listeners(srv, prev, err, errlen);
    if (r < 0) {
        if (admin && (!prev || admin != prev->admin))
            admin_close(admin);
        return r;
    }
    if (admin) {
        if (prev && admin == prev->admin)
            prev->admin = NULL;
        admin_set_token(admin, token);
        srv->admin = admin;
        admin_current = srv;
    }
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

static void drained(struct server *srv)
{
    if (srv->draining != 1)
        return;
    srv->draining = 2; /* on_drained runs once */
    /* Every connection is gone, so the TIME_WAIT table is final: keep it for the next
     * start. */
    if (!srv->retired && srv->cfg->reuse.state_file)
        statefile_save(srv, srv->cfg->reuse.state_file);
    if (srv->on_drained)
        srv->on_drained(srv);
}

/* A retired generation is freed only when nothing can reach it any more: no session and
 * no handle of its own still closing (libuv runs close callbacks in any order). */
static void maybe_gone(struct server *srv)
{
    if (srv->retired && srv->sessions_active == 0 && srv->handles_closing == 0 &&
        srv->on_gone) {
        void (*gone)(struct server *) = srv->on_gone;
        srv->on_gone = NULL;
        gone(srv); /* frees srv */
    }
}

void server_session_gone(struct server *srv)
{
    if (srv->draining == 1 && srv->sessions_active == 0)
        drained(srv); /* the current generation may end the process here */
    maybe_gone(srv);  /* a retired one is freed here */
}

static void close_listeners(struct server *srv)
{
    for (size_t i = 0; i < srv->cfg->n_listeners; i++) {
        listener_close(srv->listeners[i]);
        srv->listeners[i] = NULL;
    }
}

void server_drain(struct server *srv)
{
    if (srv->draining)
        return;
    srv->draining = 1;
    close_listeners(srv);
    if (!srv->retired)
        log_info("draining: %llu connections open, waiting up to %u ms",
                 (unsigned long long)srv->sessions_active, srv->cfg->drain_timeout_ms);
    if (srv->sessions_active == 0)
        drained(srv);
}

void server_close(struct server *srv)
{
    close_listeners(srv);
    check_stop_all(srv);
    if (srv->admin) {
        admin_close(srv->admin);
        srv->admin = NULL;
        if (admin_current == srv)
            admin_current = NULL;
    }
}

void server_retire(struct server *srv, void (*on_gone)(struct server *srv))
{
    srv->retired = 1;
    srv->on_gone = on_gone;
    srv->on_drained = NULL; /* only the current generation ends the process */
    /* Its live sessions finish on their old backends; it takes no new ones. */
    server_close(srv);
    maybe_gone(srv);
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
                        for (size_t i = 0; i < pool->cfg->n_inside; i++) {
                            struct path_rt *path = be->paths[i];
                            if (path && --path->refs == 0) {
                                portmap_free(path->pm);
                                free(path);
                            }
                        }
                    free(be->paths);
                    if (be->sh && --be->sh->refs == 0)
                        free(be->sh);
                }
            balancer_free(pool->bal);
            free(pool->backends);
            free(pool->view);
            free(pool->usable);
        }
    }
    free(srv->pools);
    if (srv->listeners)
        for (size_t i = 0; i < srv->cfg->n_listeners; i++)
            if (srv->listeners[i])
                free(srv->listeners[i]); /* never opened: nothing to close */
    free(srv->listeners);
    free(srv);
}
