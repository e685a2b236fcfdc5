/* queue.h - clients waiting for a backend slot or a source port ("queue" in a pool).
 *
 * A client waits, in FIFO order, when every usable backend of its pool is at its
 * max_connections, or when no port toward any of them can be used now.  It is served as
 * soon as something changes that may let it through:
 *   - a session of this worker ends (a slot and a port are given back): queue_kick();
 *   - another worker gave back a slot of a shared backend: it wakes us, queue_kick();
 *   - a port becomes usable by itself (a TIME_WAIT or quarantine ends, or in kernel ISN
 *     mode the kernel's ISN clock passes the old connection): the pool's timer is armed
 *     for the earliest such moment (pathset_next_usable_ms), so nothing polls;
 *   - a backend comes back up: the worker's tick, once a second.
 * Only the head is tried: a client never overtakes one queued before it in its pool.
 * Past the pool's queue.timeout_ms the client is closed (reset) and counted
 * (queue_timeout); a client that arrives when queue.max are waiting is closed at once
 * (queue_full).  A client that closes its connection while waiting leaves the queue at
 * once: its socket is watched (through a duplicate descriptor, so nothing is read from
 * it) and nothing is ever sent to a backend for it.
 *
 * Queues are per worker (each worker has its own clients and ports); the limit
 * queue.max is per worker too.  With several workers FIFO order holds among the clients
 * of one worker.
 *
 * Return convention: 0 or -1. */
#ifndef TWLB_QUEUE_H
#define TWLB_QUEUE_H

#include "runtime/types.h"

/* Put session <s> (S_CONNECTING, nothing held) at the tail of its pool's queue: state
 * S_QUEUED.  Returns 0, or -1 when the pool has no queue or it is full (the caller
 * closes the client). */
int queue_push(struct session *s);

/* Take <s> out of its queue (it is being served, or closed). */
void queue_remove(struct session *s);

/* Something was given back: serve every queue of the worker that has clients. */
void queue_kick(struct worker *w);

/* The pool is going away (its generation is freed): stop its timer. */
void queue_pool_done(struct pool_rt *pool);

#endif
