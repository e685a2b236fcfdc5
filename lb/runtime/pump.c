/* pump.c - bytes both ways between a session's client and backend connections.
 *
 * Buffers: a direction reads into the worker's scratch buffer and writes to the other
 * side at once (uv_try_write).  Only what the kernel does not take goes into a write
 * buffer from the worker's pool (buffers.h), and reading that side stops until it is
 * written (backpressure).  So an idle connection holds no data buffer, and a busy one at
 * most one per direction, whatever the peers do.
 *
 * The first FIN on the BACKEND connection decides who holds TIME_WAIT there: if the
 * backend's EOF arrives before we shut down our write side toward it, the backend closed
 * first (it keeps TIME_WAIT, and the reuse engine must choose the next ISN with care);
 * if we shut down first, TIME_WAIT is ours. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>

#include "os/sockprep.h"
#include "runtime/session_int.h"

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

/* Every read lands in the worker's scratch buffer: an idle connection holds none. */
static void pump_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct session *s = h->data;
    size_t size = s->pool->cfg->buffer_bytes;
    char *p = buffers_scratch(s->w, size);
    *buf = uv_buf_init(p, p ? (unsigned)size : 0);
}

static void pump_read(uv_stream_t *src, ssize_t nread, const uv_buf_t *buf);

/* Has the backend's FIN reached our kernel before ours, unread by twlb (CLOSE_WAIT; or
 * LAST_ACK / CLOSING once ours is out)?  Then the backend holds the TIME_WAIT, whatever
 * twlb has read.  FINs that cross on the wire leave one on both sides: explicit mode
 * keeps the old sequence for our TIME_WAIT too (portmap_release), so a reuse is safe
 * either way. */
static int backend_fin_was_first(const struct session *s)
{
    uv_os_fd_t fd;
    int state, err;
    return uv_fileno((const uv_handle_t *)&s->up.tcp, &fd) == 0 &&
           sockprep_tcp_state(fd, &state, &err) == 0 &&
           (state == TCP_LAST_ACK || state == TCP_CLOSING || state == TCP_CLOSE_WAIT);
}

/* At the backend's end of file: was it a reset? (one TCP_INFO per connection).  Only
 * while our write side toward it is open: after our FIN, the backend's FIN takes the
 * socket to TIME_WAIT, which leaves it CLOSED too. */
static int backend_was_reset(const struct session *s)
{
    if (s->c2b.shut)
        return 0;
    uv_os_fd_t fd;
    struct sockprep_info info;
    return uv_fileno((const uv_handle_t *)&s->up.tcp, &fd) == 0 &&
           sockprep_tcp_info(fd, &info) == 0 && info.reset;
}

static int pump_is_backend_side(const struct session *s, const struct pump *p)
{
    return p == &s->c2b; /* c2b writes to (and shuts down) the backend */
}

static void maybe_done(struct session *s)
{
    if (s->c2b.shut_done && s->b2c.shut_done)
        session_close(s, END_DONE);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct session *s = req->data;
    struct pump *p = req == s->c2b.sreq ? &s->c2b : &s->b2c;
    p->sreq = NULL;
    free(req);
    if (s->state == S_CLOSING)
        return;
    if (status < 0) {
        session_close(s, pump_is_backend_side(s, p) ? END_BACKEND_ERROR : END_CLIENT_ERROR);
        return;
    }
    /* libuv sends the FIN when its write queue is empty: the backend's may have come
     * in between. */
    if (pump_is_backend_side(s, p) && s->up.closer == PM_CLOSER_LOCAL &&
        backend_fin_was_first(s))
        s->up.closer = PM_CLOSER_BACKEND;
    p->shut_done = 1;
    maybe_done(s);
}

/* <p>'s source sent FIN and everything read is written: pass the FIN on. */
static void pump_shutdown(struct session *s, struct pump *p)
{
    if (p->shut)
        return;
    p->shut = 1;
    if (pump_is_backend_side(s, p) && s->up.closer == PM_CLOSER_NONE && !s->b2c.eof)
        s->up.closer = backend_fin_was_first(s) ? PM_CLOSER_BACKEND /* there, unread */
                                                : PM_CLOSER_LOCAL;  /* ours goes first */
    int r = UV_ENOMEM;
    if ((p->sreq = malloc(sizeof *p->sreq))) {
        p->sreq->data = s;
        if ((r = uv_shutdown(p->sreq, p->dst, on_shutdown)) < 0) {
            free(p->sreq);
            p->sreq = NULL;
        }
    }
    if (r < 0)
        session_close(s, pump_is_backend_side(s, p) ? END_BACKEND_ERROR : END_CLIENT_ERROR);
}

static void on_write(uv_write_t *req, int status)
{
    struct wbuf *b = (struct wbuf *)req;
    struct session *s = req->data;
    struct pump *p = b == s->c2b.pend ? &s->c2b : &s->b2c;
    p->pend = NULL;
    buffers_put(s->w, b); /* drained (or cancelled): back to the pool */
    if (s->state == S_CLOSING)
        return;
    if (status < 0) {
        session_close(s, pump_is_backend_side(s, p) ? END_BACKEND_ERROR : END_CLIENT_ERROR);
        return;
    }
    if (p->eof) {
        pump_shutdown(s, p);
    } else if (!p->reading) {
        p->reading = 1;
        uv_read_start(p->src, pump_alloc, pump_read);
    }
}

