/* session.h - one client connection and its backend connection.
 *
 * The state machine (table at the top of session.c) accepts a client, picks a backend
 * and a source port (backend_pick), connects through an upconn (retrying other backends
 * while no byte has been forwarded), pumps bytes both ways with bounded buffers, follows
 * half-closes, and on the end tells the port bookkeeping who sent the first FIN. */
#ifndef TWLB_SESSION_H
#define TWLB_SESSION_H

#include "runtime/types.h"

/* Why a session ended (recorded once, the first reason wins). */
enum session_end {
    END_NONE,
    END_DONE,            /* both sides closed their write side, all bytes delivered */
    END_CLIENT_ERROR,    /* client reset or read/write error */
    END_BACKEND_ERROR,   /* backend reset or read/write error */
    END_IDLE_TIMEOUT,
    END_CONNECT_FAILED,  /* every try failed */
    END_NO_BACKEND,      /* no backend or no source port usable */
    END_DRAIN_DEADLINE,  /* still open when the drain time ran out */
    END_BACKEND_DISABLED, /* the operator disabled its backend */
    END_HANDED_OVER,     /* no port left here: the client went to another worker */
    END_LOCAL_ERROR,     /* this machine ran out of descriptors, buffers or memory */
    END_QUEUE_FULL,      /* nothing could serve it now and its pool's queue was full */
    END_QUEUE_TIMEOUT,   /* it waited in its pool's queue for queue.timeout_ms */
};

/* Take over client connection <fd> (non-blocking), accepted from <peer> on listener <lis>
 * and admitted (runtime/clients.h: <slot> is the table the client holds a live
 * connection in, or NULL), and start connecting to a backend of the listener's pool.
 * The client is counted in lis->live and the worker's live_all already (limits_take).
 * The fd, the slot and the counts are the session's from now on (closed and given back
 * at its end, or at once on failure). */
void session_accept(struct listener_rt *lis, struct client_table *slot, int fd,
                    const struct sockaddr *peer, socklen_t peerlen);

/* Take over client connection <fd> that another worker accepted on listener <listener>
 * of the current generation and could not serve (runtime/types.h: hand_over); <hops>
 * workers tried before.  The fd is the session's, or closed.  The client was admitted
 * there: it takes its place in the per-client table without a check (the sending
 * worker gave its own back). */
void session_adopt(struct worker *w, int fd, const char *listener, unsigned hops);

/* Something was given back (a session ended, another worker freed a backend slot, a
 * backend may be up again): serve the worker's queues that hold clients (queue.c). */
void queue_kick(struct worker *w);

/* Close every live session of worker <w> at once (drain deadline). */
void session_abort_all(struct worker *w);

/* Sessions that may still take a source port (connecting, queued, retrying): a
 * takeover waits for none to be left (runtime/takeover.c). */
unsigned session_unsettled(const struct worker *w);

/* Free the sessions kept for reuse (at exit). */
void session_free_cache(struct worker *w);

#endif
