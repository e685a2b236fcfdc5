/* admin.h - the admin endpoint: a small HTTP/1.1 server on the worker's loop.
 *
 *   GET /metrics   Prometheus text format (every metric of runtime.h and the port maps)
 *   GET /stats     the same as JSON, per listener / pool / backend
 *   GET /healthz   "ok"
 * Unknown paths 404, other methods 405, malformed requests 400, oversized 431.  One
 * request per connection; every connection has a 5 s deadline and there are at most 64
 * at once, so a slow or hostile admin client cannot hold the data path or memory. */
#ifndef TWLB_ADMIN_H
#define TWLB_ADMIN_H

#include "runtime/types.h"

struct admin;

/* Listen on <bind>.  Returns 0 and sets *out, or a negative uv error with a message. */
int admin_start(struct server *srv, const struct cfg_addr *bind, struct admin **out,
                char *err, size_t errlen);

/* Read the bearer token from the first line of <path> (NULL: no token, out = "").
 * Returns 0, or -1 with a message when the file is unreadable or empty. */
#define ADMIN_TOKEN_MAX 256
int admin_read_token(const char *path, char out[ADMIN_TOKEN_MAX], char *err, size_t errlen);

/* A reload replaced the server: render the new one and use <token> from now on. */
void admin_set_server(struct admin *a, struct server *srv, const char *token);

/* Stop listening and close every admin connection; the memory goes with the last close
 * callback. */
void admin_close(struct admin *a);

#endif
