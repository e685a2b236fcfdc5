/* twstress - a bounded TCP load generator for port-exhaustion testing.
 *
 *   twstress --connect ADDR:PORT [--bind IP ...] (--rate R | --concurrency C | both)
 *            [--duration S] [--connections N] [--timeout-ms T]
 *            [--request-bytes N] [--upload-bytes N] [--expect-bytes N]
 *            [--close client|server] [--discard] [--json] [--progress] [--progress-file F]
 *
 * Per connection: connect (non-blocking), send --upload-bytes of filler then the request
 * (--request-bytes, ending in '\n'; default "GET\n"), read --expect-bytes (0: until EOF),
 * (--discard: counted in the kernel, not copied), then close (client) or wait for the
 * server's EOF (server: the backend closes first).
 * Measured: connect latency, time to first byte, SYN retransmissions (TCP_INFO right after
 * the connect), connects slower than 500 ms, errors by errno name.  It always stops by
 * itself: --duration (default 10 s, at most 3600) and/or --connections.
 *
 * One thread, epoll, preallocated connection slots, no allocation per connection; latency
 * percentiles from a log-linear histogram of fixed size (1 us resolution below 64 us, at
 * most 1.6 % relative error above: 32 to 64 sub-buckets per power of two). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/numparse.h"

#define MAX_BIND 64
#define SLOW_MS 500.0
#define DISCARD_CHUNK (1 << 20) /* bytes one recv(MSG_TRUNC) may drop: nothing is copied */

/* ---- histogram: 64 sub-buckets per power of two of microseconds ------------------- */
#define SUB 64
#define POWERS 40
struct hist {
    uint64_t b[POWERS * SUB];
    uint64_t n;
    double max;
};

static void hist_add(struct hist *h, double ms)
{
    double us = ms * 1000.0;
    uint64_t v = us < 1 ? 0 : (uint64_t)us;
    int p = 0;
    while ((v >> p) >= SUB && p < POWERS - 1)
        p++;
    unsigned idx = (unsigned)(p * SUB + (v >> p) % SUB);
    h->b[idx]++;
    h->n++;
    if (ms > h->max)
        h->max = ms;
}

static double hist_pct(const struct hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
    for (unsigned i = 0; i < POWERS * SUB; i++) {
        seen += h->b[i];
        if (seen >= want && h->b[i]) {
            /* bucket p, s holds [s << p, (s + 1) << p) microseconds (s >= 32 when p > 0) */
            unsigned p = i / SUB, s = i % SUB;
            double us = (double)(((uint64_t)s << p) + (p ? ((uint64_t)1 << p) / 2 : 0));
            return us / 1000.0 < h->max ? us / 1000.0 : h->max;
        }
    }
    return h->max;
}

/* ---- options and state -------------------------------------------------------------- */

static struct {
    struct sockaddr_storage dst;
    socklen_t dstlen;
    struct sockaddr_storage bind[MAX_BIND];
    int nbind;
    double rate;
    int concurrency;
    double duration;
    uint64_t connections;
    int timeout_ms;
    size_t request_bytes;
    uint64_t upload_bytes;
    uint64_t expect_bytes;
    int close_server;
    int discard;
    int json, progress;
    const char *progress_file;
} o = {.duration = -1, .timeout_ms = 5000, .close_server = 0};

enum cstate { C_FREE, C_CONNECTING, C_SENDING, C_READING };

struct conn {
    int fd;
    enum cstate st;
    double t_start, t_connected;
    uint64_t to_send, got;
    int got_first;
};

