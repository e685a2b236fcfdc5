/* twbackend - the test and demo backend for twlb.
 *
 *   twbackend --listen ADDR:PORT [--listen ...] --name NAME --mode MODE [options]
 *
 * Modes:
 *   echo         echo every byte; on EOF finish writing, then shut down our side
 *   close-first  read up to the first '\n' (any amount before it is counted and dropped),
 *                reply --reply-bytes N bytes starting with "NAME\n", then close first
 *                (the backend sends the first FIN, as an HTTP/1.0 server does)
 *   bulk         --send-bytes N: send "NAME\n" + pattern, N bytes in all, then close
 *                first;  --sink: read to EOF, answer "NAME <count>\n", close
 *   name         send "NAME\n" on accept, then echo
 *   hold         read and drop, never write, until the client closes
 *   blackhole    never answer a SYN: listen with backlog 0, never accept, and fill the
 *                accept queue with our own connections, so the kernel drops later SYNs
 *                and a client's connect hangs until its own timeout
 * --proxy-protocol: expect a PROXY protocol v1 or v2 header first and print what it
 * said ("proxy NAME src=IP:PORT dst=IP:PORT") on stdout, one line per connection.
 *
 * One libuv loop; one fixed buffer per connection; reads stop while a write is pending,
 * so memory per connection is bounded whatever the client does. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/numparse.h"

enum mode { M_ECHO, M_CLOSE_FIRST, M_BULK, M_NAME, M_HOLD, M_BLACKHOLE };

#define BUFSZ 65536
#define MAX_LISTEN 16

static struct {
    const char *name;
    enum mode mode;
    size_t reply_bytes;
    uint64_t send_bytes;
    int sink;
    unsigned reply_delay_ms;
    int backlog;
    uint64_t max_conns;
    int verbose;
    int proxy_protocol;
} opt = {.reply_bytes = 64, .backlog = 1024};

static uv_loop_t *loop;
static uv_tcp_t listeners[MAX_LISTEN];
static int nlisteners;
static uv_signal_t sig_term, sig_int, sig_usr1;
static uint64_t accepted, closed, bytes_in, bytes_out;
static int stopping;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t w;
    uv_shutdown_t sh;
    char pp[256]; /* PROXY header being read */
    size_t pplen;
    int pp_done;
    int writing, eof, got_line, shut_done;
    uint64_t to_send, in_count;
    int handles;
    struct conn *next_free; /* in free_conns */
    char buf[BUFSZ];        /* last: conn_new() clears what comes before it only */
};

/* Closed connections kept for the next ones.  A struct conn is 64 KiB: calloc()ing
 * each and freeing it cleared 64 KiB per connection and made glibc trim and regrow its
 * heap, page faults and TLB flushes included, about a sixth of the backend's CPU at
 * make bench's c50 load, shared with the proxy being measured. */
#define FREE_CONNS_MAX 4096
static struct conn *free_conns;
static unsigned n_free_conns;

static struct conn *conn_new(void)
{
    struct conn *c = free_conns;
    if (c) {
        free_conns = c->next_free;
        n_free_conns--;
    } else if (!(c = malloc(sizeof *c))) {
        return NULL;
    }
    memset(c, 0, offsetof(struct conn, buf));
    return c;
}

static void conn_free(struct conn *c)
{
    if (n_free_conns >= FREE_CONNS_MAX) {
        free(c);
        return;
    }
    c->next_free = free_conns;
    free_conns = c;
    n_free_conns++;
}

static void stop_all(void);

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles > 0)
        return;
    conn_free(c);
    closed++;
    if (opt.max_conns && closed >= opt.max_conns)
        stop_all();
}

static void conn_close(struct conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    struct conn *c = h->data;
    *b = uv_buf_init(c->buf, BUFSZ);
}

/* Our FIN is out.  Close once the client's has come too (echo: it came first;
 * close-first and bulk: ours went first, we wait for the client's answer). */
static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    c->shut_done = 1;
    if (c->eof || status < 0)
        conn_close(c);
}

