/* upconn.c - see upconn.h.  Facts: docs/kernel-facts.md sections 2 (ISN by TCP_REPAIR)
 * and 4 (our own TIME_WAIT overrides a chosen ISN unless destroyed). */
#include "runtime/upconn.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "os/clock.h"
#include "os/kdiag.h"
#include "os/log.h"
#include "os/sockprep.h"
#include "runtime/backend.h"

/* Ports the kernel may refuse in a row toward one backend before we give up on it. */
#define REFUSED_PORTS_MAX 16

/* A connect that took less than one jiffy, from just before connect() to its first
 * EPOLLOUT, sent a single SYN: the kernel sends one again at the earliest
 * TCP_TIMEOUT_MIN (a timer of 2 jiffies, which fires more than one jiffy later) after an
 * unacceptable answer, and TCP_TIMEOUT_INIT (1 s) after none (kernel-facts 7.4).  So
 * TCP_INFO is asked only after a slower connect. */
static uint64_t syn_again_min_ns(void)
{
    static uint64_t tick; /* the same for every worker thread: a benign race */
    if (!tick)
        tick = clock_tick_ns();
    return tick;
}

#define UPCONN_OF(h) ((struct upconn *)((char *)(h) - offsetof(struct upconn, tcp)))

static uv_loop_t *loop_of(const struct upconn *u)
{
    return u->g->w->loop;
}

static uint64_t now_ms(const struct upconn *u)
{
    return uv_now(loop_of(u));
}

static const struct cfg_addr *inside_of(const struct upconn *u)
{
    return &u->be->pool->cfg->inside[u->pick.path];
}

/* The 4-tuple as the ISN functions hash it. */
static void isn_tuple(struct isn_tuple *t, const struct cfg_addr *inside, uint16_t sport,
                      const struct cfg_addr *backend)
{
    memset(t, 0, sizeof *t);
    if (inside->ss.ss_family == AF_INET) {
        t->addr_len = 4;
        memcpy(t->saddr, &((const struct sockaddr_in *)&inside->ss)->sin_addr, 4);
        memcpy(t->daddr, &((const struct sockaddr_in *)&backend->ss)->sin_addr, 4);
        t->dport = ntohs(((const struct sockaddr_in *)&backend->ss)->sin_port);
    } else {
        t->addr_len = 16;
        memcpy(t->saddr, &((const struct sockaddr_in6 *)&inside->ss)->sin6_addr, 16);
        memcpy(t->daddr, &((const struct sockaddr_in6 *)&backend->ss)->sin6_addr, 16);
        t->dport = ntohs(((const struct sockaddr_in6 *)&backend->ss)->sin6_port);
    }
    t->sport = sport;
}

static void sockaddr_with_port(struct sockaddr_storage *out, const struct cfg_addr *a,
                               uint16_t port)
{
    memcpy(out, &a->ss, a->len);
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)out)->sin6_port = htons(port);
}

/* Give the port back, telling the bookkeeping who holds TIME_WAIT. */
static void release(struct upconn *u, enum pm_closer closer)
{
    if (!u->have_port)
        return;
    struct portmap_release r = {
        .closer = closer,
        .isn_known = u->isn_known,
        .isn = u->isn,
        .syn_real_ns = u->syn_real_ns,
        .syn_mono_ns = u->syn_mono_ns,
        .bytes_to_backend = u->bytes_to_backend,
        .timestamps = u->timestamps,
        .never_connected = !u->connected,
    };
    pathset_release(u->be->ps, &u->pick, &r, now_ms(u));
    u->have_port = 0;
}

/* The kernel refused the port: set it aside and take another toward the same backend.
 * Returns 0, or UPCONN_NO_PORT (nothing held). */