static struct conn *conns;
static int nslots, inflight, epfd;
static uint64_t attempted, ok, syn_retrans, slow, late_starts, slow_ttfb;
static uint64_t errs_by[200];
static struct hist h_connect, h_ttfb, sec_connect, sec_ttfb;
static char reqbuf[65536];  /* the request, in its last request_bytes: ends in '\n' */
static char fillbuf[65536]; /* the upload filler: no '\n', so it never ends the request */
static volatile sig_atomic_t interrupted;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A finite decimal number in (min, max] and nothing else. */
static int parse_number(const char *s, double min, double max, double *out)
{
    double v;
    if (numparse_number(s, &v) < 0 || v <= min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len, int port_needed)
{
    char host[128];
    const char *port = NULL;
    memset(ss, 0, sizeof *ss);
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || (size_t)(rb - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = 0;
        if (rb[1] == ':')
            port = rb + 2;
    } else {
        const char *c = port_needed ? strrchr(s, ':') : NULL;
        size_t hl = c ? (size_t)(c - s) : strlen(s);
        if (hl >= sizeof host)
            return -1;
        memcpy(host, s, hl);
        host[hl] = 0;
        if (c)
            port = c + 1;
    }
    if (port_needed && !port)
        return -1;
    uint64_t p = 0;
    if (port && numparse_count(port, 1, 65535, &p) < 0)
        return -1;
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p);
        *len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        *len = sizeof *a6;
    } else {
        return -1;
    }
    return 0;
}

static void count_error(int e)
{
    errs_by[e > 0 && e < 199 ? e : 199]++;
}

static const char *errname(int e)
{
    switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EADDRINUSE: return "EADDRINUSE";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EPIPE: return "EPIPE";
    case EMFILE: return "EMFILE";
    case ENOBUFS: return "ENOBUFS";
    case 199: return "short_reply";
    }
    static char buf[32];
    snprintf(buf, sizeof buf, "errno_%d", e);
    return buf;
}

static void conn_end(struct conn *c, int err)
{
    if (err)
        count_error(err);
    else
        ok++;
    if (c->fd >= 0) {
        if (err) { /* an abandoned connection: reset it, leave no TIME_WAIT behind */
            struct linger l = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(c->fd);
    }
    c->fd = -1;
    c->st = C_FREE;
    inflight--;
}

static void start_conn(double t)
{
    struct conn *c = NULL;
    for (int i = 0; i < nslots; i++)
        if (conns[i].st == C_FREE) {
            c = &conns[i];
            break;
        }
    if (!c)
        return;
    attempted++;
    memset(c, 0, sizeof *c);
    c->t_start = t;
    c->fd = socket(o.dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    inflight++;
    if (c->fd < 0) {
        c->st = C_CONNECTING;
        conn_end(c, errno);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o.nbind) {
        struct sockaddr_storage *b = &o.bind[attempted % (uint64_t)o.nbind];
        /* IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect() time by the 4-tuple,
         * so many source IPs do not each exhaust the ephemeral range. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)b,
                 b->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                         : sizeof(struct sockaddr_in6)) < 0) {
            c->st = C_CONNECTING;
            conn_end(c, errno);
            return;
        }
    }
    c->st = C_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&o.dst, o.dstlen) < 0 && errno != EINPROGRESS) {
        conn_end(c, errno);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_event(struct conn *c, uint32_t events, double t)
{
    if (c->st == C_CONNECTING) {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) {
            conn_end(c, e);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->t_connected = t;
        double ms = t - c->t_start;
        hist_add(&h_connect, ms);
        hist_add(&sec_connect, ms);
        if (ms > SLOW_MS)
            slow++;
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        memset(&ti, 0, sizeof ti);
        if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_total_retrans)
            syn_retrans++;
        c->st = C_SENDING;
        c->to_send = o.upload_bytes + o.request_bytes;
    }
    if (c->st == C_SENDING && (events & EPOLLOUT)) {
        while (c->to_send) {
            size_t n = c->to_send < sizeof reqbuf ? (size_t)c->to_send : sizeof reqbuf;
            /* the filler first (no '\n' in it), then the last request_bytes of reqbuf:
             * the request, which starts with "GET\n" and ends in '\n' */
            char *p = fillbuf;
            if (c->to_send <= o.request_bytes)
                p = reqbuf + sizeof reqbuf - n;
            else if (c->to_send - n < o.request_bytes)
                n = (size_t)(c->to_send - o.request_bytes);
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN)
                    return;
                conn_end(c, errno);
                return;
            }
            c->to_send -= (uint64_t)w;
        }
        c->st = C_READING;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
    if (c->st == C_READING && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        static char buf[65536];
        /* never written (MSG_TRUNC), so it takes address space, not memory; sized as
         * what recv() is told, which is what a checker such as ASan holds it to */
        static char sink[DISCARD_CHUNK];
        for (;;) {
            /* --discard: the kernel drops what it would have copied to us (MSG_TRUNC on
             * TCP), so the receiving end costs no copy and the proxy is what is measured */
            ssize_t r = o.discard ? recv(c->fd, sink, sizeof sink, MSG_TRUNC)
                                  : recv(c->fd, buf, sizeof buf, 0);
            if (r < 0) {
                if (errno == EAGAIN)
                    return;
                conn_end(c, errno);
                return;
            }
            if (r > 0 && !c->got_first) {
                c->got_first = 1;
                if (t - c->t_start > SLOW_MS)
                    slow_ttfb++; /* through a proxy, a stalled backend SYN shows here */
                hist_add(&h_ttfb, t - c->t_start);
                hist_add(&sec_ttfb, t - c->t_start);
            }
            c->got += (uint64_t)r;
            if (r == 0) { /* the server's EOF */
                conn_end(c, o.expect_bytes && c->got < o.expect_bytes ? 199 : 0);
                return;
            }
            if (o.expect_bytes && c->got >= o.expect_bytes && !o.close_server) {
                conn_end(c, 0);
                return;
            }
        }
    }
}

