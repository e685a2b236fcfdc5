/* types.h - the decoded configuration: what config_load() returns, as plain data.  Kept
 * apart from the loader (config.h) so that the key tables (keys.h), which say where each
 * value lives, can name these structs without depending on the loader. */
#ifndef TWLB_CONFIG_TYPES_H
#define TWLB_CONFIG_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/addr.h"
#include "core/balance.h"
#include "core/cidr.h"
#include "core/isn.h"
#include "core/portmap.h"
#include "core/twrule.h"
#include "os/log.h"

/* Bounds other modules size arrays by; the key table uses the same names. */
#define CFG_RETRIES_MAX 100      /* pools[].retries */
#define CFG_WORKERS_MAX 64       /* workers */
#define CFG_NAME_MAX 64          /* listener, pool and backend names, in bytes */
#define CFG_HEALTH_EXPECT_MAX 256 /* health.expect, in bytes */
#define CFG_PER_CLIENT_MAX 1000000 /* listeners[]: the per-client limits */

struct cfg_time_wait {
    enum twrule_kind rule;
    uint32_t seconds;
};

/* Active health checks ("health" in a pool, overridable per backend).  Absent: none. */
struct cfg_health {
    int enabled;
    uint32_t interval_ms;
    uint32_t timeout_ms;   /* <= interval_ms */
    int timeout_set;       /* timeout_ms was given, not the default (here or inherited) */
    uint32_t rise, fall;   /* HAProxy semantics */
    char *send;            /* bytes to send after connecting, or NULL */
    size_t send_len;
    char *expect;          /* the reply must start with these bytes, or NULL */
    size_t expect_len;
};

enum proxy_protocol { PROXY_NONE, PROXY_V1, PROXY_V2 };

struct cfg_backend {
    char *name;
    struct cfg_addr addr;
    uint32_t weight;
    struct cfg_time_wait time_wait; /* the pool's unless overridden */
    struct cfg_health health;       /* the pool's unless overridden */
    enum proxy_protocol proxy_protocol;
    uint32_t max_connections;       /* connecting + established, every worker; 0: none */
    int backup;                     /* only when no non-backup backend is usable */
    uint32_t slow_start_ms;         /* the pool's unless overridden; 0: none */
};

/* Clients waiting for a backend slot or a source port ("queue" in a pool).  Absent:
 * max 0, no queue (a client nothing can serve now is closed at once). */
struct cfg_queue {
    uint32_t max;                   /* clients waiting at once, per worker */
    uint32_t timeout_ms;            /* the longest a client waits */
};

/* pools[].splice: move bulk transfers with splice(2), or always copy. */
enum cfg_splice { CFG_SPLICE_AUTO, CFG_SPLICE_OFF };

struct cfg_pool {
    char *name;
    enum balance_algo balance;
    struct cfg_addr *inside;        /* >= 1 addresses, port 0 */
    size_t n_inside;
    uint16_t port_lo, port_hi;      /* "source_ports": "LO-HI" */
    uint32_t connect_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t retries;               /* at most CFG_RETRIES_MAX */
    uint32_t buffer_bytes;          /* per direction */
    enum cfg_splice splice;         /* bulk bytes by splice(2) (runtime/pump.c) */
    struct cfg_time_wait time_wait; /* default for its backends */
    struct cfg_health health;       /* default for its backends */
    struct cfg_queue queue;
    uint32_t slow_start_ms;         /* default for its backends */
    struct cfg_backend *backends;   /* >= 1 */
    size_t n_backends;
};

struct cfg_listener {
    char *name;
    struct cfg_addr bind;
    char *pool_name;
    size_t pool;     /* index into config.pools */
    uint32_t backlog;
    uint32_t max_connections;       /* clients served or queued at once; 0: no limit */
    /* Who may connect (core/cidr.h: cidr_acl_refuses): deny wins; a non-empty allow
     * admits only its prefixes.  NULL and 0: no list. */
    struct cidr *allow, *deny;
    size_t n_allow, n_deny;
    /* Per client address, across every worker; 0: no limit. */
    uint32_t max_conns_per_client;  /* live connections */
    uint32_t rate_per_client;       /* new connections a second (token bucket) */
    uint32_t burst_per_client;      /* the bucket's size: rate_per_client when not given */
};

struct config {
    unsigned refs;                  /* config_ref(); atomically, shared by every worker */
    char *path;
    struct cfg_listener *listeners; /* >= 1 */
    size_t n_listeners;
    struct cfg_pool *pools;         /* >= 1 */
    size_t n_pools;
    struct cfg_reuse {
        enum isn_mode isn;
        enum pm_local_tw local_time_wait;
        uint32_t local_time_wait_seconds; /* Linux: TCP_TIMEWAIT_LEN */
        uint32_t quarantine_ms;
        uint32_t kernel_margin_us;  /* ISN_KERNEL: isn_kernel_margin_of_us() */
        char *state_file;           /* NULL: none ("state_file": null) */
        int state_file_default;     /* not configured: the default path (config.c) */
    } reuse;
    struct cfg_admin {
        int enabled;                /* "admin" present */
        struct cfg_addr bind;
        char *token_file;           /* bearer token required for POST; NULL: none */
        int allow_without_token;    /* a non-loopback bind without token_file is meant */
    } admin;
    struct cfg_log {
        enum log_level level;
        char *file;                 /* NULL: stderr; reopened on SIGUSR1 */
        char *access_log;           /* NULL: no access log; "-": stderr */
        int access_log_json;        /* JSON lines instead of key=value */
    } log;
    uint32_t drain_timeout_ms;
    uint32_t max_connections;       /* clients served or queued at once, every listener
                                       and worker; 0: no limit */
    uint32_t workers;               /* event loops (threads); 0: "auto", one per CPU */
    uint32_t pipe_bytes;            /* what each splice(2) pipe is asked to hold */
    uint32_t max_pipes;             /* splice pipes in use per worker at most; 0: no splice */
    char *user;                     /* run as this user once started; NULL: stay */
    char *group;                    /* and this group; NULL: the user's primary group */
    char *upgrade_socket;           /* where a new twlb takes over (takeover.h); NULL: none */
};

#endif