static void write_more(struct conn *c);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = 0;
    if (status < 0) {
        conn_close(c);
        return;
    }
    write_more(c);
}

/* What one write of a reply may send: a bulk server writes big (nginx's sendfile takes
 * up to 2 MiB at once), and the load generator should cost little per byte. */
#define SEND_CHUNK (256 * 1024)
/* The reply's pattern from byte 0 on: pattern[i] = 'a' + i % 26, one chunk's worth and
 * 26 more, so any stretch of SEND_CHUNK bytes of the pattern is one slice of it. */
static char pattern[SEND_CHUNK + 26];

/* Where the reply's next *n bytes from <offset> are: "NAME\n" then the pattern
 * ('a' + position % 26).  Past the name this is a slice of <pattern> (nothing is
 * computed or copied per byte, so a bulk sender costs what its send(2) costs); a chunk
 * that holds some of the name is built in the connection's buffer, and *n shrinks to
 * what that buffer holds. */
static const char *fill(struct conn *c, uint64_t offset, size_t *n)
{
    size_t namelen = strlen(opt.name) + 1, i = 0;
    if (offset >= namelen)
        return pattern + offset % 26;
    if (*n > BUFSZ)
        *n = BUFSZ;
    for (; i < *n && offset + i < namelen; i++)
        c->buf[i] = offset + i + 1 == namelen ? '\n' : opt.name[offset + i];
    memcpy(c->buf + i, pattern + (offset + i) % 26, *n - i);
    return c->buf;
}

