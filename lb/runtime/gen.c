/* gen.c - see gen.h. */
#include "runtime/gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/random.h>

#include "os/clock.h"
#include "os/sockprep.h"
#include "runtime/backend.h"
#include "runtime/state.h"
#include "runtime/timers.h"
#include "runtime/clients.h"
#include "runtime/listener_stats.h"

/* Passive ejection: this many failed connects in a row take a backend out for 1 s,
 * doubling per ejection in a row up to 60 s (core/health.h). */
#define PASSIVE_EJECT_AFTER 3
#define PASSIVE_EJECT_BASE_MS 1000
#define PASSIVE_EJECT_MAX_MS 60000

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

/* The previous generation's backends by (pool name, backend name): a reload of 10,000
 * backends searched them linearly for each new one (100 M compares, half a second on
 * the worker's loop); an open-addressing table built once per reload makes it O(n). */
struct prev_index {
    const struct backend_rt **slot;
    size_t mask;
};

static uint64_t name_hash(const char *pool, const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = pool; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int prev_index_build(struct prev_index *ix, const struct gen *prev)
{
    memset(ix, 0, sizeof *ix);
    if (!prev)
        return 0;
    size_t n = 0, cap = 16;
    for (size_t p = 0; p < prev->cfg->n_pools; p++)
        n += prev->cfg->pools[p].n_backends;
    while (cap < 2 * n)
        cap *= 2;
    if (!(ix->slot = calloc(cap, sizeof *ix->slot)))
        return -1;
    ix->mask = cap - 1;
    for (size_t p = 0; p < prev->cfg->n_pools; p++)
        for (size_t b = 0; b < prev->cfg->pools[p].n_backends; b++) {
            const struct backend_rt *be = &prev->pools[p].backends[b];
            size_t i = name_hash(prev->cfg->pools[p].name, be->cfg->name) & ix->mask;
            while (ix->slot[i])
                i = (i + 1) & ix->mask;
            ix->slot[i] = be;
        }
    return 0;
}

/* The previous generation's backend with the same pool name, backend name and address. */
static const struct backend_rt *find_prev_backend(const struct prev_index *ix,
                                                  const char *pool,
                                                  const struct cfg_backend *b)
{
    if (!ix->slot)
        return NULL;
    for (size_t i = name_hash(pool, b->name) & ix->mask; ix->slot[i]; i = (i + 1) & ix->mask) {
        const struct backend_rt *be = ix->slot[i];
        if (!strcmp(be->cfg->name, b->name) && !strcmp(be->pool->cfg->name, pool))
            return same_addr(&be->cfg->addr, &b->addr) ? be : NULL;
    }
    return NULL;
}

static void inside_key(const struct cfg_addr *a, struct pathset_inside *out)
{
    memset(out, 0, sizeof *out);
    out->family = a->ss.ss_family;
    if (a->ss.ss_family == AF_INET) {
        out->len = 4;
        memcpy(out->addr, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
    } else {
        out->len = 16;
        memcpy(out->addr, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
    }
}

static int build_backend(struct gen *g, struct pool_rt *pool, size_t b,
                         const struct prev_index *prev, const struct pathset_inside *inside)
{
    const struct cfg_pool *pc = pool->cfg;
    struct backend_rt *be = &pool->backends[b];
    be->cfg = &pc->backends[b];
    be->pool = pool;
    be->index = b;
    pool->view[b].name = be->cfg->name;
    pool->view[b].weight = be->cfg->weight;
    const struct backend_rt *prev_be = find_prev_backend(prev, pc->name, be->cfg);
    if (prev_be) {
        be->sh = prev_be->sh; /* thresholds and policy follow in gen_commit() */
        be->sh->refs++;
    } else {
        if (!(be->sh = calloc(1, sizeof *be->sh)))
            return -1;
        struct worker *w = g->w;
        if (w->shared_flags && !(be->sh->flags = w->shared_flags(w->shared_arg, pc->name,
                                                                 be->cfg))) {
            free(be->sh);
            be->sh = NULL;
            return -1;
        }
        be->sh->refs = 1;
        uint32_t rise = be->cfg->health.enabled ? be->cfg->health.rise : 1;
        uint32_t fall = be->cfg->health.enabled ? be->cfg->health.fall : 1;
        health_init(&be->sh->health, rise, fall, PASSIVE_EJECT_AFTER, PASSIVE_EJECT_BASE_MS,
                    PASSIVE_EJECT_MAX_MS);
        be->sh->probes_here = w->index == 0;
        if (be->sh->flags) { /* what the probes and the other workers found so far */
            be->sh->health.up = __atomic_load_n(&be->sh->flags->up, __ATOMIC_ACQUIRE);
            be->sh->health.back_since_ms =
                __atomic_load_n(&be->sh->flags->up_since_ms, __ATOMIC_ACQUIRE);
            be->sh->demoted = __atomic_load_n(&be->sh->flags->demoted, __ATOMIC_ACQUIRE);
        }
        be->sh->was_usable = be->sh->health.up;
        be->sh->conns.next = be->sh->conns.prev = &be->sh->conns;
    }
    struct portmap_policy pol;
    backend_policy(g, be, &pol);
    uint16_t lo, hi;
    worker_slice(g->w, pc, &lo, &hi);
    be->ps = pathset_new(be->cfg->addr.ss.ss_family, inside, pc->n_inside, lo, hi, &pol,
                         prev_be ? prev_be->ps : NULL);
    if (!be->ps)
        return -1;
    state_attach(g, be, prev_be); /* every change of its ports goes to the state file */
    return 0;
}

static void gen_destroy(struct gen *g, int own_cfg);

/* The worker's stats of pool <name>, made on first use; NULL on OOM. */
static struct pool_stats *pool_stats_of(struct worker *w, const char *name)
{
    for (struct pool_stats *ps = w->pool_stats; ps; ps = ps->next)
        if (!strcmp(ps->name, name))
            return ps;
    struct pool_stats *ps = calloc(1, sizeof *ps);
    if (!ps || !(ps->name = strdup(name))) {
        free(ps);
        return NULL;
    }
    ps->next = w->pool_stats;
    w->pool_stats = ps;
    return ps;
}

void gen_pool_stats_free(struct worker *w)
{
    while (w->pool_stats) {
        struct pool_stats *ps = w->pool_stats;
        w->pool_stats = ps->next;
        free(ps->name);
        free(ps);
    }
}

struct gen *gen_new(struct worker *w, struct config *cfg, const struct gen *prev, char *err,
                    size_t errlen)
{
    struct gen *g = calloc(1, sizeof *g);
    if (!g)
        goto oom;
    g->w = w;
    if (resolve_isn_mode(cfg, &g->isn_mode, err, errlen) < 0) {
        free(g);
        return NULL;
    }
    g->listeners = calloc(cfg->n_listeners, sizeof *g->listeners);
    g->clients = calloc(cfg->n_listeners, sizeof *g->clients);
    g->pools = calloc(cfg->n_pools, sizeof *g->pools);
    if (!g->listeners || !g->clients || !g->pools)
        goto oom;
    g->cfg = cfg; /* from here on gen_free() walks it; undone on failure below */
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *lc = &cfg->listeners[i];
        if ((lc->max_conns_per_client || lc->rate_per_client) &&
            !(g->clients[i] = clients_get(w->clients, lc->name)))
            goto oom;
    }
    uint64_t seed; /* for the balancers that draw (power of two choices) */
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = clock_mono_ns();
    struct prev_index ix;
    if (prev_index_build(&ix, prev) < 0)
        goto oom;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        struct pool_rt *pool = &g->pools[p];
        const struct cfg_pool *pc = &cfg->pools[p];
        pool->cfg = pc;
        pool->gen = g;
        pool->index = p;
        pool->st = pool_stats_of(w, pc->name);
        pool->backends = calloc(pc->n_backends, sizeof *pool->backends);
        pool->view = calloc(pc->n_backends, sizeof *pool->view);
        pool->usable = calloc(pc->n_backends, 1);
        struct pathset_inside *inside = calloc(pc->n_inside, sizeof *inside);
        if (!pool->backends || !pool->view || !pool->usable || !inside) {
            free(inside);
            free(ix.slot);
            goto oom;
        }
        for (size_t i = 0; i < pc->n_inside; i++)
            inside_key(&pc->inside[i], &inside[i]);
        int bad = 0;
        for (size_t b = 0; b < pc->n_backends && !bad; b++)
            bad = build_backend(g, pool, b, &ix, inside) < 0;
        free(inside);
        if (bad || !(pool->bal = balancer_new(pc->balance, pool->view, pc->n_backends,
                                              seed + p))) {
            free(ix.slot);
            goto oom;
        }
    }
    free(ix.slot);
    return g;
oom:
    snprintf(err, errlen, "out of memory building the runtime");
    gen_destroy(g, 0);
    return NULL;
}

void gen_commit(struct gen *g)
{
    for (size_t p = 0; p < g->cfg->n_pools; p++)
        for (size_t b = 0; b < g->cfg->pools[p].n_backends; b++) {
            struct backend_rt *be = &g->pools[p].backends[b];
            const struct cfg_health *h = &be->cfg->health;
            be->sh->health.rise = h->enabled ? h->rise : 1;
            be->sh->health.fall = h->enabled ? h->fall : 1;
            if (!h->enabled && !be->sh->health.up && (!be->sh->flags || g->w->index == 0)) {
                /* No probe will ever bring it back: without checks a backend is up, and
                 * slow-starts from now as if a probe had said so.  Worker 0 publishes it
                 * (the time first); the others follow as they follow the probes. */
                uint64_t now = worker_now_ms(g->w);
                health_follow(&be->sh->health, 1, now);
                if (be->sh->flags) {
                    __atomic_store_n(&be->sh->flags->up_since_ms, now, __ATOMIC_RELEASE);
                    __atomic_store_n(&be->sh->flags->up, 1, __ATOMIC_RELEASE);
                }
            }
            struct portmap_policy pol;
            backend_policy(g, be, &pol);
            pathset_set_policy(be->ps, &pol);
        }
}

static void gen_destroy(struct gen *g, int own_cfg)
{
    if (!g)
        return;
    if (g->pools && g->cfg) {
        for (size_t p = 0; p < g->cfg->n_pools; p++) {
            struct pool_rt *pool = &g->pools[p];
            if (pool->backends)
                for (size_t b = 0; b < pool->cfg->n_backends; b++) {
                    struct backend_rt *be = &pool->backends[b];
                    pathset_free(be->ps);
                    if (be->sh && --be->sh->refs == 0)
                        free(be->sh);
                }
            if (pool->gen) /* the queue's timer (queue.h); empty with the last session */
                timers_cancel(pool->gen->w, &pool->q_timer);
            balancer_free(pool->bal);
            free(pool->backends);
            free(pool->view);
            free(pool->usable);
        }
    }
    free(g->pools);
    if (g->listeners && g->cfg)
        for (size_t i = 0; i < g->cfg->n_listeners; i++)
            if (g->listeners[i]) { /* never opened: nothing to close */
                listener_stats_unref(g->listeners[i]->stats);
                free(g->listeners[i]);
            }
    free(g->listeners);
    if (g->clients && g->cfg)
        for (size_t i = 0; i < g->cfg->n_listeners; i++)
            clients_put(g->clients[i]);
    free(g->clients);
    if (own_cfg)
        config_free(g->cfg);
    free(g);
}

void gen_free(struct gen *g)
{
    gen_destroy(g, 1);
}

struct backend_rt *gen_find_backend(const struct gen *g, const char *pool, const char *backend)
{
    for (size_t p = 0; p < g->cfg->n_pools; p++) {
        if (strcmp(g->cfg->pools[p].name, pool))
            continue;
        for (size_t b = 0; b < g->cfg->pools[p].n_backends; b++)
            if (!strcmp(g->cfg->pools[p].backends[b].name, backend))
                return &g->pools[p].backends[b];
    }
    return NULL;
}

void gen_check_drained(struct worker *w)
{
    if (w->draining != 1 || w->sessions_active != 0)
        return;
    w->draining = 2; /* once; the state file is written by the caller (group.c) */
    if (w->on_drained)
        w->on_drained(w);
}

static void maybe_free(struct gen *g)
{
    if (!g->retired || g->sessions_active || g->handles_closing)
        return;
    for (struct gen **p = &g->w->gens; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            break;
        }
    gen_free(g);
}

void gen_session_gone(struct gen *g)
{
    gen_check_drained(g->w); /* may end the process's loop: nothing is freed there */
    maybe_free(g);
}

void gen_handle_closed(struct gen *g)
{
    g->handles_closing--;
    maybe_free(g);
}

void gen_retire(struct gen *g)
{
    g->retired = 1;
    maybe_free(g);
}
