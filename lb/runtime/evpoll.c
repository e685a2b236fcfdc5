/* evpoll.c - see evpoll.h. */
#include "runtime/evpoll.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Events taken from the set per wake-up; more wait for the next one, so libuv's handles
 * (its descriptor is one of the set's members) get their turn. */
#define EVPOLL_BATCH 64

struct evpoll {
    uv_loop_t *loop;
    int fd;
    struct epoll_event ev[EVPOLL_BATCH];
    int n, i; /* the batch being dispatched: ev[i+1 .. n-1] are still to come */
    int closed; /* evpoll_close_all() ran during the batch: dispatch() frees it */
};

/* Dispatch the <n> events in ep->ev; returns 1 when libuv's descriptor was among them. */
static int dispatch(struct evpoll *ep, int n)
{
    int uv_ready = 0;
    ep->n = n;
    for (ep->i = 0; ep->i < ep->n; ep->i++) {
        void *ptr = ep->ev[ep->i].data.ptr;
        if (ptr == ep) { /* libuv's own epoll set has events: uv_run() takes them */
            uv_ready = 1;
            continue;
        }
        struct evfd *e = ptr;
        if (!e) /* closed by an earlier callback of this batch */
            continue;
        uint32_t bits = ep->ev[ep->i].events;
        e->ev |= bits;
        e->cb(e, bits);
        if (ep->closed) {
            free(ep);
            return 0;
        }
    }
    ep->n = ep->i = 0;
    return uv_ready;
}

void evpoll_run(struct worker *w)
{
    uv_loop_t *loop = w->loop;
    struct evpoll *ep;
    while ((ep = w->evpoll)) {
        /* libuv's next timer, or 0 when it has work now (pending callbacks, handles
         * closing); -1 when it has nothing at all, so only the data path can wake us. */
        int alive = uv_loop_alive(loop);
        int timeout = alive ? uv_backend_timeout(loop) : -1;
        int n = epoll_wait(ep->fd, ep->ev, EVPOLL_BATCH, timeout);
        if (n < 0 && errno != EINTR)
            break; /* cannot happen with a valid set; libuv finishes the loop below */
        uv_update_time(loop); /* what the callbacks stamp (uv_now) */
        int uv_ready = n > 0 ? dispatch(ep, n) : 0;
        if (alive && (uv_ready || n == 0 || timeout == 0)) {
            /* A batch can take a few milliseconds of bulk transfers.  Sessions ended in
             * it gave their ports back at once: what libuv starts now (an accept) must
             * not carry the time the batch began. */
            uv_update_time(loop);
            uv_run(loop, UV_RUN_NOWAIT);
        }
    }
    uv_run(loop, UV_RUN_DEFAULT); /* what is left once the set is closed */
}

static void forget(struct evpoll *ep, const struct evfd *e)
{
    for (int j = ep->i + 1; j < ep->n; j++)
        if (ep->ev[j].data.ptr == e)
            ep->ev[j].data.ptr = NULL;
}

int evpoll_open(struct worker *w)
{
    struct evpoll *ep = calloc(1, sizeof *ep);
    if (!ep)
        return -ENOMEM;
    if ((ep->fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        int e = -errno;
        free(ep);
        return e;
    }
    /* libuv's epoll set is a member of ours (level-triggered: readable while libuv has
     * events to take), so one epoll_wait(2) per wake-up serves both. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ep};
    if (epoll_ctl(ep->fd, EPOLL_CTL_ADD, uv_backend_fd(w->loop), &ev) < 0) {
        int e = -errno;
        close(ep->fd);
        free(ep);
        return e;
    }
    ep->loop = w->loop;
    w->evpoll = ep;
    return 0;
}

void evpoll_close_all(struct worker *w)
{
    struct evpoll *ep = w->evpoll;
    if (!ep)
        return;
    w->evpoll = NULL;
    close(ep->fd);
    if (ep->n) /* from a callback of the batch being dispatched */
        ep->closed = 1;
    else
        free(ep);
}

int evpoll_add(struct worker *w, struct evfd *e, int fd, evfd_cb cb)
{
    struct epoll_event ev = {.events = EVPOLL_EVENTS, .data.ptr = e};
    e->fd = fd;
    e->ev = 0;
    e->cb = cb;
    if (epoll_ctl(w->evpoll->fd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

void evpoll_close(struct worker *w, struct evfd *e, int reset)
{
    if (e->fd < 0)
        return;
    if (reset) { /* an RST now, no FIN and no TIME_WAIT (as uv_tcp_close_reset) */
        struct linger lg = {1, 0};
        (void)setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (w->evpoll)
        forget(w->evpoll, e);
    close(e->fd); /* also takes it out of the set: nobody else holds this descriptor */
    e->fd = -1;
    e->ev = 0;
}

void evpoll_del(struct worker *w, struct evfd *e)
{
    if (e->fd < 0 || !w->evpoll)
        return;
    (void)epoll_ctl(w->evpoll->fd, EPOLL_CTL_DEL, e->fd, NULL);
    forget(w->evpoll, e);
    e->ev = 0;
}

void evpoll_rearm(struct worker *w, struct evfd *e)
{
    struct epoll_event ev = {.events = EVPOLL_EVENTS, .data.ptr = e};
    if (e->fd >= 0 && w->evpoll)
        (void)epoll_ctl(w->evpoll->fd, EPOLL_CTL_MOD, e->fd, &ev);
}
