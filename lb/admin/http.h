/* http.h - a small HTTP/1.1 server on a libuv loop, for the admin endpoint.  It knows
 * nothing of what it serves: a handler gets each request and returns the response.
 *
 * One request per connection ("Connection: close"); at most HTTP_MAX_CONNS connections at
 * once (more are closed at accept) and each has HTTP_DEADLINE_MS to be done, so a slow or
 * hostile client holds neither the loop nor much memory.  Answered here, before the
 * handler: 400 malformed request (request line, method, target, version, NUL byte, bad
 * Content-Length), 431 request head over HTTP_HEAD_MAX bytes, 413 body that would not fit,
 * 411 Transfer-Encoding (only Content-Length bodies are taken).
 * The handler answers 404, 405 (with http_response.allow) and 401 (from
 * http_request.authorized) itself.  HEAD is answered like GET without the body.  After
 * the response the connection is shut down for writing and drained until the client's
 * EOF, so an early answer is not destroyed by a reset.
 * Return convention: 0 or a negative libuv error. */
#ifndef TWLB_HTTP_H
#define TWLB_HTTP_H

#include <stddef.h>
#include <uv.h>

#define HTTP_MAX_CONNS 64
#define HTTP_HEAD_MAX 8192   /* request line, headers and body together */
#define HTTP_DEADLINE_MS 5000
#define HTTP_TOKEN_MAX 256

struct http_request {
    const char *method;   /* a token, e.g. "GET" */
    const char *path;     /* the target up to '?', starts with '/' */
    const char *query;    /* after '?', "" when none */
    int authorized;       /* "Authorization: Bearer <token>" matches the server's token,
                             or the server has no token */
    const char *body;     /* Content-Length bytes; empty without that header */
    size_t body_len;
};

struct http_response {
    int status;
    const char *content_type;
    char *body;           /* malloc'ed; the server frees it (NULL: empty) */
    size_t body_len;
    const char *allow;    /* the Allow header of a 405 (NULL: none) */
};

/* Fill <resp> with <status> and a copy of <body>; returns 0 or -1 when out of memory
 * (resp is then a 500). */
int http_respond(struct http_response *resp, int status, const char *ctype, const char *body);
/* A JSON error {"error": "<msg>"} (msg must need no escaping). */
int http_respond_error(struct http_response *resp, int status, const char *msg);

typedef void http_handler(void *arg, const struct http_request *req, struct http_response *resp);

struct http_server;

/* Listen on <addr>; <handler>(<arg>, ...) answers every well-formed request.  Returns 0
 * and sets *out, or a negative uv error (nothing left open). */
int http_listen(uv_loop_t *loop, const struct sockaddr *addr, http_handler *handler, void *arg,
                struct http_server **out);

/* The bearer token requests must carry to be authorized ("" or NULL: none needed). */
void http_set_token(struct http_server *s, const char *token);

/* Stop listening and close every connection; the memory goes with the last close
 * callback.  The handler is not called any more. */
void http_close(struct http_server *s);

#endif
