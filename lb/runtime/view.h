/* view.h - what the admin side may read of the runtime, and nothing else.
 *
 * Every function takes a const view and changes nothing: no port entry is expired, no
 * health change is logged or counted here (the runtime does that on its own timer).
 * Figures are as of <now>, computed without side effects.  Indexes are those of
 * view_config(): listeners, pools, pools[p].backends, pools[p].inside.
 *
 * A view is valid until the caller returns to the event loop (a reload may replace the
 * runtime); ask for it again on every request.
 *
 * Return convention: 0 on success, -1 when the object does not exist. */
#ifndef TWLB_VIEW_H
#define TWLB_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/hist.h"
#include "core/isn.h"
#include "core/portmap.h"
#include "core/twrule.h"
#include "runtime/types.h"

struct view;
struct snapshot;

/* The view of snapshot <s> (the runtime side calls this; the admin side never does). */
const struct view *view_of(const struct snapshot *s);

const struct config *view_config(const struct view *v);
enum isn_mode view_isn_mode(const struct view *v);

struct view_totals {
    uint64_t sessions_active;  /* client connections being served, every generation and
                                  worker (view_totals) or one worker's (view_worker) */
    uint64_t sessions_total;
    uint64_t no_backend_total; /* clients closed: no backend or port usable */
    uint64_t buffers_in_use;   /* write buffers held by connections whose peer is slow
                                  (an idle connection holds none) */
    uint64_t pipes_in_use;     /* splice(2) pipes holding bytes of a connection (an idle
                                  connection holds none) */
    uint64_t local_errors_total; /* out of descriptors, buffers or memory here */
};
void view_totals(const struct view *v, struct view_totals *out);

/* How many workers (event loops) there are, and the figures of worker <i>. */
size_t view_workers(const struct view *v);
int view_worker(const struct view *v, size_t i, struct view_totals *out);

uint64_t view_listener_connections(const struct view *v, size_t listener);
/* Clients of <listener> turned away for <why> (runtime/types.h: REJECT_REASONS). */
uint64_t view_listener_rejected(const struct view *v, size_t listener, enum reject_reason why);

struct view_backend {
    const struct backend_stats *st; /* BACKEND_COUNTERS and bytes (runtime/types.h) */
    uint32_t active;                /* live connections, every generation */
    int up;                         /* may get new connections now: enabled and usable */
    int demoted;                    /* treated as strict after rejected reuses */
    enum twrule_kind rule;          /* the rule in effect (strict when demoted) */
    const char *admin;              /* "enabled", "draining" or "disabled" */
    const char *health;             /* "up", "down" (checks) or "ejected" (passive) */
    const struct hist *connect;     /* connect() to established, successful connects of
                                       client sessions (one per connections_total) */
    int backup;                     /* a backup backend (config) */
    uint32_t weight_milli;          /* the weight it balances with now (slow start),
                                       in thousandths of a configured weight unit */
};
int view_backend(const struct view *v, size_t pool, size_t backend, struct view_backend *out);

/* The source ports toward backend <backend> from inside address <inside>, over every
 * worker's slice of the range. */
struct view_path {
    uint32_t counts[PM_NSTATES]; /* by state as of now (expired TIME_WAIT counts as free) */
    uint64_t reuses_total;       /* connections opened on the backend's TIME_WAIT */
    uint32_t unknown;            /* of counts[PM_REMOTE_TW], those only because a restart
                                    could not know their state (portmap_unknown_at) */
    uint32_t headroom;           /* usable by a new connection now (portmap_headroom_at) */
    double capacity_cps;         /* new connections per second the range sustains at
                                    <mix> under the backend's policy (capacity_cps) */
    struct capacity_mix mix;     /* what the formula was fed: the running averages, or
                                    the default before the first connection */
    uint64_t observed;           /* connections the averages come from (0: default) */
};
/* Returns -1 also when that path has no port map (inside and backend families differ). */
int view_path(const struct view *v, size_t pool, size_t backend, size_t inside,
              struct view_path *out);

/* The process itself rather than its workers: the last reload and the drain.  Kept on
 * the main thread by runtime/lifecycle.c, which sets it with view_set_process() (the
 * runtime side, like view_of); view_process() gives it as of now, not as of the
 * snapshot.  Before any view_set_process(): last_reload_ok 1, everything else 0. */
struct view_process {
    int draining;                 /* SIGTERM/SIGINT: not accepting, connections finishing */
    int last_reload_ok;           /* the last reload attempt succeeded (1 at start) */
    uint64_t last_reload_unix_s;  /* when the last successful reload, or the start, was */
    uint64_t reloads_ok, reloads_failed;
};
void view_process(const struct view *v, struct view_process *out);
void view_set_process(const struct view_process *p);

/* The figures of pool <pool>, summed over the workers. */
struct view_pool {
    uint64_t queue_length;          /* clients waiting in the pool's queue now */
    const struct hist *queue_wait;  /* how long clients waited in it */
};
int view_pool(const struct view *v, size_t pool, struct view_pool *out);

#endif
