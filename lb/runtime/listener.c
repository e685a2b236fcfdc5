/* listener.c - see listener.h. */
#include "runtime/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "os/log.h"
#include "runtime/buffers.h"
#include "runtime/limits.h"
#include "runtime/clients.h"
#include "runtime/listener_stats.h"
#include "runtime/local.h"
#include "runtime/session.h"

/* Clients accepted per readiness event at most, so one busy listener cannot starve the
 * rest of the loop. */
#define ACCEPT_BATCH 64

/* Close a client at once with a reset, before anything is read or sent. */
static void refuse(int fd)
{
    struct linger lg = {1, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Out of descriptors with clients waiting: the listening socket stays readable, so
 * accept them with the descriptor kept in reserve and close them at once (they see a
 * reset rather than hang in the backlog), counting each.  libuv does the same inside
 * uv_accept, but tells nobody; this is why twlb accepts by itself. */
static void drop_waiting(struct listener_rt *lis, int err)
{
    struct worker *w = lis->gen->w;
    char where[96];
    snprintf(where, sizeof where, "listener %s: accept", lis->cfg->name);
    local_error(w, where, err);
    buffers_pipes_trim(w); /* the pipes kept for splice(2) hold descriptors too */
    if (w->reserve_fd < 0) /* an earlier pressure took it: the pressure may have ended */
        w->reserve_fd = open("/", O_RDONLY | O_CLOEXEC);
    if (w->reserve_fd < 0) {
        /* Nothing to accept with: stop polling (the socket stays readable, so the loop
         * would spin); clients wait in the backlog until the worker's tick resumes it. */
        uv_poll_stop(&lis->poll);
        lis->paused = 1;
        return;
    }
    close(w->reserve_fd);
    w->reserve_fd = -1;
    int fd, dropped = 0;
    while ((fd = accept4(lis->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0 && dropped < ACCEPT_BATCH) {
        refuse(fd);
        dropped++;
        local_error(w, where, err);
    }
    if (fd >= 0)
        close(fd);
    w->reserve_fd = open("/", O_RDONLY | O_CLOEXEC);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    struct listener_rt *lis = p->data;
    if (lis->gen->w->accept_off) { /* a takeover: the clients wait in the queue */
        uv_poll_stop(&lis->poll);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        /* The slot before the client: two workers that both saw the last slot free would
         * both accept, and one would have to reset a client that could have waited. */
        int took_last = limits_take(lis);
        if (took_last < 0) { /* the rest wait in the backlog (limits.h) */
            limits_pause(lis);
            return;
        }
        union {
            struct sockaddr sa;
            struct sockaddr_in6 in6;
        } peer;
        socklen_t len = sizeof peer;
        int fd = accept4(lis->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = -errno;
            limits_untake(lis, took_last); /* no client came of it */
            if (e == -EAGAIN || e == -EWOULDBLOCK)
                return;
            if (e == -EINTR || e == -ECONNABORTED)
                continue;
            if (local_is_resource_error(e)) {
                drop_waiting(lis, e);
                return;
            }
            log_warn("listener %s: accept: %s", lis->cfg->name, strerror(-e));
            return;
        }
        lis->stats->connections_total++;
        /* The client ACL and per-client limits, before a session or a backend sees it,
         * and before it takes a max_connections slot. */
        struct gen *g = lis->gen;
        struct client_table *slot;
        enum reject_reason why = clients_admit(g, (size_t)(lis->cfg - g->cfg->listeners),
                                               &peer.sa, worker_now_ms(g->w), &slot);
        if (why != REJ_N) {
            listener_stats_reject(lis->stats, why);
            clients_log_refused(g->w, lis->cfg->name, &peer.sa, why);
            refuse(fd);
            limits_untake(lis, took_last);
            continue;
        }
        session_accept(lis, slot, fd, &peer.sa, len);
    }
}

static void listener_closed(uv_handle_t *h)
{
    struct listener_rt *lis = h->data;
    close(lis->fd);
    listener_stats_unref(lis->stats); /* sessions may hold it still */
    free(lis); /* sessions keep no pointer to their listener */
}

static void listener_close(struct listener_rt *lis)
{
    if (!lis)
        return;
    if (lis->paused_limit) {
        lis->paused_limit = 0;
        __atomic_sub_fetch(lis->gen->w->paused_all, 1, __ATOMIC_RELAXED);
    }
    uv_close((uv_handle_t *)&lis->poll, listener_closed);
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
    /* TCP_NODELAY here: every accepted socket inherits it (kernel-facts 7.5), which
     * saves a setsockopt per client. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
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

/* ---- sockets taken over from another process (runtime/takeover.h) ------------------ */

static struct inherited {
    struct sockaddr_storage addr;
    socklen_t len;
    int fds[LISTENER_INHERIT_MAX];
    unsigned n;
} inherited[LISTENER_INHERIT_SETS];
static size_t n_inherited;

int listener_inherit(const int *fds, unsigned n)
{
    if (n_inherited == LISTENER_INHERIT_SETS || n > LISTENER_INHERIT_MAX || !n)
        return -ENOSPC;
    struct inherited *h = &inherited[n_inherited];
    h->len = sizeof h->addr;
    if (getsockname(fds[0], (struct sockaddr *)&h->addr, &h->len) < 0)
        return -errno;
    memcpy(h->fds, fds, n * sizeof *fds);
    h->n = n;
    n_inherited++;
    return 0;
}

static int same_addr(const struct sockaddr_storage *a, socklen_t alen,
                     const struct cfg_addr *b)
{
    return alen == b->len && !memcmp(a, &b->ss, alen);
}

/* Worker <i>'s socket on <bind> from the process taken over, or -1.  Each worker takes
 * its own (an exchange: one taker). */
static int inherited_fd(const struct cfg_addr *bind_addr, unsigned i)
{
    for (size_t k = 0; k < n_inherited; k++) {
        struct inherited *h = &inherited[k];
        if (i < h->n && same_addr(&h->addr, h->len, bind_addr))
            return __atomic_exchange_n(&h->fds[i], -1, __ATOMIC_ACQ_REL);
    }
    return -1;
}

size_t listener_inherit_close_rest(void)
{
    size_t closed = 0;
    for (size_t k = 0; k < n_inherited; k++)
        for (unsigned i = 0; i < inherited[k].n; i++) {
            int fd = __atomic_exchange_n(&inherited[k].fds[i], -1, __ATOMIC_ACQ_REL);
            if (fd >= 0) {
                close(fd);
                closed++;
            }
        }
    n_inherited = 0;
    return closed;
}

void listener_accept(struct gen *g, int on)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        struct listener_rt *lis = g->listeners[i];
        if (lis && on)
            listener_poll(lis);
        else if (lis)
            uv_poll_stop(&lis->poll);
    }
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
    lis->poll_again = listener_poll;
    if (!(lis->stats = listener_stats_new())) {
        snprintf(err, errlen, "listener %s: out of memory", lc->name);
        free(lis);
        return NULL;
    }
    int r = inherited_fd(&lc->bind, g->w->index);
    int taken = r >= 0;
    if (!taken)
        r = listen_socket(&lc->bind, g->w->nworkers > 1);
    if (r >= 0) {
        lis->fd = r;
        r = listen(lis->fd, (int)lc->backlog) < 0 ? -errno : 0;
        if (r == 0 && (r = uv_poll_init(g->w->loop, &lis->poll, lis->fd)) == 0) {
            lis->poll.data = lis; /* polled from listener_commit_all() on */
        } else {
            close(lis->fd);
        }
    }
    if (r < 0) {
        snprintf(err, errlen, "listener %s: cannot listen on %s: %s", lc->name, lc->bind.text,
                 uv_strerror(r));
        if (lis) /* else closing: listener_closed() frees it */
            listener_stats_unref(lis->stats);
        free(lis);
        return NULL;
    }
    log_info("listener %s on %s -> pool %s%s", lc->name, lc->bind.text, lc->pool_name,
                 taken ? " (taken over)" : "");
    return lis;
}

/* A reload keeps the socket of every listener whose address stays, whatever its other
 * keys; a changed backlog is applied to that socket (set_backlog). */
static int same_socket(const struct cfg_listener *a, const struct cfg_listener *b)
{
    return a->bind.len == b->bind.len && !memcmp(&a->bind.ss, &b->bind.ss, a->bind.len);
}

/* listen() again on a listening socket changes only its backlog on Linux (the accept
 * queue's limit; the clients waiting in it stay).  Opening a second socket for a new
 * backlog, as before, failed the reload with "address already in use" (one worker: no
 * SO_REUSEPORT), or with several workers lost the clients queued on the old one. */
static int set_backlog(struct listener_rt *lis, uint32_t from, uint32_t to)
{
    if (from == to)
        return 0;
    if (listen(lis->fd, (int)to) < 0)
        return -errno;
    log_info("listener %s: backlog %u (was %u)", lis->cfg->name, (unsigned)to, (unsigned)from);
    return 0;
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
                if ((rc = set_backlog(old, old->cfg->backlog, lc->backlog)) < 0)
                    snprintf(err, errlen, "listener %s: cannot set the backlog to %u: %s",
                             lc->name, (unsigned)lc->backlog, uv_strerror(rc));
            }
        }
        if (rc < 0)
            break;
        if (!g->listeners[i] && !(g->listeners[i] = listener_open(g, lc, err, errlen)))
            rc = UV_EADDRINUSE;
    }
    if (rc < 0) {
        for (size_t i = 0; i < c->n_listeners; i++) {
            if (from[i]) {
                struct listener_rt *lis = g->listeners[i];
                (void)set_backlog(lis, c->listeners[i].backlog,
                                  prev->cfg->listeners[from[i] - 1].backlog);
                prev->listeners[from[i] - 1] = lis;
            } else {
                listener_close(g->listeners[i]);
            }
            g->listeners[i] = NULL;
        }
    }
    free(from);
    return rc;
}

