/* worker.c - see worker.h. */
#include "runtime/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os/log.h"
#include "runtime/backend.h"
#include "runtime/buffers.h"
#include "runtime/check.h"
#include "runtime/clients.h"
#include "runtime/evpoll.h"
#include "runtime/gen.h"
#include "runtime/listener.h"
#include "runtime/limits.h"
#include "runtime/session.h"
#include "runtime/state.h"
#include "runtime/timers.h"

/* How often the worker looks at every backend: health changes that no connection
 * noticed (an ejection that ended) are logged, expired port entries are dropped. */
#define TICK_MS 1000

/* glibc keeps what a burst of closed connections freed in its arenas: after 9,900 idle
 * connections closed, twlb stayed 9 MB above where it started (tests/faults,
 * test_scale).  Once the live sessions have fallen by this many from their peak, the
 * next tick hands the free memory back (malloc_trim walks every arena; it runs at most
 * once a second, and only after such a fall, so a steady load never pays for it). */
#define TRIM_AFTER_FALL 1024

static void trim_after_a_fall(struct worker *w)
{
    if (w->sessions_peak < w->sessions_active + TRIM_AFTER_FALL)
        return;
    w->sessions_peak = w->sessions_active;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void on_tick(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t now = worker_now_ms(w);
    struct gen *g = w->cur;
    if (w->reserve_fd < 0) /* taken by a shortage of descriptors (listener.c) */
        w->reserve_fd = open("/", O_RDONLY | O_CLOEXEC);
    if (!w->draining)
        listener_resume_all(g);
    limits_resume(w);
    for (size_t p = 0; p < g->cfg->n_pools; p++)
        for (size_t b = 0; b < g->cfg->pools[p].n_backends; b++) {
            struct backend_rt *be = &g->pools[p].backends[b];
            (void)backend_usable(be, now);
            pathset_expire(be->ps, now);
        }
    backend_state_log_flush(w, now);
    queue_kick(w); /* a backend may have come back up */
    clients_tick(w, now);
    trim_after_a_fall(w);
}

static void on_deadline(uv_timer_t *t)
{
    struct worker *w = t->data;
    log_warn("drain time (%u ms) is over: closing %llu remaining connections%s",
             w->cur->cfg->drain_timeout_ms, (unsigned long long)w->sessions_active,
             w->nworkers > 1 ? " of this worker" : "");
    session_abort_all(w);
}

struct worker *worker_new(uv_loop_t *loop, unsigned index, unsigned nworkers,
                          const struct isn_key *key, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->loop = loop;
    int r = evpoll_open(w); /* the data path's sockets (evpoll.h) */
    if (r < 0) {
        snprintf(err, errlen, "epoll: %s", strerror(-r));
        free(w);
        return NULL;
    }
    w->reserve_fd = open("/", O_RDONLY | O_CLOEXEC); /* see listener.c: drop_waiting */
    w->index = index;
    w->nworkers = nworkers;
    w->isn_key = *key;
    uv_timer_init(loop, &w->tick);
    uv_timer_init(loop, &w->deadline);
    w->tick.data = w->deadline.data = w;
    timers_init(w);
    return w;
}

int worker_start(struct worker *w, struct config *cfg, char *err, size_t errlen)
{
    if (!w->clients) { /* no group gave it the shared one: a worker alone (tests) */
        if (!(w->clients = clients_registry_new())) {
            snprintf(err, errlen, "out of memory");
            config_free(cfg);
            return -ENOMEM;
        }
        w->clients_own = 1;
    }
    struct gen *g = gen_new(w, cfg, NULL, err, errlen);
    if (!g) {
        config_free(cfg);
        return -ENOMEM;
    }
    w->cur = w->gens = g;
    if (limits_init(w) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* What the backends and our kernel still remember, before the first connect. */
    state_load(g);
    int r = listener_open_all(g, NULL, err, errlen);
    if (r < 0)
        return r;
    listener_commit_all(g);
    gen_commit(g);
    if (w->index == 0) { /* one probe per backend, not one per worker */
        int n = check_start_all(g);
        if (n < 0) {
            snprintf(err, errlen, "health checks: %s", strerror(-n));
            return n;
        }
    }
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    if (w->index == 0)
        log_info("isn mode %s (configured %s)", isn_mode_name(g->isn_mode),
                 isn_mode_name(g->cfg->reuse.isn));
    return 0;
}

int worker_reload_prepare(struct worker *w, struct config *cfg, char *err, size_t errlen)
{
    if (w->draining) {
        snprintf(err, errlen, "draining");
        config_free(cfg);
        return -EBUSY;
    }
    struct gen *g = gen_new(w, cfg, w->cur, err, errlen);
    if (!g) {
        config_free(cfg);
        return -ENOMEM;
    }
    int r = listener_open_all(g, w->cur, err, errlen);
    if (r < 0) {
        gen_free(g);
        return r;
    }
    w->next = g;
    return 0;
}

void worker_reload_abort(struct worker *w)
{
    if (!w->next)
        return;
    listener_give_back(w->next, w->cur);
    gen_free(w->next);
    w->next = NULL;
}

void worker_reload_commit(struct worker *w)
{
    struct gen *old = w->cur, *g = w->next;
    if (!g)
        return;
    w->next = NULL;
    g->next = w->gens;
    w->gens = g;
    w->cur = g;
    listener_commit_all(g);
    gen_commit(g);
    check_stop_all(old);
    listener_close_all(old); /* the listeners that are not in the new config */
    limits_resume(w);        /* the limits may have changed */
    gen_retire(old);         /* its sessions finish on their old backends */
    if (w->index == 0) {
        int n = check_start_all(g);
        if (n < 0)
            log_error("reload: health checks: %s", strerror(-n));
        log_info("isn mode %s (configured %s)", isn_mode_name(g->isn_mode),
                 isn_mode_name(g->cfg->reuse.isn));
    }
}

void worker_drain(struct worker *w, void (*on_drained)(struct worker *w))
{
    if (w->draining)
        return;
    w->draining = 1;
    w->on_drained = on_drained;
    for (struct gen *g = w->gens; g; g = g->next)
        listener_close_all(g);
    const struct config *c = w->cur->cfg;
    if (w->index == 0)
        log_info("draining: connections open, waiting up to %u ms", c->drain_timeout_ms);
    if (w->sessions_active)
        uv_timer_start(&w->deadline, on_deadline, c->drain_timeout_ms, 0);
    gen_check_drained(w);
}

void worker_run(uv_loop_t *loop, struct worker *w)
{
    if (w)
        evpoll_run(w);
    else
        uv_run(loop, UV_RUN_DEFAULT);
}

void worker_close(struct worker *w)
{
    for (struct gen *g = w->gens; g; g = g->next) {
        listener_close_all(g);
        check_stop_all(g);
    }
    worker_reload_abort(w);
    if (!uv_is_closing((uv_handle_t *)&w->tick)) {
        uv_close((uv_handle_t *)&w->tick, NULL);
        uv_close((uv_handle_t *)&w->deadline, NULL);
        timers_close(w);
        evpoll_close_all(w);
    }
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    evpoll_close_all(w); /* when worker_close() never ran (a failed start) */
    session_free_cache(w);
    buffers_free_all(w);
    limits_free(w);
    gen_pool_stats_free(w);
    if (w->reserve_fd >= 0)
        close(w->reserve_fd);
    while (w->gens) {
        struct gen *g = w->gens;
        w->gens = g->next;
        gen_free(g);
    }
    if (w->clients_own)
        clients_registry_free(w->clients);
    free(w);
}

const struct config *worker_config(const struct worker *w)
{
    return w->cur->cfg;
}

int worker_backend_action(struct worker *w, const char *pool, const char *backend,
                          const char *action, uint64_t now_ms)
{
    struct backend_rt *be = gen_find_backend(w->cur, pool, backend);
    return be ? backend_set_admin(w->cur, be, action, now_ms) : -1;
}
