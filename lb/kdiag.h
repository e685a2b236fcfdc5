/* kdiag.h - the kernel's socket diagnostics (NETLINK_SOCK_DIAG, inet_diag): list our own
 * TIME_WAIT sockets, and destroy one (SOCK_DESTROY).  Synchronous and small: used at
 * start-up and, with CAP_NET_ADMIN, before reusing a port our kernel still holds in
 * TIME_WAIT (kernel-facts 4 and 5). */
#ifndef TWLB_KDIAG_H
#define TWLB_KDIAG_H

#include <stdint.h>
#include <sys/socket.h>

/* One TIME_WAIT socket. */
struct kdiag_tw {
    uint16_t local_port;
    struct sockaddr_storage remote; /* address and port of the peer */
    uint32_t expires_ms;            /* time left in TIME_WAIT */
};

/* Call <fn> for each TCP socket in TIME_WAIT whose local address is <src_addr> (4 bytes
 * for AF_INET, 16 for AF_INET6).  Returns how many, or a negative errno. */
int kdiag_list_time_wait(int family, const void *src_addr,
                         void (*fn)(void *arg, const struct kdiag_tw *tw), void *arg);

/* Destroy the TCP socket with exactly this 4-tuple, whatever its state.  Needs
 * CAP_NET_ADMIN.  Returns 0, -ENOENT when there is none, or another negative errno. */
int kdiag_destroy(const struct sockaddr *local, const struct sockaddr *remote);

#endif
