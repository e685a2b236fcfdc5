/* takeover.c - see takeover.h. */
#include "runtime/takeover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "os/fdpass.h"
#include "os/log.h"
#include "os/statefile.h"
#include "runtime/listener.h"
#include "runtime/session.h"
#include "runtime/worker.h"

#define HELLO "TAKEOVER 1\n"
#define READY "READY\n"

static int unix_addr(const char *path, struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a->sun_path)
        return -ENAMETOOLONG;
    strcpy(a->sun_path, path);
    return 0;
}

static uv_process_t *spawned; /* SIGUSR2: the last new process we started, until it exits */

/* ---- on the workers ---------------------------------------------------------------- */

static void do_accept_off(struct worker *w, void *arg)
{
    w->accept_off = 1;
    for (struct gen *g = w->gens; g; g = g->next)
        listener_accept(g, 0);
}

static void do_accept_on(struct worker *w, void *arg)
{
    w->accept_off = 0;
    for (struct gen *g = w->gens; g; g = g->next)
        listener_accept(g, 1);
}

static void do_unsettled(struct worker *w, void *arg)
{
    __atomic_add_fetch((unsigned *)arg, session_unsettled(w), __ATOMIC_RELAXED);
}

struct fds_of {
    size_t listener;
    int *fds; /* by worker index */
};

static void do_fds(struct worker *w, void *arg)
{
    struct fds_of *f = arg;
    struct listener_rt *lis = w->cur->listeners[f->listener];
    f->fds[w->index] = lis ? lis->fd : -1;
}

static void do_store(struct worker *w, void *arg)
{
    if (w->index == 0)
        *(struct statefile **)arg = w->store; /* the group's, shared by all */
}

/* ---- the running process ------------------------------------------------------------ */

struct takeover_server {
    uv_loop_t *loop;
    char *path;
    int lfd, cfd;              /* listening; the connection of a takeover (-1: none) */
    uv_poll_t lpoll, cpoll;
    int cpolling;
    uv_timer_t timer;          /* settling, then waiting for READY */
    struct takeover_hooks h;
    pid_t peer;
    int phase;                 /* 0 idle, 1 asked (settling), 2 sent, 3 handed over */
    uint64_t since_ms, paused_ms;
    unsigned zero_rounds;
    int closing;
    int given;                 /* the state file and the admin address were let go */
    ino_t ino;
};

static void handover(struct takeover_server *s, struct group *g, int give)
{
    struct statefile *sf = NULL;
    if (g)
        group_each_worker(g, do_store, &sf);
    (void)statefile_handover(sf, give);
    if (s->h.handover)
        s->h.handover(s->h.arg, give);
    s->given = give;
}

static void serve_on(struct takeover_server *s, const char *why)
{
    struct group *g = s->h.group(s->h.arg);
    if (s->phase >= 1 && g)
        group_each_worker(g, do_accept_on, NULL);
    if (s->phase >= 1)
        log_warn("takeover by pid %d failed: %s; still serving", (int)s->peer, why);
    if (s->given)
        handover(s, g, 0);
    s->phase = 0;
    uv_timer_stop(&s->timer);
    if (s->cpolling) {
        uv_poll_stop(&s->cpoll);
        uv_close((uv_handle_t *)&s->cpoll, NULL);
        s->cpolling = 0;
    }
    if (s->cfd >= 0)
        close(s->cfd);
    s->cfd = -1;
}

static int send_sockets(struct takeover_server *s, struct group *g)
{
    const struct config *cfg = group_config(g);
    unsigned n = group_size(g);
    char msg[80];
    snprintf(msg, sizeof msg, "OK %u %zu %u\n", n, cfg->n_listeners, cfg->drain_timeout_ms);
    int r = fdpass_send(s->cfd, msg, strlen(msg), NULL, 0);
    int fds[FDPASS_MAX];
    for (size_t l = 0; r == 0 && l < cfg->n_listeners; l++) {
        struct fds_of f = {l, fds};
        group_each_worker(g, do_fds, &f);
        r = fdpass_send(s->cfd, "L\n", 2, fds, n);
    }
    return r;
}

static void on_timer(uv_timer_t *t)
{
    struct takeover_server *s = t->data;
    struct group *g = s->h.group(s->h.arg);
    uint64_t now = uv_now(s->loop);
    if (!g) {
        serve_on(s, "this process is stopping");
        return;
    }
    if (s->phase == 2) {
        serve_on(s, "no READY in time");
        return;
    }
    unsigned busy = 0;
    group_each_worker(g, do_unsettled, &busy);
    s->zero_rounds = busy ? 0 : s->zero_rounds + 1;
    if (s->zero_rounds < 2) { /* twice: a client handed between workers meanwhile */
        if (now - s->since_ms > TAKEOVER_SETTLE_MS)
            serve_on(s, "connections kept connecting");
        return;
    }
    handover(s, g, 1);
    int r = send_sockets(s, g);
    if (r < 0) {
        char why[96];
        snprintf(why, sizeof why, "sending the sockets: %s", strerror(-r));
        serve_on(s, why);
        return;
    }
    s->phase = 2;
    log_info("takeover: listening sockets sent to pid %d after %llu ms; waiting for it",
             (int)s->peer, (unsigned long long)(now - s->since_ms));
    uv_timer_stop(&s->timer);
    uv_timer_start(&s->timer, on_timer, TAKEOVER_READY_MS, 0);
}

