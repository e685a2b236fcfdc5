/* pump.c - bytes both ways between a session's client and backend connections.
 *
 * Backpressure: a direction reads into its one fixed buffer and writes it to the other
 * side; when the kernel does not take all of it at once (uv_try_write), reading stops
 * until the write completes.  So a session never holds more than one buffer per
 * direction, whatever the peers do.
 *
 * The first FIN on the BACKEND connection decides who holds TIME_WAIT there: if the
 * backend's EOF arrives before we shut down our write side toward it, the backend closed
 * first (it keeps TIME_WAIT, and the reuse engine must choose the next ISN with care);
 * if we shut down first, TIME_WAIT is ours. */
#include <stdlib.h>

#include "runtime/session_int.h"

static void on_idle_timer(uv_timer_t *t)
{
    struct session *s = t->data;
    uint64_t now = session_now_ms(s), limit = s->pool->cfg->idle_timeout_ms;
    if (now - s->last_activity >= limit) {
        session_close(s, END_IDLE_TIMEOUT);
        return;
    }
    /* Activity refreshes a timestamp only; the timer is re-armed lazily here. */
    uv_timer_start(&s->timer, on_idle_timer, limit - (now - s->last_activity), 0);
}

static void pump_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct session *s = h->data;
    struct pump *p = h == (uv_handle_t *)&s->client ? &s->c2b : &s->b2c;
    *buf = uv_buf_init(p->buf, (unsigned)s->bufsize);
}

static void pump_read(uv_stream_t *src, ssize_t nread, const uv_buf_t *buf);

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
    if (s->state == S_CLOSING)
        return;
    struct pump *p = req == &s->c2b.sreq ? &s->c2b : &s->b2c;
    if (status < 0) {
        session_close(s, pump_is_backend_side(s, p) ? END_BACKEND_ERROR : END_CLIENT_ERROR);
        return;
    }
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
        s->up.closer = PM_CLOSER_LOCAL; /* our FIN toward the backend goes first */
    p->sreq.data = s;
    int r = uv_shutdown(&p->sreq, p->dst, on_shutdown);
    if (r < 0)
        session_close(s, pump_is_backend_side(s, p) ? END_BACKEND_ERROR : END_CLIENT_ERROR);
}

static void on_write(uv_write_t *req, int status)
{
    struct session *s = req->data;
    if (s->state == S_CLOSING)
        return;
    struct pump *p = req == &s->c2b.wreq ? &s->c2b : &s->b2c;
    p->writing = 0;
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
    if (nread == UV_EOF) {
        if (s->first_fin == FIN_NONE)
            s->first_fin = backend_src ? FIN_BACKEND : FIN_CLIENT;
        p->eof = 1;
        p->reading = 0;
        uv_read_stop(src);
        if (backend_src && s->up.closer == PM_CLOSER_NONE && !s->c2b.shut)
            s->up.closer = PM_CLOSER_BACKEND;
        if (!p->writing)
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

    /* Most writes complete at once: then keep reading into the same buffer. */
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int w = uv_try_write(p->dst, &b, 1);
    if (w == nread)
        return;
    if (w < 0 && w != UV_EAGAIN) {
        session_close(s, backend_src ? END_CLIENT_ERROR : END_BACKEND_ERROR);
        return;
    }
    if (w > 0)
        b = uv_buf_init(buf->base + w, (unsigned)(nread - w));
    /* The rest waits in the buffer: stop reading until it is written (backpressure). */
    p->reading = 0;
    uv_read_stop(src);
    p->writing = 1;
    p->wreq.data = s;
    int r = uv_write(&p->wreq, p->dst, &b, 1, on_write);
    if (r < 0) {
        p->writing = 0;
        session_close(s, backend_src ? END_CLIENT_ERROR : END_BACKEND_ERROR);
    }
}

void pump_start(struct session *s)
{
    size_t want = s->pool->cfg->buffer_bytes;
    if (!s->bufs || s->bufsize != want) {
        free(s->bufs);
        s->bufs = malloc(2 * want);
        s->bufsize = s->bufs ? want : 0;
        if (!s->bufs) {
            session_close(s, END_BACKEND_ERROR);
            return;
        }
    }
    s->state = S_PUMPING;
    s->c2b = (struct pump){.src = (uv_stream_t *)&s->client,
                           .dst = (uv_stream_t *)&s->up.tcp,
                           .buf = s->bufs};
    s->b2c = (struct pump){.src = (uv_stream_t *)&s->up.tcp,
                           .dst = (uv_stream_t *)&s->client,
                           .buf = s->bufs + s->bufsize};
    s->last_activity = session_now_ms(s);
    s->c2b.reading = s->b2c.reading = 1;
    if (uv_read_start(s->c2b.src, pump_alloc, pump_read) < 0 ||
        uv_read_start(s->b2c.src, pump_alloc, pump_read) < 0) {
        session_close(s, END_CLIENT_ERROR);
        return;
    }
    uv_timer_start(&s->timer, on_idle_timer, s->pool->cfg->idle_timeout_ms, 0);
}

