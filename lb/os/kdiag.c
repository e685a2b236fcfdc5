/* kdiag.c - see kdiag.h.  Linux inet_diag over netlink (NETLINK_SOCK_DIAG).
 *
 * Three requests are used, all on a netlink socket opened for the one call:
 *   dump   SOCK_DIAG_BY_FAMILY + NLM_F_DUMP, state filter 1 << TCP_TIME_WAIT, and a
 *          bytecode filter "local address == X" so the kernel skips everything else;
 *   get    SOCK_DIAG_BY_FAMILY without NLM_F_DUMP: the one socket of an exact 4-tuple;
 *   kill   SOCK_DESTROY of an exact 4-tuple AND cookie, with NLM_F_ACK for the result.
 * The kernel answers every request synchronously, so a blocking socket with a receive
 * timeout is all the event handling needed. */
#include "os/kdiag.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SOCK_DESTROY /* linux/sock_diag.h since 4.5; spelled out for older headers */
#define SOCK_DESTROY 21
#endif

/* A netlink dump message is never larger than 32 KiB: the kernel sizes dump buffers by
 * the reader's buffer but caps them at SKB_WITH_OVERHEAD(32768). */
#define KDIAG_RCVBUF 32768

/* How long one receive may wait.  The kernel answers at once; this only bounds a call
 * against a kernel bug, and keeps the proxy's loop from hanging on one. */
#define KDIAG_TIMEOUT_S 2

/* How often kdiag_destroy looks the 4-tuple up again when it changed hands between the
 * look-up and the destroy (-ESTALE).  Each round is two tiny requests. */
#define KDIAG_DESTROY_TRIES 3

union kdiag_buf {
    struct nlmsghdr h; /* alignment */
    unsigned char b[KDIAG_RCVBUF];
};

/* A netlink socket toward the kernel's sock_diag, with a bounded receive.  Returns the
 * descriptor or a negative errno. */
