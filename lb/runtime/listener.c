/* listener.c - see listener.h. */
#include "runtime/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "os/log.h"
#include "runtime/local.h"
#include "runtime/session.h"

static void on_connection(uv_stream_t *h, int status)
{
    struct listener_rt *lis = h->data;
    if (status < 0) {
        /* Out of descriptors: libuv's EMFILE trick has accepted and closed the waiting
         * clients to keep the listener from spinning.  They are counted and logged. */
        char where[96];
        snprintf(where, sizeof where, "listener %s: accept", lis->cfg->name);
        local_error(lis->gen->w, where, status);
        return;
    }
    lis->connections_total++;
    session_accept(lis->gen, lis->cfg, h);
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

/* A bound socket for <bind>.  With several workers each has its own listening socket on
 * the same address (SO_REUSEPORT), and the kernel spreads new connections over them by
 * their 4-tuple.  IPv6 sockets also take IPv4 clients (v6only off), as libuv's default.
 * Returns the fd or a negative errno. */
static int listen_socket(const struct cfg_addr *bind_addr, int reuseport)
{
    int fd = socket(bind_addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        (bind_addr->ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0) ||
        bind(fd, (const struct sockaddr *)&bind_addr->ss, bind_addr->len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static struct listener_rt *listener_open(struct gen *g, const struct cfg_listener *lc,
                                         char *err, size_t errlen)
{
    struct listener_rt *lis = calloc(1, sizeof *lis);
    if (!lis) {
        snprintf(err, errlen, "listener %s: out of memory", lc->name);
        return NULL;
    }
    lis->gen = g;
    lis->cfg = lc;
    uv_tcp_init(g->w->loop, &lis->handle);
    lis->handle.data = lis;
    int r = 0, fd = listen_socket(&lc->bind, g->w->nworkers > 1);
    if (fd < 0)
        r = fd;
    else if ((r = uv_tcp_open(&lis->handle, fd)) < 0)
        close(fd);
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

static int same_socket(const struct cfg_listener *a, const struct cfg_listener *b)
{
    return a->bind.len == b->bind.len && !memcmp(&a->bind.ss, &b->bind.ss, a->bind.len) &&
           a->backlog == b->backlog;
}

int listener_open_all(struct gen *g, struct gen *prev, char *err, size_t errlen)
{
    const struct config *c = g->cfg;
    size_t *from = calloc(c->n_listeners, sizeof *from); /* prev index + 1, 0: new */
    if (!from) {
        snprintf(err, errlen, "out of memory");
        return UV_ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < c->n_listeners && rc == 0; i++) {
        const struct cfg_listener *lc = &c->listeners[i];
        for (size_t j = 0; prev && j < prev->cfg->n_listeners && !g->listeners[i]; j++) {
            struct listener_rt *old = prev->listeners[j];
            if (old && same_socket(old->cfg, lc)) {
                g->listeners[i] = old;
                prev->listeners[j] = NULL;
                from[i] = j + 1;
            }
        }
        if (!g->listeners[i] && !(g->listeners[i] = listener_open(g, lc, err, errlen)))
            rc = UV_EADDRINUSE;
    }
    if (rc < 0) {
        for (size_t i = 0; i < c->n_listeners; i++) {
            if (from[i])
                prev->listeners[from[i] - 1] = g->listeners[i];
            else
                listener_close(g->listeners[i]);
            g->listeners[i] = NULL;
        }
    } else {
        for (size_t i = 0; i < c->n_listeners; i++) {
            g->listeners[i]->gen = g;
            g->listeners[i]->cfg = &c->listeners[i];
        }
    }
    free(from);
    return rc;
}

void listener_give_back(struct gen *g, struct gen *prev)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        struct listener_rt *lis = g->listeners[i];
        g->listeners[i] = NULL;
        for (size_t j = 0; lis && prev && j < prev->cfg->n_listeners; j++)
            if (!prev->listeners[j] && same_socket(&prev->cfg->listeners[j], lis->cfg)) {
                lis->gen = prev;
                lis->cfg = &prev->cfg->listeners[j];
                prev->listeners[j] = lis;
                lis = NULL;
            }
        listener_close(lis); /* opened for g */
    }
}

void listener_close_all(struct gen *g)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        listener_close(g->listeners[i]);
        g->listeners[i] = NULL;
    }
}
