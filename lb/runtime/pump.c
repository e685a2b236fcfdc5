/* pump.c - bytes both ways between a session's client and backend sockets.
 *
 * Both sockets are the session's own, in the worker's edge-triggered epoll set
 * (evpoll.h), not libuv streams: a direction reads when its source said readable, writes
 * at once, and keeps what its destination could not take (backpressure: it reads no more
 * until that is written, which the destination's EPOLLOUT tells).
 *
 * Copy: a direction reads into the worker's scratch buffer and writes it (send); only
 * what the kernel does not take goes into a write buffer from the worker's pool
 * (buffers.h).  Splice: a direction whose read filled the scratch buffer (a bulk
 * transfer; small exchanges stay on the copy path, which costs the same two system calls
 * and no pipe) moves its bytes with splice(2), socket -> pipe -> socket, never through
 * user space.  It takes a pipe from the worker's pool when bytes go in and gives it back
 * once they are all out, so an idle connection holds neither a buffer nor a pipe.  No
 * splice while a write buffer is pending (the PROXY header), on urgent data (splice stops
 * at the urgent mark and never passes it), when no pipe can be had (that burst is copied),
 * or after splice failed (EINVAL...: copy from then on); the pool's "splice": "off"
 * turns it off.
 *
 * Bytes: <bytes> counts what was read from the source; a FIN is passed on only once all
 * of it was written, so at every graceful end the backend got exactly c2b.bytes (+ the
 * PROXY header): the reuse engine's rcv_nxt (upconn.h, portmap_release).
 *
 * FINs: a read of 0, or a short read after EPOLLRDHUP (the FIN had come, so everything
 * before it was in the socket and the read took it: no read of 0 needed) ends a
 * direction; its FIN goes on with shutdown(SHUT_WR) when it is the first of the session,
 * and by the close of both sockets when it is the second (both directions are then done).
 * The first FIN on the BACKEND connection decides who holds TIME_WAIT there: the
 * backend's EOF before we shut down our write side toward it means the backend closed
 * first (it keeps TIME_WAIT, and the reuse engine must choose the next ISN with care);
 * if we shut down first, TIME_WAIT is ours - unless its FIN was in our kernel already,
 * unread, which one TCP_INFO before and one after our shutdown tell. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "os/sockprep.h"
#include "runtime/session_int.h"

/* Bytes one direction moves per event before it lets the loop serve others (and asks
 * the kernel to report its socket again): about what libuv read per callback (32 reads
 * of 64 KiB), so a bulk transfer delays the rest of the loop no more than before. */
#define PUMP_BUDGET (1u << 20)
/* What one splice(2) may take from a socket: the pipe's room bounds it anyway. */
#define SPLICE_CHUNK (1u << 20)

static void on_idle_deadline(struct wtimer *t)
{
    struct session *s = (struct session *)((char *)t - offsetof(struct session, deadline));
    uint64_t now = session_now_ms(s), limit = s->pool->cfg->idle_timeout_ms;
    if (now - s->last_activity >= limit) {
        session_close(s, END_IDLE_TIMEOUT);
        return;
    }
    /* Activity refreshes a timestamp only; the deadline moves lazily here. */
    timers_set(s->w, &s->deadline, s->last_activity + limit);
}

static struct pump *other(struct session *s, const struct pump *p)
{
    return p == &s->c2b ? &s->b2c : &s->c2b;
}

/* The socket <e> failed (read, write, shutdown): end the session, blaming its side. */
static int fail(struct session *s, const struct evfd *e)
{
    session_close(s, e == &s->up.ev ? END_BACKEND_ERROR : END_CLIENT_ERROR);
    return -1;
}

