/* check.c - active health checks.
 *
 * Every <interval_ms> a backend with "health" configured gets one probe: a TCP connect
 * from the pool's inside address, with a source port (and ISN) from the same port
 * bookkeeping as real traffic - a probe leaves TIME_WAIT behind like any connection, so
 * it must be accounted for - then optionally <send>, and <expect> must begin the reply.
 * After a good probe we send our FIN and wait (within the timeout) for the backend's, so
 * the portmap learns who closed first; a failed probe is reset (no TIME_WAIT).  The
 * results drive the rise/fall counter in health.c.  The probes of a generation are
 * spread evenly over the interval (check_start_all), and timeout_ms <= interval_ms
 * (config.c), so a probe is over before the next one of its backend. */
#include "runtime/check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/proxyproto.h"
#include "os/log.h"
#include "runtime/backend.h"
#include "runtime/gen.h"
#include "runtime/local.h"
#include "runtime/upconn.h"

enum probe_state { P_IDLE, P_CONNECTING, P_EXCHANGING, P_CLOSING_OK };

struct check {
    struct check *next;
    struct gen *g;
    struct backend_rt *be;
    const struct cfg_health *h;
    uv_timer_t interval, deadline;
    struct upconn up;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    enum probe_state state;
    int up_busy;     /* the upconn holds a port or a socket until on_up_closed */
    int result_sent;
    int shut;        /* our FIN sent */
    char buf[512];
    char pp[PROXYPROTO_MAX]; /* a PROXY header without addresses, for backends that
                                want one on every connection */
    size_t got;
    int stopping;
    int handles;     /* open uv handles (2 timers + the upconn) while stopping */
};

/* The last handle of a stopped check closed: free it, then tell its generation (a
 * retired one waits for this before it is freed). */
static void check_gone(struct check *c)
{
    struct gen *g = c->g;
    free(c);
    gen_handle_closed(g);
}

static void on_up_closed(struct upconn *u)
{
    struct check *c = u->tcp.data;
    c->up_busy = 0;
    c->state = P_IDLE;
    if (c->stopping && --c->handles == 0)
        check_gone(c);
}

static void close_up(struct check *c, int reset)
{
    if (c->up_busy && !upconn_close(&c->up, reset, on_up_closed))
        on_up_closed(&c->up);
}

/* The probe is over: report once, then close the socket (reset unless it went well). */
static void probe_done(struct check *c, int ok, const char *why)
{
    if (c->state == P_IDLE)
        return;
    uv_timer_stop(&c->deadline);
    if (!c->result_sent) {
        c->result_sent = 1;
        uint64_t now = worker_now_ms(c->g->w);
        if (!ok)
            log_debug("pool %s: check of %s failed: %s", c->be->pool->cfg->name,
                      c->be->cfg->name, why);
        backend_probe_result(c->be, ok, now);
    }
    c->state = P_IDLE;
    close_up(c, !ok);
}

static void on_deadline(uv_timer_t *t)
{
    struct check *c = t->data;
    if (c->state == P_CLOSING_OK) {
        /* The check passed; the backend just did not close in time.  Our FIN is out. */
        c->state = P_EXCHANGING;
        probe_done(c, 1, "");
        return;
    }
    probe_done(c, 0, "timeout");
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* the outcome is decided already; close follows the backend's FIN */
}

/* After a good probe: a backend that closes after its reply has usually sent its FIN
 * already, so give it a moment; if it has not, ours goes first. */
#define CHECK_FIN_GRACE_MS 50

static void on_grace(uv_timer_t *t)
{
    struct check *c = t->data;
    if (c->state != P_CLOSING_OK || c->shut)
        return;
    if (c->up.closer == PM_CLOSER_NONE)
        c->up.closer = PM_CLOSER_LOCAL;
    c->shut = 1;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->up.tcp, on_shutdown) != 0) {
        probe_done(c, 1, "");
        return;
    }
    /* wait for the backend's FIN, at most the probe timeout */
    uv_timer_start(&c->deadline, on_deadline, c->h->timeout_ms, 0);
}

/* Good: report it, then find out who closes first (the portmap needs to know). */
static void probe_passed(struct check *c)
{
    c->result_sent = 1;
    uint64_t now = worker_now_ms(c->g->w);
    backend_probe_result(c->be, 1, now);
    c->state = P_CLOSING_OK;
    if (c->up.closer == PM_CLOSER_BACKEND) { /* its FIN came with the reply */
        probe_done(c, 1, "");
        return;
    }
    uv_timer_start(&c->deadline, on_grace, CHECK_FIN_GRACE_MS, 0);
}

static void on_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
    struct check *c = h->data;
    size_t room = sizeof c->buf - c->got;
    if (room == 0) { /* beyond what we compare: read into the tail and drop it */
        *buf = uv_buf_init(c->buf, sizeof c->buf);
        return;
    }
    *buf = uv_buf_init(c->buf + c->got, (unsigned)room);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct check *c = st->data;
    if (n == UV_EOF) {
        if (c->state == P_CLOSING_OK) {
            if (c->up.closer == PM_CLOSER_NONE && !c->shut)
                c->up.closer = PM_CLOSER_BACKEND;
            probe_done(c, 1, "");
            return;
        }
        if (c->up.closer == PM_CLOSER_NONE && !c->shut)
            c->up.closer = PM_CLOSER_BACKEND;
        uv_read_stop(st);
        if (c->h->expect && c->got < c->h->expect_len)
            probe_done(c, 0, "closed before the expected reply");
        else
            probe_passed(c);
        return;
    }
    if (n < 0) {
        probe_done(c, 0, uv_strerror((int)n));
        return;
    }
    if (c->state != P_EXCHANGING || buf->base != c->buf + c->got)
        return; /* bytes after the expected prefix: dropped */
    c->got += (size_t)n;
    if (!c->h->expect)
        return;
    size_t cmp = c->got < c->h->expect_len ? c->got : c->h->expect_len;
    if (memcmp(c->buf, c->h->expect, cmp) != 0) {
        probe_done(c, 0, "unexpected reply");
        return;
    }
    if (c->got >= c->h->expect_len)
        probe_passed(c);
}

