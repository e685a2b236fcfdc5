/* worker.h - one event loop's runtime: it builds a generation from a config, serves it,
 * replaces it on reload, and drains it on stop.  (One worker per process today; all
 * per-connection state hangs off a worker, so N loops are N workers.)
 *
 * Return convention: 0, or a negative errno with a message in <err>. */
#ifndef TWLB_WORKER_H
#define TWLB_WORKER_H

#include <stddef.h>

#include "runtime/types.h"

/* Worker <index> of <nworkers> on <loop>, with the process's ISN key.  Nothing is built
 * or listens yet.  NULL with a message in <err>.  Everything below runs on <loop>'s
 * thread. */
struct worker *worker_new(uv_loop_t *loop, unsigned index, unsigned nworkers,
                          const struct isn_key *key, char *err, size_t errlen);

/* Build the first generation of <cfg> (a reference, owned from now on, also on failure),
 * restore what the backends and our kernel remember (this worker's ports), listen
 * (SO_REUSEPORT with several workers), start the health probes (worker 0 only: one probe
 * per backend) and the housekeeping timer. */
int worker_start(struct worker *w, struct config *cfg, char *err, size_t errlen);

/* A reload in two phases, so that several workers change together or not at all.
 * prepare: build the generation of <cfg> (a reference, owned from now on, also on
 * failure) and take over or open its listeners; nothing the running generation uses
 * changes.  Then either commit: the new generation takes over, every (pool, backend,
 * inside address) that still exists keeps its port bookkeeping, counters and health, the
 * old one finishes its connections; or abort: the listeners go back, the prepared
 * generation is freed, nothing happened. */
int worker_reload_prepare(struct worker *w, struct config *cfg, char *err, size_t errlen);
void worker_reload_commit(struct worker *w);
void worker_reload_abort(struct worker *w);

/* Stop accepting, let live connections of every generation finish; at the current
 * config's drain_timeout_ms the rest are aborted.  <on_drained> is called once no
 * connection is left. */
void worker_drain(struct worker *w, void (*on_drained)(struct worker *w));

/* Run <loop> with <w>'s data path (evpoll.h) until every handle of both is closed: what
 * uv_run(UV_RUN_DEFAULT) is for a loop without a worker (<w> NULL: that). */
void worker_run(uv_loop_t *loop, struct worker *w);

/* Close every handle the worker owns (timers, listeners, probes).  Run the loop after
 * this to let the close callbacks finish, then worker_free(). */
void worker_close(struct worker *w);
void worker_free(struct worker *w);

/* The config of the current generation. */
const struct config *worker_config(const struct worker *w);

/* The operator's word on a backend of the current generation ("enable", "disable",
 * "drain"), said at <now_ms> (a loop clock: the same value for every worker).  Returns
 * 0, -1 for an unknown pool or backend, -2 for an unknown action. */
int worker_backend_action(struct worker *w, const char *pool, const char *backend,
                          const char *action, uint64_t now_ms);

#endif
