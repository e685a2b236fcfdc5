/* sockprep.c - see sockprep.h.  Facts: docs/kernel-facts.md section 2 (kernel-facts 2). */
#include "os/sockprep.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#ifndef TCP_REPAIR_OFF_NO_WP
#define TCP_REPAIR_OFF_NO_WP -1 /* leave repair mode without sending a window probe */
#endif

static int set_isn_by_repair(int fd, uint32_t isn)
{
    int on = 1, q = TCP_SEND_QUEUE, off = TCP_REPAIR_OFF_NO_WP;
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0)
        return -errno;
    /* tcp_v4_connect computes its own ISN only while write_seq is 0: presetting the send
     * queue sequence in repair mode makes connect() use ours. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof q) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &isn, sizeof isn) < 0) {
        int e = -errno;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off);
        return e;
    }
    /* Repair mode must be off before connect(), or connect() sends no SYN. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off) < 0)
        return -errno;
    return 0;
}

int sockprep_socket(const struct sockaddr *inside, uint16_t port, int set_isn, uint32_t isn)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (inside->sa_family == AF_INET) {
        len = sizeof(struct sockaddr_in);
        memcpy(&ss, inside, len);
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    } else {
        len = sizeof(struct sockaddr_in6);
        memcpy(&ss, inside, len);
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    }
    int fd = socket(inside->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int err = 0, one = 1;
    if (set_isn && (err = set_isn_by_repair(fd, isn)) < 0)
        goto fail;
    /* After repair mode sk_reuse is reset, so SO_REUSEADDR comes after it. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0) {
        err = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return err;
}

int sockprep_can_repair(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int on = 1;
    int ok = setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) == 0;
    close(fd);
    return ok;
}

int sockprep_tcp_state(int fd, int *state, int *error)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti, elen = sizeof *error;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, error, &elen) < 0)
        return -errno;
    *state = ti.tcpi_state;
    return 0;
}

int sockprep_tcp_info(int fd, struct sockprep_info *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -errno;
    out->total_retrans = ti.tcpi_total_retrans;
    out->timestamps = (ti.tcpi_options & TCPI_OPT_TIMESTAMPS) != 0;
    out->reset = ti.tcpi_state == TCP_CLOSE;
    out->state = ti.tcpi_state;
    return 0;
}
