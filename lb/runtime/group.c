/* group.c - see group.h. */
#include "runtime/group.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "os/clock.h"
#include "os/log.h"
#include "os/statefile.h"
#include "runtime/limits.h"
#include "runtime/clients.h"
#include "runtime/session.h"
#include "runtime/shared.h"
#include "runtime/snapshot.h"
#include "runtime/state.h"
#include "runtime/worker.h"

struct slot;

/* One message to a worker: run fn on its thread; <done> is set under the group's lock. */
struct msg {
    void (*fn)(struct slot *s, void *arg);
    void *arg;
    int done;
    struct msg *next;
    int owned;       /* posted without waiting: the receiver frees it */
};

struct slot {
    struct group *g;
    unsigned index;
    pthread_t thread;
    int thread_started;
    uv_loop_t loop;
    uv_async_t inbox;
    uv_async_t wake;              /* limits or slots may have freed (wake_others) */
    struct worker *w;
    struct msg *head, *tail;      /* under g->mu */
    int inbox_closed;             /* under g->mu: nothing more may be posted */
    int started, start_rc;        /* under g->mu */
    char start_err[256];
    /* per-call results */
    int rc;
    char err[256];
    struct snapshot *snap;
};

struct group {
    uv_loop_t *loop;              /* the main thread's */
    uv_async_t drained_async;
    unsigned n;
    struct slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct config *cfg;           /* the current config (a reference) */
    struct isn_key key;
    unsigned drained;             /* workers drained (atomic) */
    void (*on_drained)(struct group *g);
    struct snapshot *snap;        /* the last view */
    struct shared *shared;        /* what the workers share (shared.h) */
    struct statefile *store;      /* the state file (state.h); NULL: none */
    struct state_keeper *keeper;  /* its heartbeat and sync on the main loop */
    struct clients_registry *clients; /* per-client limits, shared (runtime/clients.h) */
};

/* ---- messages ------------------------------------------------------------------ */

static void drop_handover(struct msg *m);

static void on_inbox(uv_async_t *a)
{
    struct slot *s = a->data;
    struct group *g = s->g;
    pthread_mutex_lock(&g->mu);
    struct msg *m = s->head;
    s->head = s->tail = NULL;
    pthread_mutex_unlock(&g->mu);
    while (m) {
        struct msg *next = m->next; /* m lives on the caller's stack until done */
        if (m->owned) {
            if (s->inbox_closed) /* set on this thread: this worker is closed */
                drop_handover(m);
            else
                m->fn(s, m->arg);
            free(m);
            m = next;
            continue;
        }
        m->fn(s, m->arg);
        pthread_mutex_lock(&g->mu);
        m->done = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        m = next;
    }
}

/* Post m to s.  Returns -1 when s has closed its inbox (stopping): a worker handing a
 * client over while another one stops must not wake a loop that is gone.  The wake-up
 * is sent under the lock, so it never races with the close (do_close). */
