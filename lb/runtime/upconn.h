/* upconn.h - one TCP connection from twlb to a backend, for client sessions and health
 * probes alike: the source port the reuse engine chose, our own TIME_WAIT on that
 * 4-tuple destroyed where needed (SOCK_DESTROY, on the libuv thread pool: it is a
 * netlink round trip), the ISN chosen (explicit mode), the socket bound and connected,
 * whether the SYN was sent again (TCP_INFO), and on close the port handed back to the
 * bookkeeping with who sent the first FIN.
 *
 *   upconn_open()  -> 0: exactly one on_connect(u, status) follows, unless upconn_close()
 *                    comes first.  status 0: connected; UPCONN_NO_PORT: the kernel
 *                    refused every port toward this backend (not the backend's fault;
 *                    nothing is held); another negative errno: the connect failed.
 *                  -> UPCONN_NO_PORT or a negative errno at once: nothing is held, no
 *                    callback.
 *   upconn_close() -> 1: on_closed(u) follows once everything is released; 0: nothing
 *                    was open (raw: or it is closed now), the port is released already
 *                    and on_closed is not called.
 *                    Either way the struct may be reused or freed after that.
 *
 * The owner keeps <closer> and <bytes_to_backend> current; tcp.data is the owner's.
 *
 * Two ways to hold the socket, chosen by the owner (<raw>, kept across opens):
 *   - a uv_tcp_t (health probes): libuv connects it and the owner uses it as a stream;
 *   - raw (client sessions): the socket is the owner's <ev> in the worker's epoll set
 *     (evpoll.h), connected here with connect(2); once connected, its readiness goes to
 *     the owner's <on_event>.  A close is synchronous (upconn_close returns 0) unless a
 *     SOCK_DESTROY is in flight.
 * Raw, TCP_INFO right after the connect only when its answer can differ from the
 * default: a SYN is sent again at the earliest two jiffies after the first answer, so a
 * connect that completed within one jiffy sent one SYN (kernel-facts 7.4).  Whether
 * timestamps were negotiated matters only for our own TIME_WAIT: there the owner reads
 * it (pump.c) before its FIN.  Probes read TCP_INFO after every connect, as before. */
#ifndef TWLB_UPCONN_H
#define TWLB_UPCONN_H

#include <errno.h>

#include "runtime/evpoll.h"
#include "runtime/types.h"

#define UPCONN_NO_PORT (-ENOSPC)

struct upconn;
typedef void (*upconn_connect_cb)(struct upconn *u, int status);
typedef void (*upconn_closed_cb)(struct upconn *u);

struct upconn {
    uv_tcp_t tcp;                /* the stream toward the backend once connected (not raw) */
    struct evfd ev;              /* the socket (raw) */
    int raw;                     /* the owner's choice, kept by upconn_open */
    /* Raw, once connected: the socket's new readiness (the bits are in ev.ev too). */
    void (*on_event)(struct upconn *u, uint32_t events);
    struct gen *g;
    struct backend_rt *be;
    struct pathset_pick pick;    /* the source port, BUSY while have_port */
    int isn_known;               /* we chose the ISN */
    uint32_t isn;
    uint64_t syn_real_ns, syn_mono_ns; /* read once connect() returned (kernel-facts 7.3) */
    uint64_t connect_mono_ns;    /* raw: read before connect(), for the resent-SYN test */
    int timestamps;              /* negotiated (TCP_INFO at connect; raw: the owner's
                                    TCP_INFO before its FIN, when it may be first) */
    enum pm_closer closer;       /* who sent the first FIN: kept by the owner */
    uint64_t bytes_to_backend;   /* payload sent, PROXY header included: by the owner */
    /* private */
    uv_connect_t *creq;          /* while connecting */
    uv_work_t *work;             /* while SOCK_DESTROY runs on the thread pool */
    int destroy_result;
    int fail_status;
    unsigned have_port : 1, tcp_open : 1, work_pending : 1, closing : 1, destroyed : 1,
        connected : 1, connecting : 1,
        connected_now : 1; /* raw: the connect completed inside connect(2) (below) */
    int tries;
    upconn_connect_cb on_connect;
    upconn_closed_cb on_closed;
};

/* Connect to <be> from the port in <pick> (BUSY; the upconn owns it from now on). */
int upconn_open(struct upconn *u, struct gen *g, struct backend_rt *be,
                const struct pathset_pick *pick, upconn_connect_cb on_connect);

/* End the connection: <reset> aborts it (RST, no TIME_WAIT anywhere, the port is free
 * again), otherwise a normal close (the kernel sends our FIN if the owner did not).
 * Returns 1 when <on_closed> will be called, 0 when everything is released already (see
 * above). */
int upconn_close(struct upconn *u, int reset, upconn_closed_cb on_closed);

/* Has the connection passed both FINs, so that one side holds its TIME_WAIT whatever
 * happens now?  Asks the kernel (the backend's FIN may be there unread): CLOSED without
 * an error (the side that sent the first FIN, as recorded in <closer>, holds it), or
 * LAST_ACK / CLOSING (the backend's FIN came first: it will hold it; closer is set so).
 * An aborting owner then closes without a reset and keeps the record. */
int upconn_finished(struct upconn *u);

/* A raw connect to a backend on this host (loopback, a veth pair) completes inside
 * connect(2): the handshake runs in the caller's softirq.  upconn_open() then sets
 * <connected_now> (asked with one TCP_INFO while the backend's connects complete that
 * way, otherwise once in 64 connects), and the owner, once it has set up what its
 * connect callback expects, calls this: the callback runs now, as it would for the
 * EPOLLOUT that follows (and then goes to the owner's on_event, harmless). */
void upconn_complete_now(struct upconn *u);

/* Is the connection's socket open (connect in flight or established)? */
static inline int upconn_is_open(const struct upconn *u) { return u->tcp_open; }

#endif
