/* admin.c - see admin.h.  Rendering walks the runtime objects of one server; it runs on
 * the same loop as the data path, so it only reads counters and is O(backends x inside
 * addresses), never blocking. */
#include "admin/admin.h"

#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "os/log.h"
#include "runtime/server.h"

#define ADMIN_MAX_CONNS 64
#define ADMIN_REQ_MAX 8192
#define ADMIN_DEADLINE_MS 5000

struct admin_conn;

struct admin {
    struct server *srv;
    char token[ADMIN_TOKEN_MAX]; /* bearer token for POST, "" when none is configured */
    uv_tcp_t listener;
    struct admin_conn *conns; /* open connections */
    int nconns;
    int closing;
    int pending; /* handles not yet closed, the listener included */
};

struct admin_conn {
    struct admin_conn *next, *prev;
    struct admin *a;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char req[ADMIN_REQ_MAX];
    size_t len;
    char *resp;
    int closing;
    int pending; /* 2 handles */
};

/* ---- a growing string -------------------------------------------------------------- */

struct sb {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* ---- process figures --------------------------------------------------------------- */

static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream itself */
}

static long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long pages = 0, rss = 0;
    int ok = fscanf(f, "%ld %ld", &pages, &rss) == 2;
    fclose(f);
    return ok ? rss * sysconf(_SC_PAGESIZE) : -1;
}

/* ---- /metrics ---------------------------------------------------------------------- */

/* Ports per state as of <now>: expired TIME_WAIT counts as free. */
static void current_counts(portmap *pm, uint64_t now, uint32_t counts[PM_NSTATES])
{
    portmap_expire(pm, now);
    portmap_counts(pm, counts);
}

static void help(struct sb *b, const char *name, const char *type, const char *text)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Config names are restricted to [A-Za-z0-9_.-] and addresses to what inet_pton takes,
 * so label values never need escaping. */
