/* admin.c - see admin.h.  Rendering runs on the data path's loop: it only reads the view
 * and is O(backends x inside addresses), never blocking. */
#include "admin/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/dashboard.h"
#include "admin/http.h"
#include "admin/prom.h"
#include "admin/stats.h"

struct admin {
    struct admin_hooks hooks;
    struct http_server *http;
};

static char *render_metrics(const struct view *v, size_t *len, int *status)
{
    return prom_render(v, len);
}

static char *render_stats(const struct view *v, size_t *len, int *status)
{
    char *s = stats_render(v);
    if (s)
        *len = strlen(s);
    return s;
}

/* The page does not read the view: it fetches /stats itself. */
static char *render_dashboard(const struct view *v, size_t *len, int *status)
{
    return dashboard_render(len);
}

/* 503 while draining: a load balancer in front (or a VRRP check) stops sending clients
 * here while the live connections finish. */
static char *render_healthz(const struct view *v, size_t *len, int *status)
{
    struct view_process p;
    view_process(v, &p);
    if (p.draining)
        *status = 503;
    const char *body = p.draining ? "draining\n" : "ok\n";
    *len = strlen(body);
    return strdup(body);
}

/* The GET (and HEAD) routes. */
static const struct route {
    const char *path;
    const char *content_type;
    /* malloc'ed; NULL: out of memory.  *status is 200 unless the renderer says else. */
    char *(*render)(const struct view *v, size_t *len, int *status);
} routes[] = {
    {"/metrics", "text/plain; version=0.0.4", render_metrics},
    {"/stats", "application/json", render_stats},
    {"/healthz", "text/plain", render_healthz},
    {"/", "text/html; charset=utf-8", render_dashboard},
};

static void backend_action(struct admin *a, const struct http_request *req,
                           struct http_response *resp, const char *pool, const char *backend,
                           const char *action)
{
    if (strcmp(req->method, "POST")) {
        resp->allow = "POST";
        http_respond_error(resp, 405, "method not allowed");
        return;
    }
    if (!req->authorized) {
        http_respond_error(resp, 401, "missing or wrong bearer token");
        return;
    }
    int r = a->hooks.backend_action(a->hooks.arg, pool, backend, action);
    if (r == -1)
        http_respond_error(resp, 404, "no such pool or backend");
    else if (r < 0)
        http_respond_error(resp, 404, "unknown action (expected enable, disable, drain or trust)");
    else
        http_respond(resp, 200, "application/json", "{\"ok\": true}\n");
}

static void handle(void *arg, const struct http_request *req, struct http_response *resp)
{
    struct admin *a = arg;
    char pool[65], backend[65], action[17];
    int consumed = 0;
    if (sscanf(req->path, "/pools/%64[^/]/backends/%64[^/]/%16[^/]%n", pool, backend, action,
               &consumed) == 3 &&
        req->path[consumed] == 0) {
        backend_action(a, req, resp, pool, backend, action);
        return;
    }
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(req->path, routes[i].path))
            rt = &routes[i];
    if (!rt) {
        http_respond_error(resp, 404, "not found");
        return;
    }
    if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
        resp->allow = "GET, HEAD";
        http_respond_error(resp, 405, "method not allowed");
        return;
    }
    const struct view *v = a->hooks.view(a->hooks.arg);
    if (!v) {
        http_respond_error(resp, 503, "no runtime");
        return;
    }
    size_t len = 0;
    int status = 200;
    char *body = rt->render(v, &len, &status);
    if (!body) {
        http_respond_error(resp, 500, "out of memory");
        return;
    }
    resp->status = status;
    resp->content_type = rt->content_type;
    resp->body = body;
    resp->body_len = len;
}

int admin_start(uv_loop_t *loop, const struct cfg_addr *bind, const struct admin_hooks *hooks,
                struct admin **out, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin: out of memory");
        return UV_ENOMEM;
    }
    a->hooks = *hooks;
    int r = http_listen(loop, (const struct sockaddr *)&bind->ss, handle, a, &a->http);
    if (r < 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", bind->text, uv_strerror(r));
        free(a);
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
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    /* The first line, measured whole: a token that does not fit is an error, never cut. */
    size_t n = 0;
    int ch, last = 0;
    while ((ch = getc(f)) != EOF && ch != '\n') {
        if (n < ADMIN_TOKEN_MAX)
            out[n] = (char)ch; /* out[ADMIN_TOKEN_MAX - 1]: a CR, or too long */
        last = ch;
        n++;
    }
    int bad = ferror(f);
    fclose(f);
    if (n && last == '\r') /* a CRLF line end */
        n--;
    if (bad) {
        snprintf(err, errlen, "cannot read %s", path);
    } else if (n > ADMIN_TOKEN_MAX - 1) {
        snprintf(err, errlen, "%s: the token is %zu bytes, longer than the "
                 "%d allowed", path, n, ADMIN_TOKEN_MAX - 1);
        bad = 1;
    } else if (n == 0) {
        snprintf(err, errlen, "%s is empty", path);
        bad = 1;
    } else if (memchr(out, 0, n)) {
        snprintf(err, errlen, "%s: the token holds a NUL byte", path);
        bad = 1;
    }
    out[bad ? 0 : n] = 0;
    return bad ? -1 : 0;
}

void admin_set_token(struct admin *a, const char *token)
{
    http_set_token(a->http, token);
}

void admin_close(struct admin *a)
{
    if (!a)
        return;
    http_close(a->http); /* no request reaches handle() after this */
    free(a);
}