static void on_conn(uv_poll_t *p, int status, int events)
{
    struct takeover_server *s = p->data;
    char buf[64];
    int fds[FDPASS_MAX];
    size_t nfds;
    int r = fdpass_recv(s->cfd, buf, sizeof buf - 1, fds, &nfds);
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    if (r == -EAGAIN || r == -EINTR)
        return;
    if (r <= 0) {
        if (s->phase == 3) { /* the new process is gone: nothing to do, we drain */
            uv_poll_stop(&s->cpoll);
            return;
        }
        serve_on(s, r == 0 ? "it closed the connection (its start failed?)" : strerror(-r));
        return;
    }
    buf[r] = 0;
    struct group *g = s->h.group(s->h.arg);
    if (s->phase == 0 && !strcmp(buf, HELLO) && g) {
        s->phase = 1;
        s->since_ms = uv_now(s->loop);
        s->zero_rounds = 0;
        log_info("takeover asked by pid %d: not accepting until it is done", (int)s->peer);
        group_each_worker(g, do_accept_off, NULL);
        uv_timer_start(&s->timer, on_timer, 0, 2);
    } else if (s->phase == 2 && !strcmp(buf, READY)) {
        s->phase = 3;
        uv_timer_stop(&s->timer);
        log_info("takeover: pid %d serves; draining", (int)s->peer);
        s->h.handed(s->h.arg, s->peer);
    } else {
        serve_on(s, g ? "unexpected message" : "this process is stopping");
    }
}

static void on_listen(uv_poll_t *p, int status, int events)
{
    struct takeover_server *s = p->data;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (s->cfd >= 0 || s->closing) { /* one takeover at a time */
        (void)fdpass_send(fd, "BUSY\n", 5, NULL, 0);
        close(fd);
        return;
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    s->peer = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : 0;
    s->cfd = fd;
    uv_poll_init(s->loop, &s->cpoll, fd);
    s->cpoll.data = s;
    s->cpolling = 1;
    uv_poll_start(&s->cpoll, UV_READABLE | UV_DISCONNECT, on_conn);
}

int takeover_serve(uv_loop_t *loop, const char *path, const struct takeover_hooks *h,
                   struct takeover_server **out, char *err, size_t errlen)
{
    struct sockaddr_un a;
    *out = NULL;
    int r = unix_addr(path, &a);
    int fd = r < 0 ? -1 : socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r == 0 && fd < 0)
        r = -errno;
    if (r == 0) {
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path); /* ours from a previous run, or the process we take over */
        mode_t old = umask(077);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0)
            r = -errno;
        umask(old);
    }
    struct takeover_server *s = r == 0 ? calloc(1, sizeof *s) : NULL;
    if (r == 0 && (!s || !(s->path = strdup(path))))
        r = -ENOMEM;
    if (r < 0) {
        snprintf(err, errlen, "upgrade_socket %s: %s", path, strerror(-r));
        if (fd >= 0)
            close(fd);
        if (s)
            free(s);
        return r;
    }
    struct stat st;
    s->ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
    if (stat(path, &st) == 0)
        s->ino = st.st_ino;
    s->loop = loop;
    s->lfd = fd;
    s->cfd = -1;
    s->h = *h;
    uv_poll_init(loop, &s->lpoll, fd);
    s->lpoll.data = s;
    uv_poll_start(&s->lpoll, UV_READABLE, on_listen);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    *out = s;
    log_info("upgrade socket on %s (twlb --takeover %s)", path, path);
    return 0;
}

static void free_server(uv_handle_t *h)
{
    struct takeover_server *s = h->data;
    free(s->path);
    free(s);
}

void takeover_server_close(struct takeover_server *s)
{
    if (spawned) { /* it serves on without us: stop watching it (the loop can end) */
        uv_close((uv_handle_t *)spawned, (uv_close_cb)free);
        spawned = NULL;
    }
    if (!s || s->closing)
        return;
    s->closing = 1;
    struct stat st;
    if (s->phase != 3 && stat(s->path, &st) == 0 && st.st_ino == s->ino)
        unlink(s->path); /* after a takeover the name is the new process's */
    if (s->phase != 3)
        serve_on(s, "this process is stopping");
    else if (s->cpolling) { /* kept open so far: the new process sees us exit */
        uv_poll_stop(&s->cpoll);
        uv_close((uv_handle_t *)&s->cpoll, NULL);
        close(s->cfd);
    }
    uv_poll_stop(&s->lpoll);
    uv_close((uv_handle_t *)&s->lpoll, NULL);
    close(s->lfd);
    uv_close((uv_handle_t *)&s->timer, free_server);
}

