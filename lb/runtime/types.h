/* runtime.h - the live objects of one worker: listeners, pools, backends, sessions.
 *
 * Everything the data path mutates hangs off one struct server (one event loop), so a
 * later version can run N workers, each with its own server, and no global mutable
 * state is touched per connection.  Shared by server.c (set-up, listeners, picking a
 * backend and a port), session.c (the per-connection state machine) and admin.c (which
 * only reads). */
#ifndef TWLB_RUNTIME_H
#define TWLB_RUNTIME_H

#include <stdint.h>
#include <uv.h>

#include "core/balance.h"
#include "config/config.h"
#include "core/health.h"
#include "core/isn.h"
#include "core/portmap.h"

/* Counters of one backend, declared once: X(field, metric name, help).  admin.c walks
 * this list to render /metrics and /stats. */
#define BACKEND_COUNTERS(X)                                                              \
    X(connections_total, "twlb_backend_connections_total",                             \
      "Backend connections established")                                                \
    X(connect_errors_total, "twlb_backend_connect_errors_total",                       \
      "Backend connect attempts that failed (refused, timed out, no route)")            \
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
};

/* One (backend, inside address) pair: the port bookkeeping toward that 4-tuple space.
 * Shared by every config generation that has the same pool, backend name, backend
 * address and inside address, so a reload keeps what the backend remembers; freed with
 * the last generation that refers to it. */
struct path_rt {
    unsigned refs;
    portmap *pm;             /* NULL when the families differ (never used) */
    uint64_t reuses_total;   /* connections opened on a 4-tuple in backend TIME_WAIT */
};

struct pool_rt;

/* What the operator said (admin endpoint). */
enum backend_admin {
    BE_ENABLED,  /* takes new connections */
    BE_DRAINING, /* no new connections; live ones finish */
    BE_DISABLED, /* no new connections; live ones were closed */
};

/* What a backend keeps across reloads (shared like path_rt): counters, health, the
 * operator's word, live connections of every generation. */
struct backend_shared {
    unsigned refs;
    struct backend_stats st;
    uint32_t active;         /* live connections, all generations */
    uint32_t reuse_rejects_in_row; /* SYN retransmits on reused 4-tuples, consecutive */
    int demoted;             /* treated as strict after repeated rejects */
    enum backend_admin admin;
    struct health health;    /* active checks and passive ejection */
    int was_usable;          /* health_usable() when last looked at, to log changes */
};

/* A backend as one config generation sees it. */
struct backend_rt {
    const struct cfg_backend *cfg;
    struct pool_rt *pool;
    size_t index;
    struct backend_shared *sh;
    struct path_rt **paths;  /* one per pool inside address */
};

struct pool_rt {
    const struct cfg_pool *cfg;
    size_t index;
    struct backend_rt *backends;
    struct balance_backend *view; /* balancer's view: name, weight, active */
    uint8_t *usable;              /* scratch for one pick */
    balancer *bal;
    size_t next_inside;           /* rotates the inside addresses */
};

struct server;

struct listener_rt {
    struct server *srv;
    const struct cfg_listener *cfg;
    uv_tcp_t handle;
    uint64_t connections_total;
};

struct session;

struct server {
    uv_loop_t *loop;
    const struct config *cfg;
    struct listener_rt **listeners; /* one per config listener; NULL once closed */
    struct pool_rt *pools;
    enum isn_mode isn_mode;       /* resolved: explicit, kernel or off */
    struct isn_key isn_key;       /* RFC 6528 secret, from getrandom() */
    struct session *free_sessions; /* recycled sessions, at most 1024 */
    size_t free_count;
    struct session *active;       /* intrusive list of live sessions */
    uint64_t sessions_active;
    uint64_t sessions_total;
    uint64_t no_backend_total;    /* client connections closed: no backend/port usable */
    struct admin *admin;
    struct check *checks;         /* active health checks */
    unsigned handles_closing;     /* handles it owns still closing (health probes) */
    int draining;                 /* 1 draining, 2 drained (no session left) */
    int retired;                  /* replaced by a reload; frees itself when empty */
    void (*on_gone)(struct server *srv);
    void (*on_drained)(struct server *srv); /* all sessions gone after server_drain() */
};

/* Monotonic milliseconds of the loop (cheap, cached per loop iteration). */
static inline uint64_t server_now_ms(const struct server *srv) { return uv_now(srv->loop); }

#endif
