/* types.h - the live objects of the runtime, shared by its modules.
 *
 *   worker      one event loop: its sessions, its config generations, its timers.
 *               (One today; every per-connection state hangs off a worker, so N workers
 *               are N of these.)
 *   gen         what one config generation built: pools, backends, listeners, health
 *               probes.  A reload builds a new gen; the old one is retired and freed
 *               when its last session and handle are gone.
 *   backend_rt  a backend as one gen sees it; backend_shared is what survives reloads
 *               (counters, health, operator word, live connections of every gen).
 *
 * Only the runtime writes these; the admin side reads them through runtime/view.h. */
#ifndef TWLB_RUNTIME_TYPES_H
#define TWLB_RUNTIME_TYPES_H

#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "core/balance.h"
#include "core/health.h"
#include "core/hist.h"
#include "core/isn.h"
#include "core/pathset.h"
#include "core/timeq.h"

struct statefile;

/* Counters of one backend, declared once: X(field, metric name, help).  The admin side
 * renders /metrics and /stats from this list. */
#define BACKEND_COUNTERS(X)                                                              \
    X(connections_total, "twlb_backend_connections_total",                             \
      "Backend connections established")                                                \
    X(connect_errors_total, "twlb_backend_connect_errors_total",                       \
      "Backend connect attempts that failed (refused, timed out, no route)")            \
    X(connects_inline_total, "twlb_backend_connects_inline_total",                     \
      "Backend connects established when connect() returned (a backend on this host)")  \
    X(syn_retransmits_total, "twlb_syn_retransmits_total",                             \
      "Backend connects whose SYN was retransmitted (TCP_INFO)")                        \
    X(ports_exhausted_total, "twlb_ports_exhausted_total",                             \
      "Times no source port toward the backend was usable")                            \
    X(state_changes_total, "twlb_backend_state_changes_total",                         \
      "Times the backend went up or down")                                              \
    X(ejections_total, "twlb_backend_ejections_total",                                 \
      "Times consecutive connect failures ejected the backend")

struct backend_stats {
#define X(f, n, h) uint64_t f;
    BACKEND_COUNTERS(X)
#undef X
    uint64_t bytes_to_backend;
    uint64_t bytes_to_client;
    uint64_t spliced_to_backend;   /* of those, moved through a pipe by splice(2) */
    uint64_t spliced_to_client;
};

/* What the operator said (admin endpoint). */
enum backend_admin {
    BE_ENABLED,  /* takes new connections */
    BE_DRAINING, /* no new connections; live ones finish */
    BE_DISABLED, /* no new connections; live ones were closed */
};

/* What the workers share about a backend (group.c keeps one per pool, backend name and
 * address, across reloads), read and written with atomic operations only. */
struct backend_flags {
    int up;                        /* the probes' verdict: written by worker 0 */
    /* When the probes last brought it up, on worker 0's loop clock (every loop reads the
     * same monotonic clock), written before <up>: where its slow start begins in every
     * worker.  0: never. */
    uint64_t up_since_ms;
    int demoted;                   /* its explicit-ISN reuses were rejected: strict now */
    unsigned rejects_in_row;       /* rejected explicit-ISN reuses in a row, any worker */
    unsigned active;               /* live connections of every worker (least_conn) */
    unsigned slots;                /* connecting + established, every worker (max_connections) */
};

/* A link in a backend's list of live client connections, so that disabling a backend
 * visits only its own connections (of every generation).  <abort> ends one. */
struct be_link {
    struct be_link *next, *prev;
    void (*abort)(struct be_link *l);
};

struct backend_shared {
    unsigned refs;
    struct backend_stats st;
    struct hist connect;           /* connect() to established, per successful session
                                      connect (session.c: on_up_connect) */
    uint32_t active;               /* live connections, all generations */
    unsigned slots;                /* connecting + established (max_connections); with
                                      several workers flags->slots counts instead */
    unsigned reuse_rejects_in_row; /* SYN retransmits on reused 4-tuples, consecutive */
    int demoted;                   /* treated as strict after repeated rejects */
    enum backend_admin admin;
    uint64_t enabled_since_ms;     /* the operator enabled it (slow start); 0: never */
    struct health health;          /* active checks and passive ejection */
    int was_usable;                /* health_usable() when last looked at, to log changes */
    struct be_link conns;          /* list head of live client connections */
    struct backend_flags *flags;   /* shared by every worker, NULL with one worker */
    int probes_here;               /* this worker runs the probes (worker 0) */
};

/* A connection's deadline on its worker's timer (runtime/timers.h). */
struct wtimer {
    struct timeq_item it;
    void (*fn)(struct wtimer *t);
};

