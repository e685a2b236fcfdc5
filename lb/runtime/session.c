/* session.c - the life of one proxied connection.
 *
 *   state         what is going on                          leaves on
 *   S_CONNECTING  backend connect in flight; the client is  connect ok -> S_PUMPING
 *                 not read (its bytes wait in the kernel)   failure/timeout -> S_RETRY
 *                                                           no slot or port -> S_QUEUED
 *   S_QUEUED      waiting in its pool's queue (queue.c),    its turn -> S_CONNECTING
 *                 nothing held, the client not read         timeout, left -> S_CLOSING
 *   S_RETRY       the failed upconn is closing; the next    closed -> S_CONNECTING
 *                 try starts from its close callback        no try left -> S_CLOSING
 *   S_PUMPING     bytes flow both ways; one side may have   both FINs passed on -> S_CLOSING
 *                 sent FIN (half-close), the other goes on  error/idle -> S_CLOSING
 *   S_CLOSING     uv_close() on every open handle; the      last close callback:
 *                 session is freed by the last callback     port released, session recycled
 *
 * Pumping (bytes both ways, backpressure, who sends the first FIN) is pump.c; the struct
 * both halves share is session_int.h.  Aborted connections are reset (no TIME_WAIT
 * anywhere). */
#include "runtime/session.h"
#include "runtime/session_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "os/clock.h"
#include "os/log.h"
#include "runtime/accesslog.h"
#include "runtime/backend.h"
#include "runtime/clients.h"
#include "runtime/gen.h"
#include "runtime/limits.h"
#include "runtime/listener_stats.h"
#include "runtime/local.h"
#include "runtime/upconn.h"

static const char *session_end_name(enum session_end e)
{
    static const char *const names[] = {
        [END_NONE] = "none",
        [END_DONE] = "done",
        [END_CLIENT_ERROR] = "client_error",
        [END_BACKEND_ERROR] = "backend_error",
        [END_IDLE_TIMEOUT] = "idle_timeout",
        [END_CONNECT_FAILED] = "connect_failed",
        [END_NO_BACKEND] = "no_backend",
        [END_DRAIN_DEADLINE] = "drain_deadline",
        [END_BACKEND_DISABLED] = "backend_disabled",
        [END_HANDED_OVER] = "handed_over",
        [END_LOCAL_ERROR] = "local_error",
        [END_QUEUE_FULL] = "queue_full",
        [END_QUEUE_TIMEOUT] = "queue_timeout",
    };
    return e <= END_QUEUE_TIMEOUT ? names[e] : "?";
}

static void try_connect(struct session *s);
static int hand_over(struct session *s);

/* ---- allocation ------------------------------------------------------------------ */

#define SESSION_CACHE_MAX 1024

static struct session *session_get(struct worker *w)
{
    struct session *s = w->free_sessions;
    if (s) {
        w->free_sessions = s->next;
        w->free_count--;
        uint32_t *tried = s->tried;
        size_t tried_cap = s->tried_cap;
        memset(s, 0, sizeof *s);
        s->tried = tried;
        s->tried_cap = tried_cap;
    } else if (!(s = calloc(1, sizeof *s))) {
        return NULL;
    }
    s->w = w;
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->sessions_active++;
    w->sessions_total++;
    if (w->sessions_active > w->sessions_peak)
        w->sessions_peak = w->sessions_active;
    return s;
}

static void session_destroy(struct session *s)
{
    free(s->tried);
    free(s);
}

static void session_put(struct session *s)
{
    struct worker *w = s->w;
    struct gen *g = s->g;
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->sessions_active--;
    g->sessions_active--;
    if (w->free_count >= SESSION_CACHE_MAX || w->draining) {
        session_destroy(s);
    } else {
        s->next = w->free_sessions;
        w->free_sessions = s;
        w->free_count++;
    }
    gen_session_gone(g);
}

unsigned session_unsettled(const struct worker *w)
{
    unsigned n = 0;
    for (const struct session *s = w->sessions; s; s = s->next)
        n += s->state == S_CONNECTING || s->state == S_QUEUED || s->state == S_RETRY;
    return n;
}

void session_free_cache(struct worker *w)
{
    while (w->free_sessions) {
        struct session *s = w->free_sessions;
        w->free_sessions = s->next;
        session_destroy(s);
    }
    w->free_count = 0;
}