static int readable(const struct evfd *e)
{
    return (e->ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
}

/* Is the backend's FIN in our kernel already, unread by twlb (CLOSE_WAIT; or LAST_ACK /
 * CLOSING once ours is out)?  Then the backend holds the TIME_WAIT, whatever twlb has
 * read.  FINs that cross on the wire leave one on both sides: explicit mode keeps the
 * old sequence for our TIME_WAIT too (portmap_release), so a reuse is safe either way.
 * One TCP_INFO, which also tells whether timestamps were negotiated: the record of our
 * own TIME_WAIT needs that. */
static int backend_fin_here(struct session *s)
{
    struct sockprep_info info;
    if (sockprep_tcp_info(s->up.ev.fd, &info) < 0)
        return 0;
    s->up.timestamps = info.timestamps;
    return info.state == TCP_LAST_ACK || info.state == TCP_CLOSING ||
           info.state == TCP_CLOSE_WAIT;
}

/* <p>'s source sent FIN and everything read is written: pass the FIN on.  Returns 0, or
 * -1 when the session ended (the last FIN: both sockets close, which sends it). */
static int pass_fin(struct session *s, struct pump *p)
{
    p->shut = 1;
    if (other(s, p)->shut_done) {
        p->shut_done = 1;
        session_close(s, END_DONE);
        return -1;
    }
    int backend_dst = p == &s->c2b;
    if (backend_dst && s->up.closer == PM_CLOSER_NONE && !s->b2c.eof)
        s->up.closer = backend_fin_here(s) ? PM_CLOSER_BACKEND /* there, unread */
                                           : PM_CLOSER_LOCAL;  /* ours goes first */
    if (shutdown(p->dst->fd, SHUT_WR) < 0)
        return fail(s, p->dst);
    /* Its FIN may have come in between. */
    if (backend_dst && s->up.closer == PM_CLOSER_LOCAL && backend_fin_here(s))
        s->up.closer = PM_CLOSER_BACKEND;
    p->shut_done = 1;
    return 0;
}

/* <p>'s source is at its end of file.  Returns 0, or -1 when the session ended. */
static int at_eof(struct session *s, struct pump *p)
{
    int backend_src = p == &s->b2c;
    /* A reset right behind a FIN reads as an end of file (the FIN set SOCK_DONE): while
     * our side toward the backend is open, EPOLLERR or EPOLLHUP can only mean a reset.
     * Pass it on as the reset it is, so a reply delimited by the close never looks
     * complete. */
    if (backend_src && !s->c2b.shut && (s->up.ev.ev & (EPOLLERR | EPOLLHUP)))
        return fail(s, &s->up.ev);
    if (s->first_fin == FIN_NONE)
        s->first_fin = backend_src ? FIN_BACKEND : FIN_CLIENT;
    p->eof = 1;
    if (backend_src && s->up.closer == PM_CLOSER_NONE && !s->c2b.shut)
        s->up.closer = PM_CLOSER_BACKEND;
    return 0;
}

/* <n> bytes were taken from <p>'s source. */
static void took(struct session *s, struct pump *p, size_t n, int spliced)
{
    s->last_activity = session_now_ms(s);
    p->bytes += n;
    struct backend_stats *st = &s->up.be->sh->st;
    if (p == &s->b2c) {
        st->bytes_to_client += n;
        st->spliced_to_client += spliced ? n : 0;
    } else {
        st->bytes_to_backend += n;
        st->spliced_to_backend += spliced ? n : 0;
    }
}

/* Write what <p> holds for its destination.  Returns 0 (all of it written, or the
 * destination is full: its EPOLLOUT comes back here), or -1 when the session ended. */
static int flush(struct session *s, struct pump *p)
{
    while (p->pend) {
        ssize_t w = send(p->dst->fd, p->pend->data + p->pend_off, p->pend_len - p->pend_off,
                         MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return fail(s, p->dst);
        p->pend_off += w > 0 ? (uint32_t)w : 0;
        if (p->pend_off < p->pend_len) {
            p->dst->ev &= ~(uint32_t)EPOLLOUT;
            return 0;
        }
        buffers_put(s->w, p->pend); /* drained: back to the pool */
        p->pend = NULL;
    }
    while (p->in_pipe) {
        ssize_t w = splice(p->pipe->r, NULL, p->dst->fd, NULL, p->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0 && !(w < 0 && errno == EAGAIN))
            return fail(s, p->dst);
        p->in_pipe -= w > 0 ? (uint32_t)w : 0;
        if (p->in_pipe) {
            p->dst->ev &= ~(uint32_t)EPOLLOUT;
            return 0;
        }
    }
    if (p->pipe) { /* drained: back to the pool */
        buffers_pipe_put(s->w, p->pipe, 1);
        p->pipe = NULL;
    }
    return 0;
}

/* One read from <p>'s source into the scratch buffer, written on at once.  Returns the
 * bytes moved, 0 when the source has nothing now (or is at its end: p->eof), or -1 when
 * the session ended. */
static ssize_t copy_some(struct session *s, struct pump *p)
{
    size_t size = s->pool->cfg->buffer_bytes;
    char *buf = buffers_scratch(s->w, size);
    if (!buf) /* out of memory */
        return fail(s, p->src);
    ssize_t n;
    do
        n = recv(p->src->fd, buf, size, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) {
        p->src->ev &= ~(uint32_t)EPOLLIN;
        return 0;
    }
    if (n < 0)
        return fail(s, p->src);
    if (n == 0)
        return at_eof(s, p);
    took(s, p, (size_t)n, 0);
    int ends = 0;
    if ((size_t)n < size && !(p->src->ev & (EPOLLPRI | EPOLLERR | EPOLLHUP))) {
        /* A short read took everything there was (the kernel stops short only when the
         * socket is empty, or at an urgent mark: EPOLLPRI).  After EPOLLRDHUP that was
         * everything before the FIN. */
        if (p->src->ev & EPOLLRDHUP)
            ends = 1;
        else
            p->src->ev &= ~(uint32_t)EPOLLIN;
    }
    /* The FIN follows these bytes at once (run() -> pass_fin): MSG_MORE holds them in
     * the kernel until the shutdown() (or the close) sends them and the FIN in one
     * segment, so the peer wakes once for both.  HAProxy does the same for a response it
     * closes behind.  Bytes the kernel does not take now go out by flush(), whose send
     * pushes what MSG_MORE held. */
    int more = ends ? MSG_MORE : 0;
    ssize_t w;
    do
        w = send(p->dst->fd, buf, (size_t)n, MSG_NOSIGNAL | more);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN)
        return fail(s, p->dst);
    size_t done = w > 0 ? (size_t)w : 0, left = (size_t)n - done;
    if (left) { /* the rest waits in a write buffer, and reading stops until it is out */
        struct wbuf *wb = buffers_get(s->w, left);
        if (!wb)
            return fail(s, p->src);
        memcpy(wb->data, buf + done, left);
        p->pend = wb;
        p->pend_off = 0;
        p->pend_len = (uint32_t)left;
        p->dst->ev &= ~(uint32_t)EPOLLOUT;
    } else if ((size_t)n == size && !p->no_splice && !(p->src->ev & EPOLLPRI)) {
        p->splice = 1; /* a full read: a bulk transfer, splice from now on */
    }
    if (ends && at_eof(s, p) < 0)
        return -1;
    return n;
}

/* One splice(2) from <p>'s source into a pipe, and on to the destination.  Returns as
 * copy_some. */
static ssize_t splice_some(struct session *s, struct pump *p)
{
    if (p->src->ev & EPOLLPRI) { /* splice would stop at the urgent mark for good */
        p->splice = 0;
        p->no_splice = 1;
        return copy_some(s, p);
    }
    if (!p->pipe && !(p->pipe = buffers_pipe_get(s->w)))
        return copy_some(s, p); /* no pipe now: this burst is copied */
    ssize_t n;
    do
        n = splice(p->src->fd, NULL, p->pipe->w, NULL, SPLICE_CHUNK,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n <= 0) { /* the pipe is empty (flush() ran first): give it back */
        int e = n < 0 ? errno : 0;
        buffers_pipe_put(s->w, p->pipe, 1);
        p->pipe = NULL;
        if (n == 0)
            return at_eof(s, p);
        if (e == EAGAIN) {
            p->src->ev &= ~(uint32_t)EPOLLIN;
            return 0;
        }
        if (e == EINVAL || e == ENOSYS || e == EOPNOTSUPP || e == ENOMEM) {
            p->splice = 0; /* splice does not apply here: copy from now on */
            p->no_splice = 1;
            return copy_some(s, p);
        }
        return fail(s, p->src); /* the socket's error (it is read only once) */
    }
    took(s, p, (size_t)n, 1);
    p->in_pipe = (uint32_t)n;
    return flush(s, p) < 0 ? -1 : n;
}

/* Move what can be moved in direction <p> now.  Returns 0, or -1 when the session ended
 * (then <s> must not be touched, beyond a session_unhold()). */
static int run(struct session *s, struct pump *p)
{
    if (flush(s, p) < 0)
        return -1;
    if (p->pend || p->in_pipe)
        return 0; /* the destination is full: its EPOLLOUT brings us back */
    size_t moved = 0;
    while (!p->eof && readable(p->src)) {
        if (moved >= PUMP_BUDGET) { /* let the others run; the kernel reports it again */
            evpoll_rearm(s->w, p->src);
            return 0;
        }
        ssize_t n = p->splice ? splice_some(s, p) : copy_some(s, p);
        if (n < 0)
            return -1;
        if (n == 0 && !p->eof)
            return 0; /* nothing more to read now */
        moved += (size_t)n;
        if (p->pend || p->in_pipe)
            return 0;
    }
    if (p->eof && !p->shut)
        return pass_fin(s, p);
    return 0;
}

void pump_event(struct session *s, int backend_side, uint32_t events)
{
    struct pump *rd = backend_side ? &s->b2c : &s->c2b; /* reads from that socket */
    struct pump *wr = backend_side ? &s->c2b : &s->b2c; /* writes to it */
    session_hold(s);
    int r = 0;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        r = run(s, wr);
    if (r == 0 && s->state == S_PUMPING &&
        (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP | EPOLLPRI)))
        (void)run(s, rd);
    session_unhold(s);
}

