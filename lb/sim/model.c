/* model.c - see model.h.
 *
 * The model, per virtual millisecond:
 *   arrivals  rate/1000 connections, round robin over the backends, from one inside
 *             address;
 *   port      twlb policies: portmap_acquire() of the proxy's own code (explicit, kernel
 *             or off); naive: a random port not in use toward that backend, as a kernel
 *             picks for connect() without bind (it cannot see the backend's TIME_WAIT);
 *   ISN       explicit: isn_reuse()/isn_fresh() as the proxy computes them; kernel and
 *             naive: the kernel's clock, hash(4-tuple) + t_ns/64;
 *   backend   a SYN on a 4-tuple the backend holds in TIME_WAIT is accepted when
 *             twrule_accepts() says so (timestamps stacks also accept a SYN 1 ms or more
 *             after the old connection ended); a rejected SYN costs ~12 ms where the RST
 *             kills the TIME_WAIT (Linux, rfc1337=0), else it stalls until the TIME_WAIT
 *             ends; a stall longer than the connect timeout is a failure;
 *   end       after hold_ms; the closer's side keeps TIME_WAIT (the backend remembers
 *             rcv_nxt = ISN + bytes + 2).
 * Not modelled: packet loss, RTT, CPU, the proxy's own ephemeral-port collisions. */
#include "sim/model.h"

#include <stdlib.h>
#include <string.h>

#include "core/isn.h"
#include "core/portmap.h"

#define LINUX_REJECT_STALL_MS 12 /* kernel-facts 1: RST, then the SYN resent ~8-15 ms later */
#define EPOCH_NS 1700000000000000000ull

const char *sim_policy_name(enum sim_policy p)
{
    static const char *const n[] = {"twlb-explicit", "twlb-kernel", "twlb-off", "naive"};
    return p <= SIM_NAIVE ? n[p] : "?";
}

int sim_policy_parse(const char *s, enum sim_policy *out)
{
    for (enum sim_policy k = SIM_EXPLICIT; k <= SIM_NAIVE; k++)
        if (!strcmp(s, sim_policy_name(k))) {
            *out = k;
            return 0;
        }
    return -1;
}

int sim_stack_parse(const char *s, struct sim_stack *out)
{
    memset(out, 0, sizeof *out);
    if (!strcmp(s, "linux"))
        *out = (struct sim_stack){"linux", TWRULE_TIMESTAMPS, 60, 1};
    else if (!strcmp(s, "freebsd"))
        *out = (struct sim_stack){"freebsd", TWRULE_BSD, 60, 0};
    else if (!strcmp(s, "windows"))
        *out = (struct sim_stack){"windows", TWRULE_BSD, 240, 0};
    else if (!strcmp(s, "strict"))
        *out = (struct sim_stack){"strict", TWRULE_STRICT, 240, 0};
    else if (!strncmp(s, "custom:", 7)) {
        /* custom:RULE:SECONDS, SECONDS plain decimal digits, 1..3600 */
        const char *r = s + 7, *colon = strchr(r, ':');
        char rule[32];
        if (!colon || colon == r || (size_t)(colon - r) >= sizeof rule)
            return -1;
        memcpy(rule, r, (size_t)(colon - r));
        rule[colon - r] = '\0';
        uint32_t secs = 0;
        const char *d = colon + 1;
        if (!*d)
            return -1;
        for (; *d; d++) {
            if (*d < '0' || *d > '9' || (secs = secs * 10 + (uint32_t)(*d - '0')) > 3600)
                return -1;
        }
        if (secs < 1 || twrule_kind_parse(rule, &out->rule) < 0)
            return -1;
        out->name = "custom";
        out->tw_seconds = secs;
    } else {
        return -1;
    }
    return 0;
}

/* ---- events: connection ends, a min-heap on time ------------------------------------ */

struct ev {
    uint64_t t;      /* ms */
    uint32_t backend;
    uint16_t port;
    uint32_t isn;
    uint64_t syn_ms; /* when the SYN was sent */
};

struct heap {
    struct ev *e;
    size_t n, cap;
};

static int heap_push(struct heap *h, struct ev v)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        struct ev *e = realloc(h->e, cap * sizeof *e);
        if (!e)
            return -1;
        h->e = e;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i && h->e[(i - 1) / 2].t > v.t) {
        h->e[i] = h->e[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->e[i] = v;
    return 0;
}

static struct ev heap_pop(struct heap *h)
{
    struct ev top = h->e[0], last = h->e[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->e[c + 1].t < h->e[c].t)
            c++;
        if (h->e[c].t >= last.t)
            break;
        h->e[i] = h->e[c];
        i = c;
    }
    if (h->n)
        h->e[i] = last;
    return top;
}

