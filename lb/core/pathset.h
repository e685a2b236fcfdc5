/* pathset.h - the source ports toward one backend: one port map per inside address (a
 * "path"), the rotation over the paths, and what a reload keeps.
 *
 * A path is the 4-tuple space (inside address, any source port, backend address, backend
 * port).  Paths are shared between the path sets of successive config generations when
 * their inside address and port range did not change, so a port held by a connection of
 * an older generation stays busy for the newer one; a path whose range changed starts a
 * new map seeded with what the old map remembered about the ports still in range.
 *
 * Pure: no sockets, no clocks (time is passed in), no I/O.  Return convention: 0 / -1. */
#ifndef TWLB_PATHSET_H
#define TWLB_PATHSET_H

#include <stddef.h>
#include <stdint.h>

#include "core/capacity.h"
#include "core/portmap.h"

/* An inside address as the path set compares them: family (AF_INET = 2, AF_INET6 = 10,
 * passed through, never interpreted) and the address bytes (4 or 16, network order). */
struct pathset_inside {
    int family;
    uint8_t addr[16];
    size_t len;
};

typedef struct pathset pathset; /* opaque */

/* Paths toward a backend of <backend_family> from <n> inside addresses, source ports
 * lo..hi, under <pol>.  An inside address of another family gets a path without a map
 * (it can never reach this backend).  With <prev>, paths are shared or seeded as above;
 * <prev> itself is not modified (its shared paths gain a reference).  NULL on OOM or a
 * bad range. */
pathset *pathset_new(int backend_family, const struct pathset_inside *inside, size_t n,
                     uint16_t lo, uint16_t hi, const struct portmap_policy *pol,
                     const pathset *prev);
void pathset_free(pathset *ps); /* NULL ok; a shared path lives on in the other sets */

size_t pathset_size(const pathset *ps);
/* The map of path <i>, or NULL when it has none. */
portmap *pathset_map(const pathset *ps, size_t i);
/* Connections opened on a 4-tuple the backend still held in TIME_WAIT, on path <i>. */
uint64_t pathset_reuses(const pathset *ps, size_t i);
/* What the connections released on path <i> did (hold time, who closed first, bytes):
 * the running averages its capacity is computed from (core/capacity.h).  Kept, like the
 * reuse count, when a reload shares or re-seeds the path. */
const struct capacity_obs *pathset_capacity_obs(const pathset *ps, size_t i);

/* Apply <pol> to every map (a reload that was committed; a backend demoted to strict). */
void pathset_set_policy(pathset *ps, const struct portmap_policy *pol);

struct pathset_pick {
    size_t path;               /* index of the inside address */
    struct portmap_pick port;  /* BUSY in pathset_map(ps, path) until released */
    uint64_t acquired_ms;      /* when pathset_acquire() handed it out (now_ms) */
};

/* A port toward the backend, trying the paths in turn from the one after the last used
 * (so the inside addresses share the load).  Returns 0 with <out> filled, or -1 when no
 * path has a usable port.  Times as portmap_acquire. */
int pathset_acquire(pathset *ps, uint64_t now_ms, uint64_t now_real_ns, uint64_t now_mono_ns,
                    struct pathset_pick *out);

/* The earliest portmap_next_usable_ms() over the paths (UINT64_MAX: none will be
 * usable before a release). */
uint64_t pathset_next_usable_ms(const pathset *ps, uint64_t now_ms, uint64_t now_real_ns,
                                uint64_t now_mono_ns);

/* The connection on <p> ended (portmap_release; its hold time, now_ms - acquired_ms,
 * and how it ended feed the path's capacity_obs), was refused by the kernel
 * (portmap_quarantine), or was opened on the backend's TIME_WAIT (counted). */
void pathset_release(pathset *ps, const struct pathset_pick *p, const struct portmap_release *r,
                     uint64_t now_ms);
void pathset_quarantine(pathset *ps, const struct pathset_pick *p, uint64_t now_ms);
void pathset_count_reuse(pathset *ps, const struct pathset_pick *p);

/* Expire entries whose time is up in every map (housekeeping). */
void pathset_expire(pathset *ps, uint64_t now_ms);

#endif