static void expire(double t)
{
    for (int i = 0; i < nslots; i++)
        if (conns[i].st != C_FREE && t - conns[i].t_start > o.timeout_ms)
            conn_end(&conns[i], ETIMEDOUT);
}

static void report(double elapsed_s)
{
    uint64_t nerr = 0;
    for (int i = 0; i < 200; i++)
        nerr += errs_by[i];
    double cps = elapsed_s > 0 ? (double)ok / elapsed_s : 0;
    if (o.json) {
        printf("{\"cps\": %.1f, \"connections\": %llu, \"attempted\": %llu, \"errors\": {", cps,
               (unsigned long long)ok, (unsigned long long)attempted);
        int first = 1;
        for (int i = 0; i < 200; i++)
            if (errs_by[i]) {
                printf("%s\"%s\": %llu", first ? "" : ", ", errname(i),
                       (unsigned long long)errs_by[i]);
                first = 0;
            }
        printf("}, ");
        const struct hist *hs[2] = {&h_connect, &h_ttfb};
        const char *names[2] = {"connect_ms", "ttfb_ms"};
        for (int k = 0; k < 2; k++)
            printf("\"%s\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
                   "\"max\": %.3f}, ",
                   names[k], hist_pct(hs[k], .5), hist_pct(hs[k], .9), hist_pct(hs[k], .99),
                   hist_pct(hs[k], .999), hs[k]->max);
        printf("\"slow_replies\": %llu, ", (unsigned long long)slow_ttfb);
        printf("\"syn_retransmits\": %llu, \"slow_connects\": %llu, \"duration_s\": %.3f, "
               "\"late_starts\": %llu}\n",
               (unsigned long long)syn_retrans, (unsigned long long)slow, elapsed_s,
               (unsigned long long)late_starts);
        return;
    }
    printf("connections ok   %llu of %llu attempted in %.2f s: %.0f per second\n",
           (unsigned long long)ok, (unsigned long long)attempted, elapsed_s, cps);
    printf("errors           %llu", (unsigned long long)nerr);
    for (int i = 0; i < 200; i++)
        if (errs_by[i])
            printf("  %s=%llu", errname(i), (unsigned long long)errs_by[i]);
    printf("\nsyn retransmits  %llu\nslow connects    %llu (> %.0f ms)\n"
           "slow replies     %llu (first byte > %.0f ms)\n",
           (unsigned long long)syn_retrans, (unsigned long long)slow, SLOW_MS,
           (unsigned long long)slow_ttfb, SLOW_MS);
    if (late_starts)
        printf("late starts      %llu (the open-loop schedule could not be kept)\n",
               (unsigned long long)late_starts);
    printf("\n%-10s %9s %9s %9s %9s %9s\n", "ms", "p50", "p90", "p99", "p99.9", "max");
    printf("%-10s %9.3f %9.3f %9.3f %9.3f %9.3f\n", "connect", hist_pct(&h_connect, .5),
           hist_pct(&h_connect, .9), hist_pct(&h_connect, .99), hist_pct(&h_connect, .999),
           h_connect.max);
    printf("%-10s %9.3f %9.3f %9.3f %9.3f %9.3f\n", "ttfb", hist_pct(&h_ttfb, .5),
           hist_pct(&h_ttfb, .9), hist_pct(&h_ttfb, .99), hist_pct(&h_ttfb, .999), h_ttfb.max);
}

