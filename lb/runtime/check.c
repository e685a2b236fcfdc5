/* check.c - active health checks.
 *
 * Every <interval_ms> a backend with "health" configured gets one probe: a TCP connect
 * from the pool's inside address, with a source port (and ISN) from the same port
 * bookkeeping as real traffic - a probe leaves TIME_WAIT behind like any connection, so
 * it must be accounted for - then optionally <send>, and <expect> must begin the reply.
 * After a good probe we send our FIN and wait (within the timeout) for the backend's, so
 * the portmap learns who closed first; a failed probe is reset (no TIME_WAIT).  The
 * results drive the rise/fall counter in health.c. */
#include "runtime/check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "os/log.h"
#include "runtime/server.h"

enum probe_state { P_IDLE, P_CONNECTING, P_EXCHANGING, P_CLOSING_OK };

struct check {
    struct check *next;
    struct server *srv;
    struct backend_rt *be;
    const struct cfg_health *h;
    uv_timer_t interval, deadline;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    enum probe_state state;
    int tcp_open, result_sent;
    struct server_pick pick;
    int have_port, isn_known;
    uint32_t isn;
    uint64_t syn_real_ns, syn_mono_ns;
    enum pm_closer closer;
    int shut; /* our FIN sent */
    char buf[512];
    size_t got;
    int stopping;
    int handles; /* open uv handles (2 timers + tcp) while stopping */
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void release_port(struct check *c, enum pm_closer closer)
{
    if (!c->have_port)
        return;
    struct portmap_release r = {
        .closer = closer,
        .isn_known = c->isn_known,
        .isn = c->isn,
        .syn_real_ns = c->syn_real_ns,
        .syn_mono_ns = c->syn_mono_ns,
        .bytes_to_backend = c->h->send_len,
    };
    portmap_release(c->be->paths[c->pick.path]->pm, c->pick.port.port, &r,
                    server_now_ms(c->srv));
    c->have_port = 0;
}

/* The last handle of a stopped check closed: free it, then let its server know (a
 * retired generation waits for this before it is freed). */
static void check_gone(struct check *c)
{
    struct server *srv = c->srv;
    free(c);
    srv->handles_closing--;
    server_session_gone(srv);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct check *c = h->data;
    c->tcp_open = 0;
    release_port(c, c->closer);
    c->state = P_IDLE;
    if (c->stopping && --c->handles == 0)
        check_gone(c);
}

/* The probe is over: report once, then close the socket (reset unless it went well). */
static void probe_done(struct check *c, int ok, const char *why)
{
    if (c->state == P_IDLE)
        return;
    uv_timer_stop(&c->deadline);
    if (!c->result_sent) {
        c->result_sent = 1;
        uint64_t now = server_now_ms(c->srv);
        if (!ok)
            log_debug("pool %s: check of %s failed: %s", c->be->pool->cfg->name,
                      c->be->cfg->name, why);
        health_check_result(&c->be->sh->health, ok, now);
        server_backend_usable(c->srv, c->be, now);
    }
    if (!ok)
        c->closer = PM_CLOSER_NONE;
    c->state = P_IDLE;
    if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        if (ok || uv_tcp_close_reset(&c->tcp, on_tcp_closed) != 0)
            uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    } else {
        release_port(c, c->closer);
    }
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
    if (c->closer == PM_CLOSER_NONE)
        c->closer = PM_CLOSER_LOCAL;
    c->shut = 1;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
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
    uint64_t now = server_now_ms(c->srv);
    health_check_result(&c->be->sh->health, 1, now);
    server_backend_usable(c->srv, c->be, now);
    c->state = P_CLOSING_OK;
    if (c->closer == PM_CLOSER_BACKEND) { /* its FIN came with the reply */
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
            if (c->closer == PM_CLOSER_NONE && !c->shut)
                c->closer = PM_CLOSER_BACKEND;
            probe_done(c, 1, "");
            return;
        }
        if (c->closer == PM_CLOSER_NONE && !c->shut)
            c->closer = PM_CLOSER_BACKEND;
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

static void on_connect(uv_connect_t *req, int status)
{
    struct check *c = req->data;
    if (c->state != P_CONNECTING)
        return;
    if (status < 0) {
        probe_done(c, 0, uv_strerror(status));
        return;
    }
    c->state = P_EXCHANGING;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->h->send) {
        uv_buf_t b = uv_buf_init(c->h->send, (unsigned)c->h->send_len);
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
            probe_done(c, 0, "write failed");
    } else if (!c->h->expect) {
        probe_passed(c);
    }
}

static void start_probe(uv_timer_t *t)
{
    struct check *c = t->data;
    if (c->state != P_IDLE || c->tcp_open || c->srv->draining)
        return; /* the last probe is still closing: skip this round */
    if (server_acquire(c->srv, c->be, &c->pick) < 0)
        return; /* no port toward it right now: not the backend's fault, no verdict */
    c->have_port = 1;
    c->got = 0;
    c->shut = 0;
    c->result_sent = 0;
    c->closer = PM_CLOSER_NONE;
    int fd = server_sockprep_socket(c->srv, &c->pick, &c->isn_known, &c->isn);
    if (fd == -ENOSPC) {
        c->have_port = 0;
        return;
    }
    c->state = P_CONNECTING;
    if (fd < 0) {
        probe_done(c, 0, strerror(-fd));
        return;
    }
    uv_tcp_init(c->srv->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_open = 1;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        probe_done(c, 0, "uv_tcp_open failed");
        return;
    }
    c->syn_real_ns = clock_ns(CLOCK_REALTIME);
    c->syn_mono_ns = clock_ns(CLOCK_MONOTONIC);
    c->creq.data = c;
    uv_timer_start(&c->deadline, on_deadline, c->h->timeout_ms, 0);
    int r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->be->cfg->addr.ss,
                           on_connect);
    if (r < 0)
        probe_done(c, 0, uv_strerror(r));
}

int check_start_all(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    int n = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        for (size_t b = 0; b < cfg->pools[p].n_backends; b++) {
            struct backend_rt *be = &srv->pools[p].backends[b];
            const struct cfg_health *h = &be->cfg->health;
            if (!h->enabled)
                continue;
            struct check *c = calloc(1, sizeof *c);
            if (!c)
                return -ENOMEM;
            c->srv = srv;
            c->be = be;
            c->h = h;
            c->next = srv->checks;
            srv->checks = c;
            uv_timer_init(srv->loop, &c->interval);
            uv_timer_init(srv->loop, &c->deadline);
            c->interval.data = c->deadline.data = c;
            /* The first probe at once, so a dead backend is found before traffic. */
            uv_timer_start(&c->interval, start_probe, 0, h->interval_ms);
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

void check_stop_all(struct server *srv)
{
    struct check *c = srv->checks;
    srv->checks = NULL;
    while (c) {
        struct check *next = c->next;
        c->stopping = 1;
        c->handles = 2;
        srv->handles_closing++;
        uv_close((uv_handle_t *)&c->interval, on_timer_closed);
        uv_close((uv_handle_t *)&c->deadline, on_timer_closed);
        if (c->tcp_open) {
            /* on_tcp_closed releases the port and counts this handle. */
            c->handles++;
            c->closer = PM_CLOSER_NONE;
            if (!uv_is_closing((uv_handle_t *)&c->tcp) &&
                uv_tcp_close_reset(&c->tcp, on_tcp_closed) != 0)
                uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
        } else {
            release_port(c, PM_CLOSER_NONE);
        }
        c = next;
    }
}
