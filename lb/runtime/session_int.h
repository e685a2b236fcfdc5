/* session_int.h - the inside of a session, shared by its parts: session.c (accept,
 * connect, retry, close), pump.c (bytes both ways) and queue.c (waiting for a backend
 * slot or a port).  Not for other modules. */
#ifndef TWLB_SESSION_INT_H
#define TWLB_SESSION_INT_H

#include <netinet/in.h>

#include "core/proxyproto.h"
#include "runtime/buffers.h"
#include "runtime/evpoll.h"
#include "runtime/timers.h"
#include "runtime/session.h"
#include "runtime/upconn.h"

enum session_state { S_CONNECTING, S_QUEUED, S_RETRY, S_PUMPING, S_CLOSING };

/* One direction of the pump: bytes read from <src> are written to <dst> (pump.c). */
struct pump {
    struct evfd *src, *dst;
    struct wbuf *pend;       /* bytes <dst> could not take at once (copied), from pend_off */
    uint32_t pend_off, pend_len;
    struct pipe_buf *pipe;   /* spliced bytes <dst> has not taken yet: in_pipe of them */
    uint32_t in_pipe;
    uint64_t bytes;          /* read from src; all of them reach dst before its FIN */
    unsigned splice : 1;     /* moves bytes with splice(2) now */
    unsigned no_splice : 1;  /* never: off in the config, urgent data, or splice failed */
    unsigned eof : 1;        /* src sent FIN (and everything before it was read) */
    unsigned shut : 1;       /* the FIN is passed on to dst, or is being */
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

    struct evfd cev;             /* the client's socket, from accept to close (evpoll.h) */
    struct wtimer deadline;      /* connect timeout, then idle timeout (timers.h) */
    struct upconn up;            /* the current (or last) backend connection */
    struct be_link link;         /* on up.be's list while it has a backend */
    unsigned client_open : 1, up_used : 1;
    unsigned watch_off : 1;      /* queued: the client sent its request, stop looking */
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
    uint64_t queued_ms;          /* when it entered the queue */
    uint64_t queue_wait_ms;      /* how long it waited in the queue, in all (access log) */

    struct pump c2b, b2c;
    uint64_t last_activity;
};

/* The backend connection is established: send the PROXY protocol header if the backend
 * wants one, and start moving bytes both ways, with the idle timeout of the session's
 * pool (pump.c).  May close the session. */
void pump_start(struct session *s);
/* The backend connect completed inside connect(2) (upconn.h, upconn_complete_now):
 * start now, and read the client's first bytes at once, speculatively. */
void pump_connected_now(struct session *s);

/* New readiness of the client's socket (backend_side 0) or the backend's (1), while
 * S_PUMPING (pump.c).  May close the session. */
void pump_event(struct session *s, int backend_side, uint32_t events);

/* Give back the buffers and pipes the pumps hold (the session is closing; pump.c). */
void pump_release(struct session *s);

/* New readiness of a queued client's socket: has it left? (queue.c) */
void queue_client_event(struct session *s);

/* Keep <s> (its memory) alive across calls that may close it: after session_unhold() it
 * may be gone, if it was closed meanwhile (session.c). */
static inline void session_hold(struct session *s)
{
    s->pending_closes++;
}
void session_unhold(struct session *s);

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
