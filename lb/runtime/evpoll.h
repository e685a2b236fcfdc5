/* evpoll.h - the sockets of the data path, outside libuv: one edge-triggered epoll set
 * per worker, which also holds libuv's own epoll descriptor: the worker blocks in this
 * set (evpoll_run) and runs libuv only when libuv has events or a timer is due, so a
 * wake-up of the data path costs one epoll_wait(2), not libuv's and then ours
 * (docs/design.md, "The data path").
 *
 * Why not libuv's own handles: a uv_tcp_t reads as soon as it is told to watch a socket
 * (splice(2) needs readiness without the read), a uv_poll_t cannot share a descriptor
 * with a uv_tcp_t of the same loop, and both cost epoll_ctl calls per connection that
 * nothing needs (libuv's epoll is level-triggered: a MOD when a watcher changes, a lazy
 * DEL, an ADD that fails with EEXIST after a connect).  Here a socket is added once with
 * every event it will ever be watched for (EPOLLET) and removed by its close(2): two
 * epoll_ctl calls per proxied connection.
 *
 * Each socket is a struct evfd: its descriptor, the events seen since its owner last
 * cleared them, and a callback.  The bits are the owner's memory of readiness: EPOLLIN
 * stays set until a read says EAGAIN (or a short read), EPOLLOUT until a write is short;
 * EPOLLRDHUP, EPOLLHUP, EPOLLERR and EPOLLPRI are sticky.  Edge-triggered means no
 * second event comes for what is already set: an owner that stops reading while its
 * socket is readable must come back to it by itself (or evpoll_rearm()).
 *
 * Closing a socket while a batch of events is being dispatched: evpoll_close() (and
 * evpoll_del()) drop the socket's events still waiting in the batch, so no callback
 * runs for a socket (or a struct) that is gone.  A descriptor that may live on
 * elsewhere (dup(), another thread) must leave the set with evpoll_del() before its
 * close: the kernel removes a socket from an epoll set only when its last descriptor
 * closes.
 *
 * Return convention: 0 or a negative errno. */
#ifndef TWLB_EVPOLL_H
#define TWLB_EVPOLL_H

#include <stdint.h>
#include <sys/epoll.h>

#include "runtime/types.h"

struct evfd;
typedef void (*evfd_cb)(struct evfd *e, uint32_t events);

struct evfd {
    int fd;        /* -1: none */
    uint32_t ev;   /* EPOLL* bits seen (see above) */
    evfd_cb cb;    /* called with the new bits, after they were or-ed into ev */
};

#define EVPOLL_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET)

/* The worker's set, with w->loop's descriptor in it (worker_new).  Returns 0 or a
 * negative errno. */
int evpoll_open(struct worker *w);
/* Close the set (worker_close): evpoll_run() then lets libuv finish on its own. */
void evpoll_close_all(struct worker *w);

/* Run w->loop and the data path until the set is closed and libuv has no handle left:
 * the worker thread's uv_run(UV_RUN_DEFAULT). */
void evpoll_run(struct worker *w);

/* Watch <fd> for EVPOLL_EVENTS, calling <cb>; e->ev starts at 0 (the kernel reports at
 * once what is already true).  Returns 0 or a negative errno (nothing watched). */
int evpoll_add(struct worker *w, struct evfd *e, int fd, evfd_cb cb);

/* Close e->fd (reset: with SO_LINGER 0, an RST instead of a FIN) and forget it. */
void evpoll_close(struct worker *w, struct evfd *e, int reset);

/* Take e->fd out of the set without closing it (it goes elsewhere). */
void evpoll_del(struct worker *w, struct evfd *e);

/* Ask the kernel for e's current readiness again (EPOLL_CTL_MOD): an event follows when
 * anything is true now.  For an owner that stopped before a socket said EAGAIN. */
void evpoll_rearm(struct worker *w, struct evfd *e);

#endif