static void on_written(uv_write_t *req, int status)
{
    struct check *c = req->data;
    if (c->state != P_EXCHANGING)
        return;
    if (status < 0) {
        probe_done(c, 0, uv_strerror(status));
        return;
    }
    if (!c->h->expect)
        probe_passed(c);
}

static void on_up_connect(struct upconn *u, int status)
{
    struct check *c = u->tcp.data;
    if (c->state != P_CONNECTING)
        return;
    if (status == UPCONN_NO_PORT || local_is_resource_error(status)) {
        /* No port toward it right now, or no descriptor here: not the backend's fault,
         * no verdict. */
        if (status != UPCONN_NO_PORT)
            local_error(c->g->w, "health probe", status);
        c->state = P_IDLE;
        uv_timer_stop(&c->deadline);
        close_up(c, 1);
        return;
    }
    if (status < 0) {
        probe_done(c, 0, uv_strerror(status));
        return;
    }
    c->state = P_EXCHANGING;
    uv_read_start((uv_stream_t *)&c->up.tcp, on_alloc, on_read);
    uv_buf_t b[2];
    unsigned nb = 0;
    if (c->be->cfg->proxy_protocol != PROXY_NONE) {
        /* A backend that wants the PROXY header gets one on probes too, with no client
         * address: "PROXY UNKNOWN" (v1) or a LOCAL header (v2), as HAProxy sends. */
        struct proxyproto_addr none = {0};
        size_t n = proxyproto_build(c->be->cfg->proxy_protocol == PROXY_V1 ? 1 : 2, &none,
                                    &none, c->pp);
        b[nb++] = uv_buf_init(c->pp, (unsigned)n);
        c->up.bytes_to_backend += n;
    }
    if (c->h->send)
        b[nb++] = uv_buf_init(c->h->send, (unsigned)c->h->send_len);
    if (nb) {
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->up.tcp, b, nb, on_written) != 0)
            probe_done(c, 0, "write failed");
    } else if (!c->h->expect) {
        probe_passed(c);
    }
}

static void start_probe(uv_timer_t *t)
{
    struct check *c = t->data;
    if (c->state != P_IDLE || c->up_busy || c->g->w->draining || c->g->w->accept_off)
        return; /* the last probe is still closing: skip this round */
    struct pathset_pick pick;
    if (backend_acquire(c->g, c->be, worker_now_ms(c->g->w), &pick) < 0)
        return; /* no port toward it right now: not the backend's fault, no verdict */
    c->got = 0;
    c->shut = 0;
    c->result_sent = 0;
    c->up.tcp.data = c;
    int r = upconn_open(&c->up, c->g, c->be, &pick, on_up_connect);
    if (r == UPCONN_NO_PORT)
        return;
    if (local_is_resource_error(r)) {
        local_error(c->g->w, "health probe", r); /* no verdict on the backend */
        return;
    }
    c->state = P_CONNECTING;
    if (r < 0) {
        probe_done(c, 0, strerror(-r));
        return;
    }
    c->up_busy = 1;
    c->up.bytes_to_backend = c->h->send_len;
    uv_timer_start(&c->deadline, on_deadline, c->h->timeout_ms, 0);
}

int check_start_all(struct gen *g)
{
    const struct config *cfg = g->cfg;
    size_t total = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        for (size_t b = 0; b < cfg->pools[p].n_backends; b++)
            total += cfg->pools[p].backends[b].health.enabled != 0;
    int n = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        for (size_t b = 0; b < cfg->pools[p].n_backends; b++) {
            struct backend_rt *be = &g->pools[p].backends[b];
            const struct cfg_health *h = &be->cfg->health;
            if (!h->enabled)
                continue;
            struct check *c = calloc(1, sizeof *c);
            if (!c)
                return -ENOMEM;
            c->g = g;
            c->be = be;
            c->h = h;
            c->next = g->checks;
            g->checks = c;
            uv_timer_init(g->w->loop, &c->interval);
            uv_timer_init(g->w->loop, &c->deadline);
            c->interval.data = c->deadline.data = c;
            /* Spread over the interval: the k-th of n checks first probes at k/n of it,
             * so 10,000 backends never open 10,000 sockets in one loop turn (at most
             * about n * timeout / interval probes are open at once). */
            uint64_t first = (uint64_t)n * h->interval_ms / total;
            uv_timer_start(&c->interval, start_probe, first, h->interval_ms);
            n++;
        }
    return n;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct check *c = h->data;
    if (--c->handles == 0)
        check_gone(c);
}

void check_stop_all(struct gen *g)
{
    struct check *c = g->checks;
    g->checks = NULL;
    while (c) {
        struct check *next = c->next;
        c->stopping = 1;
        c->handles = 2;
        g->handles_closing++;
        uv_close((uv_handle_t *)&c->interval, on_timer_closed);
        uv_close((uv_handle_t *)&c->deadline, on_timer_closed);
        if (c->up_busy) {
            c->handles++; /* on_up_closed releases the port and counts this one */
            close_up(c, 1);
        }
        c = next;
    }
}
