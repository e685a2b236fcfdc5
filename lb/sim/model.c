/* model.c - see model.h.
 *
 * The model, per virtual millisecond:
 *   arrivals  rate/1000 connections, spread over the nodes in turn; on its node a
 *             connection gets a backend from balancer_pick() (the pool's algorithm, the
 *             live-connection counts of that node), skipping backends without a usable
 *             port, as the proxy's backend_pick() does;
 *   port      twlb policies: pathset_acquire() of the proxy's own code over the node's
 *             inside addresses (explicit, kernel or off); naive: the inside addresses in
 *             turn, a random port not in use toward that backend, as a kernel picks for
 *             connect() without bind (it cannot see the backend's TIME_WAIT);
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

#include "core/capacity.h"
#include "core/isn.h"
#include "core/pathset.h"
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
    uint32_t node, backend, path;
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

/* What a backend remembers of one 4-tuple (and, for the naive proxy, what our side holds).
 * Times in virtual ms; the run is at most 86,400 s, so they fit 32 bits. */
struct tuple_state {
    uint32_t tw_until;    /* backend TIME_WAIT ends; 0 none */
    uint32_t local_until; /* naive: our side busy or in TIME_WAIT until; UINT32_MAX busy */
    uint32_t ended;       /* when the old connection ended (timestamps rule) */
    uint32_t rcv_nxt;
};

static uint32_t tuple_hash(uint32_t path, uint32_t backend, uint16_t port)
{
    uint64_t x = (((uint64_t)path << 20 ^ backend) << 16 | port) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 32);
}

