/* http.h - a small HTTP/1.1 server on a libuv loop, for the admin endpoint.  It knows
 * nothing of what it serves: a handler gets each request and returns the response.
 *
 * One request per connection ("Connection: close").  A slow or hostile client holds
 * neither the loop nor much memory, and many of them do not lock operators out:
 *   - a connection has HTTP_HEAD_DEADLINE_MS to send its whole request, then
 *     HTTP_DEADLINE_MS for the answer to go out;
 *   - at most HTTP_MAX_CONNS_PER_ADDR connections from one address (more are closed at
 *     accept);
 *   - at most HTTP_MAX_CONNS at once: when full, a new connection takes the place of the
 *     oldest one that has not sent a complete request yet (none: the new one is closed).  Answered here, before the
 * handler: 400 malformed request (request line, method, target, version, NUL byte, bad
 * Content-Length, a line
 * ending in a bare LF), 431 request head over HTTP_HEAD_MAX bytes, 413 body that would not fit,
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
#define HTTP_HEAD_DEADLINE_MS 2000
#define HTTP_DEADLINE_MS 5000
#define HTTP_MAX_CONNS_PER_ADDR 8
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

/* The request parser, apart from any socket (tests/fuzz drives it directly). */
struct http_parser {
    size_t head_len; /* through the blank line; 0 until it arrived */
    size_t need;     /* head_len + Content-Length */
};

/* What arrived of one request is buf[0, len), of which buf[0, was) was seen by the last
 * call (start with a zeroed parser and was = 0); buf[len] must be 0 and len below
 * HTTP_HEAD_MAX.  The head is parsed in place (NULs are written into buf) once it is
 * complete.  <token>: the bearer token ("" none).  Returns 0 when more bytes are needed,
 * 1 when the request is complete (<r> filled, its strings point into buf), or an HTTP
 * status (400, 411, 413, 431) with *msg saying why. */
int http_parse(struct http_parser *p, char *buf, size_t len, size_t was, const char *token,
               struct http_request *r, const char **msg);

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
