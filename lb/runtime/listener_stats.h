/* listener_stats.h - the counters of one listener in one worker (struct listener_stats,
 * runtime/types.h): client connections accepted and clients turned away, by reason.
 *
 * A listener_rt holds one, and so does every session accepted on it: a session may end
 * (and be counted, say queue_timeout or no_backend) after a reload closed its listener's
 * socket.  A listener_rt that a reload takes over keeps its counters, so they carry on
 * like twlb_listener_connections_total.  Worker-local: no locking, counts added up over
 * the workers in snapshots (runtime/snapshot.h).  Every function takes NULL too. */
#ifndef TWLB_LISTENER_STATS_H
#define TWLB_LISTENER_STATS_H

#include "runtime/types.h"

/* New counters at 0, held once.  NULL on OOM. */
struct listener_stats *listener_stats_new(void);
struct listener_stats *listener_stats_ref(struct listener_stats *st);
void listener_stats_unref(struct listener_stats *st); /* freed with the last holder */

/* One client turned away for <why>. */
void listener_stats_reject(struct listener_stats *st, enum reject_reason why);

/* The label value of <why> ("acl", ...; "?" out of range). */
const char *listener_stats_reason_name(enum reject_reason why);

#endif
