/* http.c - see http.h. */
#include "admin/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_conn;

struct http_server {
    http_handler *handler;
    void *arg;
    char token[HTTP_TOKEN_MAX]; /* "" when none is needed */
    uv_tcp_t listener;
    struct http_conn *conns;
    int nconns;
    int nclosing; /* of nconns, closed and waiting for their close callbacks */
    int closing;
    int pending; /* handles not yet closed, the listener included */
};

struct http_conn {
    struct http_conn *next, *prev;
    struct http_server *s;
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct sockaddr_storage peer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char req[HTTP_HEAD_MAX];
    size_t len;
    struct http_parser p;
    struct http_request r;
    char *resp;
    int closing;
    int pending; /* 2 handles */
};

/* ---- closing ----------------------------------------------------------------------- */

static void server_unref(struct http_server *s)
{
    if (s->closing && --s->pending == 0)
        free(s);
}

static void conn_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    if (--c->pending > 0)
        return;
    struct http_server *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    s->nclosing--;
    free(c->resp);
    free(c);
    server_unref(s);
}

static void conn_close(struct http_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->s->nclosing++;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void on_deadline(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_shut(uv_shutdown_t *req, int status)
{
    if (status < 0)
        conn_close(req->data);
}

static void on_discard_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    *buf = uv_buf_init(c->req, sizeof c->req);
}

static void on_discard(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0)
        conn_close(st->data);
}

/* The response is out: FIN first, then drop what the client still sends until its EOF
 * (or the deadline). */
static void on_written(uv_write_t *req, int status)
{
    struct http_conn *c = req->data;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shut) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_discard_alloc, on_discard) < 0)
        conn_close(c);
}

/* ---- responses --------------------------------------------------------------------- */

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return "Error";
}

int http_respond(struct http_response *resp, int status, const char *ctype, const char *body)
{
    size_t n = strlen(body);
    free(resp->body);
    resp->body = malloc(n + 1);
    if (!resp->body) {
        resp->status = 500;
        resp->content_type = "text/plain";
        resp->body_len = 0;
        return -1;
    }
    memcpy(resp->body, body, n + 1);
    resp->status = status;
    resp->content_type = ctype;
    resp->body_len = n;
    return 0;
}

int http_respond_error(struct http_response *resp, int status, const char *msg)
{
    char body[256];
    snprintf(body, sizeof body, "{\"error\": \"%s\"}\n", msg);
    return http_respond(resp, status, "application/json", body);
}

/* Send <resp> (its body is consumed) and close. */
static void send_response(struct http_conn *c, struct http_response *resp, int head_only)
{
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "%s%s%sConnection: close\r\n\r\n",
                      resp->status, reason_phrase(resp->status),
                      resp->content_type ? resp->content_type : "text/plain", resp->body_len,
                      resp->allow ? "Allow: " : "", resp->allow ? resp->allow : "",
                      resp->allow ? "\r\n" : "");
    size_t blen = head_only ? 0 : resp->body_len;
    if (hn > 0 && (size_t)hn < sizeof head)
        c->resp = malloc((size_t)hn + blen);
    if (!c->resp) {
        free(resp->body);
        conn_close(c);
        return;
    }
    memcpy(c->resp, head, (size_t)hn);
    if (blen)
        memcpy(c->resp + hn, resp->body, blen);
    free(resp->body);
    uv_buf_t buf = uv_buf_init(c->resp, (unsigned)((size_t)hn + blen));
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0)
        conn_close(c);
}

static void send_error(struct http_conn *c, int status, const char *msg)
{
    struct http_response resp = {0};
    http_respond_error(&resp, status, msg);
    send_response(c, &resp, 0);
}

/* ---- requests ---------------------------------------------------------------------- */