/* ---- the new process ------------------------------------------------------------------ */

int takeover_connect(const char *path, struct takeover_client *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    struct sockaddr_un a;
    int r = unix_addr(path, &a);
    c->fd = r < 0 ? -1 : socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (r == 0 && c->fd < 0)
        r = -errno;
    struct timeval tv = {TAKEOVER_SETTLE_MS / 1000 + 5, 0};
    if (r == 0 && (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
                   connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)) {
        r = -errno;
        snprintf(err, errlen, "takeover from %s: cannot connect: %s (is a twlb with "
                 "\"upgrade_socket\": \"%s\" running?)", path, strerror(-r), path);
        takeover_abandon(c);
        return r;
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (r == 0 && getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        c->old_pid = cred.pid;
    if (r == 0)
        r = fdpass_send(c->fd, HELLO, strlen(HELLO), NULL, 0);
    char buf[64];
    int fds[FDPASS_MAX];
    size_t nfds = 0, nl = 0;
    int got = r < 0 ? r : fdpass_recv(c->fd, buf, sizeof buf - 1, fds, &nfds);
    if (got > 0) {
        buf[got] = 0;
        if (sscanf(buf, "OK %u %zu %u", &c->nworkers, &nl, &c->drain_ms) != 3 || !c->nworkers ||
            c->nworkers > LISTENER_INHERIT_MAX || nl > LISTENER_INHERIT_SETS) {
            snprintf(err, errlen, "takeover from %s: pid %d answered \"%.*s\"", path,
                     (int)c->old_pid, (int)strcspn(buf, "\n"), buf);
            takeover_abandon(c);
            return -EPROTO;
        }
    }
    for (size_t l = 0; got > 0 && l < nl; l++) {
        got = fdpass_recv(c->fd, buf, sizeof buf, fds, &nfds);
        if (got > 0 && nfds != c->nworkers)
            got = -EPROTO;
        if (got > 0 && (r = listener_inherit(fds, c->nworkers)) < 0)
            got = r;
        if (got <= 0)
            for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
        c->nsockets += got > 0 ? c->nworkers : 0;
    }
    if (got <= 0) {
        const char *why = got == 0 ? "the running process closed the connection"
                          : got == -EAGAIN ? "no answer in time"
                                           : strerror(-got);
        snprintf(err, errlen, "takeover from %s (pid %d): %s; it serves on", path,
                 (int)c->old_pid, why);
        listener_inherit_close_rest();
        takeover_abandon(c);
        return got == 0 ? -ECONNRESET : got;
    }
    return 0;
}

int takeover_ready(struct takeover_client *c)
{
    return fdpass_send(c->fd, READY, strlen(READY), NULL, 0);
}

void takeover_abandon(struct takeover_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* ---- SIGUSR2: the new process as our child -------------------------------------------- */

static void on_child_exit(uv_process_t *p, int64_t status, int signum)
{
    if (status || signum)
        log_error("upgrade: the new process (pid %d) exited with status %d%s%s: still "
                  "serving here", p->pid, (int)status, signum ? ", signal " : "",
                  signum ? strsignal(signum) : "");
    if (spawned == p)
        spawned = NULL;
    uv_close((uv_handle_t *)p, (uv_close_cb)free);
}

int takeover_spawn(uv_loop_t *loop, const char *exe, const char *config, const char *sock,
                   char *err, size_t errlen)
{
    uv_process_t *p = calloc(1, sizeof *p);
    char *args[] = {(char *)exe, "-c", (char *)config, "--takeover", (char *)sock, NULL};
    uv_stdio_container_t stdio[3] = {{UV_IGNORE, {0}}, {UV_INHERIT_FD, {.fd = 1}},
                                     {UV_INHERIT_FD, {.fd = 2}}};
    uv_process_options_t o = {.exit_cb = on_child_exit, .file = exe, .args = args,
                              .stdio_count = 3, .stdio = stdio};
    int r = p ? uv_spawn(loop, p, &o) : UV_ENOMEM;
    if (r < 0) {
        snprintf(err, errlen, "cannot start %s: %s", exe, uv_strerror(r));
        if (p)
            uv_close((uv_handle_t *)p, (uv_close_cb)free);
        return r;
    }
    log_info("upgrade: started %s -c %s --takeover %s (pid %d)", exe, config, sock, p->pid);
    if (spawned) /* an earlier one still runs: no longer watched */
        uv_close((uv_handle_t *)spawned, (uv_close_cb)free);
    spawned = p;
    return 0;
}