/* ---- the modelled backends ----------------------------------------------------------- */

struct tuple_state {
    uint64_t tw_until;  /* backend TIME_WAIT ends (ms); 0 none */
    uint64_t local_until; /* naive: our side busy or in TIME_WAIT until (ms); UINT64_MAX busy */
    uint64_t ended;     /* when the old connection ended (timestamps rule) */
    uint32_t rcv_nxt;
};

static uint32_t tuple_hash(uint32_t backend, uint16_t port)
{
    uint64_t x = ((uint64_t)backend << 16 | port) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 32);
}

static uint32_t kernel_isn(uint32_t backend, uint16_t port, uint64_t t_ms)
{
    return tuple_hash(backend, port) + isn_kernel_advance(t_ms * 1000000ull);
}

int sim_run(const struct sim_params *p, struct sim_result *out)
{
    memset(out, 0, sizeof *out);
    if (!(p->rate > 0) || p->duration_s == 0 || p->n_backends == 0 || p->port_lo == 0 ||
        p->port_lo > p->port_hi)
        return -1;
    uint32_t nports = (uint32_t)p->port_hi - p->port_lo + 1, nb = p->n_backends;
    struct portmap_policy pol = {
        .rule = {p->stack.rule, (uint64_t)p->stack.tw_seconds * 1000},
        .mode = p->policy == SIM_EXPLICIT ? ISN_EXPLICIT
                : p->policy == SIM_KERNEL ? ISN_KERNEL : ISN_OFF,
        .local_tw = PM_LOCAL_TW_AVOID,
        .local_tw_ms = 60000,
        .quarantine_ms = 1000,
        .kernel_margin = ISN_KERNEL_MARGIN,
    };
    portmap **pm = calloc(nb, sizeof *pm);
    struct tuple_state *ts = calloc((size_t)nb * nports, sizeof *ts);
    out->per_second = calloc(p->duration_s, sizeof *out->per_second);
    struct heap heap = {0};
    int rc = -1;
    if (!pm || !ts || !out->per_second)
        goto done;
    if (p->policy != SIM_NAIVE)
        for (uint32_t b = 0; b < nb; b++)
            if (!(pm[b] = portmap_new(p->port_lo, p->port_hi, &pol)))
                goto done;
    struct isn_key key = {{7, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3}};
    uint64_t rng = 0x243f6a8885a308d3ull;
    double owed = 0;
    uint32_t rr = 0;

    for (uint64_t t = 0; t < (uint64_t)p->duration_s * 1000; t++) {
        struct sim_second *sec = &out->per_second[t / 1000];
        /* connection ends due now */
        while (heap.n && heap.e[0].t <= t) {
            struct ev e = heap_pop(&heap);
            struct tuple_state *st = &ts[(size_t)e.backend * nports + (e.port - p->port_lo)];
            if (p->closer_backend) {
                st->tw_until = e.t + (uint64_t)p->stack.tw_seconds * 1000;
                st->rcv_nxt = e.isn + (uint32_t)p->upload_bytes + 2;
                st->ended = e.t;
            }
            if (p->policy == SIM_NAIVE) {
                st->local_until = p->closer_backend ? 0 : e.t + 60000;
            } else {
                struct portmap_release r = {
                    .closer = p->closer_backend ? PM_CLOSER_BACKEND : PM_CLOSER_LOCAL,
                    .isn_known = p->policy == SIM_EXPLICIT,
                    .isn = e.isn,
                    .syn_real_ns = EPOCH_NS + e.syn_ms * 1000000ull,
                    .syn_mono_ns = e.syn_ms * 1000000ull + 1,
                    .bytes_to_backend = p->upload_bytes,
                    .timestamps = p->stack.rule == TWRULE_TIMESTAMPS,
                };
                portmap_release(pm[e.backend], e.port, &r, e.t);
            }
        }
        /* arrivals due this millisecond */
        owed += p->rate / 1000.0;
        while (owed >= 1.0) {
            owed -= 1.0;
            out->attempted++;
            sec->attempted++;
            uint32_t b = rr++ % nb;
            uint16_t port = 0;
            uint32_t isn;
            if (p->policy == SIM_NAIVE) {
                struct tuple_state *row = &ts[(size_t)b * nports];
                for (int k = 0; k < 64 && !port; k++) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    uint32_t i = (uint32_t)(rng % nports);
                    if (row[i].local_until <= t)
                        port = (uint16_t)(p->port_lo + i);
                }
                if (!port) { /* EADDRNOTAVAIL: no local port free toward it */
                    out->failed++;
                    sec->failed++;
                    continue;
                }
                isn = kernel_isn(b, port, t);
            } else {
                struct portmap_pick pk;
                if (portmap_acquire(pm[b], t, EPOCH_NS + t * 1000000ull, t * 1000000ull + 1,
                                    &pk) < 0) {
                    out->failed++; /* exhausted: the client is turned away at once */
                    sec->failed++;
                    continue;
                }
                port = pk.port;
                if (p->policy == SIM_EXPLICIT) {
                    struct isn_tuple tp = {.addr_len = 4, .sport = port, .dport = (uint16_t)b};
                    isn = pk.kind == PM_PICK_REMOTE_TW
                              ? isn_reuse(&key, &tp, pk.rcv_nxt, t)
                              : isn_fresh(&key, &tp, EPOCH_NS + t * 1000000ull);
                } else {
                    isn = kernel_isn(b, port, t);
                }
            }
            struct tuple_state *st = &ts[(size_t)b * nports + (port - p->port_lo)];
            uint64_t start = t;
            if (st->tw_until > t) {
                struct twrule rule = {p->stack.rule, 0};
                int ok = twrule_accepts(&rule, isn, st->rcv_nxt) ||
                         (p->stack.rule == TWRULE_TIMESTAMPS && t > st->ended);
                if (!ok) {
                    uint64_t stall = p->stack.reject_resets ? LINUX_REJECT_STALL_MS
                                                            : st->tw_until - t;
                    if (stall > p->connect_timeout_ms) {
                        out->failed++;
                        sec->failed++;
                        if (p->policy == SIM_NAIVE) {
                            st->local_until = 0;
                        } else {
                            struct portmap_release r = {.closer = PM_CLOSER_NONE};
                            portmap_release(pm[b], port, &r, t);
                        }
                        continue;
                    }
                    out->stalled++;
                    sec->stalled++;
                    start = t + stall;
                    if (p->stack.reject_resets)
                        st->tw_until = 0; /* the RST killed it */
                }
            }
            if (start == t) {
                out->accepted++;
                sec->accepted++;
            }
            if (p->policy == SIM_NAIVE)
                st->local_until = UINT64_MAX;
            struct ev e = {start + p->hold_ms, b, port, isn, t};
            if (heap_push(&heap, e) < 0)
                goto done;
        }
        if (t % 1000 == 999) {
            for (uint32_t b = 0; b < nb; b++) {
                if (pm[b]) {
                    uint32_t c[PM_NSTATES];
                    portmap_expire(pm[b], t);
                    portmap_counts(pm[b], c);
                    for (int s = 0; s < PM_NSTATES; s++)
                        sec->ports[s] += c[s];
                } else {
                    struct tuple_state *row = &ts[(size_t)b * nports];
                    for (uint32_t i = 0; i < nports; i++) {
                        if (row[i].local_until == UINT64_MAX)
                            sec->ports[PM_BUSY]++;
                        else if (row[i].tw_until > t)
                            sec->ports[PM_REMOTE_TW]++;
                        else if (row[i].local_until > t)
                            sec->ports[PM_LOCAL_TW]++;
                        else
                            sec->ports[PM_FREE]++;
                    }
                }
            }
        }
    }
    /* the steady state: the last TIME_WAIT period, or the second half of a shorter run */
    uint32_t win = p->stack.tw_seconds;
    if (win * 2 > p->duration_s)
        win = p->duration_s - p->duration_s / 2;
    uint64_t acc = 0;
    for (uint32_t s = p->duration_s - win; s < p->duration_s; s++)
        acc += out->per_second[s].accepted;
    out->sustainable_rate = (double)acc / win;
    rc = 0;
done:
    if (pm)
        for (uint32_t b = 0; b < nb; b++)
            portmap_free(pm[b]);
    free(pm);
    free(ts);
    free(heap.e);
    if (rc < 0) {
        free(out->per_second);
        out->per_second = NULL;
    }
    return rc;
}
