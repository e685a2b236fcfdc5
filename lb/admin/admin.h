/* admin.h - the admin endpoint: routes on a small HTTP server (http.h) on the worker's
 * loop.
 *
 *   GET  /metrics                             Prometheus text (metrics.h, prom.h)
 *   GET  /stats                               the same as JSON (stats.h)
 *   GET  /healthz                             "ok" (200), or "draining" (503) after
 *                                             SIGTERM while connections finish
 *   GET  /                                    the live dashboard, an HTML page that
 *                                             reads /stats every second (dashboard.h)
 *   POST /pools/<pool>/backends/<name>/<action>   enable, disable or drain a backend;
 *                                             needs "Authorization: Bearer <token>"
 *                                             when a token is set (else 401)
 * GET routes also answer HEAD.  Unknown paths 404, other methods 405 with Allow; what
 * http.h answers itself (400, 411, 413, 431, the limits) is described there.
 *
 * The admin side only reads: it renders the view the runtime hands it (runtime/view.h),
 * asked for anew on every request, and every change of state goes through
 * hooks->backend_action, which the runtime owns. */
#ifndef TWLB_ADMIN_H
#define TWLB_ADMIN_H

#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "runtime/view.h"

struct admin_hooks {
    /* The runtime as of now (a reload may replace what is behind it); NULL: 503. */
    const struct view *(*view)(void *arg);
    /* The operator's word on a backend.  Returns 0, -1 for an unknown pool or backend,
     * -2 for an unknown action. */
    int (*backend_action)(void *arg, const char *pool, const char *backend,
                          const char *action);
    void *arg;
};

struct admin;

/* Listen on <bind>; <hooks> is copied.  Returns 0 and sets *out, or a negative uv error
 * with a message in <err>.  No token is needed until admin_set_token(). */
int admin_start(uv_loop_t *loop, const struct cfg_addr *bind, const struct admin_hooks *hooks,
                struct admin **out, char *err, size_t errlen);

/* Read the bearer token from the first line of <path> (NULL: no token, out = "").
 * Returns 0, or -1 with a message naming <path> ("cannot read PATH: why", "PATH is
 * empty", ...) when the file is unreadable or empty, or the token is longer than
 * ADMIN_TOKEN_MAX - 1 bytes (never cut short). */
#define ADMIN_TOKEN_MAX 256
int admin_read_token(const char *path, char out[ADMIN_TOKEN_MAX], char *err, size_t errlen);

/* POST requests must carry <token> from now on ("": none needed). */
void admin_set_token(struct admin *a, const char *token);

/* Stop listening and close every admin connection; no hook is called after this. */
void admin_close(struct admin *a);

#endif