static void finish_reply(struct conn *c)
{
    c->sh.data = c;
    if (uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

/* close-first and bulk --send-bytes: stream the reply out, then send our FIN first. */
static void write_more(struct conn *c)
{
    if (opt.mode == M_ECHO || opt.mode == M_NAME) {
        if (c->eof)
            finish_reply(c);
        else
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        return;
    }
    if (c->to_send == 0) { /* the whole reply is out: FIN */
        finish_reply(c);
        return;
    }
    uint64_t total = opt.mode == M_BULK && !opt.sink ? opt.send_bytes : opt.reply_bytes;
    size_t n = (size_t)(c->to_send < SEND_CHUNK ? c->to_send : SEND_CHUNK);
    const char *data = fill(c, total - c->to_send, &n);
    c->to_send -= n;
    bytes_out += n;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    c->writing = 1;
    c->w.data = c;
    if (uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0)
        conn_close(c);
}

static void start_reply(struct conn *c)
{
    c->to_send = opt.mode == M_BULK ? opt.send_bytes : opt.reply_bytes;
    write_more(c);
}

static void on_delay(uv_timer_t *t) { start_reply(t->data); }

/* Consume a PROXY protocol header at the start of the stream.  Returns how many bytes of
 * <p> were header bytes, or -1 on a malformed header. */
static ssize_t proxy_header(struct conn *c, const char *p, size_t n)
{
    static const char v2sig[12] = "\r\n\r\n\0\r\nQUIT\n";
    size_t used = 0;
    while (used < n && !c->pp_done && c->pplen < sizeof c->pp) {
        c->pp[c->pplen++] = p[used++];
        if (c->pplen >= 5 && !memcmp(c->pp, "PROXY", 5)) {
            if (c->pplen >= 2 && c->pp[c->pplen - 2] == '\r' && c->pp[c->pplen - 1] == '\n') {
                c->pp[c->pplen - 2] = 0;
                char proto[16], src[64], dst[64];
                unsigned sp = 0, dp = 0;
                if (sscanf(c->pp, "PROXY %15s %63s %63s %u %u", proto, src, dst, &sp, &dp) == 5)
                    printf("proxy %s v1 src=%s:%u dst=%s:%u\n", opt.name, src, sp, dst, dp);
                else
                    printf("proxy %s v1 %s\n", opt.name, c->pp + 6);
                fflush(stdout);
                c->pp_done = 1;
            }
        } else if (c->pplen >= 16 && !memcmp(c->pp, v2sig, 12)) {
            size_t alen = ((unsigned char)c->pp[14] << 8) | (unsigned char)c->pp[15];
            if (c->pplen == 16 + alen) {
                char s[INET6_ADDRSTRLEN] = "?", d[INET6_ADDRSTRLEN] = "?";
                unsigned sp = 0, dp = 0;
                unsigned char *a = (unsigned char *)c->pp + 16;
                if ((unsigned char)c->pp[13] == 0x11 && alen >= 12) {
                    inet_ntop(AF_INET, a, s, sizeof s);
                    inet_ntop(AF_INET, a + 4, d, sizeof d);
                    sp = (unsigned)(a[8] << 8 | a[9]);
                    dp = (unsigned)(a[10] << 8 | a[11]);
                } else if ((unsigned char)c->pp[13] == 0x21 && alen >= 36) {
                    inet_ntop(AF_INET6, a, s, sizeof s);
                    inet_ntop(AF_INET6, a + 16, d, sizeof d);
                    sp = (unsigned)(a[32] << 8 | a[33]);
                    dp = (unsigned)(a[34] << 8 | a[35]);
                }
                printf("proxy %s v2 src=%s:%u dst=%s:%u\n", opt.name, s, sp, d, dp);
                fflush(stdout);
                c->pp_done = 1;
            }
        } else if (c->pplen >= 12 && memcmp(c->pp, "PROXY", 5) && memcmp(c->pp, v2sig, 12)) {
            return -1;
        } else if (c->pplen < 12 && memcmp(c->pp, "PROXY", c->pplen < 5 ? c->pplen : 5) &&
                   memcmp(c->pp, v2sig, c->pplen)) {
            return -1;
        }
    }
    if (!c->pp_done && c->pplen >= sizeof c->pp)
        return -1;
    return (ssize_t)used;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (n == 0)
        return;
    if (n < 0) {
        if (n != UV_EOF) {
            conn_close(c);
            return;
        }
        c->eof = 1;
        uv_read_stop(s);
        switch (opt.mode) {
        case M_ECHO:
        case M_NAME:
            if (!c->writing)
                finish_reply(c);
            break;
        case M_BULK:
            if (opt.sink) {
                int len = snprintf(c->buf, BUFSZ, "%s %llu\n", opt.name,
                                   (unsigned long long)c->in_count);
                uv_buf_t r = uv_buf_init(c->buf, (unsigned)len);
                c->to_send = 0;
                c->w.data = c;
                c->writing = 1;
                bytes_out += (uint64_t)len;
                if (uv_write(&c->w, s, &r, 1, on_write) < 0)
                    conn_close(c);
            } else if (c->shut_done) {
                conn_close(c);
            }
            break;
        case M_CLOSE_FIRST:
            if (!c->got_line) {
                c->got_line = 1; /* EOF ends the request too */
                start_reply(c);
            } else if (c->shut_done) {
                conn_close(c);
            }
            break;
        default: /* hold: the client went away */
            conn_close(c);
        }
        return;
    }
    const char *p = b->base;
    size_t len = (size_t)n;
    if (opt.proxy_protocol && !c->pp_done) {
        ssize_t used = proxy_header(c, p, len);
        if (used < 0) {
            fprintf(stderr, "twbackend %s: bad PROXY header\n", opt.name);
            conn_close(c);
            return;
        }
        p += used;
        len -= (size_t)used;
        if (len == 0)
            return;
    }
    bytes_in += len;
    c->in_count += len;
    switch (opt.mode) {
    case M_ECHO:
    case M_NAME: {
        if (p != c->buf)
            memmove(c->buf, p, len);
        uv_buf_t r = uv_buf_init(c->buf, (unsigned)len);
        int w = uv_try_write(s, &r, 1);
        if (w == (int)len) {
            bytes_out += len;
            return;
        }
        if (w < 0 && w != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (w > 0) {
            bytes_out += (size_t)w;
            r = uv_buf_init(c->buf + w, (unsigned)(len - (size_t)w));
        }
        bytes_out += r.len;
        uv_read_stop(s); /* backpressure: one buffer in flight */
        c->writing = 1;
        c->w.data = c;
        if (uv_write(&c->w, s, &r, 1, on_write) < 0)
            conn_close(c);
        return;
    }
    case M_CLOSE_FIRST:
        if (!c->got_line && memchr(p, '\n', len)) {
            c->got_line = 1;
            if (opt.reply_delay_ms)
                uv_timer_start(&c->timer, on_delay, opt.reply_delay_ms, 0);
            else
                start_reply(c);
        }
        return;
    default: /* bulk, hold: count and drop */
        return;
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    if (status < 0)
        return;
    struct conn *c = conn_new();
    if (!c)
        return;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    accepted++;
    if (opt.verbose)
        fprintf(stderr, "twbackend %s: connection %llu\n", opt.name,
                (unsigned long long)accepted);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (opt.mode == M_NAME) {
        size_t n = strlen(opt.name) + 1;
        const char *hello = fill(c, 0, &n);
        uv_buf_t r = uv_buf_init((char *)hello, (unsigned)n);
        if (uv_try_write((uv_stream_t *)&c->tcp, &r, 1) != (int)n)
            conn_close(c);
        bytes_out += n;
    } else if (opt.mode == M_BULK && !opt.sink) {
        start_reply(c);
    }
}

static void print_stats(void)
{
    fprintf(stderr, "twbackend %s: accepted %llu, bytes in %llu, bytes out %llu\n", opt.name,
            (unsigned long long)accepted, (unsigned long long)bytes_in,
            (unsigned long long)bytes_out);
}

/* At exit: close every handle; a connection's two handles free it when both are closed,
 * so a stop with connections open leaks nothing (the sanitizer build checks it). */
static void walk_close(uv_handle_t *h, void *arg)
{
    if (uv_is_closing(h))
        return;
    if ((h->type == UV_TCP || h->type == UV_TIMER) && h->data)
        conn_close(h->data); /* only connections set data */
    else
        uv_close(h, NULL);
}

static void stop_all(void)
{
    if (stopping)
        return;
    stopping = 1;
    uv_stop(loop);
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGUSR1)
        print_stats();
    else
        stop_all();
}

/* IPv4:PORT or [IPv6]:PORT; port 0 asks the kernel for one. */
static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
    char host[128];
    uint64_t port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host ||
            numparse_count(rb + 2, 0, 65535, &port) < 0)
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = 0;
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss);
    }
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host || numparse_count(colon + 1, 0, 65535, &port) < 0)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

