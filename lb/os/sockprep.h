/* sockprep.h - the socket toward a backend, prepared by hand before libuv sees it: the
 * source address and port are bound explicitly (twlb chooses them) and, in explicit ISN
 * mode, the initial sequence number is preset through TCP_REPAIR (kernel-facts 2).
 * Also the TCP_INFO read that tells whether a SYN was retransmitted. */
#ifndef TWLB_SOCKPREP_H
#define TWLB_SOCKPREP_H

#include <stdint.h>
#include <sys/socket.h>

/* A non-blocking TCP socket bound to <inside> (port taken from <port>), SO_REUSEADDR set
 * (needed to reuse a port whose TIME_WAIT the kernel may take over).  If <set_isn>, the
 * first SYN will carry exactly <isn>.  Returns the fd, or a negative errno:
 * -EADDRINUSE / -EADDRNOTAVAIL mean "try another port", -EPERM on TCP_REPAIR means no
 * CAP_NET_ADMIN. */
int sockprep_socket(const struct sockaddr *inside, uint16_t port, int set_isn, uint32_t isn);

/* 1 if this process may use TCP_REPAIR (CAP_NET_ADMIN), else 0. */
int sockprep_can_repair(int family);

struct sockprep_info {
    uint32_t total_retrans; /* > 0 right after connect: the SYN was retransmitted */
    int timestamps;         /* TCP timestamps negotiated */
    int reset;              /* the connection is CLOSED: reset by the peer, or (after our
                               own FIN) passed to TIME_WAIT: ask only before our FIN */
    int state;              /* tcpi_state (<netinet/tcp.h> TCP_* values) */
};
/* The TCP state of <fd> (TCP_INFO's tcpi_state, <netinet/tcp.h> TCP_* values) and its
 * pending error (SO_ERROR, which reading clears).  Returns 0 or a negative errno. */
int sockprep_tcp_state(int fd, int *state, int *error);

/* Read TCP_INFO.  Returns 0 or a negative errno. */
int sockprep_tcp_info(int fd, struct sockprep_info *out);

#endif