static int next_port(struct upconn *u)
{
    pathset_quarantine(u->be->ps, &u->pick, now_ms(u));
    u->have_port = 0;
    if (++u->tries >= REFUSED_PORTS_MAX) {
        log_warn("pool %s: %d source ports toward %s refused by the kernel in a row",
                 u->be->pool->cfg->name, REFUSED_PORTS_MAX, u->be->cfg->name);
        return UPCONN_NO_PORT;
    }
    if (backend_acquire(u->g, u->be, now_ms(u), &u->pick) < 0)
        return UPCONN_NO_PORT;
    u->have_port = 1;
    u->destroyed = 0;
    return 0;
}

static int is_port_refusal(int err)
{
    return err == UV_EADDRNOTAVAIL || err == UV_EADDRINUSE;
}

static int step(struct upconn *u);

/* Carry on after an asynchronous stage; a failure now goes to the callback. */
static void resume(struct upconn *u)
{
    int r = step(u);
    if (r < 0)
        u->on_connect(u, r);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct upconn *u = UPCONN_OF(h);
    u->tcp_open = 0;
    release(u, u->closer);
    u->on_closed(u);
}

/* A socket that failed before it connected is closed: a refused source port moves on to
 * the next port, any other failure is reported (unless the owner closed meanwhile). */
static void on_failed_closed(uv_handle_t *h)
{
    struct upconn *u = UPCONN_OF(h);
    u->tcp_open = 0;
    if (u->closing) {
        release(u, PM_CLOSER_NONE);
        u->on_closed(u);
        return;
    }
    if (!is_port_refusal(u->fail_status)) {
        release(u, PM_CLOSER_NONE);
        u->on_connect(u, u->fail_status);
        return;
    }
    int r = next_port(u);
    if (r < 0)
        u->on_connect(u, r);
    else
        resume(u);
}

static void close_failed(struct upconn *u, int status)
{
    u->fail_status = status;
    if (uv_tcp_close_reset(&u->tcp, on_failed_closed) != 0)
        uv_close((uv_handle_t *)&u->tcp, on_failed_closed);
}

static void do_destroy(uv_work_t *w)
{
    struct upconn *u = w->data;
    struct sockaddr_storage local;
    sockaddr_with_port(&local, inside_of(u), u->pick.port.port);
    u->destroy_result = kdiag_destroy((struct sockaddr *)&local,
                                      (const struct sockaddr *)&u->be->cfg->addr.ss);
}

static void after_destroy(uv_work_t *w, int status)
{
    struct upconn *u = w->data;
    free(w);
    u->work = NULL;
    u->work_pending = 0;
    if (u->closing) {
        release(u, PM_CLOSER_NONE);
        u->on_closed(u);
        return;
    }
    if (status < 0)
        u->destroy_result = status;
    u->destroyed = 1;
    resume(u);
}

static void on_tcp_connect(uv_connect_t *req, int status)
{
    struct upconn *u = req->data;
    free(req);
    u->creq = NULL;
    if (u->closing)
        return; /* the close path owns it */
    if (is_port_refusal(status)) {
        close_failed(u, status);
        return;
    }
    if (status == 0) {
        u->connected = 1;
        uv_os_fd_t fd;
        struct sockprep_info info;
        if (uv_fileno((uv_handle_t *)&u->tcp, &fd) == 0 && sockprep_tcp_info(fd, &info) == 0) {
            u->timestamps = info.timestamps;
            backend_note_syn(u->g, u->be, u->pick.port.kind == PM_PICK_REMOTE_TW,
                             info.total_retrans > 0);
        }
    }
    u->on_connect(u, status);
}

/* The connect of the current port is under way: a reuse of the backend's TIME_WAIT is
 * counted (and, in kernel ISN mode, what its prediction was based on is logged). */
static void count_reuse(struct upconn *u)
{
    if (u->pick.port.kind != PM_PICK_REMOTE_TW)
        return;
    pathset_count_reuse(u->be->ps, &u->pick);
    if (u->pick.port.decided_real_ns)
        log_debug("kernel-isn reuse %s:%u -> %s: old_syn_real_ns=%llu bytes=%llu "
                  "decided_real_ns=%llu syn_real_ns=%llu",
                  inside_of(u)->text, u->pick.port.port, u->be->cfg->addr.text,
                  (unsigned long long)u->pick.port.old_syn_real_ns,
                  (unsigned long long)u->pick.port.old_bytes,
                  (unsigned long long)u->pick.port.decided_real_ns,
                  (unsigned long long)u->syn_real_ns);
}