void pump_release(struct session *s)
{
    struct pump *ps[2] = {&s->c2b, &s->b2c};
    for (int i = 0; i < 2; i++) {
        struct pump *p = ps[i];
        if (p->pend)
            buffers_put(s->w, p->pend);
        if (p->pipe)
            buffers_pipe_put(s->w, p->pipe, p->in_pipe == 0);
        p->pend = NULL;
        p->pipe = NULL;
        p->in_pipe = 0;
    }
}

void pump_connected_now(struct session *s)
{
    /* The client's first bytes are usually there already (a client speaks as soon as its
     * own connect completes): read them now, so that they reach the backend right behind
     * its accept, not one pass of the loop later, when the backend has gone to sleep
     * again.  This is what lets the backend take the connection and the request in one
     * wake-up.  Nothing there yet: one read says EAGAIN. */
    session_hold(s);
    s->cev.ev |= EPOLLIN;
    upconn_complete_now(&s->up); /* -> on_up_connect -> pump_start */
    session_unhold(s);
}

/* ---- the PROXY protocol header ------------------------------------------------------ */

static void pp_addr(const struct sockaddr *sa, struct proxyproto_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        out->family = PROXYPROTO_INET;
        memcpy(out->addr, &a->sin_addr, 4);
        out->port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        out->family = PROXYPROTO_INET6;
        memcpy(out->addr, &a->sin6_addr, 16);
        out->port = ntohs(a->sin6_port);
    }
}