static void render_metrics(struct server *srv, struct sb *b)
{
    const struct config *c = srv->cfg;
    uint64_t now = server_now_ms(srv);

    help(b, "twlb_isn_mode", "gauge", "1 for the ISN mode in use");
    for (enum isn_mode m = ISN_EXPLICIT; m <= ISN_OFF; m++)
        sb_printf(b, "twlb_isn_mode{mode=\"%s\"} %d\n", isn_mode_name(m), m == srv->isn_mode);

    help(b, "twlb_listener_connections_total", "counter", "Client connections accepted");
    for (size_t i = 0; i < c->n_listeners; i++)
        sb_printf(b, "twlb_listener_connections_total{listener=\"%s\"} %llu\n",
                  c->listeners[i].name,
                  (unsigned long long)(srv->listeners[i] ? srv->listeners[i]->connections_total : 0));

    help(b, "twlb_backend_connections_active", "gauge", "Live backend connections");
    for (size_t p = 0; p < c->n_pools; p++)
        for (size_t i = 0; i < c->pools[p].n_backends; i++)
            sb_printf(b, "twlb_backend_connections_active{pool=\"%s\",backend=\"%s\"} %u\n",
                      c->pools[p].name, c->pools[p].backends[i].name,
                      srv->pools[p].backends[i].sh->active);

#define X(fld, mname, mhelp)                                                             \
    help(b, mname, "counter", mhelp);                                                    \
    for (size_t p = 0; p < c->n_pools; p++)                                              \
        for (size_t i = 0; i < c->pools[p].n_backends; i++)                              \
            sb_printf(b, mname "{pool=\"%s\",backend=\"%s\"} %llu\n", c->pools[p].name,  \
                      c->pools[p].backends[i].name,                                      \
                      (unsigned long long)srv->pools[p].backends[i].sh->st.fld);
    BACKEND_COUNTERS(X)
#undef X

    help(b, "twlb_bytes_total", "counter", "Bytes forwarded, by direction");
    for (size_t p = 0; p < c->n_pools; p++)
        for (size_t i = 0; i < c->pools[p].n_backends; i++) {
            const struct backend_stats *st = &srv->pools[p].backends[i].sh->st;
            const char *pn = c->pools[p].name, *bn = c->pools[p].backends[i].name;
            sb_printf(b, "twlb_bytes_total{pool=\"%s\",backend=\"%s\",direction=\"to_backend\"} %llu\n",
                      pn, bn, (unsigned long long)st->bytes_to_backend);
            sb_printf(b, "twlb_bytes_total{pool=\"%s\",backend=\"%s\",direction=\"to_client\"} %llu\n",
                      pn, bn, (unsigned long long)st->bytes_to_client);
        }

    help(b, "twlb_ports", "gauge",
         "Source ports toward a backend from an inside address, by state");
    help(b, "twlb_port_reuses_total", "counter",
         "Connections opened on a 4-tuple still in TIME_WAIT on the backend");
    struct sb reuses = {0};
    for (size_t p = 0; p < c->n_pools; p++) {
        const struct cfg_pool *pc = &c->pools[p];
        for (size_t i = 0; i < pc->n_backends; i++) {
            struct backend_rt *be = &srv->pools[p].backends[i];
            for (size_t k = 0; k < pc->n_inside; k++) {
                portmap *pm = be->paths[k]->pm;
                if (!pm)
                    continue;
                uint32_t counts[PM_NSTATES];
                current_counts(pm, now, counts);
                for (int s = 0; s < PM_NSTATES; s++)
                    sb_printf(b,
                              "twlb_ports{pool=\"%s\",backend=\"%s\",inside=\"%s\",state=\"%s\"} %u\n",
                              pc->name, pc->backends[i].name, pc->inside[k].text,
                              portmap_state_name((enum pm_state)s), counts[s]);
                sb_printf(&reuses,
                          "twlb_port_reuses_total{pool=\"%s\",backend=\"%s\",inside=\"%s\"} %llu\n",
                          pc->name, pc->backends[i].name, pc->inside[k].text,
                          (unsigned long long)be->paths[k]->reuses_total);
            }
        }
    }
    if (reuses.p)
        sb_printf(b, "%s", reuses.p);
    b->oom |= reuses.oom;
    free(reuses.p);

    help(b, "twlb_backend_up", "gauge",
         "1 when the backend may get new connections (healthy, not ejected, enabled)");
    for (size_t p = 0; p < c->n_pools; p++)
        for (size_t i = 0; i < c->pools[p].n_backends; i++) {
            struct backend_rt *be = &srv->pools[p].backends[i];
            sb_printf(b, "twlb_backend_up{pool=\"%s\",backend=\"%s\"} %d\n",
                      c->pools[p].name, c->pools[p].backends[i].name,
                      be->sh->admin == BE_ENABLED && server_backend_usable(srv, be, now));
        }

    help(b, "twlb_backend_demoted", "gauge",
         "1 when a backend rejected explicit-ISN reuses and is treated as strict");
    for (size_t p = 0; p < c->n_pools; p++)
        for (size_t i = 0; i < c->pools[p].n_backends; i++)
            sb_printf(b, "twlb_backend_demoted{pool=\"%s\",backend=\"%s\"} %d\n",
                      c->pools[p].name, c->pools[p].backends[i].name,
                      srv->pools[p].backends[i].sh->demoted);

    help(b, "twlb_sessions_active", "gauge", "Client connections being served");
    sb_printf(b, "twlb_sessions_active %llu\n", (unsigned long long)srv->sessions_active);
    help(b, "twlb_no_backend_total", "counter",
         "Client connections closed because no backend or source port was usable");
    sb_printf(b, "twlb_no_backend_total %llu\n", (unsigned long long)srv->no_backend_total);
    help(b, "twlb_process_open_fds", "gauge", "Open file descriptors of the process");
    sb_printf(b, "twlb_process_open_fds %ld\n", count_open_fds());
    help(b, "twlb_process_resident_memory_bytes", "gauge", "Resident memory of the process");
    sb_printf(b, "twlb_process_resident_memory_bytes %ld\n", resident_bytes());
}

/* ---- /stats ------------------------------------------------------------------------ */

