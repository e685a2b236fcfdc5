/* session.c - the life of one proxied connection.
 *
 *   state         what is going on                          leaves on
 *   S_CONNECTING  backend connect in flight; the client is  connect ok -> S_PUMPING
 *                 not read (its bytes wait in the kernel)   failure/timeout -> S_RETRY
 *   S_RETRY       the failed backend handle is closing;     closed -> S_CONNECTING
 *                 next try starts from its close callback   no try left -> S_CLOSING
 *   S_PUMPING     bytes flow both ways; one side may have   both FINs passed on -> S_CLOSING
 *                 sent FIN (half-close), the other goes on  error/idle -> S_CLOSING
 *   S_CLOSING     uv_close() on every open handle; the      last close callback:
 *                 session is freed by the last callback     port released, session recycled
 *
 * Backpressure: a direction reads into its one fixed buffer and writes it to the other
 * side; when the kernel does not take all of it at once (uv_try_write), reading stops
 * until the write completes.  So a session never holds more than one buffer per
 * direction, whatever the peers do.
 *
 * The first FIN on the BACKEND connection decides who holds TIME_WAIT there: if the
 * backend's EOF arrives before we shut down our write side toward it, the backend closed
 * first (it keeps TIME_WAIT, and the reuse engine must choose the next ISN with care);
 * if we shut down first, TIME_WAIT is ours.  Aborted connections are reset (no
 * TIME_WAIT anywhere). */
#include "runtime/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "os/log.h"
#include "core/proxyproto.h"
#include "runtime/server.h"
#include "os/sockprep.h"

enum session_state { S_CONNECTING, S_RETRY, S_PUMPING, S_CLOSING };

/* One direction of the pump: bytes read from <src> are written to <dst>. */
struct pump {
    uv_stream_t *src, *dst;
    char *buf;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uint64_t bytes;
    unsigned reading : 1; /* uv_read_start active on src */
    unsigned writing : 1; /* a uv_write to dst is pending */
    unsigned eof : 1;     /* src sent FIN */
    unsigned shut : 1;    /* uv_shutdown(dst) issued */
    unsigned shut_done : 1;
};

#define MAX_TRIED (CFG_RETRIES_MAX + 1) /* retries at most, plus the first try */

struct session {
    struct session *next, *prev; /* srv->active list, or srv->free_sessions */
    struct server *srv;
    const char *lis_name;   /* in this generation's config; the listener may move on */
    struct pool_rt *pool;
    enum session_state state;
    enum session_end end;

    uv_tcp_t client, backend;
    uv_timer_t timer; /* connect timeout, then idle timeout */
    uv_connect_t creq;
    unsigned client_open : 1, backend_open : 1, timer_open : 1;
    int pending_closes;

    uint64_t client_hash;
    struct sockaddr_storage peer; /* the client's address (access log, PROXY header) */
    uint64_t start_ms;
    enum { FIN_NONE, FIN_CLIENT, FIN_BACKEND } first_fin; /* session level, for the log */
    int connected;                /* a backend connection was established */
    uint32_t tried[MAX_TRIED];
    size_t ntried;

    /* the current (or last) backend connection */
    struct server_pick pick;
    int have_port;           /* pick.port.port is BUSY in its portmap */
    int isn_known;
    uint32_t isn;
    uint64_t syn_real_ns, syn_mono_ns;
    int timestamps;
    int counted_active;      /* be->view active count incremented */
    enum pm_closer closer;   /* who sent the first FIN on the backend connection */

    struct pump c2b, b2c;
    char pphdr[PROXYPROTO_MAX]; /* PROXY protocol header toward the backend */
    size_t pplen;
    uv_write_t ppreq;
    size_t bufsize;
    char *bufs;              /* 2 * bufsize, kept across reuse of the session */
    uint64_t last_activity;
};