/* The PROXY protocol header goes first on the backend connection, as the first bytes
 * of c2b: what the kernel does not take at once waits in its write buffer, before any
 * byte of the client (and no splice while it waits).  Returns 0 or -1. */
static int proxy_header(struct session *s)
{
    union peer_addr local;
    socklen_t llen = sizeof local;
    if (s->peer.sa.sa_family == 0 || getsockname(s->cev.fd, &local.sa, &llen) != 0)
        return -1;
    int version = s->up.be->cfg->proxy_protocol == PROXY_V1 ? 1 : 2;
    struct proxyproto_addr src, dst;
    pp_addr(&s->peer.sa, &src);
    pp_addr(&local.sa, &dst);
    char hdr[PROXYPROTO_MAX];
    size_t len = proxyproto_build(version, &src, &dst, hdr);
    s->pplen = (uint32_t)len;
    s->up.be->sh->st.bytes_to_backend += len;
    struct wbuf *wb = buffers_get(s->w, len);
    if (!wb)
        return -1;
    memcpy(wb->data, hdr, len);
    s->c2b.pend = wb; /* run() writes it first */
    s->c2b.pend_off = 0;
    s->c2b.pend_len = (uint32_t)len;
    return 0;
}

void pump_start(struct session *s)
{
    s->state = S_PUMPING;
    s->c2b = (struct pump){.src = &s->cev, .dst = &s->up.ev};
    s->b2c = (struct pump){.src = &s->up.ev, .dst = &s->cev};
    s->c2b.no_splice = s->b2c.no_splice = s->pool->cfg->splice == CFG_SPLICE_OFF;
    s->last_activity = session_now_ms(s);
    s->deadline.fn = on_idle_deadline;
    timers_set(s->w, &s->deadline, s->last_activity + s->pool->cfg->idle_timeout_ms);
    if (s->up.be->cfg->proxy_protocol != PROXY_NONE && proxy_header(s) < 0) {
        session_close(s, END_BACKEND_ERROR);
        return;
    }
    /* What came while the backend was connecting (the bits are in cev.ev and up.ev.ev). */
    session_hold(s);
    if (run(s, &s->c2b) == 0)
        (void)run(s, &s->b2c);
    session_unhold(s);
}