/* ---- raw sockets (client sessions) ------------------------------------------------ */

static void on_raw_event(struct evfd *e, uint32_t events)
{
    struct upconn *u = (struct upconn *)((char *)e - offsetof(struct upconn, ev));
    if (!u->connecting) {
        if (u->on_event)
            u->on_event(u, events);
        return;
    }
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return; /* nothing a SYN_SENT socket reports */
    u->connecting = 0;
    int status = 0;
    if (events & (EPOLLERR | EPOLLHUP)) { /* only then is there an error to ask for */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        status = -err;
    }
    if (is_port_refusal(status)) {
        evpoll_close(u->g->w, &u->ev, 0);
        u->tcp_open = 0;
        int r = next_port(u);
        if (r < 0)
            u->on_connect(u, r);
        else
            resume(u);
        return;
    }
    if (status == 0) {
        u->connected = 1;
        int again = 0;
        struct sockprep_info info;
        if (clock_mono_ns() - u->connect_mono_ns >= syn_again_min_ns() &&
            sockprep_tcp_info(e->fd, &info) == 0) {
            u->timestamps = info.timestamps;
            again = info.total_retrans > 0;
        }
        backend_note_syn(u->g, u->be, u->pick.port.kind == PM_PICK_REMOTE_TW, again);
    }
    u->on_connect(u, status); /* on an error the owner closes it */
}

void upconn_complete_now(struct upconn *u)
{
    u->connected_now = 0;
    if (!u->connecting)
        return;
    u->ev.ev |= EPOLLOUT; /* as evpoll's dispatch would */
    on_raw_event(&u->ev, EPOLLOUT);
}

/* connect(2) <fd>, prepared for the current port, and watch it.  Returns 0 (connecting),
 * 1 when the kernel refused the port (fd closed, the next port taken), or an error
 * (fd closed, nothing held). */
static int connect_raw(struct upconn *u, int fd)
{
    const struct cfg_addr *to = &u->be->cfg->addr;
    u->connect_mono_ns = clock_mono_ns(); /* before: the SYN cannot be older */
    int r = 0;
    if (connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0 && errno != EINPROGRESS &&
        errno != EINTR)
        r = -errno;
    /* The SYN time, read once connect() has returned, as for a probe's (step()): never
     * earlier than the kernel's ISN (kernel-facts 3, 7.3). */
    clock_pair_ns(&u->syn_real_ns, &u->syn_mono_ns);
    if (r == 0 && (r = evpoll_add(u->g->w, &u->ev, fd, on_raw_event)) == 0) {
        u->tcp_open = 1;
        u->connecting = 1;
        count_reuse(u);
        struct backend_rt *be = u->be; /* done already? (upconn.h, upconn_complete_now) */
        if (be->sync_skip == 0) {
            struct sockprep_info info;
            int now = sockprep_tcp_info(fd, &info) == 0 && info.state == TCP_ESTABLISHED;
            be->sync_skip = now ? 0 : 63; /* after a no, the next 63 connects do not ask */
            u->connected_now = (unsigned)now;
            be->sh->st.connects_inline_total += (uint64_t)now;
        } else {
            be->sync_skip--;
        }
        return 0;
    }
    close(fd);
    u->ev.fd = -1;
    if (is_port_refusal(r))
        return (r = next_port(u)) < 0 ? r : 1;
    release(u, PM_CLOSER_NONE);
    return r;
}

/* Our own TIME_WAIT on this 4-tuple must go first when the policy says so, and always in
 * explicit mode, where otherwise the kernel would override our ISN (kernel-facts 4). */