static char *render_stats(struct server *srv)
{
    const struct config *c = srv->cfg;
    uint64_t now = server_now_ms(srv);
    json_t *root = json_object();
    json_object_set_new(root, "isn_mode", json_string(isn_mode_name(srv->isn_mode)));
    json_object_set_new(root, "sessions_active", json_integer((json_int_t)srv->sessions_active));
    json_object_set_new(root, "no_backend_total", json_integer((json_int_t)srv->no_backend_total));
    json_t *ls = json_array();
    for (size_t i = 0; i < c->n_listeners; i++)
        json_array_append_new(
            ls, json_pack("{s:s, s:s, s:s, s:I}", "name", c->listeners[i].name, "bind",
                          c->listeners[i].bind.text, "pool", c->listeners[i].pool_name,
                          "connections_total",
                          (json_int_t)(srv->listeners[i] ? srv->listeners[i]->connections_total : 0)));
    json_object_set_new(root, "listeners", ls);
    json_t *pools = json_array();
    for (size_t p = 0; p < c->n_pools; p++) {
        const struct cfg_pool *pc = &c->pools[p];
        json_t *bs = json_array();
        for (size_t i = 0; i < pc->n_backends; i++) {
            struct backend_rt *be = &srv->pools[p].backends[i];
            json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:s, s:b}", "name", pc->backends[i].name,
                                  "address", pc->backends[i].addr.text, "weight",
                                  (int)pc->backends[i].weight, "active",
                                  (int)srv->pools[p].backends[i].sh->active, "time_wait_rule",
                                  twrule_kind_name(be->sh->demoted ? TWRULE_STRICT
                                                               : pc->backends[i].time_wait.rule),
                                  "demoted", be->sh->demoted);
#define X(fld, mname, mhelp) json_object_set_new(o, #fld, json_integer((json_int_t)be->sh->st.fld));
            BACKEND_COUNTERS(X)
#undef X
            json_object_set_new(o, "admin", json_string(server_backend_admin_name(be->sh->admin)));
            json_object_set_new(o, "health", json_string(!be->sh->health.up ? "down"
                                                         : server_backend_usable(srv, be, now)
                                                             ? "up"
                                                             : "ejected"));
            json_object_set_new(o, "bytes_to_backend", json_integer((json_int_t)be->sh->st.bytes_to_backend));
            json_object_set_new(o, "bytes_to_client", json_integer((json_int_t)be->sh->st.bytes_to_client));
            json_t *ports = json_object();
            for (size_t k = 0; k < pc->n_inside; k++) {
                portmap *pm = be->paths[k]->pm;
                if (!pm)
                    continue;
                uint32_t counts[PM_NSTATES];
                current_counts(pm, now, counts);
                json_t *po = json_object();
                for (int s = 0; s < PM_NSTATES; s++)
                    json_object_set_new(po, portmap_state_name((enum pm_state)s),
                                        json_integer(counts[s]));
                json_object_set_new(po, "reuses_total", json_integer((json_int_t)be->paths[k]->reuses_total));
                json_object_set_new(ports, pc->inside[k].text, po);
            }
            json_object_set_new(o, "ports", ports);
            json_array_append_new(bs, o);
        }
        json_array_append_new(pools, json_pack("{s:s, s:s, s:o}", "name", pc->name, "balance",
                                               balance_algo_name(pc->balance), "backends", bs));
    }
    json_object_set_new(root, "pools", pools);
    char *out = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    return out;
}

/* ---- HTTP -------------------------------------------------------------------------- */

static void conn_closed(uv_handle_t *h)
{
    struct admin_conn *ac = h->data;
    if (--ac->pending > 0)
        return;
    struct admin *a = ac->a;
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        a->conns = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
    a->nconns--;
    free(ac->resp);
    free(ac);
    if (a->closing && --a->pending == 0)
        free(a);
}

static void conn_close(struct admin_conn *ac)
{
    if (ac->closing)
        return;
    ac->closing = 1;
    uv_close((uv_handle_t *)&ac->tcp, conn_closed);
    uv_close((uv_handle_t *)&ac->timer, conn_closed);
}

static void on_shut(uv_shutdown_t *req, int status)
{
    if (status < 0)
        conn_close(req->data);
}

static void on_discard_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct admin_conn *ac = h->data;
    *buf = uv_buf_init(ac->req, sizeof ac->req);
}

static void on_discard(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0)
        conn_close(st->data);
}

/* The response is out.  Close gracefully: FIN first, then read and drop whatever the
 * client still sends until its EOF (or the deadline), so an answer given before the whole
 * request was read is not destroyed by a reset. */
static void on_written(uv_write_t *req, int status)
{
    struct admin_conn *ac = req->data;
    if (status < 0 || ac->closing) {
        conn_close(ac);
        return;
    }
    ac->sreq.data = ac;
    if (uv_shutdown(&ac->sreq, (uv_stream_t *)&ac->tcp, on_shut) < 0 ||
        uv_read_start((uv_stream_t *)&ac->tcp, on_discard_alloc, on_discard) < 0)
        conn_close(ac);
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    }
    return "Error";
}

/* Send one response and close.  <body> is copied.  <allow> goes into the Allow header
 * of a 405. */