static const char usage_text[] =
    "usage: twbackend --listen ADDR:PORT [--listen ...] --name NAME --mode MODE [options]\n"
    "  modes: echo | close-first [--reply-bytes N] [--reply-delay-ms D] |\n"
    "         bulk (--send-bytes N | --sink) | name | hold | blackhole\n"
    "  --listen ADDR:PORT   IPv4:PORT or [IPv6]:PORT (port 0: any), up to 16\n"
    "  --name NAME          what \"name\" mode answers, and the name in the logs\n"
    "  --reply-bytes N      close-first: reply size (default 64)\n"
    "  --reply-delay-ms D   close-first: wait D ms before replying\n"
    "  --send-bytes N       bulk: send N bytes then close;  --sink: read and discard\n"
    "  --backlog N          listen backlog (default 1024)\n"
    "  --max-conns N        stop accepting after N connections (0: no limit)\n"
    "  --proxy-protocol     expect a PROXY v1/v2 header first\n"
    "  -v, --verbose        log every connection;  --quiet: do not\n"
    "  -h, --help           this text\n"
    "prints \"twbackend NAME listening on ADDR:PORT[,...]\" once listening; SIGUSR1 prints\n"
    "the counters, SIGTERM/SIGINT stop.\n"
    "exit status: 0 stopped by a signal (or --help), 1 cannot listen, 2 bad command line\n";