static int nl_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    struct timeval tv = {KDIAG_TIMEOUT_S, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Send one complete request to the kernel.  Returns 0 or a negative errno. */
static int nl_send(int fd, const struct nlmsghdr *req)
{
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK}; /* nl_pid 0: the kernel */
    for (;;) {
        if (sendto(fd, req, req->nlmsg_len, 0, (const struct sockaddr *)&kernel,
                   sizeof kernel) >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Receive one datagram from the kernel (anything another process might send to our
 * port id is dropped).  Returns its length, or -EAGAIN after KDIAG_TIMEOUT_S without
 * an answer, -EMSGSIZE if it did not fit, or another negative errno. */
static int nl_recv(int fd, union kdiag_buf *buf)
{
    for (;;) {
        struct sockaddr_nl from;
        struct iovec iov = {buf->b, sizeof buf->b};
        struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from,
                            .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(fd, &mh, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        if (mh.msg_flags & MSG_TRUNC)
            return -EMSGSIZE;
        if (mh.msg_namelen < sizeof from || from.nl_pid != 0)
            continue;
        if (n == 0)
            return -EPROTO;
        return (int)n;
    }
}

/* The error carried by an NLMSG_ERROR message: 0 for an ACK, a negative errno, or
 * -EPROTO when the message is too short to hold one. */
static int nl_error(const struct nlmsghdr *h)
{
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
        return -EPROTO;
    return ((const struct nlmsgerr *)NLMSG_DATA(h))->error;
}

/* Length of an address of <family>, or 0 for a family inet_diag does not serve here. */
static size_t addr_len(int family)
{
    return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

/* Fill an inet_diag 4-tuple from two socket addresses.  Returns 0, -EINVAL when the
 * families differ, -EAFNOSUPPORT for a family other than AF_INET/AF_INET6. */
static int sockid_from(struct inet_diag_sockid *id, const struct sockaddr *local,
                       const struct sockaddr *remote)
{
    if (!local || !remote || local->sa_family != remote->sa_family)
        return -EINVAL;
    memset(id, 0, sizeof *id);
    id->idiag_cookie[0] = id->idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (local->sa_family == AF_INET) {
        const struct sockaddr_in *l = (const void *)local, *r = (const void *)remote;
        memcpy(id->idiag_src, &l->sin_addr, 4);
        memcpy(id->idiag_dst, &r->sin_addr, 4);
        id->idiag_sport = l->sin_port;
        id->idiag_dport = r->sin_port;
    } else if (local->sa_family == AF_INET6) {
        const struct sockaddr_in6 *l = (const void *)local, *r = (const void *)remote;
        memcpy(id->idiag_src, &l->sin6_addr, 16);
        memcpy(id->idiag_dst, &r->sin6_addr, 16);
        id->idiag_sport = l->sin6_port;
        id->idiag_dport = r->sin6_port;
        id->idiag_if = l->sin6_scope_id; /* link-local addresses are per interface */
    } else {
        return -EAFNOSUPPORT;
    }
    return 0;
}

/* True when <got> (from the kernel) is exactly the 4-tuple <want>. */
static int same_tuple(const struct inet_diag_sockid *got, const struct inet_diag_sockid *want,
                      size_t alen)
{
    return got->idiag_sport == want->idiag_sport && got->idiag_dport == want->idiag_dport &&
           !memcmp(got->idiag_src, want->idiag_src, alen) &&
           !memcmp(got->idiag_dst, want->idiag_dst, alen);
}

/* ---- listing ----------------------------------------------------------------------- */

/* The dump request: header, inet_diag_req_v2, then one INET_DIAG_REQ_BYTECODE attribute
 * holding a one-instruction program:
 *     S_COND(family, prefix = all bits, port = any, addr)  yes -> accept, no -> reject
 * inet_diag runs it as "jump <yes> bytes when true, <no> bytes when false; accept iff the
 * program ends exactly at its end", so yes = program length and no = length + 4 (past
 * the end) is the kernel's own idiom for a single test (see ss's filter compiler).
 * Built into a byte buffer because inet_diag_hostcond ends in a zero-length array. */
static size_t build_dump(union kdiag_buf *msg, int family, const void *src_addr, size_t alen)
{
    const size_t req_off = NLMSG_HDRLEN;
    const size_t rta_off = req_off + NLMSG_ALIGN(sizeof(struct inet_diag_req_v2));
    const size_t bc_len = sizeof(struct inet_diag_bc_op) +
                          sizeof(struct inet_diag_hostcond) + alen;
    const size_t total = rta_off + RTA_SPACE(bc_len);
    memset(msg->b, 0, total);

    struct nlmsghdr *h = &msg->h;
    h->nlmsg_len = (uint32_t)total;
    h->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    h->nlmsg_seq = 1;

    struct inet_diag_req_v2 req = {0};
    req.sdiag_family = (uint8_t)family;
    req.sdiag_protocol = IPPROTO_TCP;
    req.idiag_states = 1u << TCP_TIME_WAIT;
    memcpy(msg->b + req_off, &req, sizeof req);

    struct rtattr rta = {.rta_len = (unsigned short)RTA_LENGTH(bc_len),
                         .rta_type = INET_DIAG_REQ_BYTECODE};
    memcpy(msg->b + rta_off, &rta, sizeof rta);

    unsigned char *bc = msg->b + rta_off + RTA_LENGTH(0);
    struct inet_diag_bc_op op = {.code = INET_DIAG_BC_S_COND,
                                 .yes = (unsigned char)bc_len,
                                 .no = (unsigned short)(bc_len + 4)};
    struct inet_diag_hostcond cond = {.family = (uint8_t)family,
                                      .prefix_len = (uint8_t)(alen * 8),
                                      .port = -1};
    memcpy(bc, &op, sizeof op);
    memcpy(bc + sizeof op, &cond, sizeof cond);
    memcpy(bc + sizeof op + sizeof cond, src_addr, alen);
    return total;
}

/* One inet_diag_msg of the dump, already known to be long enough: turn it into a
 * kdiag_tw.  Returns 1 when it is a TIME_WAIT socket of <src_addr>, 0 otherwise (the
 * kernel filtered already; this check keeps the answer right whatever it sent). */
static int tw_from_msg(const struct inet_diag_msg *m, int family, const void *src_addr,
                       size_t alen, struct kdiag_tw *tw)
{
    if (m->idiag_family != family || m->idiag_state != TCP_TIME_WAIT ||
        memcmp(m->id.idiag_src, src_addr, alen))
        return 0;
    memset(tw, 0, sizeof *tw);
    tw->local_port = ntohs(m->id.idiag_sport);
    tw->expires_ms = m->idiag_expires;
    tw->cookie = (uint64_t)m->id.idiag_cookie[0] | (uint64_t)m->id.idiag_cookie[1] << 32;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&tw->remote;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, m->id.idiag_dst, 4);
        a->sin_port = m->id.idiag_dport;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&tw->remote;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, m->id.idiag_dst, 16);
        a->sin6_port = m->id.idiag_dport;
    }
    return 1;
}

/* A dump is not a snapshot: a socket that enters or leaves TIME_WAIT while the kernel
 * walks its hash table may or may not be reported.  Callers resync at start-up, when
 * that is harmless (a missed socket costs one refused bind, handled by quarantine). */
int kdiag_list_time_wait(int family, const void *src_addr,
                         void (*fn)(void *arg, const struct kdiag_tw *tw), void *arg)
{
    size_t alen = addr_len(family);
    if (!alen)
        return -EAFNOSUPPORT;
    if (!src_addr)
        return -EINVAL;
    int fd = nl_open();
    if (fd < 0)
        return fd;

    union kdiag_buf buf;
    build_dump(&buf, family, src_addr, alen);
    const uint32_t seq = buf.h.nlmsg_seq;
    int r = nl_send(fd, &buf.h);
    int count = 0, done = r < 0;
    while (!done) {
        int n = nl_recv(fd, &buf);
        if (n < 0) {
            r = n;
            break;
        }
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = &buf.h; !done && NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != seq)
                continue;
            if (h->nlmsg_type == NLMSG_DONE) {
                /* Since 4.x NLMSG_DONE carries the dump's own error, 0 when complete. */
                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
                    r = *(const int *)NLMSG_DATA(h);
                done = 1;
            } else if (h->nlmsg_type == NLMSG_ERROR) {
                r = nl_error(h);
                if (r == 0)
                    r = -EPROTO; /* an ACK cannot end a dump */
                done = 1;
            } else if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
                    r = -EPROTO;
                    done = 1;
                    break;
                }
                struct kdiag_tw tw;
                if (tw_from_msg(NLMSG_DATA(h), family, src_addr, alen, &tw)) {
                    if (fn)
                        fn(arg, &tw);
                    count++;
                }
            }
        }
    }
    close(fd);
    return r < 0 ? r : count;
}

