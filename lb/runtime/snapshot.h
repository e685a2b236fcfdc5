/* snapshot.h - the figures of one worker, copied on its own thread, and the sum of the
 * workers' figures that the admin side renders (through runtime/view.h).
 *
 * No thread reads another's port maps or counters: the main thread asks each worker for
 * a snapshot (group.c) and adds them up.  Ports are split between workers, so adding the
 * per-state port counts of every worker gives the whole range; counters add; health, the
 * operator's word and the effective weight are the same in every worker and are taken
 * from the first (worker 0, which runs the health probes).
 *
 * Return convention: NULL / -1 on failure. */
#ifndef TWLB_SNAPSHOT_H
#define TWLB_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/types.h"

struct snap_backend {
    struct backend_stats st;
    struct hist connect;       /* backend_shared.connect */
    uint32_t active;
    int usable;                /* health and ejection allow new connections */
    int health_up;             /* the probes' verdict */
    int demoted;
    enum backend_admin admin;
    enum twrule_kind rule;     /* in effect */
    uint32_t weight;           /* effective (slow start), 1/SLOWSTART_SCALE units */
    struct portmap_policy pol; /* its port policy in effect (the capacity formula's) */
};

struct snap_path {
    int present;               /* the path has a port map */
    uint32_t counts[PM_NSTATES];
    uint32_t unknown;          /* of counts[PM_REMOTE_TW]: unknown after a restart */
    uint64_t reuses_total;
    uint32_t headroom;         /* portmap_headroom_at: usable now */
    struct capacity_obs obs;   /* the mix of its connections (merged over the workers) */
};

/* Per pool.  Nothing feeds these yet: the queue (issue 10) fills them in snapshot_take()
 * (see the comment there) and adds its metric rows to admin/metrics.c. */
struct snap_pool {
    uint64_t queue_length;     /* clients waiting now */
    struct hist queue_wait;    /* how long the clients that left the queue waited */
};

struct snap_worker {
    uint64_t sessions_active, sessions_total, no_backend_total, buffers_in_use, pipes_in_use;
    uint64_t local_errors_total;
};

struct snapshot {
    struct config *cfg;        /* a reference: the current generation's config */
    enum isn_mode isn_mode;
    uint64_t now_ms;
    size_t nworkers;
    struct snap_worker *workers;
    uint64_t *listener_conns;  /* per config listener */
    struct snap_pool *pool;    /* per config pool */
    uint64_t *listener_rejected; /* per config listener, REJ_N each (by reason) */
    size_t nbe, npath;         /* backends, paths (backend x inside address) */
    size_t *be_base;           /* index in be[] of pool p's first backend */
    struct snap_backend *be;
    size_t *path_base;         /* index in path[] of backend k's (flat index) first path */
    struct snap_path *path;
};

/* The figures of worker <w> now; call on w's thread. */
struct snapshot *snapshot_take(const struct worker *w);

/* Add <s> to <into>.  Both must be of the same config.  Returns 0 or -1. */
int snapshot_add(struct snapshot *into, const struct snapshot *s);

void snapshot_free(struct snapshot *s); /* NULL ok */

#endif