/* ---- the end --------------------------------------------------------------------- */

static void access_log(const struct session *s)
{
    static const char *const fins[] = {"none", "client", "backend"};
    const struct backend_rt *be = s->up_used ? s->up.be : NULL;
    struct access_record r = {
        .listener = s->lis_name,
        .client = &s->peer.sa,
        .backend = be ? be->cfg->name : NULL,
        .backend_address = be ? be->cfg->addr.text : NULL,
        .inside = be ? (const struct sockaddr *)&s->pool->cfg->inside[s->up.pick.path].ss : NULL,
        .inside_port = be ? s->up.pick.port.port : 0,
        .isn_mode = isn_mode_name(s->g->isn_mode),
        .reused_time_wait = be && s->up.pick.port.kind == PM_PICK_REMOTE_TW,
        .bytes_to_backend = s->c2b.bytes, .bytes_to_client = s->b2c.bytes,
        .duration_ms = session_now_ms(s) - s->start_ms,
        .queue_ms = s->queue_wait_ms,
        .tries = s->nfailed + (s->connected ? 1 : 0),
        .first_fin = fins[s->first_fin],
        .end = session_end_name(s->end),
    };
    accesslog_write(&r);
}

/* Give back the backend slot backend_pick() took; a queued client of another worker
 * may wait for it. */
static void release_slot(struct session *s)
{
    if (!s->slot_held)
        return;
    s->slot_held = 0;
    backend_slot_give(s->up.be);
    struct worker *w = s->w;
    if (w->wake_others && __atomic_load_n(w->queued_all, __ATOMIC_RELAXED) > w->queued_here)
        w->wake_others(w);
}

static void one_closed(struct session *s)
{
    if (--s->pending_closes > 0)
        return;
    /* Every handle is closed: nothing can touch the session any more. */
    if (s->ct) /* the client's place in its per-client limit */
        clients_release(s->ct, &s->peer.sa, session_now_ms(s));
    backend_unlink(&s->link);
    if (s->counted_active) {
        backend_active_add(s->up.be, -1);
        s->counted_active = 0;
    }
    release_slot(s);
    if (s->end != END_HANDED_OVER) /* the worker that took it logs it */
        access_log(s);
    struct worker *w = s->w;
    if (s->counted_live)
        limits_give(w, s->lis_live);
    listener_stats_unref(s->lst);
    session_put(s);
    queue_kick(w); /* its port and slot may be what a queued client waits for */
}

void session_unhold(struct session *s)
{
    if (s->state == S_CLOSING)
        one_closed(s);
    else
        s->pending_closes--;
}

static void on_up_closed(struct upconn *u)
{
    one_closed(u->tcp.data);
}

/* End the session: the first reason is kept.  Graceful (END_DONE) closes normally; any
 * other reason resets the backend connection. */
void session_close(struct session *s, enum session_end why)
{
    if (s->state == S_CLOSING)
        return;
    queue_remove(s); /* if it was waiting */
    int retrying = s->state == S_RETRY; /* the upconn is closing already */
    s->state = S_CLOSING;
    if (s->end == END_NONE)
        s->end = why;
    int abort = why != END_DONE;
    /* Both FINs may have passed on the backend connection (the kernel knows before we
     * read it): a side holds TIME_WAIT now, and a reset would not end an rfc1337 one. */
    int backend_over = abort && s->up_used && !retrying && upconn_finished(&s->up);
    s->pending_closes++; /* held until every close below is issued */
    timers_cancel(s->w, &s->deadline);
    pump_release(s);
    if (s->client_open) {
        s->client_open = 0;
        /* A reset when the client could not be served (it sees the failure at once)
         * or its connection was cut (backend reset, drain deadline, backend disabled: a
         * reply delimited by the close must not look complete); else the close's FIN. */
        evpoll_close(s->w, &s->cev,
                     why != END_DONE && why != END_IDLE_TIMEOUT && why != END_HANDED_OVER);
    }
    if (s->up_used && !retrying) {
        s->up.bytes_to_backend = s->c2b.bytes + s->pplen; /* the header is payload too */
        if (upconn_close(&s->up, abort && !backend_over, on_up_closed))
            s->pending_closes++;
    }
    one_closed(s);
}

static void abort_on_disable(struct be_link *l)
{
    struct session *s = (struct session *)((char *)l - offsetof(struct session, link));
    session_close(s, END_BACKEND_DISABLED);
}

