/* group.h - the workers of the process: one thread with its own event loop each
 * (runtime/worker.h), and the main thread's way to reach them.
 *
 * Everything here is called on the main thread, which runs the signals and the admin
 * endpoint and serves no traffic.  Workers are reached only by messages (a queue and a
 * uv_async per worker); a call that needs an answer waits for every worker to run it.
 * No thread reads another's sessions, port maps or counters: figures come back as
 * snapshots (runtime/snapshot.h).  The one thing shared is a flag per backend with the
 * health probes' verdict: worker 0 runs the probes and writes it, the others read it.
 *
 * Return convention: 0 or a negative errno with a message in <err>. */
#ifndef TWLB_GROUP_H
#define TWLB_GROUP_H

#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "runtime/view.h"

struct group;

/* Resolve the number of workers (cfg->workers, "auto": one per CPU; never more than the
 * smallest source port range has ports, since every range is split between them), start
 * their threads and start each worker on <cfg> (the caller keeps its reference).  All
 * start or none: NULL with a message in <err>.  <loop> is the main thread's. */
struct group *group_start(uv_loop_t *loop, struct config *cfg, char *err, size_t errlen);

/* Run <fn> on every worker's thread (all at once) and wait: 0, or the first failure with
 * its message in <err>.  For what the kernel keeps per thread (capabilities). */
int group_on_every_thread(struct group *g, int (*fn)(char *err, size_t errlen), char *err,
                          size_t errlen);

/* Run <fn>(w, arg) on every worker's thread (all at once: <fn> must be thread-safe on
 * what they share) and wait: for
 * runtime modules that own what they do there (runtime/takeover.c). */
struct worker;
void group_each_worker(struct group *g, void (*fn)(struct worker *w, void *arg), void *arg);

unsigned group_size(const struct group *g);
const struct config *group_config(const struct group *g);

/* Every worker moves to <cfg> (the caller keeps its reference), or none does.  The
 * state file is written after a reload. */
int group_reload(struct group *g, struct config *cfg, char *err, size_t errlen);

/* Stop accepting everywhere; each worker drains (one deadline, drain_timeout_ms).  When
 * the last connection of the last worker is gone the state file is written and
 * <on_drained> is called on the main loop. */
void group_drain(struct group *g, void (*on_drained)(struct group *g));

/* Close every worker's handles, let their loops end, join the threads, free.  Also
 * closes the group's handle on the main loop: run that loop afterwards. */
void group_stop(struct group *g);

/* The operator's word on a backend, in every worker: 0, -1 unknown pool or backend, -2
 * unknown action. */
int group_backend_action(struct group *g, const char *pool, const char *backend,
                         const char *action);

/* Every worker's figures now, added up; valid until the next call. NULL on OOM. */
const struct view *group_view(struct group *g);

#endif
