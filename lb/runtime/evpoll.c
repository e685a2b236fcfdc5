/* evpoll.c - see evpoll.h. */
#include "runtime/evpoll.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Events taken from the set per wake-up of the loop; more wait for the next iteration
 * (the set's descriptor stays readable for libuv), so other handles get their turn. */
#define EVPOLL_BATCH 64

struct evpoll {
    uv_poll_t poll;
    uv_loop_t *loop;
    int fd;
    struct epoll_event ev[EVPOLL_BATCH];
    int n, i; /* the batch being dispatched: ev[i+1 .. n-1] are still to come */
};

static void on_ready(uv_poll_t *p, int status, int events)
{
    struct evpoll *ep = p->data;
    if (status < 0)
        return;
    int n = epoll_wait(ep->fd, ep->ev, EVPOLL_BATCH, 0);
    if (n <= 0)
        return;
    ep->n = n;
    for (ep->i = 0; ep->i < ep->n; ep->i++) {
        struct evfd *e = ep->ev[ep->i].data.ptr;
        if (!e) /* closed by an earlier callback of this batch */
            continue;
        uint32_t bits = ep->ev[ep->i].events;
        e->ev |= bits;
        e->cb(e, bits);
    }
    ep->n = ep->i = 0;
    /* A batch can take a few milliseconds of bulk transfers.  Sessions ended in it gave
     * their ports back at once: what starts after it, in this iteration of the loop (an
     * accept), must not carry the time the iteration began (uv_now()). */
    uv_update_time(ep->loop);
}

static void forget(struct evpoll *ep, const struct evfd *e)
{
    for (int j = ep->i + 1; j < ep->n; j++)
        if (ep->ev[j].data.ptr == e)
            ep->ev[j].data.ptr = NULL;
}

static void on_closed(uv_handle_t *h)
{
    struct evpoll *ep = h->data;
    close(ep->fd);
    free(ep);
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
    int r = uv_poll_init(w->loop, &ep->poll, ep->fd);
    if (r < 0) {
        close(ep->fd);
        free(ep);
        return r;
    }
    ep->poll.data = ep;
    ep->loop = w->loop;
    if ((r = uv_poll_start(&ep->poll, UV_READABLE, on_ready)) < 0) {
        uv_close((uv_handle_t *)&ep->poll, on_closed);
        return r;
    }
    w->evpoll = ep;
    return 0;
}

void evpoll_close_all(struct worker *w)
{
    struct evpoll *ep = w->evpoll;
    if (!ep)
        return;
    w->evpoll = NULL;
    uv_close((uv_handle_t *)&ep->poll, on_closed);
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