void session_abort_all(struct worker *w)
{
    struct session *s = w->sessions;
    while (s) {
        struct session *next = s->next;
        session_close(s, END_DRAIN_DEADLINE);
        s = next;
    }
}

/* ---- connecting ------------------------------------------------------------------ */

/* Do not pick backend <idx> again for this client.  Returns -1 on OOM. */
static int tried_add(struct session *s, uint32_t idx)
{
    for (size_t i = 0; i < s->ntried; i++)
        if (s->tried[i] == idx)
            return 0;
    if (s->ntried == s->tried_cap) {
        size_t cap = s->tried_cap ? 2 * s->tried_cap : 4;
        uint32_t *t = realloc(s->tried, cap * sizeof *t);
        if (!t)
            return -1;
        s->tried = t;
        s->tried_cap = cap;
    }
    s->tried[s->ntried++] = idx;
    return 0;
}

/* The try on s->up.be failed through the backend's fault: count it, and do not try that
 * backend again for this client. */
static void blame_backend(struct session *s, int err)
{
    struct backend_rt *be = s->up.be;
    be->sh->st.connect_errors_total++;
    backend_connect_result(be, 0, session_now_ms(s));
    s->nfailed++;
    (void)tried_add(s, (uint32_t)be->index);
    log_debug("pool %s: connect to %s (%s) failed: %s", s->pool->cfg->name, be->cfg->name,
              be->cfg->addr.text, uv_strerror(err));
}

static void on_retry_closed(struct upconn *u)
{
    struct session *s = u->tcp.data;
    if (s->state != S_RETRY) { /* aborted meanwhile (drain, disable) */
        one_closed(s);
        return;
    }
    s->pending_closes--;
    s->state = S_CONNECTING;
    struct worker *w = s->w; /* try_connect() may end <s> (and free it) */
    try_connect(s);
    queue_kick(w); /* the failed try gave its port back */
}

/* The current try failed (<no_port>: the kernel refused every port toward the backend,
 * which is not the backend's fault).  Close it, then try again from its callback. */
static void connect_failed(struct session *s, int err, int no_port)
{
    if (no_port)
        (void)tried_add(s, (uint32_t)s->up.be->index);
    else
        blame_backend(s, err);
    backend_unlink(&s->link);
    timers_cancel(s->w, &s->deadline);
    release_slot(s);
    s->state = S_RETRY;
    s->pending_closes++;
    if (!upconn_close(&s->up, 1, on_retry_closed)) {
        s->pending_closes--;
        s->state = S_CONNECTING;
        try_connect(s);
    }
}

static void on_connect_timeout(struct wtimer *t)
{
    struct session *s = (struct session *)((char *)t - offsetof(struct session, deadline));
    /* A SYN on a 4-tuple in the backend's TIME_WAIT that is ignored until the timeout is
     * a rejection of the reuse (an rfc1337 backend answers nothing): count it so a backend
     * with the wrong rule in the config is demoted. */
    if (s->state == S_CONNECTING && s->up.pick.port.kind == PM_PICK_REMOTE_TW)
        backend_note_syn(s->g, s->up.be, 1, 1);
    if (s->state == S_CONNECTING)
        connect_failed(s, UV_ETIMEDOUT, 0);
}

static void on_up_connect(struct upconn *u, int status)
{
    struct session *s = u->tcp.data;
    if (s->state != S_CONNECTING)
        return; /* aborted: the close path owns the session */
    if (local_is_resource_error(status)) {
        local_error(s->w, "backend connect", status);
        session_close(s, END_LOCAL_ERROR);
        return;
    }
    if (status < 0) {
        connect_failed(s, status, status == UPCONN_NO_PORT);
        return;
    }
    timers_cancel(s->w, &s->deadline);
    struct backend_rt *be = u->be;
    be->sh->st.connections_total++;
    /* connect() was called at syn_mono_ns (upconn.c: step): the handshake's time. */
    uint64_t now_ns = clock_mono_ns();
    hist_add(&be->sh->connect, now_ns > u->syn_mono_ns ? now_ns - u->syn_mono_ns : 0);
    backend_connect_result(be, 1, session_now_ms(s));
    backend_active_add(be, 1);
    s->counted_active = 1;
    s->connected = 1;
    pump_start(s);
}