static const char usage_text[] =
    "usage: twstress --connect ADDR:PORT [--bind IP]... (--rate R | --concurrency C | both)\n"
    "       [--duration S] [--connections N] [--timeout-ms T] [--request-bytes N]\n"
    "       [--upload-bytes N] [--expect-bytes N] [--close client|server]\n"
    "       [--discard] [--json] [--progress] [--progress-file F]\n"
    "  --rate R            open loop: R connection starts per second (R > 0)\n"
    "  --concurrency C     closed loop: C connections in flight (1..200000); with --rate, a cap\n"
    "  --duration S        stop starting connections after S seconds (default 10, <= 3600)\n"
    "  --connections N     stop after N connections (alone: still at most 3600 s)\n"
    "  --timeout-ms T      a connection not done in T ms is ETIMEDOUT (default 5000)\n"
    "  --request-bytes N   the request, ending in a newline (1..65536, default 4: GET\\n)\n"
    "  --upload-bytes N    filler sent before the request\n"
    "  --expect-bytes N    reply bytes to read (0: until EOF)\n"
    "  --close client|server  close after the reply, or wait for the server's FIN\n"
    "  --discard           drop what arrives in the kernel (recv MSG_TRUNC): no copy\n"
    "  --bind IP           source address, repeatable (round robin)\n"
    "  --json              the report as one JSON object\n"
    "  --progress          a progress line each second on stderr (default on a terminal)\n"
    "  --progress-file F   one JSON line per second into F\n"
    "exit status: 0 done (failed connections are counted in the report), 1 cannot start,\n"
    "             2 bad command line\n";

static int usage_error(void)
{
    fputs(usage_text, stderr);
    return 2;
}

static void on_sigint(int s) { interrupted = 1; }

enum { OPT_CONNECT = 256, OPT_BIND, OPT_RATE, OPT_CONCURRENCY, OPT_DURATION, OPT_CONNECTIONS,
       OPT_TIMEOUT_MS, OPT_REQUEST_BYTES, OPT_UPLOAD_BYTES, OPT_EXPECT_BYTES, OPT_CLOSE,
       OPT_JSON, OPT_PROGRESS, OPT_PROGRESS_FILE, OPT_DISCARD };

static const struct option options[] = {
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"bind", required_argument, NULL, OPT_BIND},
    {"rate", required_argument, NULL, OPT_RATE},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS},
    {"request-bytes", required_argument, NULL, OPT_REQUEST_BYTES},
    {"upload-bytes", required_argument, NULL, OPT_UPLOAD_BYTES},
    {"expect-bytes", required_argument, NULL, OPT_EXPECT_BYTES},
    {"close", required_argument, NULL, OPT_CLOSE},
    {"discard", no_argument, NULL, OPT_DISCARD},
    {"json", no_argument, NULL, OPT_JSON},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"progress-file", required_argument, NULL, OPT_PROGRESS_FILE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Fill <o> from argv.  Returns -1 to go on, or the exit status (--help, bad usage). */