static int needs_destroy(const struct upconn *u)
{
    return u->pick.port.kind == PM_PICK_LOCAL_TW &&
           (u->pick.port.destroy_local_tw || u->g->isn_mode == ISN_EXPLICIT);
}

/* Prepare a socket for the current port and start the connect.  Returns 0 when an
 * asynchronous stage is under way, or an error with nothing held. */
static int step(struct upconn *u)
{
    for (;;) {
        const struct cfg_addr *inside = inside_of(u);
        if (needs_destroy(u) && !u->destroyed) {
            int r = UV_ENOMEM;
            if ((u->work = malloc(sizeof *u->work))) {
                u->work->data = u;
                u->work_pending = 1;
                if ((r = uv_queue_work(loop_of(u), u->work, do_destroy, after_destroy)) == 0)
                    return 0;
                u->work_pending = 0;
                free(u->work);
                u->work = NULL;
            }
            u->destroyed = 1;
            u->destroy_result = r;
        }
        int refused = 0;
        if (u->destroyed && u->destroy_result < 0 && u->destroy_result != -ENOENT &&
            u->pick.port.destroy_local_tw) {
            log_debug("SOCK_DESTROY %s:%u failed: %s", inside->text, u->pick.port.port,
                      strerror(-u->destroy_result));
            refused = 1;
        }
        int fd = -EADDRINUSE;
        if (!refused) {
            u->isn_known = 0;
            if (u->g->isn_mode == ISN_EXPLICIT) {
                struct isn_tuple t;
                isn_tuple(&t, inside, u->pick.port.port, &u->be->cfg->addr);
                uint64_t now = clock_real_ns();
                /* Above the old connection's last sequence number whenever we know it:
                 * the backend's TIME_WAIT, or ours when the FINs may have crossed. */
                int above = u->pick.port.kind == PM_PICK_REMOTE_TW ||
                            (u->pick.port.kind == PM_PICK_LOCAL_TW && u->pick.port.rcv_nxt_known);
                u->isn = above ? isn_reuse(&u->g->w->isn_key, &t, u->pick.port.rcv_nxt, now)
                               : isn_fresh(&u->g->w->isn_key, &t, now);
                u->isn_known = 1;
            }
            fd = sockprep_socket((const struct sockaddr *)&inside->ss, u->pick.port.port,
                                 u->isn_known, u->isn);
        }
        if (fd == -EADDRINUSE || fd == -EADDRNOTAVAIL) {
            int r = next_port(u);
            if (r < 0)
                return r;
            continue;
        }
        if (fd < 0) {
            release(u, PM_CLOSER_NONE);
            return fd;
        }
        if (u->raw) {
            int r = connect_raw(u, fd);
            if (r == 1)
                continue;
            return r;
        }
        void *owner = u->tcp.data;
        uv_tcp_init(loop_of(u), &u->tcp);
        u->tcp.data = owner;
        u->tcp_open = 1;
        if (uv_tcp_open(&u->tcp, fd) != 0) {
            close(fd); /* libuv did not take it; the handle closes without an fd */
            u->fail_status = UV_EBADF;
            uv_close((uv_handle_t *)&u->tcp, on_failed_closed);
            return 0;
        }
        int r = UV_ENOMEM;
        if ((u->creq = malloc(sizeof *u->creq))) {
            u->creq->data = u;
            r = uv_tcp_connect(u->creq, &u->tcp, (const struct sockaddr *)&u->be->cfg->addr.ss,
                               on_tcp_connect);
            if (r < 0) {
                free(u->creq);
                u->creq = NULL;
            }
        }
        /* The SYN time, read once connect() has returned: never earlier than the moment
         * the kernel took its ISN from CLOCK_REALTIME (kernel-facts 3, 7.3), while a later
         * reuse judges safety from a reading taken before its own connect(); so the
         * predicted advance is never more than the true one (docs/reuse.md, "The
         * kernel-mode margin"). */
        clock_pair_ns(&u->syn_real_ns, &u->syn_mono_ns);
        if (r < 0) {
            /* connect() itself failed at once: a refused port, or the route; either way
             * the handle closes first, then the next port or the report follows. */
            close_failed(u, r);
            return 0;
        }
        count_reuse(u);
        return 0;
    }
}