/* Nothing can serve <s> now (<picked>: backend_pick's answer): wait in the queue if its
 * pool has one and some backend could take it later, else close it, counted. */
static void cannot_serve(struct session *s, int picked)
{
    if (s->state == S_QUEUED)
        return; /* it keeps its place until its turn or its timeout */
    if (picked != -1) { /* a backend is usable, only busy: it may take the client later */
        if (queue_push(s) == 0)
            return;
        if (s->pool->cfg->queue.max) {
            listener_stats_reject(s->lst, REJ_QUEUE_FULL);
            s->w->no_backend_total++;
            session_close(s, END_QUEUE_FULL);
            return;
        }
    }
    listener_stats_reject(s->lst, REJ_NO_BACKEND);
    s->w->no_backend_total++;
    session_close(s, s->nfailed ? END_CONNECT_FAILED : END_NO_BACKEND);
}

/* Start the next try: pick a backend and a port, connect.  Each backend is picked at
 * most once per client, so the loop ends. */
static void try_connect(struct session *s)
{
    const struct cfg_pool *pc = s->pool->cfg;
    s->up.tcp.data = s;
    for (;;) {
        if (s->nfailed > pc->retries) {
            session_close(s, END_CONNECT_FAILED);
            return;
        }
        struct backend_rt *be;
        struct pathset_pick pick;
        int picked = backend_pick(s->g, s->pool, s->client_hash, s->tried, s->ntried,
                                  session_now_ms(s), &be, &pick);
        if (picked == -2 && !s->nfailed && s->state != S_QUEUED && hand_over(s) == 0)
            return;
        if (picked < 0) {
            cannot_serve(s, picked);
            return;
        }
        queue_served(s); /* its turn, if it waited */
        s->up_used = 1;
        s->slot_held = 1;
        int r = upconn_open(&s->up, s->g, be, &pick, on_up_connect);
        if (r == 0) {
            s->link.abort = abort_on_disable;
            backend_link(be, &s->link);
            s->deadline.fn = on_connect_timeout;
            timers_set(s->w, &s->deadline, session_now_ms(s) + pc->connect_timeout_ms);
            if (s->up.connected_now)
                pump_connected_now(s);
            return;
        }
        release_slot(s);
        if (r == UPCONN_NO_PORT) {
            if (tried_add(s, (uint32_t)be->index) < 0)
                break;
            continue;
        }
        if (local_is_resource_error(r)) {
            /* Our limit, not the backend's: it keeps its health; this client is reset. */
            char where[160];
            snprintf(where, sizeof where, "pool %s: socket toward %s", pc->name, be->cfg->name);
            local_error(s->w, where, r);
            session_close(s, END_LOCAL_ERROR);
            return;
        }
        log_warn("pool %s: socket toward %s: %s", pc->name, be->cfg->name, strerror(-r));
        blame_backend(s, r);
    }
    session_close(s, END_NO_BACKEND);
}

int session_serve_queued(struct session *s)
{
    session_hold(s); /* try_connect() may end it: its memory stays until the unhold */
    try_connect(s);
    int served = s->state != S_QUEUED;
    session_unhold(s);
    return served;
}

/* ---- accept ---------------------------------------------------------------------- */

static uint64_t client_hash(const struct sockaddr *peer)
{
    if (peer->sa_family == AF_INET)
        return balance_hash_addr(&((const struct sockaddr_in *)peer)->sin_addr, 4);
    if (peer->sa_family == AF_INET6) {
        /* An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d: hash its 4
         * bytes, so it lands where it would on an IPv4 listener. */
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)peer)->sin6_addr;
        return IN6_IS_ADDR_V4MAPPED(a6) ? balance_hash_addr(&a6->s6_addr[12], 4)
                                        : balance_hash_addr(a6, 16);
    }
    return 0;
}

static void on_client_event(struct evfd *e, uint32_t events)
{
    struct session *s = (struct session *)((char *)e - offsetof(struct session, cev));
    if (s->state == S_PUMPING)
        pump_event(s, 0, events);
    else if (s->state == S_QUEUED)
        queue_client_event(s);
    /* else connecting: the bits wait in cev.ev until the pump starts */
}

static void on_backend_event(struct upconn *u, uint32_t events)
{
    struct session *s = u->tcp.data;
    if (s->state == S_PUMPING)
        pump_event(s, 1, events);
}