static int usage_error(void)
{
    fputs(usage_text, stderr);
    return 2;
}

enum { OPT_LISTEN = 256, OPT_NAME, OPT_MODE, OPT_REPLY_BYTES, OPT_REPLY_DELAY_MS,
       OPT_SEND_BYTES, OPT_SINK, OPT_BACKLOG, OPT_MAX_CONNS, OPT_PROXY_PROTOCOL, OPT_QUIET };

static const struct option options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"name", required_argument, NULL, OPT_NAME},
    {"mode", required_argument, NULL, OPT_MODE},
    {"reply-bytes", required_argument, NULL, OPT_REPLY_BYTES},
    {"reply-delay-ms", required_argument, NULL, OPT_REPLY_DELAY_MS},
    {"send-bytes", required_argument, NULL, OPT_SEND_BYTES},
    {"sink", no_argument, NULL, OPT_SINK},
    {"backlog", required_argument, NULL, OPT_BACKLOG},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct { const char *name; enum mode mode; } modes[] = {
    {"echo", M_ECHO}, {"close-first", M_CLOSE_FIRST}, {"bulk", M_BULK},
    {"name", M_NAME}, {"hold", M_HOLD}, {"blackhole", M_BLACKHOLE},
};

/* Fill opt, <addrs> and <naddrs> from argv.  Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, const char **addrs, int *naddrs)
{
    const char *mode = NULL;
    int c, li = -1;
    opterr = 0; /* our own messages, naming the option */
    while ((c = getopt_long(argc, argv, ":hv", options, &li)) != -1) {
        const char *flag = li >= 0 ? options[li].name : NULL;
        uint64_t n = 0, min = 0, max = UINT64_MAX;
        int bad = 0;
        switch (c) {
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case 'v': opt.verbose = 1; break;
        case OPT_QUIET: opt.verbose = 0; break;
        case OPT_SINK: opt.sink = 1; break;
        case OPT_PROXY_PROTOCOL: opt.proxy_protocol = 1; break;
        case OPT_NAME: opt.name = optarg; break;
        case OPT_MODE: mode = optarg; break;
        case OPT_LISTEN:
            if (*naddrs == MAX_LISTEN) {
                fprintf(stderr, "twbackend: at most %d --listen\n", MAX_LISTEN);
                return 2;
            }
            addrs[(*naddrs)++] = optarg;
            break;
        case OPT_REPLY_BYTES:
            max = SIZE_MAX;
            bad = numparse_count(optarg, min, max, &n);
            opt.reply_bytes = (size_t)n;
            break;
        case OPT_REPLY_DELAY_MS:
            max = 3600000;
            bad = numparse_count(optarg, min, max, &n);
            opt.reply_delay_ms = (unsigned)n;
            break;
        case OPT_SEND_BYTES: bad = numparse_count(optarg, min, max, &opt.send_bytes); break;
        case OPT_MAX_CONNS: bad = numparse_count(optarg, min, max, &opt.max_conns); break;
        case OPT_BACKLOG:
            min = 0;
            max = 65535;
            bad = numparse_count(optarg, min, max, &n);
            opt.backlog = (int)n;
            break;
        case ':':
            fprintf(stderr, "twbackend: %s needs a value\n", argv[optind - 1]);
            return usage_error();
        default:
            if (optopt >= 256 || optopt == 'h' || optopt == 'v') /* --sink=x */
                fprintf(stderr, "twbackend: %s takes no value\n", argv[optind - 1]);
            else if (optopt)
                fprintf(stderr, "twbackend: unknown option -%c\n", optopt);
            else
                fprintf(stderr, "twbackend: unknown option %s\n", argv[optind - 1]);
            return usage_error();
        }
        if (bad) {
            fprintf(stderr, "twbackend: bad --%s %s: want a whole number %llu..%llu\n", flag,
                    optarg, (unsigned long long)min, (unsigned long long)max);
            return 2;
        }
        li = -1;
    }
    if (optind < argc) {
        fprintf(stderr, "twbackend: unexpected argument %s\n", argv[optind]);
        return usage_error();
    }
    if (!*naddrs || !opt.name || !mode) {
        fprintf(stderr, "twbackend: --listen, --name and --mode are needed\n");
        return usage_error();
    }
    size_t i = 0;
    while (i < sizeof modes / sizeof modes[0] && strcmp(modes[i].name, mode))
        i++;
    if (i == sizeof modes / sizeof modes[0]) {
        fprintf(stderr, "twbackend: bad --mode %s: want echo, close-first, bulk, name, hold "
                        "or blackhole\n", mode);
        return 2;
    }
    opt.mode = modes[i].mode;
    return -1;
}