static int push(struct group *g, struct slot *s, struct msg *m)
{
    pthread_mutex_lock(&g->mu);
    if (s->inbox_closed) {
        pthread_mutex_unlock(&g->mu);
        return -1;
    }
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    uv_async_send(&s->inbox);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static void wait_done(struct group *g, struct msg *m)
{
    pthread_mutex_lock(&g->mu);
    while (!m->done)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* Run fn on worker i's thread and wait for it. */
static void call_one(struct group *g, unsigned i, void (*fn)(struct slot *s, void *arg),
                     void *arg)
{
    struct msg m = {fn, arg, 0, NULL, 0};
    if (push(g, &g->slots[i], &m) == 0) /* the main thread closes inboxes: never here */
        wait_done(g, &m);
}

/* Run fn on every worker's thread, all at once, and wait for all of them. */
static void call_all(struct group *g, void (*fn)(struct slot *s, void *arg), void *arg)
{
    struct msg ms[CFG_WORKERS_MAX];
    for (unsigned i = 0; i < g->n; i++) {
        ms[i] = (struct msg){fn, arg, 0, NULL, 0};
        if (push(g, &g->slots[i], &ms[i]) < 0)
            ms[i].done = 1; /* as in call_one */
    }
    for (unsigned i = 0; i < g->n; i++)
        wait_done(g, &ms[i]);
}

/* ---- a function on every worker's thread ----------------------------------------- */

struct each {
    int (*fn)(char *err, size_t errlen);
};

static void do_each(struct slot *s, void *arg)
{
    const struct each *e = arg;
    s->err[0] = 0;
    s->rc = e->fn(s->err, sizeof s->err);
}

int group_on_every_thread(struct group *g, int (*fn)(char *err, size_t errlen), char *err,
                          size_t errlen)
{
    struct each e = {fn};
    call_all(g, do_each, &e);
    for (unsigned i = 0; i < g->n; i++)
        if (g->slots[i].rc < 0) {
            snprintf(err, errlen, "worker %u: %s", i, g->slots[i].err);
            return g->slots[i].rc;
        }
    return 0;
}

struct each_worker { void (*fn)(struct worker *w, void *arg); void *arg; };
static void do_each_worker(struct slot *s, void *arg)
{
    ((const struct each_worker *)arg)->fn(s->w, ((const struct each_worker *)arg)->arg);
}
void group_each_worker(struct group *g, void (*fn)(struct worker *w, void *arg), void *arg)
{
    call_all(g, do_each_worker, &(struct each_worker){fn, arg});
}

/* ---- a client handed to the next worker ----------------------------------------- */

struct handover {
    struct msg m;
    int fd;
    unsigned hops;
    char listener[CFG_NAME_MAX + 1];
};

static void do_adopt(struct slot *s, void *arg)
{
    struct handover *h = arg;
    session_adopt(s->w, h->fd, h->listener, h->hops);
}

/* On the sending worker's thread: post, do not wait (workers never wait for each
 * other).  A worker whose inbox is closed (stopping) closes what it gets. */
static int hand_over(struct worker *w, int fd, const char *listener, unsigned hops)
{
    struct slot *from = w->data;
    struct group *g = from->g;
    struct handover *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->m = (struct msg){do_adopt, h, 0, NULL, 1};
    h->fd = fd;
    h->hops = hops;
    snprintf(h->listener, sizeof h->listener, "%s", listener);
    if (push(g, &g->slots[(from->index + 1) % g->n], &h->m) < 0) {
        free(h); /* the next worker is stopping: the caller keeps the client */
        return -1;
    }
    return 0;
}

static void drop_handover(struct msg *m)
{
    close(((struct handover *)m)->fd); /* the client sees EOF */
}

/* Hand-overs posted before the inbox closed but never run. */
static void drop_leftovers(struct slot *s)
{
    pthread_mutex_lock(&s->g->mu);
    struct msg *m = s->head;
    s->head = s->tail = NULL;
    pthread_mutex_unlock(&s->g->mu);
    while (m) {
        struct msg *next = m->next;
        if (m->owned) { /* only hand-overs are posted without waiting */
            drop_handover(m);
            free(m);
        }
        m = next;
    }
}

/* ---- what the workers share about a backend ------------------------------------------------------ */

static struct backend_flags *shared_flags(void *arg, const char *pool,
                                          const struct cfg_backend *b)
{
    return shared_backend(((struct group *)arg)->shared, pool, b);
}

static unsigned *shared_count(void *arg, const char *key)
{
    return shared_counter(((struct group *)arg)->shared, key);
}

static void on_wake(uv_async_t *a)
{
    struct slot *s = a->data;
    limits_resume(s->w);
    queue_kick(s->w);
}

/* Wake every other worker (uv_async_send coalesces: a burst of ends is one wake-up). */
static void wake_others(struct worker *w)
{
    struct slot *from = w->data;
    struct group *g = from->g;
    pthread_mutex_lock(&g->mu);
    for (unsigned i = 0; i < g->n; i++)
        if (i != from->index && !g->slots[i].inbox_closed && g->slots[i].w)
            uv_async_send(&g->slots[i].wake);
    pthread_mutex_unlock(&g->mu);
}

/* ---- the worker threads ----------------------------------------------------------- */

static void *thread_main(void *arg)
{
    struct slot *s = arg;
    struct group *g = s->g;
    char err[256] = "";
    int rc = -ENOMEM;
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->inbox, on_inbox);
    s->inbox.data = s;
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    s->w = worker_new(&s->loop, s->index, g->n, &g->key, err, sizeof err);
    if (s->w) {
        s->w->data = s;
        s->w->store = g->store;
        s->w->clients = g->clients;
        if (g->n > 1) {
            s->w->shared_flags = shared_flags;
            s->w->shared_arg = g;
            s->w->hand_over = hand_over;
            s->w->shared_count = shared_count;
            s->w->wake_others = wake_others;
        }
        rc = worker_start(s->w, config_ref(g->cfg), err, sizeof err);
    }
    pthread_mutex_lock(&g->mu);
    s->start_rc = rc;
    snprintf(s->start_err, sizeof s->start_err, "%s", err);
    s->started = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    worker_run(&s->loop, s->w); /* until group_stop() closed every handle */
    drop_leftovers(s);
    if (uv_loop_close(&s->loop) != 0)
        log_warn("worker %u: event loop closed with handles still open", s->index);
    worker_free(s->w);
    return NULL;
}

static void do_close(struct slot *s, void *arg)
{
    if (s->w)
        worker_close(s->w);
    pthread_mutex_lock(&s->g->mu);
    s->inbox_closed = 1;
    pthread_mutex_unlock(&s->g->mu);
    uv_close((uv_handle_t *)&s->inbox, NULL);
    uv_close((uv_handle_t *)&s->wake, NULL);
}

static void free_group(struct group *g)
{
    if (!g->keeper) /* else the keeper closes it (group_stop) */
        statefile_close(g->store, 1);
    snapshot_free(g->snap);
    clients_registry_free(g->clients);
    config_free(g->cfg);
    shared_free(g->shared);
    free(g->slots);
    free(g);
}

/* Close every worker and join the threads that were started. */
static void stop_threads(struct group *g)
{
    for (unsigned i = 0; i < g->n; i++)
        if (g->slots[i].thread_started)
            call_one(g, i, do_close, NULL);
    for (unsigned i = 0; i < g->n; i++)
        if (g->slots[i].thread_started)
            pthread_join(g->slots[i].thread, NULL);
}

static void on_drained_async(uv_async_t *a);

static unsigned worker_count(const struct config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cfg->workers ? cfg->workers : (unsigned)(cpus > 0 ? cpus : 1);
    for (size_t p = 0; p < cfg->n_pools; p++) {
        unsigned ports = (unsigned)(cfg->pools[p].port_hi - cfg->pools[p].port_lo + 1);
        if (ports < n) {
            log_warn("pool %s: %u source ports cannot be split between %u workers; "
                     "running %u", cfg->pools[p].name, ports, n, ports);
            n = ports;
        }
    }
    return n ? n : 1;
}

struct group *group_start(uv_loop_t *loop, struct config *cfg, char *err, size_t errlen)
{
    struct group *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->loop = loop;
    g->n = worker_count(cfg);
    g->cfg = config_ref(cfg);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (!(g->shared = shared_new())) {
        snprintf(err, errlen, "out of memory");
        free_group(g);
        return NULL;
    }
    /* RFC 6528: the ISN hash key must be secret and unpredictable. */
    if (getrandom(g->key.k, sizeof g->key.k, 0) != sizeof g->key.k ||
        !(g->clients = clients_registry_new())) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        free_group(g);
        return NULL;
    }
    if (!(g->slots = calloc(g->n, sizeof *g->slots))) {
        snprintf(err, errlen, "out of memory");
        free_group(g);
        return NULL;
    }
    /* What the previous run left, judged and laid out anew before any worker builds a
     * port map (state.h); another process holding the file stops the start. */
    if (state_open(cfg, &g->store, err, errlen) < 0) {
        free_group(g);
        return NULL;
    }
    /* Signals are the main loop's: the worker threads block them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < g->n; i++) {
        struct slot *s = &g->slots[i];
        s->g = g;
        s->index = i;
        if (pthread_create(&s->thread, NULL, thread_main, s) != 0)
            break;
        s->thread_started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    for (unsigned i = 0; i < g->n; i++) {
        struct slot *s = &g->slots[i];
        if (!s->thread_started) {
            if (!rc)
                snprintf(err, errlen, "cannot start worker %u", i);
            rc = -EAGAIN;
            continue;
        }
        while (!s->started)
            pthread_cond_wait(&g->cv, &g->mu);
        if (s->start_rc < 0 && !rc) {
            rc = s->start_rc;
            snprintf(err, errlen, "%s", s->start_err);
        }
    }
    pthread_mutex_unlock(&g->mu);
    if (rc < 0) {
        stop_threads(g);
        free_group(g);
        return NULL;
    }
    uv_async_init(loop, &g->drained_async, on_drained_async);
    g->drained_async.data = g;
    if (g->store)
        statefile_started(g->store);
    g->keeper = state_keeper_start(loop, g->store);
    if (g->n > 1)
        log_info("%u workers", g->n);
    return g;
}

unsigned group_size(const struct group *g)
{
    return g->n;
}

const struct config *group_config(const struct group *g)
{
    return g->cfg;
}

/* ---- reload ---------------------------------------------------------------------- */

static void do_prepare(struct slot *s, void *arg)
{
    uint64_t t0 = clock_mono_ns();
    s->err[0] = 0;
    s->rc = worker_reload_prepare(s->w, config_ref(arg), s->err, sizeof s->err);
    log_debug("worker %u: reload prepared in %.2f ms", s->index,
              (double)(clock_mono_ns() - t0) / 1e6);
}

static void do_commit(struct slot *s, void *arg)
{
    uint64_t t0 = clock_mono_ns();
    worker_reload_commit(s->w);
    log_debug("worker %u: reload committed in %.2f ms", s->index,
              (double)(clock_mono_ns() - t0) / 1e6);
}

static void do_abort(struct slot *s, void *arg)
{
    worker_reload_abort(s->w);
}

int group_reload(struct group *g, struct config *cfg, char *err, size_t errlen)
{
    state_add(g->store, cfg); /* the new paths' slots, before any worker looks for them */
    call_all(g, do_prepare, cfg);
    for (unsigned i = 0; i < g->n; i++)
        if (g->slots[i].rc < 0) {
            int rc = g->slots[i].rc;
            snprintf(err, errlen, "%s", g->slots[i].err);
            call_all(g, do_abort, NULL);
            return rc;
        }
    call_all(g, do_commit, NULL);
    config_free(g->cfg);
    g->cfg = config_ref(cfg);
    return 0;
}

/* ---- drain and stop -------------------------------------------------------------- */

static void on_worker_drained(struct worker *w)
{
    struct slot *s = w->data;
    __atomic_add_fetch(&s->g->drained, 1, __ATOMIC_RELEASE);
    uv_async_send(&s->g->drained_async);
}

static void on_drained_async(uv_async_t *a)
{
    struct group *g = a->data;
    if (__atomic_load_n(&g->drained, __ATOMIC_ACQUIRE) < g->n || !g->on_drained)
        return;
    void (*cb)(struct group *) = g->on_drained;
    g->on_drained = NULL; /* once */
    cb(g);
}

static void do_drain(struct slot *s, void *arg)
{
    worker_drain(s->w, on_worker_drained);
}

void group_drain(struct group *g, void (*on_drained)(struct group *g))
{
    g->on_drained = on_drained;
    call_all(g, do_drain, NULL);
}

static void free_after_close(uv_handle_t *h)
{
    free_group(h->data);
}

void group_stop(struct group *g)
{
    stop_threads(g);
    /* Every worker's loop has ended: every port is released, the file is final. */
    if (g->keeper)
        state_keeper_stop(g->keeper, 1);
    else
        statefile_close(g->store, 1);
    g->store = NULL;
    uv_close((uv_handle_t *)&g->drained_async, free_after_close);
}

/* ---- operator and figures -------------------------------------------------------- */

struct action {
    const char *pool, *backend, *action;
    uint64_t now_ms;
};

static void do_action(struct slot *s, void *arg)
{
    const struct action *a = arg;
    s->rc = worker_backend_action(s->w, a->pool, a->backend, a->action, a->now_ms);
}

int group_backend_action(struct group *g, const char *pool, const char *backend,
                         const char *action)
{
    /* One time for every worker (their loops read the same monotonic clock as this
     * one), so a slow start that begins here runs alike in all of them. */
    uv_update_time(g->loop);
    struct action a = {pool, backend, action, uv_now(g->loop)};
    call_all(g, do_action, &a);
    return g->slots[0].rc;
}

static void do_snapshot(struct slot *s, void *arg)
{
    uint64_t t0 = clock_mono_ns();
    s->snap = snapshot_take(s->w);
    /* This runs on the worker's loop, between its connections' callbacks. */
    log_debug("worker %u: snapshot of %zu backends in %.2f ms", s->index,
              s->snap ? s->snap->nbe : 0, (double)(clock_mono_ns() - t0) / 1e6);
}

const struct view *group_view(struct group *g)
{
    call_all(g, do_snapshot, NULL);
    struct snapshot *sum = g->slots[0].snap;
    g->slots[0].snap = NULL;
    for (unsigned i = 1; i < g->n; i++) {
        if (sum && snapshot_add(sum, g->slots[i].snap) < 0) {
            snapshot_free(sum);
            sum = NULL;
        }
        snapshot_free(g->slots[i].snap);
        g->slots[i].snap = NULL;
    }
    snapshot_free(g->snap);
    g->snap = sum;
    return sum ? view_of(sum) : NULL;
}