static int fd_of(const struct upconn *u, uv_os_fd_t *fd)
{
    if (u->raw) {
        *fd = u->ev.fd;
        return *fd >= 0 ? 0 : -1;
    }
    return uv_fileno((const uv_handle_t *)&u->tcp, fd);
}

int upconn_finished(struct upconn *u)
{
    uv_os_fd_t fd;
    int state, err;
    if (!u->tcp_open || !u->connected || fd_of(u, &fd) != 0 ||
        sockprep_tcp_state(fd, &state, &err) < 0)
        return 0;
    switch (state) {
    case TCP_CLOSE:
        return err == 0 && u->closer != PM_CLOSER_NONE;
    case TCP_LAST_ACK:
    case TCP_CLOSING:
        u->closer = PM_CLOSER_BACKEND;
        return 1;
    default:
        return 0; /* a reset ends it with no TIME_WAIT anywhere */
    }
}

int upconn_open(struct upconn *u, struct gen *g, struct backend_rt *be,
                const struct pathset_pick *pick, upconn_connect_cb on_connect)
{
    void *data = u->tcp.data;
    int raw = u->raw;
    void (*on_event)(struct upconn *, uint32_t) = u->on_event;
    memset(u, 0, sizeof *u);
    u->tcp.data = data;
    u->raw = raw;
    u->on_event = on_event;
    u->ev.fd = -1;
    u->g = g;
    u->be = be;
    u->pick = *pick;
    u->have_port = 1;
    u->on_connect = on_connect;
    return step(u);
}

int upconn_close(struct upconn *u, int reset, upconn_closed_cb on_closed)
{
    u->closing = 1;
    u->on_closed = on_closed;
    if (u->work_pending) {
        u->closer = PM_CLOSER_NONE; /* never connected */
        return 1;                   /* after_destroy finishes */
    }
    if (u->raw) {
        uv_os_fd_t fd;
        int state, err;
        if (reset || !u->connected) {
            u->closer = PM_CLOSER_NONE; /* a reset, or nothing to close: no TIME_WAIT */
        } else if (u->closer == PM_CLOSER_NONE && fd_of(u, &fd) == 0 &&
                   sockprep_tcp_state(fd, &state, &err) == 0 && state == TCP_CLOSE_WAIT) {
            u->closer = PM_CLOSER_BACKEND; /* its FIN is here: ours, by the close, answers */
        }
        if (u->tcp_open)
            evpoll_close(u->g->w, &u->ev, reset);
        u->tcp_open = u->connecting = 0;
        release(u, u->closer);
        return 0;
    }
    if (u->tcp_open) {
        if (uv_is_closing((uv_handle_t *)&u->tcp))
            return 1; /* on_failed_closed sees <closing> */
        /* A reset leaves no TIME_WAIT behind on either side. */
        if (reset && uv_tcp_close_reset(&u->tcp, on_handle_closed) == 0) {
            u->closer = PM_CLOSER_NONE;
            return 1;
        }
        /* A normal close, or a reset libuv refuses because a shutdown is in flight: then
         * the close sends our FIN, and the closer the owner recorded stands, unless the
         * backend's FIN is already here (CLOSE_WAIT): then ours answers it and the
         * backend keeps the TIME_WAIT. */
        uv_os_fd_t fd;
        int state, err;
        if (u->connected && uv_fileno((uv_handle_t *)&u->tcp, &fd) == 0 &&
            sockprep_tcp_state(fd, &state, &err) == 0 && state == TCP_CLOSE_WAIT)
            u->closer = PM_CLOSER_BACKEND;
        uv_close((uv_handle_t *)&u->tcp, on_handle_closed);
        return 1;
    }
    if (reset)
        u->closer = PM_CLOSER_NONE;
    release(u, u->closer);
    return 0;
}