struct pool_rt;

/* A backend as one config generation sees it. */
struct backend_rt {
    const struct cfg_backend *cfg;
    struct pool_rt *pool;
    size_t index;
    struct backend_shared *sh;
    pathset *ps;                   /* its source ports, one path per pool inside address */
    uint32_t sync_skip;            /* connects before "done inside connect()?" is asked
                                      again: 0 while the answer is yes (upconn.c) */
};

struct gen;

/* What a worker keeps about a pool across reloads, by name (gen.c). */
struct pool_stats {
    struct pool_stats *next;
    char *name;
    struct hist queue_wait;        /* clients served from the queue: how long they waited */
};

struct pool_rt {
    const struct cfg_pool *cfg;
    struct gen *gen;               /* the generation that built it */
    size_t index;
    struct backend_rt *backends;
    struct balance_backend *view;  /* the balancer's view: name, weight, active */
    uint8_t *usable;               /* scratch for one pick */
    balancer *bal;
    struct session *q_head, *q_tail; /* clients waiting for a slot or a port (queue.h) */
    uint32_t q_len;
    struct wtimer q_timer;         /* the earliest moment a port may be usable again */
    struct pool_stats *st;         /* NULL on OOM: nothing is counted */
};

struct gen;

/* Why a client was turned away: X(enum, value of the reason label of
 * twlb_rejected_total), in the order the metric lists them. */
#define REJECT_REASONS(X)                                                                \
    X(REJ_ACL, "acl")                         /* the listener's allow/deny */             \
    X(REJ_CLIENT_LIMIT, "client_limit")       /* max_connections_per_client */            \
    X(REJ_CLIENT_RATE, "client_rate")         /* rate_per_client */                       \
    X(REJ_MAX_CONNECTIONS, "max_connections") /* never counted now (limits.h): kept 0 */ \
    X(REJ_QUEUE_FULL, "queue_full")           /* the pool's queue had no room */          \
    X(REJ_QUEUE_TIMEOUT, "queue_timeout")     /* waited in the queue too long */          \
    X(REJ_NO_BACKEND, "no_backend")           /* no backend or source port usable */
enum reject_reason {
#define X(e, label) e,
    REJECT_REASONS(X)
#undef X
    REJ_N
};

/* The counters of one listener in one worker (runtime/listener_stats.h).  Held by its
 * listener_rt and by each session accepted on it, so that a session can still count
 * against its listener after a reload closed the listener's socket. */
struct listener_stats {
    unsigned refs;                 /* this worker's thread only */
    uint64_t connections_total;    /* accepted, refused ones included */
    uint64_t rejected[REJ_N];
};

struct listener_rt {
    struct gen *gen;               /* the generation it serves now (moves on reload) */
    const struct cfg_listener *cfg;
    int fd;                        /* the listening socket; twlb accepts by itself */
    uv_poll_t poll;
    int paused;                    /* out of descriptors: not polled until the next tick */
    int paused_limit;              /* at max_connections: not polled until one ends */
    unsigned *live;                /* its clients, every worker (limits.h) */
    void (*poll_again)(struct listener_rt *lis); /* listener_poll: unless paused */
    struct listener_stats *stats;  /* moves with it on reload */
};

struct check;
struct worker;

struct gen {
    struct worker *w;
    struct config *cfg;            /* owned: freed with the gen */
    enum isn_mode isn_mode;        /* resolved: explicit, kernel or off */
    struct listener_rt **listeners; /* one per config listener; NULL once closed */
    /* One per config listener with per-client limits, else NULL (runtime/clients.h):
     * shared by every worker, by listener name. */
    struct client_table **clients;
    struct pool_rt *pools;
    struct check *checks;          /* active health probes */
    uint64_t sessions_active;      /* sessions started under this generation */
    unsigned handles_closing;      /* handles it owns still closing (health probes) */
    int retired;                   /* replaced by a reload; freed once empty */
    struct gen *next;              /* the worker's list, newest first */
};

struct session;
struct wbuf;
struct pipe_buf;
struct evpoll;