static void respond_allow(struct admin_conn *ac, int code, const char *ctype,
                          const char *body, size_t blen, int head_only, const char *allow)
{
    struct sb b = {0};
    sb_printf(&b,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "%s%s%sConnection: close\r\n\r\n",
              code, reason_phrase(code), ctype, blen, code == 405 ? "Allow: " : "",
              code == 405 ? allow : "", code == 405 ? "\r\n" : "");
    if (!head_only)
        sb_printf(&b, "%.*s", (int)blen, body);
    if (b.oom) {
        free(b.p);
        conn_close(ac);
        return;
    }
    ac->resp = b.p;
    uv_buf_t buf = uv_buf_init(b.p, (unsigned)b.len);
    uv_read_stop((uv_stream_t *)&ac->tcp);
    ac->wreq.data = ac;
    if (uv_write(&ac->wreq, (uv_stream_t *)&ac->tcp, &buf, 1, on_written) < 0)
        conn_close(ac);
}

static void respond(struct admin_conn *ac, int code, const char *ctype, const char *body,
                    size_t blen, int head_only)
{
    respond_allow(ac, code, ctype, body, blen, head_only, "GET, HEAD");
}

static void respond_error_allow(struct admin_conn *ac, int code, const char *msg,
                                const char *allow)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\": \"%s\"}\n", msg);
    respond_allow(ac, code, "application/json", body, (size_t)n, 0, allow);
}

static void respond_error(struct admin_conn *ac, int code, const char *msg)
{
    respond_error_allow(ac, code, msg, "GET, HEAD");
}

static int is_tchar(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Does the header block <headers> carry "Authorization: Bearer <token>"?  The compare
 * takes the same time wherever the first difference is. */
static int authorized(const struct admin *a, const char *headers)
{
    const char *p = headers;
    while (*p && !(p[0] == '\r' && p[1] == '\n')) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            return 0;
        static const char name[] = "authorization:";
        if ((size_t)(eol - p) > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
            const char *v = p + sizeof name - 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if (strncasecmp(v, "bearer ", 7))
                return 0;
            v += 7;
            size_t vlen = (size_t)(eol - v), tlen = strlen(a->token);
            unsigned char diff = vlen != tlen;
            for (size_t i = 0; i < tlen; i++)
                diff |= (unsigned char)(a->token[i] ^ (i < vlen ? v[i] : 0));
            return diff == 0;
        }
        p = eol + 2;
    }
    return 0;
}