static int parse_args(int argc, char **argv)
{
    int have_dst = 0, c, li = -1;
    opterr = 0; /* our own messages, naming the option */
    while ((c = getopt_long(argc, argv, ":h", options, &li)) != -1) {
        const char *flag = li >= 0 ? options[li].name : NULL;
        uint64_t n = 0, min = 0, max = UINT64_MAX;
        double dmax = 1e9;
        int bad = 0, number = 0; /* number: a decimal, else a whole number min..max */
        switch (c) {
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case OPT_CONNECT:
            if (parse_addr(optarg, &o.dst, &o.dstlen, 1) < 0) {
                fprintf(stderr, "twstress: bad --connect %s: want IP:PORT or [IPv6]:PORT\n", optarg);
                return 2;
            }
            have_dst = 1;
            break;
        case OPT_BIND: {
            socklen_t l;
            if (o.nbind == MAX_BIND || parse_addr(optarg, &o.bind[o.nbind], &l, 0) < 0) {
                fprintf(stderr, "twstress: bad --bind %s: want an IP address (at most %d)\n",
                        optarg, MAX_BIND);
                return 2;
            }
            o.nbind++;
            break;
        }
        case OPT_RATE:
            number = 1;
            bad = parse_number(optarg, 0, dmax, &o.rate);
            break;
        case OPT_DURATION:
            number = 1;
            dmax = 3600;
            bad = parse_number(optarg, 0, dmax, &o.duration);
            break;
        case OPT_CONCURRENCY:
            min = 1;
            max = 200000;
            bad = numparse_count(optarg, min, max, &n);
            o.concurrency = (int)n;
            break;
        case OPT_CONNECTIONS:
            min = 1;
            bad = numparse_count(optarg, min, max, &o.connections);
            break;
        case OPT_TIMEOUT_MS:
            min = 1;
            max = 3600000;
            bad = numparse_count(optarg, min, max, &n);
            o.timeout_ms = (int)n;
            break;
        case OPT_REQUEST_BYTES:
            min = 1;
            max = sizeof reqbuf;
            bad = numparse_count(optarg, min, max, &n);
            o.request_bytes = (size_t)n;
            break;
        case OPT_UPLOAD_BYTES: bad = numparse_count(optarg, min, max, &o.upload_bytes); break;
        case OPT_EXPECT_BYTES: bad = numparse_count(optarg, min, max, &o.expect_bytes); break;
        case OPT_CLOSE:
            if (!strcmp(optarg, "server"))
                o.close_server = 1;
            else if (!strcmp(optarg, "client"))
                o.close_server = 0;
            else {
                fprintf(stderr, "twstress: bad --close %s: want client or server\n", optarg);
                return 2;
            }
            break;
        case OPT_DISCARD: o.discard = 1; break;
        case OPT_JSON: o.json = 1; break;
        case OPT_PROGRESS: o.progress = 1; break;
        case OPT_PROGRESS_FILE: o.progress_file = optarg; break;
        case ':':
            fprintf(stderr, "twstress: %s needs a value\n", argv[optind - 1]);
            return usage_error();
        default:
            if (optopt >= 256 || optopt == 'h') /* --json=x */
                fprintf(stderr, "twstress: %s takes no value\n", argv[optind - 1]);
            else if (optopt)
                fprintf(stderr, "twstress: unknown option -%c\n", optopt);
            else
                fprintf(stderr, "twstress: unknown option %s\n", argv[optind - 1]);
            return usage_error();
        }
        if (bad && number) {
            fprintf(stderr, "twstress: bad --%s %s: want a number > 0 and <= %g\n", flag,
                    optarg, dmax);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "twstress: bad --%s %s: want a whole number %llu..%llu\n", flag,
                    optarg, (unsigned long long)min, (unsigned long long)max);
            return 2;
        }
        li = -1;
    }
    if (optind < argc) {
        fprintf(stderr, "twstress: unexpected argument %s\n", argv[optind]);
        return usage_error();
    }
    if (!have_dst) {
        fprintf(stderr, "twstress: --connect ADDR:PORT is needed\n");
        return usage_error();
    }
    if (o.rate <= 0 && o.concurrency <= 0) {
        fprintf(stderr, "twstress: --rate or --concurrency is needed\n");
        return usage_error();
    }
    return -1;
}