struct worker {
    uv_loop_t *loop;
    unsigned index, nworkers;      /* this worker's number, and how many there are */
    /* The flags of backend <b> of pool <pool>, shared by every worker and kept across
     * reloads (group.c); NULL: one worker, nothing to share. */
    struct backend_flags *(*shared_flags)(void *arg, const char *pool,
                                          const struct cfg_backend *b);
    void *shared_arg;
    /* The state file (os/statefile.h), shared by every worker, each writing the slots of
     * its own ports; NULL: none ("state_file": null). */
    struct statefile *store;
    struct gen *next;              /* a reload prepared, not yet committed */
    /* Give client connection <fd> (accepted on listener <listener>, nothing read from it
     * yet) to the next worker, because this one has no port left toward a usable
     * backend; <hops>: workers that tried already.  Returns 0 (the fd is the other
     * worker's now) or -1.  NULL with one worker. */
    int (*hand_over)(struct worker *w, int fd, const char *listener, unsigned hops);
    /* Counters every worker shares (limits.h), by key; NULL with one worker, whose
     * counters are its own (own_counts). */
    unsigned *(*shared_count)(void *arg, const char *key);
    struct live_count *own_counts;
    unsigned *live_all;            /* clients served or queued, every worker */
    unsigned *paused_all;          /* listeners paused at a limit, every worker */
    unsigned *queued_all;          /* clients queued, every worker */
    /* Wake the other workers: a limit or a backend slot may have freed (NULL: alone). */
    void (*wake_others)(struct worker *w);
    uint32_t queued_here;          /* clients in this worker's queues */
    struct pool_stats *pool_stats; /* every pool name seen (gen.c) */
    int serving_queues;            /* queue_kick() is running (no recursion) */
    int queues_again;              /* and was asked again meanwhile */
    struct gen *cur;               /* the current generation */
    struct gen *gens;              /* every generation alive, the current one first */
    struct isn_key isn_key;        /* RFC 6528 secret, from getrandom(), kept on reload */
    struct session *sessions;      /* live sessions of every generation */
    struct session *free_sessions; /* recycled sessions, at most SESSION_CACHE_MAX */
    size_t free_count;
    uint64_t sessions_active;
    uint64_t sessions_total;
    uint64_t sessions_peak; /* most live at once since memory was last trimmed (worker.c) */
    uint64_t no_backend_total;     /* client connections closed: no backend/port usable */
    uint64_t local_errors_total;   /* out of descriptors, buffers, memory (local.h) */
    uint64_t local_logged_ms;      /* when the last one was logged */
    uint64_t local_unlogged;       /* since then, not logged */
    int reserve_fd;                /* kept free for accepting when out of descriptors */
    /* Backend state-change lines: at most BACKEND_STATE_LOG_PER_S per second; the rest
     * are counted and summed up in one line (backend.c). */
    uint64_t state_log_since_ms;
    uint32_t state_logged;
    uint64_t state_unlogged_down, state_unlogged_up;
    /* The per-client tables of every listener, by name (runtime/clients.h): the group's,
     * shared by its workers, or the worker's own (clients_own). */
    struct clients_registry *clients;
    int clients_own;
    /* Refused clients' lines: at most CLIENTS_LOG_PER_S per second, the rest summed up. */
    uint64_t refused_log_since_ms;
    uint32_t refused_logged;
    uint64_t refused_unlogged;
    uv_timer_t tick;               /* housekeeping: health changes, port expiry */
    uv_timer_t timer;              /* the connections' earliest deadline (timers.h) */
    struct timeq deadlines;
    char *scratch;                 /* the pump reads here (buffers.h) */
    size_t scratch_size;
    struct wbuf *wbufs;            /* write buffers kept for reuse */
    size_t wbufs_free, wbufs_in_use;
    struct pipe_buf *pipes;        /* splice(2) pipes kept for reuse (buffers.h) */
    size_t pipes_free, pipes_in_use;
    uint64_t pipes_refused_at;     /* loop ms when a new pipe came too small (buffers.c) */
    struct evpoll *evpoll;         /* the data path's sockets (evpoll.h) */
    uv_timer_t deadline;           /* the drain deadline, for every generation */
    int draining;                  /* 1 draining, 2 drained (no session left) */
    int accept_off;                /* a takeover is under way: listeners not polled */
    void (*on_drained)(struct worker *w);
    void *data;                    /* the caller's */
};

/* This worker's share of pool <pc>'s source ports: workers split every range into
 * disjoint slices, so a port belongs to one worker only (the worker count is at most the
 * size of the smallest range: group.c). */
static inline void worker_slice(const struct worker *w, const struct cfg_pool *pc,
                                uint16_t *lo, uint16_t *hi)
{
    uint32_t n = (uint32_t)pc->port_hi - pc->port_lo + 1;
    *lo = (uint16_t)(pc->port_lo + w->index * n / w->nworkers);
    *hi = (uint16_t)(pc->port_lo + (w->index + 1) * n / w->nworkers - 1);
}

/* Monotonic milliseconds of the loop (cached per loop iteration): CLOCK_MONOTONIC, one
 * clock for the whole boot (the state file keeps deadlines on it across a restart). */
static inline uint64_t worker_now_ms(const struct worker *w) { return uv_now(w->loop); }

#endif
