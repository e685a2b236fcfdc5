/* limits.h - max_connections: at the top level (every listener) and per listener,
 * counted over every worker.
 *
 * A client counts from its accept until its session ends, whether it is being served,
 * connecting or waiting in a pool's queue.  When a limit is reached the listener stops
 * accepting (its poll is stopped): new clients wait in the kernel's backlog, as with
 * HAProxy and nginx, and are accepted when a client ends.  A worker takes the slot
 * before it accepts (and gives it back when no client comes of it), so with several
 * workers no two can accept for the last slot: a client over the limit always waits in
 * the backlog, none is accepted only to be closed.
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
/* Count a client about to be accepted on <lis>: 0, 1 when it took the last slot of a
 * limit, or -1 when that would go over a limit (nothing is counted then). */
int limits_take(struct listener_rt *lis);
/* Give back what limits_take() counted when no client came of it (nothing to accept, or
 * a client refused by the ACL); <took_last> is what limits_take() returned: only a last
 * slot can have made another listener pause, and only then are listeners woken. */
void limits_untake(struct listener_rt *lis, int took_last);
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