void listener_commit_all(struct gen *g)
{
    const struct config *c = g->cfg;
    for (size_t i = 0; i < c->n_listeners; i++) {
        struct listener_rt *lis = g->listeners[i];
        lis->gen = g;
        lis->cfg = &c->listeners[i];
        lis->live = limits_listener_count(g->w, c->listeners[i].name);
        listener_poll(lis); /* a new one starts accepting; one taken over goes on */
    }
}

void listener_give_back(struct gen *g, struct gen *prev)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        struct listener_rt *lis = g->listeners[i];
        g->listeners[i] = NULL;
        for (size_t j = 0; lis && prev && j < prev->cfg->n_listeners; j++)
            if (!prev->listeners[j] && same_socket(&prev->cfg->listeners[j], lis->cfg)) {
                (void)set_backlog(lis, lis->cfg->backlog, prev->cfg->listeners[j].backlog);
                lis->gen = prev;
                lis->cfg = &prev->cfg->listeners[j];
                prev->listeners[j] = lis;
                lis = NULL;
            }
        listener_close(lis); /* opened for g */
    }
}

void listener_resume_all(struct gen *g)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        struct listener_rt *lis = g->listeners[i];
        if (lis && lis->paused) {
            lis->paused = 0;
            listener_poll(lis);
        }
    }
}

void listener_poll(struct listener_rt *lis)
{
    if (!lis->paused && !lis->paused_limit && !lis->gen->w->accept_off)
        (void)uv_poll_start(&lis->poll, UV_READABLE, on_readable);
}

void listener_close_all(struct gen *g)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        listener_close(g->listeners[i]);
        g->listeners[i] = NULL;
    }
}