static void pump_read(uv_stream_t *src, ssize_t nread, const uv_buf_t *buf)
{
    struct session *s = src->data;
    if (s->state != S_PUMPING)
        return;
    struct pump *p = src == (uv_stream_t *)&s->client ? &s->c2b : &s->b2c;
    int backend_src = src == (uv_stream_t *)&s->up.tcp;
    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) { /* no scratch buffer: out of memory */
        session_close(s, backend_src ? END_BACKEND_ERROR : END_CLIENT_ERROR);
        return;
    }
    if (nread == UV_EOF && backend_src && backend_was_reset(s)) {
        /* A reset right behind data can reach read() as an end of file: pass it on as
         * the reset it is, so a reply delimited by the close never looks complete. */
        session_close(s, END_BACKEND_ERROR);
        return;
    }
    if (nread == UV_EOF) {
        if (s->first_fin == FIN_NONE)
            s->first_fin = backend_src ? FIN_BACKEND : FIN_CLIENT;
        p->eof = 1;
        p->reading = 0;
        uv_read_stop(src);
        if (backend_src && s->up.closer == PM_CLOSER_NONE && !s->c2b.shut)
            s->up.closer = PM_CLOSER_BACKEND;
        if (!p->pend)
            pump_shutdown(s, p);
        return;
    }
    if (nread < 0) {
        session_close(s, backend_src ? END_BACKEND_ERROR : END_CLIENT_ERROR);
        return;
    }
    s->last_activity = session_now_ms(s);
    p->bytes += (uint64_t)nread;
    struct backend_stats *st = &s->up.be->sh->st;
    if (backend_src)
        st->bytes_to_client += (uint64_t)nread;
    else
        st->bytes_to_backend += (uint64_t)nread;

    /* Most writes complete at once: then nothing is held. */
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int w = uv_try_write(p->dst, &b, 1);
    if (w == nread)
        return;
    if (w < 0 && w != UV_EAGAIN) {
        session_close(s, backend_src ? END_CLIENT_ERROR : END_BACKEND_ERROR);
        return;
    }
    size_t done = w > 0 ? (size_t)w : 0, left = (size_t)nread - done;
    /* The rest goes into a write buffer, and reading stops until it is written
     * (backpressure): one buffer per direction at most, only while the peer is slow. */
    struct wbuf *wb = buffers_get(s->w, left);
    if (!wb) {
        session_close(s, backend_src ? END_BACKEND_ERROR : END_CLIENT_ERROR);
        return;
    }
    memcpy(wb->data, buf->base + done, left);
    p->reading = 0;
    uv_read_stop(src);
    p->pend = wb;
    wb->req.data = s;
    b = uv_buf_init(wb->data, (unsigned)left);
    if (uv_write(&wb->req, p->dst, &b, 1, on_write) < 0) {
        p->pend = NULL;
        buffers_put(s->w, wb);
        session_close(s, backend_src ? END_CLIENT_ERROR : END_BACKEND_ERROR);
    }
}

void pump_start(struct session *s)
{
    s->state = S_PUMPING;
    s->c2b = (struct pump){.src = (uv_stream_t *)&s->client, .dst = (uv_stream_t *)&s->up.tcp};
    s->b2c = (struct pump){.src = (uv_stream_t *)&s->up.tcp, .dst = (uv_stream_t *)&s->client};
    s->last_activity = session_now_ms(s);
    s->c2b.reading = s->b2c.reading = 1;
    if (uv_read_start(s->c2b.src, pump_alloc, pump_read) < 0 ||
        uv_read_start(s->b2c.src, pump_alloc, pump_read) < 0) {
        session_close(s, END_CLIENT_ERROR);
        return;
    }
    s->deadline.fn = on_idle_deadline;
    timers_set(s->w, &s->deadline, s->last_activity + s->pool->cfg->idle_timeout_ms);
}

/* ---- the PROXY protocol header ------------------------------------------------------ */

static void on_proxy_header_written(uv_write_t *req, int status)
{
    struct session *s = req->data;
    buffers_put(s->w, (struct wbuf *)req);
    if (status < 0 && s->state == S_PUMPING)
        session_close(s, END_BACKEND_ERROR);
}

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

/* The PROXY protocol header goes first on the backend connection.  It is written before
 * the pump starts; anything the kernel does not take at once is queued in a write
 * buffer, and libuv keeps later writes behind it (uv_try_write refuses while the queue
 * is not empty). */
int pump_proxy_header(struct session *s)
{
    union peer_addr local;
    int llen = sizeof local;
    if (s->peer.sa.sa_family == 0 ||
        uv_tcp_getsockname(&s->client, &local.sa, &llen) != 0)
        return -1;
    int version = s->up.be->cfg->proxy_protocol == PROXY_V1 ? 1 : 2;
    struct proxyproto_addr src, dst;
    pp_addr(&s->peer.sa, &src);
    pp_addr(&local.sa, &dst);
    char hdr[PROXYPROTO_MAX];
    size_t len = proxyproto_build(version, &src, &dst, hdr);
    s->pplen = (uint32_t)len;
    s->up.be->sh->st.bytes_to_backend += len;
    uv_buf_t b = uv_buf_init(hdr, (unsigned)len);
    int w = uv_try_write((uv_stream_t *)&s->up.tcp, &b, 1);
    if (w == (int)len)
        return 0;
    if (w < 0 && w != UV_EAGAIN)
        return -1;
    size_t done = w > 0 ? (size_t)w : 0;
    struct wbuf *wb = buffers_get(s->w, len - done);
    if (!wb)
        return -1;
    memcpy(wb->data, hdr + done, len - done);
    wb->req.data = s;
    b = uv_buf_init(wb->data, (unsigned)(len - done));
    if (uv_write(&wb->req, (uv_stream_t *)&s->up.tcp, &b, 1, on_proxy_header_written) < 0) {
        buffers_put(s->w, wb);
        return -1;
    }
    return 0;
}