static int is_tchar(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Does "<value>" of an Authorization header carry "Bearer <token>"?  The compare takes
 * the same time wherever the first difference is. */
static int bearer_matches(const char *token, const char *v, size_t vlen)
{
    if (vlen < 7 || strncasecmp(v, "bearer ", 7))
        return 0;
    v += 7;
    vlen -= 7;
    size_t tlen = strlen(token);
    unsigned char diff = vlen != tlen;
    for (size_t i = 0; i < tlen; i++)
        diff |= (unsigned char)(token[i] ^ (i < vlen ? v[i] : 0));
    return diff == 0;
}

/* The head buf[0, p->head_len) arrived (NUL-terminated after it): parse it into <r> and
 * p->need.  Returns 0, or an HTTP status with *msg. */
static int parse_head(struct http_parser *p, char *buf, const char *token,
                      struct http_request *r, const char **msg)
{
    char *line = buf;
    char *eol = strstr(line, "\r\n");
    *eol = 0;
    *msg = "malformed request line";
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == line || strchr(sp2 + 1, ' '))
        return 400;
    *sp1 = *sp2 = 0;
    char *target = sp1 + 1;
    const char *version = sp2 + 1;
    for (const char *q = line; *q; q++)
        if (!is_tchar((unsigned char)*q)) {
            *msg = "malformed method";
            return 400;
        }
    if (target[0] != '/' || (strcmp(version, "HTTP/1.1") && strcmp(version, "HTTP/1.0")))
        return 400;
    for (const char *q = target; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
            *msg = "malformed target";
            return 400;
        }
    char *q = strchr(target, '?');
    if (q)
        *q++ = 0;
    r->method = line;
    r->path = target;
    r->query = q ? q : "";
    r->authorized = token[0] == 0;
    size_t clen = 0;
    for (char *h = eol + 2; h < buf + p->head_len - 2;) {
        char *end = strstr(h, "\r\n");
        char *colon = memchr(h, ':', (size_t)(end - h));
        int name_ok = colon && colon > h;
        for (const char *n = h; name_ok && n < colon; n++)
            name_ok = is_tchar((unsigned char)*n);
        if (!name_ok) {
            *msg = "malformed header";
            return 400;
        }
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vlen = (size_t)(end - v);
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        size_t nlen = (size_t)(colon - h);
        if (nlen == 13 && !strncasecmp(h, "authorization", 13) && token[0])
            r->authorized = bearer_matches(token, v, vlen);
        else if (nlen == 14 && !strncasecmp(h, "content-length", 14)) {
            clen = 0;
            if (vlen == 0 || vlen > 6) {
                *msg = vlen ? "request body too large" : "malformed Content-Length";
                return vlen ? 413 : 400;
            }
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    *msg = "malformed Content-Length";
                    return 400;
                }
                clen = clen * 10 + (size_t)(v[i] - '0');
            }
        } else if (nlen == 17 && !strncasecmp(h, "transfer-encoding", 17)) {
            *msg = "only bodies with a Content-Length are taken";
            return 411;
        }
        h = end + 2;
    }
    p->need = p->head_len + clen;
    if (p->need > HTTP_HEAD_MAX - 1) {
        *msg = "request body too large";
        return 413;
    }
    return 0;
}

int http_parse(struct http_parser *p, char *buf, size_t len, size_t was, const char *token,
               struct http_request *r, const char **msg)
{
    if (!p->head_len) {
        size_t from = was > 3 ? was - 3 : 0;
        char *end = memmem(buf + from, len - from, "\r\n\r\n", 4);
        size_t scan = end ? (size_t)(end - buf) + 4 : len;
        if (memchr(buf + was, 0, scan - was)) {
            *msg = "NUL byte in request";
            return 400;
        }
        /* A line must end in CRLF: a bare LF is refused at once rather than left to
         * wait for a CRLF CRLF that never comes. */
        for (size_t i = was; i < scan; i++)
            if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) {
                *msg = "line not ending in CRLF";
                return 400;
            }
        if (!end) {
            if (len >= HTTP_HEAD_MAX - 1) {
                *msg = "request head too large";
                return 431;
            }
            return 0;
        }
        p->head_len = scan;
        int status = parse_head(p, buf, token, r, msg);
        if (status)
            return status;
    }
    if (len < p->need)
        return 0;
    r->body = buf + p->head_len;
    r->body_len = p->need - p->head_len;
    return 1;
}