int main(int argc, char **argv)
{
    o.request_bytes = 4;
    int rc = parse_args(argc, argv);
    if (rc >= 0)
        return rc;
    if (o.duration < 0 && !o.connections)
        o.duration = 10;
    if (o.duration < 0)
        o.duration = 3600; /* --connections alone: still bounded in time */
    memset(reqbuf, 'x', sizeof reqbuf);
    memset(fillbuf, 'x', sizeof fillbuf);
    memcpy(reqbuf + sizeof reqbuf - o.request_bytes, &"GET\n"[o.request_bytes < 4 ? 4 - o.request_bytes : 0],
           o.request_bytes < 4 ? o.request_bytes : 4);
    reqbuf[sizeof reqbuf - 1] = '\n';
    nslots = o.concurrency > 0 ? o.concurrency : (int)(o.rate * o.timeout_ms / 1000.0) + 16;
    if (nslots > 200000)
        nslots = 200000;
    conns = calloc((size_t)nslots, sizeof *conns);
    for (int i = 0; i < nslots; i++)
        conns[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    FILE *pf = o.progress_file ? fopen(o.progress_file, "w") : NULL;
    int tty = o.progress || isatty(2);

    double t0 = now_ms(), end = t0 + o.duration * 1000.0, next_tick = t0 + 1000;
    double next_start = t0;
    uint64_t last_ok = 0, last_err = 0;
    struct epoll_event evs[256];
    while (!interrupted) {
        double t = now_ms();
        int more = t < end && (!o.connections || attempted < o.connections);
        if (!more && inflight == 0)
            break;
        if (more) {
            if (o.rate > 0) {
                while (next_start <= t && (!o.connections || attempted < o.connections)) {
                    if (o.concurrency > 0 && inflight >= o.concurrency)
                        break;
                    if (inflight >= nslots) {
                        late_starts++;
                        next_start += 1000.0 / o.rate;
                        continue;
                    }
                    if (t - next_start > 10)
                        late_starts++;
                    start_conn(t);
                    next_start += 1000.0 / o.rate;
                }
            } else {
                while (inflight < o.concurrency && (!o.connections || attempted < o.connections))
                    start_conn(t);
            }
        } else if (t > end + o.timeout_ms) {
            expire(t + 1e9); /* past every deadline: end the stragglers */
        }
        int wait = 1;
        if (o.rate <= 0 && more)
            wait = 10;
        int n = epoll_wait(epfd, evs, 256, wait);
        t = now_ms();
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events, t);
        if (t >= next_tick) {
            expire(t);
            uint64_t nerr = 0;
            for (int i = 0; i < 200; i++)
                nerr += errs_by[i];
            if (tty)
                fprintf(stderr, "\r%6.0f s  ok %llu  errors %llu  %llu/s  inflight %d   ",
                        (t - t0) / 1000, (unsigned long long)ok, (unsigned long long)nerr,
                        (unsigned long long)(ok - last_ok), inflight);
            if (pf) {
                /* per-second latency: a histogram of this second alone */
                fprintf(pf, "{\"t\": %.1f, \"attempted\": %llu, \"ok\": %llu, \"errors\": %llu, "
                            "\"cps\": %llu, \"connect_p99_ms\": %.3f, \"ttfb_p99_ms\": %.3f, "
                            "\"ttfb_max_ms\": %.3f, \"inflight\": %d}\n",
                        (t - t0) / 1000, (unsigned long long)attempted, (unsigned long long)ok,
                        (unsigned long long)nerr, (unsigned long long)(ok - last_ok),
                        hist_pct(&sec_connect, .99), hist_pct(&sec_ttfb, .99), sec_ttfb.max,
                        inflight);
                fflush(pf);
                memset(&sec_connect, 0, sizeof sec_connect);
                memset(&sec_ttfb, 0, sizeof sec_ttfb);
            }
            last_ok = ok;
            last_err = nerr;
            next_tick += 1000;
        }
    }
    (void)last_err;
    if (tty)
        fprintf(stderr, "\n");
    for (int i = 0; i < nslots; i++)
        if (conns[i].st != C_FREE)
            conn_end(&conns[i], ETIMEDOUT);
    if (pf)
        fclose(pf);
    report((now_ms() - t0) / 1000.0);
    return 0;
}