int main(int argc, char **argv)
{
    const char *addrs[MAX_LISTEN];
    int naddrs = 0;
    int rc = parse_args(argc, argv, addrs, &naddrs);
    if (rc >= 0)
        return rc;
    if (opt.mode == M_BULK && !opt.sink == !opt.send_bytes) {
        fprintf(stderr, "twbackend: bulk needs exactly one of --send-bytes N or --sink\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (char)('a' + i % 26);
    loop = uv_default_loop();
    char printed[MAX_LISTEN * 64] = "";
    int blackhole_fds[4], nbh = 0;
    for (int i = 0; i < naddrs; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (parse_addr(addrs[i], &ss) != 0) {
            fprintf(stderr, "twbackend: bad address %s\n", addrs[i]);
            return 2;
        }
        int r;
        if (opt.mode == M_BLACKHOLE) {
            /* A plain socket that libuv never polls: nothing ever accepts from it. */
            int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            r = fd < 0 ? -errno : 0;
            if (r == 0 && (bind(fd, (struct sockaddr *)&ss,
                                ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                        : sizeof(struct sockaddr_in6)) < 0 ||
                           listen(fd, 0) < 0))
                r = -errno;
            if (r == 0)
                r = uv_tcp_init(loop, &listeners[i]) ?: uv_tcp_open(&listeners[i], fd);
        } else {
            uv_tcp_init(loop, &listeners[i]);
            r = uv_tcp_bind(&listeners[i], (struct sockaddr *)&ss, 0);
            if (r == 0)
                r = uv_listen((uv_stream_t *)&listeners[i], opt.backlog, on_connection);
        }
        if (r < 0) {
            fprintf(stderr, "twbackend: cannot listen on %s: %s\n", addrs[i], uv_strerror(r));
            return 1;
        }
        nlisteners++;
        struct sockaddr_storage bound;
        int blen = sizeof bound;
        uv_tcp_getsockname(&listeners[i], (struct sockaddr *)&bound, &blen);
        char ip[INET6_ADDRSTRLEN];
        int port;
        if (bound.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        }
        snprintf(printed + strlen(printed), sizeof printed - strlen(printed),
                 bound.ss_family == AF_INET ? "%s%s:%d" : "%s[%s]:%d", i ? "," : "", ip, port);
        if (opt.mode == M_BLACKHOLE) {
            /* Measured on Linux 6.18: with backlog 0 the accept queue holds one
             * connection; once it is full the kernel drops new SYNs, so a client's
             * connect() stays pending (a 1 s timeout expires) instead of being refused. */
            for (int k = 0; k < 2 && nbh < 4; k++) {
                int fd = socket(bound.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
                if (fd >= 0) {
                    connect(fd, (struct sockaddr *)&bound,
                            bound.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                       : sizeof(struct sockaddr_in6));
                    blackhole_fds[nbh++] = fd;
                }
            }
        }
    }
    printf("twbackend %s listening on %s\n", opt.name, printed);
    fflush(stdout);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_usr1);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_usr1, on_signal, SIGUSR1);
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 0; i < nbh; i++)
        close(blackhole_fds[i]);
    print_stats();
    uv_walk(loop, walk_close, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    while (free_conns) {
        struct conn *c = free_conns;
        free_conns = c->next_free;
        free(c);
    }
    return 0;
}