const char *session_end_name(enum session_end e)
{
    static const char *const names[] = {
        [END_NONE] = "none",
        [END_DONE] = "done",
        [END_CLIENT_ERROR] = "client_error",
        [END_BACKEND_ERROR] = "backend_error",
        [END_IDLE_TIMEOUT] = "idle_timeout",
        [END_CONNECT_FAILED] = "connect_failed",
        [END_NO_BACKEND] = "no_backend",
        [END_DRAIN_DEADLINE] = "drain_deadline",
        [END_BACKEND_DISABLED] = "backend_disabled",
    };
    return e <= END_BACKEND_DISABLED ? names[e] : "?";
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void session_close(struct session *s, enum session_end why);
static void try_connect(struct session *s);
static void start_pumping(struct session *s);

/* ---- allocation ------------------------------------------------------------------ */

#define SESSION_CACHE_MAX 1024

static struct session *session_get(struct server *srv)
{
    struct session *s = srv->free_sessions;
    if (s) {
        srv->free_sessions = s->next;
        srv->free_count--;
        char *bufs = s->bufs;
        size_t bufsize = s->bufsize;
        memset(s, 0, sizeof *s);
        s->bufs = bufs;
        s->bufsize = bufsize;
    } else {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
    }
    s->srv = srv;
    s->next = srv->active;
    if (srv->active)
        srv->active->prev = s;
    srv->active = s;
    srv->sessions_active++;
    srv->sessions_total++;
    return s;
}

static void session_put(struct session *s)
{
    struct server *srv = s->srv;
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->active = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->sessions_active--;

    if (srv->free_count >= SESSION_CACHE_MAX || srv->draining) {
        free(s->bufs);
        free(s);
    } else {
        s->next = srv->free_sessions;
        srv->free_sessions = s;
        srv->free_count++;
    }
    server_session_gone(srv);
}

void session_free_cache(struct server *srv)
{
    while (srv->free_sessions) {
        struct session *s = srv->free_sessions;
        srv->free_sessions = s->next;
        free(s->bufs);
        free(s);
    }
    srv->free_count = 0;
}

/* ---- the end --------------------------------------------------------------------- */

/* Give the source port back to the bookkeeping, telling it who holds TIME_WAIT. */
static void release_port(struct session *s, enum pm_closer closer)
{
    if (!s->have_port)
        return;
    struct portmap_release r = {
        .closer = closer,
        .isn_known = s->isn_known,
        .isn = s->isn,
        .syn_real_ns = s->syn_real_ns,
        .syn_mono_ns = s->syn_mono_ns,
        .bytes_to_backend = s->c2b.bytes + s->pplen, /* the header is payload too */
        .timestamps = s->timestamps,
    };
    portmap_release(s->pick.be->paths[s->pick.path]->pm, s->pick.port.port, &r,
                    server_now_ms(s->srv));
    s->have_port = 0;
}

static void addr_text(const struct sockaddr_storage *ss, uint16_t port_override, char *out,
                      size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "-";
    uint16_t port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    }
    if (port_override)
        port = port_override;
    snprintf(out, len, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

/* One line per connection: everything an operator needs to follow a port's life. */
static void access_log(const struct session *s)
{
    static const char *const fins[] = {"none", "client", "backend"};
    char t[LOG_TIME_LEN], client[64], inside[64] = "-";
    log_time(t);
    addr_text(&s->peer, 0, client, sizeof client);
    const char *backend = "-", *baddr = "-";
    if (s->pick.be) {
        backend = s->pick.be->cfg->name;
        baddr = s->pick.be->cfg->addr.text;
        addr_text(&s->pool->cfg->inside[s->pick.path].ss, s->pick.port.port, inside,
                  sizeof inside);
    }
    const char *reused = s->pick.be && s->pick.port.kind == PM_PICK_REMOTE_TW ? "yes" : "no";
    unsigned long long dur = (unsigned long long)(server_now_ms(s->srv) - s->start_ms);
    char line[1024];
    int n = snprintf(line, sizeof line,
                     log_access_json()
                         ? "{\"time\":\"%s\",\"listener\":\"%s\",\"client\":\"%s\","
                           "\"backend\":\"%s\",\"backend_address\":\"%s\",\"inside\":\"%s\","
                           "\"isn_mode\":\"%s\",\"reused_time_wait\":\"%s\",\"bytes_to_backend\":%llu,"
                           "\"bytes_to_client\":%llu,\"duration_ms\":%llu,\"tries\":%zu,"
                           "\"first_fin\":\"%s\",\"end\":\"%s\"}"
                         : "time=%s listener=%s client=%s backend=%s backend_address=%s "
                           "inside=%s isn_mode=%s reused_time_wait=%s bytes_to_backend=%llu "
                           "bytes_to_client=%llu duration_ms=%llu tries=%zu first_fin=%s end=%s",
                     t, s->lis_name, client, backend, baddr, inside,
                     isn_mode_name(s->srv->isn_mode), reused,
                     (unsigned long long)s->c2b.bytes, (unsigned long long)s->b2c.bytes, dur,
                     s->ntried + (s->connected ? 1 : 0), fins[s->first_fin],
                     session_end_name(s->end));
    if (n > 0)
        log_access(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct session *s = h->data;
    if (--s->pending_closes > 0)
        return;
    /* Every handle is closed: nothing can touch the session any more. */
    release_port(s, s->closer);
    if (s->counted_active) {
        s->pick.be->sh->active--;
        s->counted_active = 0;
    }
    if (log_access_enabled())
        access_log(s);
    session_put(s);
}

static void close_handle(struct session *s, uv_handle_t *h, int reset)
{
    s->pending_closes++;
    /* A reset leaves no TIME_WAIT behind on either side: right for a connection we
     * abort.  uv_tcp_close_reset refuses a handle with a shutdown in flight. */
    if (reset && uv_tcp_close_reset((uv_tcp_t *)h, on_handle_closed) == 0)
        return;
    uv_close(h, on_handle_closed);
}

/* End the session: the first reason is kept.  Graceful (END_DONE) closes normally; any
 * other reason resets the backend connection. */
static void session_close(struct session *s, enum session_end why)
{
    if (s->state == S_CLOSING)
        return;
    s->state = S_CLOSING;
    if (s->end == END_NONE)
        s->end = why;
    int abort = why != END_DONE;
    if (abort)
        s->closer = PM_CLOSER_NONE;
    if (s->timer_open) {
        s->timer_open = 0;
        close_handle(s, (uv_handle_t *)&s->timer, 0);
    }
    if (s->client_open) {
        s->client_open = 0;
        /* The client gets a reset when we could not serve it at all, so it sees the
         * failure at once instead of an empty answer. */
        close_handle(s, (uv_handle_t *)&s->client,
                     why == END_NO_BACKEND || why == END_CONNECT_FAILED ||
                         why == END_CLIENT_ERROR);
    }
    if (s->backend_open) {
        s->backend_open = 0;
        close_handle(s, (uv_handle_t *)&s->backend, abort);
    }
}

void session_abort_backend(struct server *srv, const struct backend_rt *be)
{
    struct session *s = srv->active;
    while (s) {
        struct session *next = s->next;
        if (s->state != S_CLOSING && s->pick.be == be && (s->backend_open || s->have_port))
            session_close(s, END_BACKEND_DISABLED);
        s = next;
    }
}

void session_abort_all(struct server *srv)
{
    struct session *s = srv->active;
    while (s) {
        struct session *next = s->next;
        session_close(s, END_DRAIN_DEADLINE);
        s = next;
    }
}

/* ---- connecting ------------------------------------------------------------------ */

static int was_tried(const struct session *s, uint32_t idx)
{
    for (size_t i = 0; i < s->ntried; i++)
        if (s->tried[i] == idx)
            return 1;
    return 0;
}

static void on_backend_closed_retry(uv_handle_t *h)
{
    struct session *s = h->data;
    if (s->state != S_RETRY) { /* aborted meanwhile (drain): normal close accounting */
        on_handle_closed(h);
        return;
    }
    s->pending_closes--;
    s->state = S_CONNECTING;
    try_connect(s);
}

/* The current try failed.  <refused_port>: the kernel refused the source port itself
 * (not the backend's fault): set the port aside and try again without counting it as a
 * backend error. */
static void connect_failed(struct session *s, int err, int refused_port)
{
    struct backend_rt *be = s->pick.be;
    if (s->have_port) {
        if (refused_port) {
            portmap_quarantine(be->paths[s->pick.path]->pm, s->pick.port.port,
                               server_now_ms(s->srv));
            s->have_port = 0;
        } else {
            release_port(s, PM_CLOSER_NONE);
        }
    }
    if (!refused_port) {
        be->sh->st.connect_errors_total++;
        server_connect_result(s->srv, be, 0);
        if (!was_tried(s, (uint32_t)be->index) && s->ntried < MAX_TRIED)
            s->tried[s->ntried++] = (uint32_t)be->index;
        log_debug("pool %s: connect to %s (%s) failed: %s", s->pool->cfg->name,
                  be->cfg->name, be->cfg->addr.text, uv_strerror(err));
    }
    if (s->timer_open)
        uv_timer_stop(&s->timer);
    if (s->backend_open) {
        s->backend_open = 0;
        s->state = S_RETRY;
        s->pending_closes++;
        /* Reset: a half-open attempt must not leave TIME_WAIT. */
        if (uv_tcp_close_reset(&s->backend, on_backend_closed_retry) != 0)
            uv_close((uv_handle_t *)&s->backend, on_backend_closed_retry);
    } else {
        try_connect(s);
    }
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct session *s = t->data;
    if (s->state != S_CONNECTING)
        return;
    connect_failed(s, UV_ETIMEDOUT, 0);
}

static void on_proxy_header_written(uv_write_t *req, int status)
{
    struct session *s = req->data;
    if (status < 0 && s->state == S_PUMPING)
        session_close(s, END_BACKEND_ERROR);
}

/* The PROXY protocol header goes first on the backend connection.  It is written before
 * the pump starts; anything the kernel does not take at once is queued, and libuv keeps
 * later writes behind it (uv_try_write refuses while the queue is not empty). */
static int send_proxy_header(struct session *s)
{
    struct sockaddr_storage local;
    int llen = sizeof local;
    if (s->peer.ss_family == 0 ||
        uv_tcp_getsockname(&s->client, (struct sockaddr *)&local, &llen) != 0)
        return -1;
    int version = s->pick.be->cfg->proxy_protocol == PROXY_V1 ? 1 : 2;
    s->pplen = proxyproto_build(version, (struct sockaddr *)&s->peer, (struct sockaddr *)&local,
                                s->pphdr);
    s->pick.be->sh->st.bytes_to_backend += s->pplen;
    uv_buf_t b = uv_buf_init(s->pphdr, (unsigned)s->pplen);
    int w = uv_try_write((uv_stream_t *)&s->backend, &b, 1);
    if (w == (int)s->pplen)
        return 0;
    if (w < 0 && w != UV_EAGAIN)
        return -1;
    if (w > 0)
        b = uv_buf_init(s->pphdr + w, (unsigned)(s->pplen - (size_t)w));
    s->ppreq.data = s;
    return uv_write(&s->ppreq, (uv_stream_t *)&s->backend, &b, 1, on_proxy_header_written);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct session *s = req->data;
    if (s->state != S_CONNECTING || !s->backend_open)
        return; /* timed out or aborted: the close path owns the session */
    if (status < 0) {
        connect_failed(s, status, status == UV_EADDRNOTAVAIL || status == UV_EADDRINUSE);
        return;
    }
    uv_timer_stop(&s->timer);
    struct backend_rt *be = s->pick.be;
    uv_os_fd_t fd;
    struct sockprep_info info;
    if (uv_fileno((uv_handle_t *)&s->backend, &fd) == 0 && sockprep_tcp_info(fd, &info) == 0) {
        s->timestamps = info.timestamps;
        if (info.total_retrans > 0) {
            be->sh->st.syn_retransmits_total++;
            if (s->pick.port.kind == PM_PICK_REMOTE_TW)
                be->sh->reuse_rejects_in_row++;
        } else if (s->pick.port.kind == PM_PICK_REMOTE_TW) {
            be->sh->reuse_rejects_in_row = 0;
        }
        server_note_reuse_result(s->srv, be);
    }
    be->sh->st.connections_total++;
    server_connect_result(s->srv, be, 1);
    be->sh->active++;
    s->counted_active = 1;
    s->connected = 1;
    if (be->cfg->proxy_protocol != PROXY_NONE && send_proxy_header(s) < 0) {
        session_close(s, END_BACKEND_ERROR);
        return;
    }
    start_pumping(s);
}

/* Start the next try: pick a backend and a port, prepare the socket, connect.  Ports the
 * kernel refuses are set aside and another is taken at once (bounded). */
static void try_connect(struct session *s)
{
    struct server *srv = s->srv;
    const struct cfg_pool *pc = s->pool->cfg;
    for (int spins = 0; spins < 64; spins++) {
        if (s->ntried > pc->retries) {
            session_close(s, END_CONNECT_FAILED);
            return;
        }
        if (server_pick(srv, s->pool, s->client_hash, s->tried, s->ntried, &s->pick) < 0) {
            srv->no_backend_total++;
            session_close(s, s->ntried ? END_CONNECT_FAILED : END_NO_BACKEND);
            return;
        }
        s->have_port = 1;
        struct backend_rt *be = s->pick.be;
        int fd = server_sockprep_socket(srv, &s->pick, &s->isn_known, &s->isn);
        if (fd == -ENOSPC) {
            s->have_port = 0; /* every port toward it was refused: pick again */
            continue;
        }
        if (fd < 0) {
            log_warn("pool %s: socket toward %s: %s", pc->name, be->cfg->name, strerror(-fd));
            connect_failed(s, uv_translate_sys_error(-fd), 0);
            return;
        }
        uv_tcp_init(srv->loop, &s->backend);
        s->backend.data = s;
        s->backend_open = 1;
        if (uv_tcp_open(&s->backend, fd) != 0) {
            close(fd); /* libuv did not take it; the handle closes without an fd */
            connect_failed(s, UV_EBADF, 0);
            return;
        }
        s->creq.data = s;
        s->syn_real_ns = clock_ns(CLOCK_REALTIME);
        s->syn_mono_ns = clock_ns(CLOCK_MONOTONIC);
        int r = uv_tcp_connect(&s->creq, &s->backend,
                               (const struct sockaddr *)&be->cfg->addr.ss, on_connect);
        if (r < 0) {
            connect_failed(s, r, r == UV_EADDRNOTAVAIL || r == UV_EADDRINUSE);
            return;
        }
        if (s->pick.port.kind == PM_PICK_REMOTE_TW)
            be->paths[s->pick.path]->reuses_total++;
        uv_timer_start(&s->timer, on_connect_timeout, pc->connect_timeout_ms, 0);
        return;
    }
    /* Backends kept losing every port to the kernel: give up on this client. */
    log_warn("pool %s: no backend had a source port the kernel accepts", pc->name);
    session_close(s, END_NO_BACKEND);
}

/* ---- pumping --------------------------------------------------------------------- */

static void on_idle_timer(uv_timer_t *t)
{
    struct session *s = t->data;
    uint64_t now = server_now_ms(s->srv), limit = s->pool->cfg->idle_timeout_ms;
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
    if (pump_is_backend_side(s, p) && s->closer == PM_CLOSER_NONE && !s->b2c.eof)
        s->closer = PM_CLOSER_LOCAL; /* our FIN toward the backend goes first */
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
    int backend_src = src == (uv_stream_t *)&s->backend;
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        if (s->first_fin == FIN_NONE)
            s->first_fin = backend_src ? FIN_BACKEND : FIN_CLIENT;
        p->eof = 1;
        p->reading = 0;
        uv_read_stop(src);
        if (backend_src && s->closer == PM_CLOSER_NONE && !s->c2b.shut)
            s->closer = PM_CLOSER_BACKEND;
        if (!p->writing)
            pump_shutdown(s, p);
        return;
    }
    if (nread < 0) {
        session_close(s, backend_src ? END_BACKEND_ERROR : END_CLIENT_ERROR);
        return;
    }
    s->last_activity = server_now_ms(s->srv);
    p->bytes += (uint64_t)nread;
    struct backend_stats *st = &s->pick.be->sh->st;
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

static void start_pumping(struct session *s)
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
                           .dst = (uv_stream_t *)&s->backend,
                           .buf = s->bufs};
    s->b2c = (struct pump){.src = (uv_stream_t *)&s->backend,
                           .dst = (uv_stream_t *)&s->client,
                           .buf = s->bufs + s->bufsize};
    s->last_activity = server_now_ms(s->srv);
    s->c2b.reading = s->b2c.reading = 1;
    if (uv_read_start(s->c2b.src, pump_alloc, pump_read) < 0 ||
        uv_read_start(s->b2c.src, pump_alloc, pump_read) < 0) {
        session_close(s, END_CLIENT_ERROR);
        return;
    }
    uv_timer_start(&s->timer, on_idle_timer, s->pool->cfg->idle_timeout_ms, 0);
}

/* ---- accept ---------------------------------------------------------------------- */

void session_accept(struct listener_rt *lis)
{
    struct server *srv = lis->srv;
    struct session *s = session_get(srv);
    if (!s) {
        /* Out of memory: refuse this one client, keep the listener alive. */
        uv_tcp_t *scratch = malloc(sizeof *scratch);
        if (scratch) {
            uv_tcp_init(srv->loop, scratch);
            if (uv_accept((uv_stream_t *)&lis->handle, (uv_stream_t *)scratch) == 0)
                log_error("out of memory: dropping a client of %s", lis->cfg->name);
            uv_close((uv_handle_t *)scratch, (uv_close_cb)free);
        }
        return;
    }
    s->lis_name = lis->cfg->name;
    s->pool = &srv->pools[lis->cfg->pool];
    uv_tcp_init(srv->loop, &s->client);
    s->client.data = s;
    s->client_open = 1;
    uv_timer_init(srv->loop, &s->timer);
    s->timer.data = s;
    s->timer_open = 1;
    if (uv_accept((uv_stream_t *)&lis->handle, (uv_stream_t *)&s->client) != 0) {
        session_close(s, END_CLIENT_ERROR);
        return;
    }
    lis->connections_total++;
    uv_tcp_nodelay(&s->client, 1);

    int len = sizeof s->peer;
    s->start_ms = server_now_ms(srv);
    s->client_hash = 0;
    if (uv_tcp_getpeername(&s->client, (struct sockaddr *)&s->peer, &len) == 0) {
        if (s->peer.ss_family == AF_INET)
            s->client_hash = balance_hash_addr(&((struct sockaddr_in *)&s->peer)->sin_addr, 4);
        else if (s->peer.ss_family == AF_INET6) {
            /* An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d: hash
             * its 4 bytes, so it lands where it would on an IPv4 listener. */
            const struct in6_addr *a6 = &((struct sockaddr_in6 *)&s->peer)->sin6_addr;
            s->client_hash = IN6_IS_ADDR_V4MAPPED(a6) ? balance_hash_addr(&a6->s6_addr[12], 4)
                                                      : balance_hash_addr(a6, 16);
        }
    }
    s->state = S_CONNECTING;
    try_connect(s);
}
