/* kdiag.h - the kernel's socket diagnostics (netlink NETLINK_SOCK_DIAG, inet_diag): list
 * our own TCP sockets in TIME_WAIT, and destroy one 4-tuple (SOCK_DESTROY).
 *
 * Synchronous and small, no libuv: each call opens a netlink socket, asks, waits for the
 * answer (each receive bounded by a 2 s timeout) and closes it.  Used at start-up to
 * learn which source ports our kernel still holds in TIME_WAIT (kernel-facts 5), and,
 * with CAP_NET_ADMIN, to remove our own TIME_WAIT before reusing its 4-tuple with a
 * chosen ISN (kernel-facts 4).
 *
 * Return convention: a count or 0 on success, a negative errno on failure. */
#ifndef TWLB_KDIAG_H
#define TWLB_KDIAG_H

#include <stdint.h>
#include <sys/socket.h>

/* One TCP socket in TIME_WAIT, as the kernel reports it. */
struct kdiag_tw {
    uint16_t local_port;            /* host byte order */
    struct sockaddr_storage remote; /* sockaddr_in or sockaddr_in6: peer address and port */
    uint32_t expires_ms;            /* time left in TIME_WAIT (idiag_expires) */
    uint64_t cookie;                /* the kernel's identity of this socket (idiag_cookie);
                                       never reused for another socket while the host runs */
};

/* Dump the TCP sockets of <family> (AF_INET or AF_INET6) in TIME_WAIT whose local
 * address is exactly <src_addr> (4 bytes for AF_INET, 16 for AF_INET6, network order),
 * and call <fn>(<arg>, tw) for each (<fn> may be NULL to only count).  The kernel does
 * the address filtering (inet_diag bytecode), so the cost grows with the matching
 * sockets, not with every socket of the host.  Sockets of the caller's network
 * namespace only; no privilege needed.  IPv4 connections made from AF_INET6 sockets
 * (v4-mapped) are listed under AF_INET6, not AF_INET.
 *
 * Returns how many sockets were reported, or a negative errno: -EAFNOSUPPORT (family),
 * -EINVAL (src_addr NULL), -ENOENT (inet_diag not available in this kernel), -EAGAIN
 * (the kernel answered nothing within 2 s), -EMSGSIZE / -EPROTO (an answer this code
 * cannot parse).  On an error in the middle of the dump, <fn> may already have been
 * called for some sockets. */
int kdiag_list_time_wait(int family, const void *src_addr,
                         void (*fn)(void *arg, const struct kdiag_tw *tw), void *arg);

/* Destroy the TCP socket whose 4-tuple is exactly <local> -> <remote> (both sockaddr_in
 * or both sockaddr_in6; a link-local IPv6 <local> must carry its sin6_scope_id), in
 * whatever state it is: TIME_WAIT disappears at once, a live connection is aborted
 * (its owner sees ECONNABORTED, the peer gets an RST).
 *
 * Never touches another socket: the kernel's own SOCK_DESTROY lookup falls back to a
 * LISTENING socket on <local> when no connection has the 4-tuple (measured on 6.18: a
 * plain SOCK_DESTROY of a missing 4-tuple closes the listener), so this first fetches
 * the socket with that exact 4-tuple and its cookie, then destroys by cookie.
 *
 * Needs CAP_NET_ADMIN in the socket's network namespace and a kernel built with
 * CONFIG_INET_DIAG_DESTROY.  Returns 0, or -ENOENT when no connection has this
 * 4-tuple, -EPERM (no CAP_NET_ADMIN), -EOPNOTSUPP (kernel without SOCK_DESTROY),
 * -EINVAL (families differ), -EAFNOSUPPORT, -EAGAIN (no answer within 2 s, or the
 * 4-tuple changed hands three times during the call) or another negative errno. */
int kdiag_destroy(const struct sockaddr *local, const struct sockaddr *remote);

#endif
