/* worker.h - one event loop's runtime: it builds a generation from a config, serves it,
 * replaces it on reload, and drains it on stop.  (One worker per process today; all
 * per-connection state hangs off a worker, so N loops are N workers.)
 *
 * Return convention: 0, or a negative errno with a message in <err>. */
#ifndef TWLB_WORKER_H
#define TWLB_WORKER_H

#include <stddef.h>

#include "runtime/types.h"

/* A worker on <loop> for <cfg> (owned from now on, also on failure).  Builds the first
 * generation; nothing listens yet.  NULL with a message in <err>. */
struct worker *worker_new(uv_loop_t *loop, struct config *cfg, char *err, size_t errlen);

/* Restore what the backends and our kernel remember, listen, start the health probes
 * and the housekeeping timer. */
int worker_start(struct worker *w, char *err, size_t errlen);

/* Replace the running configuration by <cfg> (owned from now on, also on failure):
 * listeners whose address did not change are taken over open; every (pool, backend,
 * inside address) that still exists keeps its port bookkeeping, counters and health; the
 * old generation finishes its connections.  On failure nothing of the running
 * generation has changed. */
int worker_reload(struct worker *w, struct config *cfg, char *err, size_t errlen);

/* Stop accepting, let live connections of every generation finish; at the current
 * config's drain_timeout_ms the rest are aborted.  <on_drained> is called once no
 * connection is left (the state file is saved just before). */
void worker_drain(struct worker *w, void (*on_drained)(struct worker *w));

/* Close every handle the worker owns (timers, listeners, probes).  Run the loop after
 * this to let the close callbacks finish, then worker_free(). */
void worker_close(struct worker *w);
void worker_free(struct worker *w);

/* The config of the current generation. */
const struct config *worker_config(const struct worker *w);

/* The operator's word on a backend of the current generation ("enable", "disable",
 * "drain").  Returns 0, -1 for an unknown pool or backend, -2 for an unknown action. */
int worker_backend_action(struct worker *w, const char *pool, const char *backend,
                          const char *action);

#endif
