/* limits.h - max_connections: at the top level (every listener) and per listener,
 * counted over every worker.
 *
 * A client counts from its accept until its session ends, whether it is being served,
 * connecting or waiting in a pool's queue.  When a limit is reached the listener stops
 * accepting (its poll is stopped): new clients wait in the kernel's backlog, as with
 * HAProxy and nginx, and are accepted when a client ends.  The check is made before
 * each accept; with several workers two may pass it at once for the last slot: the one
 * that loses closes the client it accepted at once and counts it (twlb_rejected_total,
 * reason max_connections).
 *
 * The counters are shared by the workers (group.c hands out one per key); a worker alone
 * keeps its own.  Listener counters are per listener name and outlive reloads.
 *
 * Return convention: 0 or -1. */
#ifndef TWLB_LIMITS_H
#define TWLB_LIMITS_H

#include "runtime/types.h"

/* The worker's shared counters (live_all, paused_all, queued_all).  -1 on OOM. */
int limits_init(struct worker *w);
/* Free what limits_init and limits_listener_count allocated for a worker alone. */
void limits_free(struct worker *w);

/* The live-client counter of listener <name>; NULL on OOM (then it is not limited). */
unsigned *limits_listener_count(struct worker *w, const char *name);

/* Is a limit of <lis> (its own or the top-level one) reached? */
int limits_full(const struct listener_rt *lis);
/* Count a client accepted on <lis>: 0, or -1 when that went over a limit (nothing is
 * counted then). */
int limits_take(struct listener_rt *lis);
/* Count a client in that another worker accepted (a hand-over): never refused. */
void limits_take_adopted(struct worker *w, unsigned *lis_count);
/* A client counted against <lis_count> ended: resume listeners that may accept again,
 * here and in the other workers. */
void limits_give(struct worker *w, unsigned *lis_count);

/* Stop accepting on <lis> until limits_resume() finds it below its limits. */
void limits_pause(struct listener_rt *lis);
/* Resume the current generation's listeners that were paused at a limit and are below
 * it now (a client ended, a reload raised a limit, another worker woke us). */
void limits_resume(struct worker *w);

#endif
