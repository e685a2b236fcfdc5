/* An experiment, not part of twlb: a TCP proxy whose data path is a sockmap (an sk_skb
 * verdict program redirects what arrives on one socket to the egress of its peer, in the
 * kernel, with no system call per message), to see whether that would lift twlb's
 * request rate on persistent connections (issue 9).  Only for persistent connections:
 * no half-close, no backpressure handling, no PROXY header.  tests/bench/sockmap.sh runs
 * it against the same proxy with a plain epoll read/write loop; docs/benchmarks.md has
 * what it measured.
 *
 *   sockmap_proxy LISTEN_IP LISTEN_PORT BACKEND_IP BACKEND_PORT [copy]
 *
 * "copy": the plain loop instead of the sockmap.  Needs CAP_BPF and CAP_NET_ADMIN.
 * The BPF program is written as instructions (no libbpf, no BPF compiler):
 *   peer = cookie_map[bpf_get_socket_cookie(skb)];
 *   return peer ? bpf_sk_redirect_map(skb, sock_map, *peer, 0) : SK_PASS; */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAXC 4096

static long bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }

static int map_create(int type, int ks, int vs, int n)
{
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = type;
    a.key_size = ks;
    a.value_size = vs;
    a.max_entries = n;
    int fd = (int)bpf(BPF_MAP_CREATE, &a);
    if (fd < 0) { perror("map_create"); exit(1); }
    return fd;
}

static int map_update(int fd, const void *k, const void *v)
{
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_fd = fd;
    a.key = (uint64_t)(uintptr_t)k;
    a.value = (uint64_t)(uintptr_t)v;
    a.flags = BPF_ANY;
    return (int)bpf(BPF_MAP_UPDATE_ELEM, &a);
}

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

static int load_prog(int cookie_map, int sock_map)
{
    struct bpf_insn p[] = {
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),        /* r6 = ctx */
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_socket_cookie),         /* r0 = cookie */
        INSN(BPF_STX | BPF_MEM | BPF_DW, BPF_REG_10, BPF_REG_0, -8, 0),        /* *(fp-8) = r0 */
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -8),                /* r2 = fp-8 */
        INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, cookie_map),
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
        INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 2, 0),                   /* found: +2 */
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, SK_PASS),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_0, 0, 0),           /* r3 = peer idx */
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_6, 0, 0),
        INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_2, BPF_PSEUDO_MAP_FD, 0, sock_map),
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, 0),                 /* egress */
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_map),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    static char log[65536];
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_SK_SKB;
    a.insns = (uint64_t)(uintptr_t)p;
    a.insn_cnt = sizeof p / sizeof p[0];
    a.license = (uint64_t)(uintptr_t)"GPL";
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = sizeof log;
    a.log_level = 1;
    int fd = (int)bpf(BPF_PROG_LOAD, &a);
    if (fd < 0) { perror("prog_load"); fprintf(stderr, "%s\n", log); exit(1); }
    return fd;
}

static int peer[MAXC * 2]; /* fd -> peer fd (copy mode) */

int main(int argc, char **argv)
{
    if (argc < 5) { fprintf(stderr, "usage\n"); return 2; }
    int copy = argc > 5 && !strcmp(argv[5], "copy");
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    struct sockaddr_in ba = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
    inet_pton(AF_INET, argv[1], &la.sin_addr);
    inet_pton(AF_INET, argv[3], &ba.sin_addr);
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(ls, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(ls, (void *)&la, sizeof la) || listen(ls, 1024)) { perror("listen"); return 1; }
    int cmap = -1, smap = -1;
    if (!copy) {
        cmap = map_create(BPF_MAP_TYPE_HASH, 8, 4, MAXC * 2);
        smap = map_create(BPF_MAP_TYPE_SOCKMAP, 4, 4, MAXC * 2);
        int prog = load_prog(cmap, smap);
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.target_fd = (uint32_t)smap;
        a.attach_bpf_fd = (uint32_t)prog;
        a.attach_type = BPF_SK_SKB_VERDICT;
        if (bpf(BPF_PROG_ATTACH, &a)) { perror("attach"); return 1; }
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    uint32_t next = 0;
    static char buf[65536];
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept4(ls, NULL, NULL, 0);
                if (c < 0) continue;
                int b = socket(AF_INET, SOCK_STREAM, 0);
                setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (connect(b, (void *)&ba, sizeof ba)) { perror("connect"); close(c); close(b); continue; }
                if (c >= MAXC * 2 || b >= MAXC * 2) { close(c); close(b); continue; }
                peer[c] = b;
                peer[b] = c;
                if (!copy) {
                    uint32_t ic = next++, ib = next++;
                    uint64_t kc, kb;
                    socklen_t l = 8;
                    getsockopt(c, SOL_SOCKET, SO_COOKIE, &kc, &l);
                    getsockopt(b, SOL_SOCKET, SO_COOKIE, &kb, &l);
                    map_update(cmap, &kc, &ib);
                    map_update(cmap, &kb, &ic);
                    if (map_update(smap, &ib, &b) || map_update(smap, &ic, &c)) /* the backend first: a redirect to a missing socket drops */ { perror("sockmap"); return 1; }
                    /* bytes that came before the socket entered the map */
                    ssize_t r = recv(c, buf, sizeof buf, MSG_DONTWAIT);
                    if (r > 0) send(b, buf, (size_t)r, 0);
                    ev.events = EPOLLRDHUP; /* only the end */
                } else {

                    ev.events = EPOLLIN;
                }
                ev.data.fd = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                ev.data.fd = b;
                epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev);
                continue;
            }
            if (!copy || (evs[i].events & (EPOLLHUP | EPOLLERR))) {
                if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    int o = peer[fd];
                    close(fd);
                    close(o);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) { int o = peer[fd]; close(fd); close(o); continue; }
            ssize_t off = 0;
            while (off < r) { ssize_t w = write(peer[fd], buf + off, (size_t)(r - off)); if (w <= 0) break; off += w; }
        }
    }
}
