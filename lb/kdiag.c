/* kdiag.c - see kdiag.h.  Linux inet_diag over netlink. */
#include "kdiag.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOCK_DESTROY
#define SOCK_DESTROY 21
#endif

struct req {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 r;
};

static int nl_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    struct timeval tv = {2, 0}; /* never hang the loop on a silent kernel */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int nl_send(int fd, struct req *q)
{
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    if (sendto(fd, q, q->nlh.nlmsg_len, 0, (struct sockaddr *)&nl, sizeof nl) < 0)
        return -errno;
    return 0;
}

int kdiag_list_time_wait(int family, const void *src_addr,
                         void (*fn)(void *arg, const struct kdiag_tw *tw), void *arg)
{
    int fd = nl_open();
    if (fd < 0)
        return fd;
    struct req q;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    q.nlh.nlmsg_seq = 1;
    q.r.sdiag_family = (uint8_t)family;
    q.r.sdiag_protocol = IPPROTO_TCP;
    q.r.idiag_states = 1u << TCP_TIME_WAIT;
    int r = nl_send(fd, &q);
    if (r < 0) {
        close(fd);
        return r;
    }
    size_t alen = family == AF_INET ? 4 : 16;
    int count = 0;
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            r = -errno;
            break;
        }
        int done = 0;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                done = 1;
                break;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                r = e->error ? e->error : -EIO;
                done = 1;
                break;
            }
            struct inet_diag_msg *m = NLMSG_DATA(h);
            if (m->idiag_family != family || memcmp(m->id.idiag_src, src_addr, alen))
                continue;
            struct kdiag_tw tw;
            memset(&tw, 0, sizeof tw);
            tw.local_port = ntohs(m->id.idiag_sport);
            tw.expires_ms = m->idiag_expires;
            if (family == AF_INET) {
                struct sockaddr_in *a = (struct sockaddr_in *)&tw.remote;
                a->sin_family = AF_INET;
                memcpy(&a->sin_addr, m->id.idiag_dst, 4);
                a->sin_port = m->id.idiag_dport;
            } else {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&tw.remote;
                a->sin6_family = AF_INET6;
                memcpy(&a->sin6_addr, m->id.idiag_dst, 16);
                a->sin6_port = m->id.idiag_dport;
            }
            fn(arg, &tw);
            count++;
        }
        if (done)
            break;
    }
    close(fd);
    return r < 0 ? r : count;
}

int kdiag_destroy(const struct sockaddr *local, const struct sockaddr *remote)
{
    if (local->sa_family != remote->sa_family)
        return -EINVAL;
    int fd = nl_open();
    if (fd < 0)
        return fd;
    struct req q;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = SOCK_DESTROY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    q.nlh.nlmsg_seq = 1;
    q.r.sdiag_family = (uint8_t)local->sa_family;
    q.r.sdiag_protocol = IPPROTO_TCP;
    q.r.idiag_states = ~0u;
    q.r.id.idiag_cookie[0] = q.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (local->sa_family == AF_INET) {
        const struct sockaddr_in *l = (const void *)local, *rm = (const void *)remote;
        memcpy(q.r.id.idiag_src, &l->sin_addr, 4);
        memcpy(q.r.id.idiag_dst, &rm->sin_addr, 4);
        q.r.id.idiag_sport = l->sin_port;
        q.r.id.idiag_dport = rm->sin_port;
    } else {
        const struct sockaddr_in6 *l = (const void *)local, *rm = (const void *)remote;
        memcpy(q.r.id.idiag_src, &l->sin6_addr, 16);
        memcpy(q.r.id.idiag_dst, &rm->sin6_addr, 16);
        q.r.id.idiag_sport = l->sin6_port;
        q.r.id.idiag_dport = rm->sin6_port;
    }
    int r = nl_send(fd, &q);
    if (r == 0) {
        char buf[1024];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (n < 0)
            r = -errno;
        else if (NLMSG_OK(h, (size_t)n) && h->nlmsg_type == NLMSG_ERROR)
            r = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
        else
            r = -EIO;
    }
    close(fd);
    return r;
}
