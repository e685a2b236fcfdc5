/* capacity.h - how many new connections per second the source ports of one path (inside
 * address -> backend) can sustain, and the running averages the proxy feeds it with.
 * The one formula of the proxy's twlb_port_capacity_cps gauge and of `twlb simulate`'s
 * analytic capacity.  Pure: no clocks (durations are passed in), no I/O.
 *
 * A port serves connections in cycles: BUSY for the hold time (acquired to released),
 * then unusable until portmap_acquire() may hand it out again:
 *
 *   backend closed first (REMOTE_TW)
 *     reuse off, or rule strict          until the backend's TIME_WAIT ends
 *     explicit ISNs, rule bsd/timestamps  at once (isn_reuse starts above rcv_nxt)
 *     kernel ISNs, rule bsd/timestamps    once the kernel's ISN clock (64 ns a step,
 *                                         counted from the old SYN) has passed the old
 *                                         rcv_nxt by the margin: (bytes + 2 + margin) x
 *                                         64 ns after the SYN (isn_kernel_reuse_safe),
 *                                         at most until the TIME_WAIT ends
 *   we closed first (LOCAL_TW)            at once with timestamps or local_time_wait
 *                                         "destroy", else after local_time_wait
 *   reset (no FIN)                        at once
 *
 * capacity = ports / mean cycle, the mean over the mix of closes; the cycle is at least
 * CAPACITY_MIN_CYCLE_MS (the bookkeeping's clock resolution), so the capacity is finite.
 * The formula takes mean hold and mean bytes: exact for a fixed mix, an approximation
 * where the kernel-mode wait depends on each connection's own bytes and hold. */
#ifndef TWLB_CAPACITY_H
#define TWLB_CAPACITY_H

#include <stdint.h>

#include "core/portmap.h"

#define CAPACITY_MIN_CYCLE_MS 1.0

struct capacity_mix {
    double hold_ms;          /* mean time a port stays BUSY */
    double bytes_to_backend; /* mean bytes sent to the backend by connections it closed
                                first (what the kernel's ISN clock must overtake) */
    double backend_first;    /* share of connections the backend closed first, 0..1 */
    double local_first;      /* share we closed first; the rest ended with a reset */
    double local_timestamps; /* of those we closed first, the share with timestamps */
};

/* How long after a connection ends its port stays unusable under <pol>: the connection
 * held the port <hold_ms> (measured from its SYN), sent <bytes> to the backend, and
 * <closer> sent the first FIN.  In ms. */
double capacity_blocked_ms(const struct portmap_policy *pol, enum pm_closer closer,
                           double hold_ms, double bytes, int timestamps);

/* The mean time one connection takes a port for, hold included, over the mix; at least
 * CAPACITY_MIN_CYCLE_MS.  In ms. */
double capacity_cycle_ms(const struct portmap_policy *pol, const struct capacity_mix *m);

/* New connections per second that <ports> ports sustain: ports x 1000 / cycle. */
double capacity_cps(const struct portmap_policy *pol, uint32_t ports,
                    const struct capacity_mix *m);

/* Running averages of what the connections of one path did, fed on every release
 * (exponentially weighted, CAPACITY_EWMA_N connections long; the plain mean of the
 * first ones until there are that many).  Zero it to start. */
#define CAPACITY_EWMA_N 256

struct capacity_obs {
    uint64_t n;              /* connections observed */
    uint64_t n_backend;      /* of those, closed first by the backend */
    uint64_t n_local;        /* closed first by us */
    /* How many connections each average stands for: min(n, CAPACITY_EWMA_N) (of all,
     * of the backend's closes, of ours), summed by capacity_obs_merge(). */
    double w, w_backend, w_local;
    struct capacity_mix mix; /* the averages */
};

/* A connection that held its port <hold_ms> ended as <r> says; one that never connected
 * (r->never_connected) says nothing about the mix and is left out. */
void capacity_observe(struct capacity_obs *o, uint64_t hold_ms, const struct portmap_release *r);

/* <into> becomes the average of both, each weighted by the connections its averages
 * stand for (w): the workers' slices of one path together, in any order. */
void capacity_obs_merge(struct capacity_obs *into, const struct capacity_obs *from);

/* The mix to feed the formula: the averages; before the first connection, hold 0 and
 * the backend closing first with no bytes - the most the range allows for the traffic
 * twlb is made for (the capacity of a path that has seen nothing). */
void capacity_obs_mix(const struct capacity_obs *o, struct capacity_mix *out);

#endif