static void dispatch(struct http_conn *c)
{
    /* Asked in time: the rest of the exchange gets the whole deadline. */
    uv_timer_start(&c->timer, on_deadline, HTTP_DEADLINE_MS, 0);
    struct http_response resp = {0};
    c->s->handler(c->s->arg, &c->r, &resp);
    if (!resp.status)
        http_respond_error(&resp, 500, "no response");
    send_response(c, &resp, !strcmp(c->r.method, "HEAD"));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    /* Keep one byte for the terminating NUL. */
    *buf = uv_buf_init(c->req + c->len, (unsigned)(HTTP_HEAD_MAX - 1 - c->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = st->data;
    if (c->closing || c->resp)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    size_t was = c->len;
    c->len += (size_t)nread;
    c->req[c->len] = 0;
    const char *msg = NULL;
    int r = http_parse(&c->p, c->req, c->len, was, c->s->token, &c->r, &msg);
    if (r == 1)
        dispatch(c);
    else if (r > 1)
        send_error(c, r, msg);
}

/* The peer's address without the port: what the per-address cap counts. */
static int same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return !memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                       &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr));
    if (a->ss_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
    return 0;
}

/* Room for <c>, just accepted: refuse it when its address already holds
 * HTTP_MAX_CONNS_PER_ADDR connections; when the table is full, the oldest connection that
 * has not sent a complete request yet makes way (a client that has asked is answered,
 * one that dawdles goes).  Returns 0 to keep <c>, -1 to close it. */
static int make_room(struct http_server *s, struct http_conn *c)
{
    int same = 0;
    struct http_conn *oldest_idle = NULL;
    for (struct http_conn *o = s->conns; o; o = o->next) {
        if (o == c || o->closing)
            continue;
        if (same_host(&o->peer, &c->peer))
            same++;
        if (!o->p.head_len && !o->resp)
            oldest_idle = o; /* the list is newest first */
    }
    if (same >= HTTP_MAX_CONNS_PER_ADDR)
        return -1;
    if (s->nconns - s->nclosing <= HTTP_MAX_CONNS)
        return 0;
    if (!oldest_idle)
        return -1;
    conn_close(oldest_idle);
    return 0;
}

static void on_connection(uv_stream_t *l, int status)
{
    struct http_server *s = l->data;
    if (status < 0 || s->closing)
        return;
    struct http_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    c->pending = 2;
    uv_tcp_init(l->loop, &c->tcp);
    uv_timer_init(l->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    int plen = sizeof c->peer;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0 ||
        uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &plen) < 0 ||
        make_room(s, c) < 0) {
        conn_close(c); /* too many clients, or too many from this address */
        return;
    }
    uv_timer_start(&c->timer, on_deadline, HTTP_HEAD_DEADLINE_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- the server -------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *h)
{
    server_unref(h->data);
}

int http_listen(uv_loop_t *loop, const struct sockaddr *addr, http_handler *handler, void *arg,
                struct http_server **out)
{
    struct http_server *s = calloc(1, sizeof *s);
    if (!s)
        return UV_ENOMEM;
    s->handler = handler;
    s->arg = arg;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    int r = uv_tcp_bind(&s->listener, addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
    if (r < 0) {
        http_close(s);
        return r;
    }
    *out = s;
    return 0;
}

void http_set_token(struct http_server *s, const char *token)
{
    snprintf(s->token, sizeof s->token, "%s", token ? token : "");
}

void http_close(struct http_server *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    /* The server lives until the listener and every connection have closed. */
    s->pending = 1 + s->nconns;
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    for (struct http_conn *c = s->conns; c; c = c->next)
        conn_close(c);
}