/* The request head is complete in ac->req: parse the request line and answer. */
static void handle_request(struct admin_conn *ac)
{
    char *line = ac->req;
    char *eol = strstr(line, "\r\n");
    if (!eol) {
        respond_error(ac, 400, "malformed request line");
        return;
    }
    *eol = 0;
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == line || strchr(sp2 + 1, ' ')) {
        respond_error(ac, 400, "malformed request line");
        return;
    }
    *sp1 = *sp2 = 0;
    const char *method = line, *target = sp1 + 1, *version = sp2 + 1;
    for (const char *p = method; *p; p++)
        if (!is_tchar((unsigned char)*p)) {
            respond_error(ac, 400, "malformed method");
            return;
        }
    if (target[0] != '/' || (strcmp(version, "HTTP/1.1") && strcmp(version, "HTTP/1.0"))) {
        respond_error(ac, 400, "malformed request line");
        return;
    }
    for (const char *p = target; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            respond_error(ac, 400, "malformed target");
            return;
        }
    char path[256];
    size_t plen = strcspn(target, "?");
    if (plen >= sizeof path) {
        respond_error(ac, 404, "not found");
        return;
    }
    memcpy(path, target, plen);
    path[plen] = 0;

    int is_get = !strcmp(method, "GET"), is_head = !strcmp(method, "HEAD");
    struct server *srv = ac->a->srv;
    char pool[65], backend[65], action[17];
    int consumed = 0;
    if (sscanf(path, "/pools/%64[^/]/backends/%64[^/]/%16[^/]%n", pool, backend, action,
               &consumed) == 3 &&
        path[consumed] == 0) {
        if (strcmp(method, "POST")) {
            respond_error_allow(ac, 405, "method not allowed", "POST");
            return;
        }
        if (ac->a->token[0] && !authorized(ac->a, eol + 2)) {
            respond_error(ac, 401, "missing or wrong bearer token");
            return;
        }
        int r = server_backend_admin(srv, pool, backend, action);
        if (r == -1)
            respond_error(ac, 404, "no such pool or backend");
        else if (r == -2)
            respond_error(ac, 404, "unknown action (expected enable, disable or drain)");
        else
            respond(ac, 200, "application/json", "{\"ok\": true}\n", 13, 0);
        return;
    }
    int known = !strcmp(path, "/metrics") || !strcmp(path, "/stats") || !strcmp(path, "/healthz");
    if (!known) {
        respond_error(ac, 404, "not found");
        return;
    }
    if (!is_get && !is_head) {
        respond_error(ac, 405, "method not allowed");
        return;
    }
    if (!strcmp(path, "/healthz")) {
        respond(ac, 200, "text/plain", "ok\n", 3, is_head);
    } else if (!strcmp(path, "/metrics")) {
        struct sb b = {0};
        render_metrics(srv, &b);
        if (b.oom)
            respond_error(ac, 500, "out of memory");
        else
            respond(ac, 200, "text/plain; version=0.0.4", b.p, b.len, is_head);
        free(b.p);
    } else {
        char *js = render_stats(srv);
        if (!js)
            respond_error(ac, 500, "out of memory");
        else
            respond(ac, 200, "application/json", js, strlen(js), is_head);
        free(js);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct admin_conn *ac = h->data;
    /* Keep one byte for the terminating NUL. */
    *buf = uv_buf_init(ac->req + ac->len, (unsigned)(ADMIN_REQ_MAX - 1 - ac->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_conn *ac = st->data;
    if (ac->closing || ac->resp)
        return;
    if (nread < 0) {
        conn_close(ac);
        return;
    }
    ac->len += (size_t)nread;
    ac->req[ac->len] = 0;
    if (memchr(ac->req, 0, ac->len)) {
        respond_error(ac, 400, "NUL byte in request");
        return;
    }
    if (strstr(ac->req, "\r\n\r\n")) {
        handle_request(ac);
        return;
    }
    if (ac->len >= ADMIN_REQ_MAX - 1)
        respond_error(ac, 431, "request head too large");
}

static void on_deadline(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_admin_connection(uv_stream_t *l, int status)
{
    struct admin *a = l->data;
    if (status < 0 || a->closing)
        return;
    struct admin_conn *ac = calloc(1, sizeof *ac);
    if (!ac)
        return;
    ac->a = a;
    ac->pending = 2;
    uv_tcp_init(l->loop, &ac->tcp);
    uv_timer_init(l->loop, &ac->timer);
    ac->tcp.data = ac->timer.data = ac;
    ac->next = a->conns;
    if (a->conns)
        a->conns->prev = ac;
    a->conns = ac;
    a->nconns++;
    if (uv_accept(l, (uv_stream_t *)&ac->tcp) < 0) {
        conn_close(ac);
        return;
    }
    if (a->nconns > ADMIN_MAX_CONNS) {
        conn_close(ac); /* too many admin clients: this one goes away */
        return;
    }
    uv_timer_start(&ac->timer, on_deadline, ADMIN_DEADLINE_MS, 0);
    uv_read_start((uv_stream_t *)&ac->tcp, on_alloc, on_read);
}

static void listener_closed(uv_handle_t *h);

int admin_start(struct server *srv, const struct cfg_addr *bind, struct admin **out, char *err,
                size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin: out of memory");
        return UV_ENOMEM;
    }
    a->srv = srv;
    if (admin_read_token(srv->cfg->admin.token_file, a->token, err, errlen) < 0) {
        free(a);
        return UV_EINVAL;
    }
    uv_tcp_init(srv->loop, &a->listener);
    a->listener.data = a;
    int r = uv_tcp_bind(&a->listener, (const struct sockaddr *)&bind->ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&a->listener, 64, on_admin_connection);
    if (r < 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", bind->text, uv_strerror(r));
        a->closing = 1;
        a->pending = 1;
        uv_close((uv_handle_t *)&a->listener, listener_closed);
        return r;
    }
    *out = a;
    return 0;
}

int admin_read_token(const char *path, char out[ADMIN_TOKEN_MAX], char *err, size_t errlen)
{
    out[0] = 0;
    if (!path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f || !fgets(out, ADMIN_TOKEN_MAX, f)) {
        snprintf(err, errlen, "admin: cannot read token_file %s", path);
        if (f)
            fclose(f);
        out[0] = 0;
        return -1;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
    if (!out[0]) {
        snprintf(err, errlen, "admin: token_file %s is empty", path);
        return -1;
    }
    return 0;
}

void admin_set_server(struct admin *a, struct server *srv, const char *token)
{
    a->srv = srv;
    snprintf(a->token, sizeof a->token, "%s", token);
}

static void listener_closed(uv_handle_t *h)
{
    struct admin *a = h->data;
    if (--a->pending == 0)
        free(a);
}

void admin_close(struct admin *a)
{
    if (!a || a->closing)
        return;
    a->closing = 1;
    /* The admin struct lives until the listener and every connection have closed. */
    a->pending = 1 + a->nconns;
    uv_close((uv_handle_t *)&a->listener, listener_closed);
    for (struct admin_conn *ac = a->conns; ac; ac = ac->next)
        conn_close(ac);
}
