/* margin_clock.c - how far twlb's clock readings around connect() are from the moment
 * the kernel computes the ISN of the SYN (docs/reuse.md, "The kernel-mode margin").
 * Run by tests/bench/margin.py inside a network namespace; needs root (packet socket).
 *
 * On ONE 4-tuple toward a port where nothing listens (the SYN is answered by a RST, so
 * neither end keeps any state and the next sample reuses the same 4-tuple at once), each
 * sample does what twlb does for a backend connection, with the same code:
 *
 *     decide   clock_pair_ns()                      runtime/backend.c, backend_acquire:
 *                                                   the time the port is judged safe at
 *     sockprep_socket(), uv_tcp_init(), uv_tcp_open()            runtime/upconn.c, step
 *     record   clock_real_ns(), clock_mono_ns()     upconn.c until the margin was
 *                                                   measured: the SYN time kept
 *     uv_tcp_connect()                              connect(): the kernel computes the
 *                                                   ISN from CLOCK_REALTIME here
 *     after    clock_pair_ns()                      upconn.c since the margin was
 *                                                   measured: the SYN time kept
 *
 * and reads the ISN the SYN carried from a packet socket on <iface>.  For one 4-tuple the
 * kernel's ISN is hash + realtime_ns / 64 (kernel-facts 3), so ISN differences between
 * samples give the kernel's own time differences to 64 ns, to compare with the readings.
 *
 * Output, one line per sample:
 *     decide_real decide_mono record_real record_mono after_real after_mono isn
 * (ns; isn a u32, -1 when no SYN was seen).  Exit 0, 1 on a setup failure,
 * 2 on a bad command line. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "os/clock.h"
#include "os/sockprep.h"

struct sample {
    uint64_t d_real, d_mono, r_real, r_mono, a_real, a_mono;
    int64_t isn;
};

static uv_loop_t *loop;
static uv_tcp_t tcp;
static uv_connect_t creq;
static int connect_status;

static void usage(void)
{
    fprintf(stderr, "usage: margin_clock --src IP --port P --dst IP:PORT --iface DEV "
                    "--count N [--gap-us G]\n"
                    "  G: sleep a random 0..G us between samples (default 0)\n");
    exit(2);
}

static void on_closed(uv_handle_t *h) { (void)h; }

static void on_connect(uv_connect_t *req, int status)
{
    (void)req;
    connect_status = status;
    uv_close((uv_handle_t *)&tcp, on_closed);
}

/* The packet socket: every packet on <iface>, both directions, from the network header
 * (ETH_P_ALL: a socket bound to one protocol does not see outgoing packets). */
static int packet_socket(const char *iface)
{
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK, htons(ETH_P_ALL));
    if (fd < 0)
        return -1;
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)if_nametoindex(iface)};
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The sequence number of the last SYN (without ACK) from <sport> to <dport> waiting on
 * <fd>, or -1. */
static int64_t read_syn(int fd, uint16_t sport, uint16_t dport)
{
    unsigned char buf[2048];
    int64_t isn = -1;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0)
            return isn;
        if (n < 20 || (buf[0] >> 4) != 4 || buf[9] != IPPROTO_TCP)
            continue;
        size_t ihl = (size_t)(buf[0] & 15) * 4;
        if ((size_t)n < ihl + 20)
            continue;
        const unsigned char *t = buf + ihl;
        uint16_t sp = (uint16_t)(t[0] << 8 | t[1]), dp = (uint16_t)(t[2] << 8 | t[3]);
        unsigned flags = t[13];
        if (sp == sport && dp == dport && (flags & 0x12) == 0x02)
            isn = (int64_t)((uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 |
                            (uint32_t)t[6] << 8 | t[7]);
    }
}

int main(int argc, char **argv)
{
    const char *src = NULL, *dst = NULL, *iface = NULL;
    long port = 0, count = 0, gap_us = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--src"))
            src = argv[++i];
        else if (!strcmp(argv[i], "--port"))
            port = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dst"))
            dst = argv[++i];
        else if (!strcmp(argv[i], "--iface"))
            iface = argv[++i];
        else if (!strcmp(argv[i], "--count"))
            count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--gap-us"))
            gap_us = atol(argv[++i]);
        else
            usage();
    }
    if (!src || !dst || !iface || port < 1 || port > 65535 || count < 1 || count > 10000000 ||
        gap_us < 0 || gap_us > 1000000)
        usage();
    char host[64];
    const char *colon = strrchr(dst, ':');
    if (!colon || (size_t)(colon - dst) >= sizeof host)
        usage();
    memcpy(host, dst, (size_t)(colon - dst));
    host[colon - dst] = 0;
    struct sockaddr_in inside = {.sin_family = AF_INET}, backend = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, src, &inside.sin_addr) != 1 ||
        inet_pton(AF_INET, host, &backend.sin_addr) != 1)
        usage();
    backend.sin_port = htons((uint16_t)atol(colon + 1));

    int pfd = packet_socket(iface);
    if (pfd < 0) {
        fprintf(stderr, "margin_clock: packet socket on %s: %s\n", iface, strerror(errno));
        return 1;
    }
    struct sample *s = calloc((size_t)count, sizeof *s);
    if (!s)
        return 1;
    loop = uv_default_loop();
    srand((unsigned)clock_mono_ns());
    for (long i = 0; i < count; i++) {
        if (gap_us) {
            long us = rand() % (gap_us + 1);
            struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
        clock_pair_ns(&s[i].d_real, &s[i].d_mono);
        int fd = sockprep_socket((const struct sockaddr *)&inside, (uint16_t)port, 0, 0);
        if (fd < 0) {
            fprintf(stderr, "margin_clock: sockprep_socket: %s\n", strerror(-fd));
            return 1;
        }
        uv_tcp_init(loop, &tcp);
        if (uv_tcp_open(&tcp, fd) != 0) {
            fprintf(stderr, "margin_clock: uv_tcp_open failed\n");
            return 1;
        }
        s[i].r_real = clock_real_ns();
        s[i].r_mono = clock_mono_ns();
        int r = uv_tcp_connect(&creq, &tcp, (const struct sockaddr *)&backend, on_connect);
        clock_pair_ns(&s[i].a_real, &s[i].a_mono);
        if (r < 0) {
            fprintf(stderr, "margin_clock: connect: %s\n", uv_strerror(r));
            return 1;
        }
        uv_run(loop, UV_RUN_DEFAULT);
        if (connect_status != UV_ECONNREFUSED) {
            fprintf(stderr, "margin_clock: expected a refusal, got %s\n",
                    connect_status ? uv_strerror(connect_status) : "a connection");
            return 1;
        }
        s[i].isn = read_syn(pfd, (uint16_t)port, ntohs(backend.sin_port));
    }
    for (long i = 0; i < count; i++)
        printf("%llu %llu %llu %llu %llu %llu %lld\n", (unsigned long long)s[i].d_real,
               (unsigned long long)s[i].d_mono, (unsigned long long)s[i].r_real,
               (unsigned long long)s[i].r_mono, (unsigned long long)s[i].a_real,
               (unsigned long long)s[i].a_mono, (long long)s[i].isn);
    free(s);
    close(pfd);
    return 0;
}
