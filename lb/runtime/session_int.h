/* session_int.h - the inside of a session, shared by its parts: session.c (accept,
 * connect, retry, close), pump.c (bytes both ways) and queue.c (waiting for a backend
 * slot or a port).  Not for other modules. */
#ifndef TWLB_SESSION_INT_H
#define TWLB_SESSION_INT_H

#include <netinet/in.h>

#include "core/proxyproto.h"
#include "runtime/buffers.h"
#include "runtime/timers.h"
#include "runtime/session.h"
#include "runtime/upconn.h"

enum session_state { S_CONNECTING, S_QUEUED, S_RETRY, S_PUMPING, S_CLOSING };

/* One direction of the pump: bytes read from <src> are written to <dst>. */
struct pump {
    uv_stream_t *src, *dst;
    struct wbuf *pend;    /* bytes <dst> could not take at once, being written */
    uv_shutdown_t *sreq;  /* the FIN passed on, while in flight */
    uint64_t bytes;
    unsigned reading : 1; /* uv_read_start active on src */
    unsigned eof : 1;     /* src sent FIN */
    unsigned shut : 1;    /* uv_shutdown(dst) issued */
    unsigned shut_done : 1;
};

/* A client address, IPv4 or IPv6, in 28 bytes instead of sockaddr_storage's 128. */
union peer_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

struct session {
    struct session *next, *prev; /* w->sessions, or w->free_sessions */
    struct worker *w;
    struct gen *g;               /* the generation it was accepted under */
    const char *lis_name;        /* in that generation's config */
    struct listener_stats *lst;  /* its listener's counters in this worker (held) */
    struct client_table *ct;     /* holds a live connection of the client there, or NULL
                                    (runtime/clients.h; g holds the table) */
    struct pool_rt *pool;
    enum session_state state;
    enum session_end end;

    uv_tcp_t client;
    struct wtimer deadline;      /* connect timeout, then idle timeout (timers.h) */
    struct upconn up;            /* the current (or last) backend connection */
    struct be_link link;         /* on up.be's list while it has a backend */
    unsigned client_open : 1, up_used : 1;
    int pending_closes;

    uint64_t client_hash;
    union peer_addr peer;        /* the client's address (access log, PROXY header) */
    uint64_t start_ms;
    enum { FIN_NONE, FIN_CLIENT, FIN_BACKEND } first_fin; /* session level, for the log */
    int connected;               /* a backend connection was established */
    int counted_active;          /* be->sh->active incremented */
    uint32_t *tried;             /* backend indexes not to pick again */
    size_t ntried, tried_cap;
    size_t nfailed;              /* tries that failed (pool "retries" bounds them) */
    unsigned hops;               /* workers that had no port for it before this one */
    uint32_t pplen;              /* bytes of PROXY header sent to the backend */
    unsigned *lis_live;          /* its listener's live-client counter (limits.h) */
    unsigned counted_live : 1;   /* counted in lis_live and w->live_all */
    unsigned slot_held : 1;      /* holds a slot of up.be (backend max_connections) */
    struct session *q_next, *q_prev; /* in its pool's queue while S_QUEUED (queue.h) */
    struct qwatch *watch;        /* notices the client leaving while queued */
    uint64_t queued_ms;          /* when it entered the queue */

    struct pump c2b, b2c;
    uint64_t last_activity;
};

/* Send the PROXY protocol header of the session's backend before any byte of the
 * client (pump.c).  Returns 0 or -1. */
int pump_proxy_header(struct session *s);

/* The backend connection is established: start moving bytes both ways, with the idle
 * timeout of the session's pool (pump.c). */
void pump_start(struct session *s);

/* Put <s> (S_CONNECTING, nothing held) at the tail of its pool's queue: S_QUEUED.
 * Returns 0, or -1 when the pool has no queue or it is full (queue.c). */
int queue_push(struct session *s);
/* Take <s> out of its queue if it is in one: it is being served, or closed (queue.c). */
void queue_remove(struct session *s);

/* <s> leaves its queue to be served: its wait is counted (queue.c). */
void queue_served(struct session *s);

/* A queued session's turn (queue.c): try to connect it now.  Returns 1 when it left the
 * queue (connecting, or closed), 0 when it must go on waiting (session.c). */
int session_serve_queued(struct session *s);

/* End the session: the first reason is kept (session.c). */
void session_close(struct session *s, enum session_end why);

static inline uint64_t session_now_ms(const struct session *s)
{
    return worker_now_ms(s->w);
}

#endif