/* A new session of generation <g> for a client of listener <lc> (counters <st>, NULL:
 * none), without its client socket yet.  NULL on OOM. */
static struct session *session_new(struct gen *g, const struct cfg_listener *lc,
                                   struct listener_stats *st)
{
    struct worker *w = g->w;
    struct session *s = session_get(w);
    if (!s)
        return NULL;
    s->g = g;
    g->sessions_active++;
    s->lis_name = lc->name;
    s->lst = listener_stats_ref(st);
    s->pool = &g->pools[lc->pool];
    s->start_ms = session_now_ms(s);
    s->cev.fd = -1;
    s->up.ev.fd = -1;
    s->up.raw = 1; /* the backend socket is the session's too (upconn.h) */
    s->up.on_event = on_backend_event;
    return s;
}

/* Watch client socket <fd> (TCP_NODELAY: the listening socket's, inherited).  Returns
 * 0, or -1 with <fd> closed and <s> closed. */
static int client_open(struct session *s, int fd)
{
    int r = evpoll_add(s->w, &s->cev, fd, on_client_event);
    if (r < 0) {
        close(fd);
        s->cev.fd = -1;
        local_error(s->w, "client socket", r);
        session_close(s, END_LOCAL_ERROR);
        return -1;
    }
    s->client_open = 1;
    return 0;
}

/* The client's address is known (from accept4, or asked for after a hand-over). */
static void session_begin(struct session *s)
{
    s->client_hash = client_hash(&s->peer.sa);
    s->state = S_CONNECTING;
    try_connect(s);
}

void session_accept(struct listener_rt *lis, struct client_table *slot, int fd,
                    const struct sockaddr *peer, socklen_t peerlen)
{
    struct gen *g = lis->gen;
    struct session *s = session_new(g, lis->cfg, lis->stats);
    if (!s) {
        local_error(g->w, "session", UV_ENOMEM); /* refuse this one client */
        limits_give(g->w, lis->live);
        if (slot)
            clients_release(slot, peer, worker_now_ms(g->w));
        close(fd);
        return;
    }
    s->lis_live = lis->live;
    s->counted_live = 1;
    if (peerlen <= sizeof s->peer)
        memcpy(&s->peer, peer, peerlen);
    s->ct = slot; /* given back when the session ends, whatever ends it */
    if (client_open(s, fd) < 0)
        return;
    session_begin(s);
}

void session_adopt(struct worker *w, int fd, const char *listener, unsigned hops)
{
    struct gen *g = w->cur;
    size_t i = 0;
    while (i < g->cfg->n_listeners && strcmp(g->cfg->listeners[i].name, listener))
        i++;
    const struct cfg_listener *lc = i < g->cfg->n_listeners ? &g->cfg->listeners[i] : NULL;
    struct session *s = NULL;
    if (lc && !w->draining)
        s = session_new(g, lc, g->listeners[i] ? g->listeners[i]->stats : NULL);
    if (!s) {
        close(fd); /* the listener is gone (reload) or no memory: the client sees EOF */
        return;
    }
    s->hops = hops;
    s->lis_live = limits_listener_count(w, listener);
    limits_take_adopted(w, s->lis_live);
    s->counted_live = 1;
    if (client_open(s, fd) < 0)
        return;
    socklen_t len = sizeof s->peer;
    if (getpeername(fd, &s->peer.sa, &len) == 0 && g->clients[i] &&
        clients_take(g->clients[i], &s->peer.sa, session_now_ms(s)) == 0)
        s->ct = g->clients[i];
    session_begin(s);
}

/* No port toward any usable backend here: give the client, untouched, to the next
 * worker, which has its own share of the ports.  Returns 0 when it went. */
static int hand_over(struct session *s)
{
    struct worker *w = s->w;
    int fd = s->cev.fd;
    if (!w->hand_over || s->hops + 1 >= w->nworkers || fd < 0)
        return -1;
    /* The descriptor itself goes: out of this worker's epoll set first (it lives on). */
    evpoll_del(w, &s->cev);
    if (w->hand_over(w, fd, s->lis_name, s->hops + 1) != 0) {
        (void)evpoll_add(w, &s->cev, fd, on_client_event); /* if not, unwatched: still ours */
        return -1;
    }
    s->cev.fd = -1;
    s->client_open = 0;
    session_close(s, END_HANDED_OVER);
    return 0;
}