/* ---- destroying -------------------------------------------------------------------- */

/* One exact (non-dump) request about the 4-tuple <id> and its answer.  <type> is
 * SOCK_DIAG_BY_FAMILY (answer: the socket, copied to *out; returns 0) or SOCK_DESTROY
 * (answer: an ACK; returns its error, 0 on success).  Returns a negative errno when the
 * kernel refuses, e.g. -ENOENT for no socket, -ESTALE when the cookie in <id> is not the
 * socket's. */
static int exact(int fd, uint16_t type, uint32_t seq, int family,
                 const struct inet_diag_sockid *id, struct inet_diag_msg *out)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } q;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = type;
    /* The get answers with the socket (or an error) without being asked; the destroy
     * answers only errors unless asked for an ACK. */
    q.nlh.nlmsg_flags = NLM_F_REQUEST | (type == SOCK_DESTROY ? NLM_F_ACK : 0);
    q.nlh.nlmsg_seq = seq;
    q.r.sdiag_family = (uint8_t)family;
    q.r.sdiag_protocol = IPPROTO_TCP;
    q.r.idiag_states = ~0u; /* exact requests look up by 4-tuple, whatever the state */
    q.r.id = *id;
    int r = nl_send(fd, &q.nlh);
    if (r < 0)
        return r;

    union kdiag_buf buf;
    for (;;) {
        int n = nl_recv(fd, &buf);
        if (n < 0)
            return n;
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = &buf.h; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != seq)
                continue; /* a late answer to an earlier request on this socket */
            if (h->nlmsg_type == NLMSG_ERROR) {
                int e = nl_error(h);
                return e == 0 && type != SOCK_DESTROY ? -EPROTO : e; /* a get has no ACK */
            }
            if (type == SOCK_DIAG_BY_FAMILY && h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof *out))
                    return -EPROTO;
                memcpy(out, NLMSG_DATA(h), sizeof *out);
                return 0;
            }
        }
    }
}

int kdiag_destroy(const struct sockaddr *local, const struct sockaddr *remote)
{
    struct inet_diag_sockid id;
    int r = sockid_from(&id, local, remote);
    if (r < 0)
        return r;
    const int family = local->sa_family;
    const size_t alen = addr_len(family);
    int fd = nl_open();
    if (fd < 0)
        return fd;

    uint32_t seq = 0;
    for (int tries = 0; tries < KDIAG_DESTROY_TRIES; tries++) {
        /* 1. Which socket has this 4-tuple?  The kernel's look-up falls back to a
         *    listener on <local> when no connection matches: refuse anything that is not
         *    the exact 4-tuple, so a missing connection never costs a listening socket. */
        struct inet_diag_msg m;
        r = exact(fd, SOCK_DIAG_BY_FAMILY, ++seq, family, &id, &m);
        if (r < 0)
            break;
        if (m.idiag_state == TCP_LISTEN || !same_tuple(&m.id, &id, alen)) {
            r = -ENOENT;
            break;
        }
        /* 2. Destroy that socket and no other: the kernel checks the cookie after its own
         *    look-up and answers -ESTALE if the 4-tuple now belongs to another socket
         *    (ours expired and a new connection took it, or it was a listener).  Then
         *    look again: the new holder of the 4-tuple is what the caller asked for. */
        struct inet_diag_sockid kill = id;
        memcpy(kill.idiag_cookie, m.id.idiag_cookie, sizeof kill.idiag_cookie);
        r = exact(fd, SOCK_DESTROY, ++seq, family, &kill, NULL);
        if (r != -ESTALE)
            break;
    }
    close(fd);
    return r == -ESTALE ? -EAGAIN : r;
}
