/* queue.c - clients waiting for a backend slot or a source port ("queue" in a pool).
 *
 * A client waits, in FIFO order, when every usable backend of its pool is at its
 * max_connections, or when no port toward any of them can be used now.  It is served as
 * soon as something changes that may let it through:
 *   - a session of this worker ends (a slot and a port are given back): queue_kick();
 *   - another worker gave back a slot of a shared backend: it wakes us, queue_kick();
 *   - a port becomes usable by itself (a TIME_WAIT or quarantine ends, or in kernel ISN
 *     mode the kernel's ISN clock passes the old connection): the pool's timer is armed
 *     for the earliest such moment (pathset_next_usable_ms), so nothing polls;
 *   - a backend comes back up: the worker's tick, once a second.
 * Only the head is tried: a client never overtakes one queued before it in its pool.
 * Past the pool's queue.timeout_ms the client is closed (reset) and counted
 * (queue_timeout); a client that arrives when queue.max are waiting is closed at once
 * (queue_full).  A client that closes its connection while waiting leaves the queue at
 * once: its socket's events are looked at (MSG_PEEK: nothing is read from it) and
 * nothing is ever sent to a backend for it.
 *
 * Queues are per worker (each worker has its own clients and ports); the limit
 * queue.max is per worker too.  With several workers FIFO order holds among the clients
 * of one worker.
 *
 * Return convention: 0 or -1.
 *
 * The third part of a session's life, with session.c and pump.c: it shares their struct
 * (session_int.h). */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "os/clock.h"
#include "runtime/backend.h"
#include "runtime/limits.h"
#include "runtime/listener_stats.h"
#include "runtime/session_int.h"

/* A queued client's socket is watched through its own events (evpoll.h): readable
 * with nothing to read means it closed (or reset) and gave up.  Once it has sent its
 * request it waits for the answer and is no longer looked at. */
void queue_client_event(struct session *s)
{
    if (s->watch_off)
        return;
    char c;
    ssize_t r = recv(s->cev.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r > 0) { /* it sent its request: it waits for the answer, stay queued */
        s->watch_off = 1;
        return;
    }
    session_close(s, END_CLIENT_ERROR); /* closed or reset while waiting */
}

/* Edge-triggered: what the socket said before the client was queued comes no more. */
static void watch_start(struct session *s)
{
    uint32_t ev = s->cev.ev;
    s->watch_off = 0;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        evpoll_rearm(s->w, &s->cev); /* tell it again: the check runs from the event */
    else if (ev & EPOLLIN)
        s->watch_off = 1; /* its request is there, unread */
}

static void on_queue_timeout(struct wtimer *t)
{
    struct session *s = (struct session *)((char *)t - offsetof(struct session, deadline));
    listener_stats_reject(s->lst, REJ_QUEUE_TIMEOUT);
    session_close(s, END_QUEUE_TIMEOUT);
}

static void add_queued(struct worker *w, int d)
{
    w->queued_here += (uint32_t)d;
    __atomic_add_fetch(w->queued_all, (unsigned)d, __ATOMIC_RELAXED);
}

int queue_push(struct session *s)
{
    struct pool_rt *pool = s->pool;
    const struct cfg_queue *qc = &pool->cfg->queue;
    if (!qc->max || pool->q_len >= qc->max)
        return -1;
    s->q_next = NULL;
    s->q_prev = pool->q_tail;
    if (pool->q_tail)
        pool->q_tail->q_next = s;
    else
        pool->q_head = s;
    pool->q_tail = s;
    pool->q_len++;
    add_queued(s->w, 1);
    s->state = S_QUEUED;
    s->queued_ms = session_now_ms(s);
    s->deadline.fn = on_queue_timeout;
    timers_set(s->w, &s->deadline, s->queued_ms + qc->timeout_ms);
    watch_start(s);
    /* The first in line: wake when a port may come back by itself. */
    if (pool->q_head == s)
        queue_kick(s->w);
    return 0;
}

void queue_remove(struct session *s)
{
    struct pool_rt *pool = s->pool;
    if (s->state != S_QUEUED)
        return;
    if (s->q_prev)
        s->q_prev->q_next = s->q_next;
    else
        pool->q_head = s->q_next;
    if (s->q_next)
        s->q_next->q_prev = s->q_prev;
    else
        pool->q_tail = s->q_prev;
    s->q_next = s->q_prev = NULL;
    pool->q_len--;
    add_queued(s->w, -1);
    s->queue_wait_ms += session_now_ms(s) - s->queued_ms;
    s->state = S_CONNECTING;
    timers_cancel(s->w, &s->deadline);
    if (!pool->q_len)
        timers_cancel(s->w, &pool->q_timer);
}

void queue_served(struct session *s)
{
    if (s->state != S_QUEUED)
        return;
    if (s->pool->st)
        hist_add(&s->pool->st->queue_wait, (session_now_ms(s) - s->queued_ms) * 1000000);
    queue_remove(s);
}

/* The earliest moment a port toward a backend the head of the queue may use could come
 * back by itself; the timer is armed for it (not at all when only a session ending can
 * help: that kicks the queue). */
static void arm(struct pool_rt *pool)
{
    struct worker *w = pool->gen->w;
    const struct session *head = pool->q_head;
    uint64_t now = worker_now_ms(w), at = UINT64_MAX;
    uint64_t real, mono;
    clock_pair_ns(&real, &mono);
    for (size_t b = 0; b < pool->cfg->n_backends; b++) {
        struct backend_rt *be = &pool->backends[b];
        int tried = 0;
        for (size_t t = 0; t < head->ntried && !tried; t++)
            tried = head->tried[t] == b;
        if (tried || be->sh->admin != BE_ENABLED || !backend_usable(be, now) ||
            backend_at_limit(be))
            continue;
        uint64_t t = pathset_next_usable_ms(be->ps, now, real, mono);
        if (t < at)
            at = t;
    }
    if (at == UINT64_MAX) {
        timers_cancel(w, &pool->q_timer);
        return;
    }
    timers_set(w, &pool->q_timer, at > now ? at : now + 1); /* never a busy loop */
}

/* Serve the queue from its head while clients can be served. */
static void serve(struct pool_rt *pool)
{
    while (pool->q_head) {
        if (!session_serve_queued(pool->q_head)) {
            arm(pool);
            return;
        }
    }
}

static void on_pool_timer(struct wtimer *t)
{
    struct pool_rt *pool = (struct pool_rt *)((char *)t - offsetof(struct pool_rt, q_timer));
    queue_kick(pool->gen->w);
}

void queue_kick(struct worker *w)
{
    if (!w->queued_here)
        return;
    if (w->serving_queues) { /* a session closed while a queue was served */
        w->queues_again = 1;
        return;
    }
    w->serving_queues = 1;
    do {
        w->queues_again = 0;
        for (struct gen *g = w->gens; g; g = g->next)
            for (size_t p = 0; p < g->cfg->n_pools; p++) {
                struct pool_rt *pool = &g->pools[p];
                pool->q_timer.fn = on_pool_timer;
                if (pool->q_len)
                    serve(pool);
            }
    } while (w->queues_again);
    w->serving_queues = 0;
}