static uint32_t kernel_isn(uint32_t path, uint32_t backend, uint16_t port, uint64_t t_ms)
{
    return tuple_hash(path, backend, port) + isn_kernel_advance(t_ms * 1000000ull);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Everything one run allocates; the rows of 4-tuple state are made on first use. */
struct fleet {
    uint32_t nodes, inside, nb, nports;
    struct sim_backend *be;           /* nb */
    pathset **ps;                     /* nodes * nb; NULL entries for naive */
    balancer **bal;                   /* nodes */
    struct balance_backend *view;     /* nodes * nb: names, weights, live counts */
    uint8_t *usable;                  /* nb */
    uint32_t *naive_rr;               /* nodes * nb: naive's turn over inside addresses */
    struct tuple_state **rows;        /* (nodes * inside) * nb rows of nports */
    uint64_t *node_accepted;          /* nodes */
};

static void fleet_free(struct fleet *f)
{
    for (size_t i = 0; f->ps && i < (size_t)f->nodes * f->nb; i++)
        pathset_free(f->ps[i]);
    for (uint32_t n = 0; f->bal && n < f->nodes; n++)
        balancer_free(f->bal[n]);
    for (size_t i = 0; f->rows && i < (size_t)f->nodes * f->inside * f->nb; i++)
        free(f->rows[i]);
    free(f->be);
    free(f->ps);
    free(f->bal);
    free(f->view);
    free(f->usable);
    free(f->naive_rr);
    free(f->rows);
    free(f->node_accepted);
}

static struct portmap_policy policy_for(const struct sim_params *p, const struct sim_stack *st)
{
    return (struct portmap_policy){
        .rule = {st->rule, (uint64_t)st->tw_seconds * 1000},
        .mode = p->policy == SIM_EXPLICIT ? ISN_EXPLICIT
                : p->policy == SIM_KERNEL ? ISN_KERNEL : ISN_OFF,
        .local_tw = PM_LOCAL_TW_AVOID,
        .local_tw_ms = 60000,
        .quarantine_ms = 1000,
        .kernel_margin = p->kernel_margin ? p->kernel_margin : ISN_KERNEL_MARGIN,
    };
}

double sim_capacity(const struct sim_params *p)
{
    if (p->policy == SIM_NAIVE)
        return -1;
    uint32_t paths = (p->n_nodes ? p->n_nodes : 1) * (p->n_inside ? p->n_inside : 1);
    uint32_t ports = p->port_lo && p->port_lo <= p->port_hi
                         ? (uint32_t)p->port_hi - p->port_lo + 1 : 0;
    double sum = 0;
    for (uint32_t b = 0; b < p->n_backends; b++) {
        const struct sim_stack *st = p->backends ? &p->backends[b].stack : &p->stack;
        struct portmap_policy pol = policy_for(p, st);
        /* as the runs release them: timestamps with the timestamps rule's stacks */
        struct capacity_mix m = {
            .hold_ms = p->hold_ms,
            .bytes_to_backend = (double)p->upload_bytes,
            .backend_first = p->closer_backend ? 1 : 0,
            .local_first = p->closer_backend ? 0 : 1,
            .local_timestamps = st->rule == TWRULE_TIMESTAMPS,
        };
        sum += paths * capacity_cps(&pol, ports, &m);
    }
    return sum;
}

static int fleet_new(const struct sim_params *p, struct fleet *f)
{
    memset(f, 0, sizeof *f);
    f->nodes = p->n_nodes ? p->n_nodes : 1;
    f->inside = p->n_inside ? p->n_inside : 1;
    f->nb = p->n_backends;
    f->nports = (uint32_t)p->port_hi - p->port_lo + 1;
    size_t nnb = (size_t)f->nodes * f->nb;
    f->be = calloc(f->nb, sizeof *f->be);
    f->ps = calloc(nnb, sizeof *f->ps);
    f->bal = calloc(f->nodes, sizeof *f->bal);
    f->view = calloc(nnb, sizeof *f->view);
    f->usable = calloc(f->nb, 1);
    f->naive_rr = calloc(nnb, sizeof *f->naive_rr);
    f->rows = calloc(nnb * f->inside, sizeof *f->rows);
    f->node_accepted = calloc(f->nodes, sizeof *f->node_accepted);
    if (!f->be || !f->ps || !f->bal || !f->view || !f->usable || !f->naive_rr || !f->rows ||
        !f->node_accepted)
        return -1;
    static const char *const names[] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"};
    for (uint32_t b = 0; b < f->nb; b++) {
        if (p->backends) {
            f->be[b] = p->backends[b];
        } else {
            f->be[b] = (struct sim_backend){b < 8 ? names[b] : "b", 1, p->stack};
        }
        if (!f->be[b].weight || !f->be[b].name || !f->be[b].stack.tw_seconds)
            return -1;
    }
    struct pathset_inside *in = calloc(f->inside, sizeof *in);
    if (!in)
        return -1;
    int rc = 0;
    for (uint32_t n = 0; n < f->nodes && rc == 0; n++) {
        for (uint32_t b = 0; b < f->nb; b++) {
            struct balance_backend *v = &f->view[(size_t)n * f->nb + b];
            *v = (struct balance_backend){.name = f->be[b].name, .weight = f->be[b].weight};
        }
        if (!(f->bal[n] = balancer_new(p->balance, &f->view[(size_t)n * f->nb], f->nb,
                                       0x9e3779b97f4a7c15ull + n)))
            rc = -1;
        /* inside address i of node n: 198.18.n.i as far as the path set is concerned */
        for (uint32_t i = 0; i < f->inside; i++)
            in[i] = (struct pathset_inside){2, {198, 18, (uint8_t)n, (uint8_t)i}, 4};
        for (uint32_t b = 0; b < f->nb && rc == 0 && p->policy != SIM_NAIVE; b++) {
            struct portmap_policy pol = policy_for(p, &f->be[b].stack);
            if (!(f->ps[(size_t)n * f->nb + b] =
                      pathset_new(2, in, f->inside, p->port_lo, p->port_hi, &pol, NULL)))
                rc = -1;
        }
    }
    free(in);
    return rc;
}

/* The 4-tuple state row of (node, path, backend), made on first use; NULL on OOM. */
static struct tuple_state *fleet_row(struct fleet *f, uint32_t node, uint32_t path, uint32_t b)
{
    struct tuple_state **r = &f->rows[((size_t)node * f->inside + path) * f->nb + b];
    if (!*r)
        *r = calloc(f->nports, sizeof **r);
    return *r;
}

int sim_run(const struct sim_params *p, struct sim_result *out)
{
    memset(out, 0, sizeof *out);
    if (!(p->rate > 0) || p->duration_s == 0 || p->duration_s > 86400 || p->n_backends == 0 ||
        p->port_lo == 0 || p->port_lo > p->port_hi)
        return -1;
    struct fleet f;
    struct heap heap = {0};
    int rc = -1;
    out->per_second = calloc(p->duration_s, sizeof *out->per_second);
    if (fleet_new(p, &f) < 0 || !out->per_second)
        goto done;
    uint32_t nb = f.nb, nports = f.nports;
    struct isn_key key = {{7, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3}};
    uint64_t rng = 0x243f6a8885a308d3ull, crng = 0x13198a2e03707344ull;
    double owed = 0;
    uint32_t next_node = 0, max_tw = 0;
    for (uint32_t b = 0; b < nb; b++)
        if (f.be[b].stack.tw_seconds > max_tw)
            max_tw = f.be[b].stack.tw_seconds;

    for (uint64_t t = 0; t < (uint64_t)p->duration_s * 1000; t++) {
        struct sim_second *sec = &out->per_second[t / 1000];
        /* connection ends due now */
        while (heap.n && heap.e[0].t <= t) {
            struct ev e = heap_pop(&heap);
            const struct sim_stack *stk = &f.be[e.backend].stack;
            struct tuple_state *st = &fleet_row(&f, e.node, e.path, e.backend)[e.port - p->port_lo];
            f.view[(size_t)e.node * nb + e.backend].active--;
            if (p->closer_backend) {
                st->tw_until = (uint32_t)(e.t + (uint64_t)stk->tw_seconds * 1000);
                st->rcv_nxt = e.isn + (uint32_t)p->upload_bytes + 2;
                st->ended = (uint32_t)e.t;
            }
            if (p->policy == SIM_NAIVE) {
                st->local_until = p->closer_backend ? 0 : (uint32_t)(e.t + 60000);
            } else {
                struct portmap_release r = {
                    .closer = p->closer_backend ? PM_CLOSER_BACKEND : PM_CLOSER_LOCAL,
                    .isn_known = p->policy == SIM_EXPLICIT,
                    .isn = e.isn,
                    .syn_real_ns = EPOCH_NS + e.syn_ms * 1000000ull,
                    .syn_mono_ns = e.syn_ms * 1000000ull + 1,
                    .bytes_to_backend = p->upload_bytes,
                    .timestamps = stk->rule == TWRULE_TIMESTAMPS,
                };
                struct pathset_pick pk = {.path = e.path, .port = {.port = e.port},
                                          .acquired_ms = e.syn_ms};
                pathset_release(f.ps[(size_t)e.node * nb + e.backend], &pk, &r, e.t);
            }
        }
        /* arrivals due this millisecond */
        owed += p->rate / 1000.0;
        while (owed >= 1.0) {
            owed -= 1.0;
            out->attempted++;
            sec->attempted++;
            uint32_t node = next_node++ % f.nodes;
            struct balance_backend *view = &f.view[(size_t)node * nb];
            uint64_t client_hash = xorshift(&crng);
            uint16_t port = 0;
            uint32_t isn = 0, path = 0;
            int b = -1;
            memset(f.usable, 1, nb);
            while (!port) {
                if ((b = balancer_pick(f.bal[node], view, f.usable, client_hash)) < 0)
                    break;
                f.usable[b] = 0; /* each backend at most once */
                if (p->policy == SIM_NAIVE) {
                    path = f.naive_rr[(size_t)node * nb + b]++ % f.inside;
                    struct tuple_state *row = fleet_row(&f, node, path, (uint32_t)b);
                    if (!row)
                        goto done;
                    for (int k = 0; k < 64 && !port; k++) {
                        uint32_t i = (uint32_t)(xorshift(&rng) % nports);
                        if (row[i].local_until <= t)
                            port = (uint16_t)(p->port_lo + i);
                    }
                    if (port)
                        isn = kernel_isn(node * f.inside + path, (uint32_t)b, port, t);
                } else {
                    struct pathset_pick pk;
                    if (pathset_acquire(f.ps[(size_t)node * nb + b], t,
                                        EPOCH_NS + t * 1000000ull, t * 1000000ull + 1, &pk) < 0)
                        continue; /* exhausted: the next backend */
                    port = pk.port.port;
                    path = (uint32_t)pk.path;
                    if (p->policy == SIM_EXPLICIT) {
                        struct isn_tuple tp = {.addr_len = 4, .sport = port, .dport = (uint16_t)b};
                        tp.saddr[0] = (uint8_t)node;
                        tp.saddr[1] = (uint8_t)path;
                        isn = pk.port.kind == PM_PICK_REMOTE_TW
                                  ? isn_reuse(&key, &tp, pk.port.rcv_nxt, t)
                                  : isn_fresh(&key, &tp, EPOCH_NS + t * 1000000ull);
                    } else {
                        isn = kernel_isn(node * f.inside + path, (uint32_t)b, port, t);
                    }
                }
            }
            if (!port) { /* no backend with a usable port: turned away at once */
                out->failed++;
                sec->failed++;
                continue;
            }
            const struct sim_stack *stk = &f.be[b].stack;
            struct tuple_state *row = fleet_row(&f, node, path, (uint32_t)b);
            if (!row)
                goto done;
            struct tuple_state *st = &row[port - p->port_lo];
            uint64_t start = t;
            if (st->tw_until > t) {
                struct twrule rule = {stk->rule, 0};
                int ok = twrule_accepts(&rule, isn, st->rcv_nxt) ||
                         (stk->rule == TWRULE_TIMESTAMPS && t > st->ended);
                if (!ok) {
                    uint64_t stall = stk->reject_resets ? LINUX_REJECT_STALL_MS
                                                        : st->tw_until - t;
                    if (stall > p->connect_timeout_ms) {
                        out->failed++;
                        sec->failed++;
                        if (p->policy == SIM_NAIVE) {
                            st->local_until = 0;
                        } else {
                            struct portmap_release r = {.closer = PM_CLOSER_NONE};
                            struct pathset_pick pk = {.path = path, .port = {.port = port},
                                                      .acquired_ms = t};
                            pathset_release(f.ps[(size_t)node * nb + b], &pk, &r, t);
                        }
                        continue;
                    }
                    out->stalled++;
                    sec->stalled++;
                    start = t + stall;
                    if (stk->reject_resets)
                        st->tw_until = 0; /* the RST killed it */
                }
            }
            if (start == t) {
                out->accepted++;
                sec->accepted++;
                f.node_accepted[node]++;
            }
            if (p->policy == SIM_NAIVE)
                st->local_until = UINT32_MAX;
            view[b].active++;
            struct ev e = {start + p->hold_ms, node, (uint32_t)b, path, port, isn, t};
            if (heap_push(&heap, e) < 0)
                goto done;
        }
        if (t % 1000 == 999) {
            for (size_t k = 0; k < (size_t)f.nodes * nb; k++) {
                if (f.ps[k]) {
                    pathset_expire(f.ps[k], t);
                    for (size_t i = 0; i < pathset_size(f.ps[k]); i++) {
                        uint32_t c[PM_NSTATES];
                        portmap_counts(pathset_map(f.ps[k], i), c);
                        for (int s = 0; s < PM_NSTATES; s++)
                            sec->ports[s] += c[s];
                    }
                    continue;
                }
                for (uint32_t i = 0; i < f.inside; i++) {
                    const struct tuple_state *row = f.rows[(k / nb * f.inside + i) * nb + k % nb];
                    for (uint32_t j = 0; j < nports; j++) {
                        if (!row)
                            sec->ports[PM_FREE]++;
                        else if (row[j].local_until == UINT32_MAX)
                            sec->ports[PM_BUSY]++;
                        else if (row[j].tw_until > t)
                            sec->ports[PM_REMOTE_TW]++;
                        else if (row[j].local_until > t)
                            sec->ports[PM_LOCAL_TW]++;
                        else
                            sec->ports[PM_FREE]++;
                    }
                }
            }
        }
    }
    /* the steady state: the last TIME_WAIT period (the longest backend's), or the second
     * half of a shorter run */
    uint32_t win = max_tw;
    if (win * 2 > p->duration_s)
        win = p->duration_s - p->duration_s / 2;
    uint64_t acc = 0;
    for (uint32_t s = p->duration_s - win; s < p->duration_s; s++)
        acc += out->per_second[s].accepted;
    out->sustainable_rate = (double)acc / win;
    out->capacity = sim_capacity(p);
    out->min_node_accepted = UINT64_MAX;
    for (uint32_t n = 0; n < f.nodes; n++) {
        if (f.node_accepted[n] > out->max_node_accepted)
            out->max_node_accepted = f.node_accepted[n];
        if (f.node_accepted[n] < out->min_node_accepted)
            out->min_node_accepted = f.node_accepted[n];
    }
    rc = 0;
done:
    fleet_free(&f);
    free(heap.e);
    if (rc < 0) {
        free(out->per_second);
        out->per_second = NULL;
    }
    return rc;
}

/* Does the fleet of <p> with <inside> addresses per node hold <rate> with nothing failed
 * or stalled?  -1 on error. */
static int holds(const struct sim_params *p, uint32_t inside, double rate, double *sustained)
{
    struct sim_params q = *p;
    struct sim_result r;
    q.n_inside = inside;
    q.rate = rate;
    if (sim_run(&q, &r) < 0)
        return -1;
    free(r.per_second);
    if (sustained)
        *sustained = r.sustainable_rate;
    return r.failed == 0 && r.stalled == 0;
}

int sim_plan_run(const struct sim_params *p, double target, uint32_t max_inside,
                 struct sim_plan *out)
{
    memset(out, 0, sizeof *out);
    if (!(target > 0) || max_inside == 0)
        return -1;
    out->nodes = p->n_nodes ? p->n_nodes : 1;
    /* What one inside address per node holds when overloaded; the ports scale with the
     * addresses, so that gives the first guess, which is then checked, and moved up (or
     * down) one at a time until it is the smallest that holds. */
    double cap1 = 0;
    int h = holds(p, 1, target, &cap1);
    out->runs++;
    if (h < 0)
        return -1;
    uint32_t k = 1;
    if (!h) {
        double guess = cap1 > 0 ? target / cap1 : max_inside;
        k = guess >= max_inside ? max_inside : (uint32_t)guess + 1;
        if (k < 2)
            k = 2;
        for (;;) {
            h = holds(p, k, target, NULL);
            out->runs++;
            if (h < 0)
                return -1;
            if (h || k == max_inside)
                break;
            k++;
        }
        if (!h)
            return 0; /* found stays 0 */
        while (k > 2) {
            int lower = holds(p, k - 1, target, NULL);
            out->runs++;
            if (lower < 0)
                return -1;
            if (!lower)
                break;
            k--;
        }
    }
    out->found = 1;
    out->inside_per_node = k;
    /* the capacity of that configuration: what it sustains offered twice the target */
    struct sim_params q = *p;
    struct sim_result r;
    q.n_inside = k;
    q.rate = 2 * target;
    if (sim_run(&q, &r) < 0)
        return -1;
    out->runs++;
    /* a run shorter than two TIME_WAIT periods never reaches the steady state: what it
     * holds is what it accepted at once over the whole run */
    uint32_t max_tw = 0;
    for (uint32_t i = 0; i < p->n_backends; i++) {
        uint32_t tw = p->backends ? p->backends[i].stack.tw_seconds : p->stack.tw_seconds;
        max_tw = tw > max_tw ? tw : max_tw;
    }
    out->capacity = p->duration_s >= 2 * max_tw ? r.sustainable_rate
                                                : (double)r.accepted / p->duration_s;
    out->capacity_is_lower_bound = r.failed == 0 && r.stalled == 0;
    free(r.per_second);
    out->headroom = out->capacity / target - 1;
    return 0;
}
