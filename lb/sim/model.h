/* model.h - the capacity model behind `twlb simulate`.
 *
 * Runs the proxy's own port bookkeeping, ISN and TIME_WAIT rule code (portmap_*, isn_*,
 * twrule_*) against virtual time and modelled backend stacks, so an operator can ask
 * "will one inside address hold R connections per second to these backends?" before
 * deploying.
 *
 * Contract: pure, on the core library only.  No sockets, no stdio, no config, no clock
 * (the only time is the virtual one): the same parameters always give the same result.
 * Returns follow core/: 0 / -1.  What the model does, per virtual millisecond, is
 * written at the top of model.c.  Printing, CSV and SVG are the CLI's (sim/cli.h,
 * sim/svg.h), from the per-second rows of the result. */
#ifndef TWLB_SIM_MODEL_H
#define TWLB_SIM_MODEL_H

#include <stdint.h>

#include "core/balance.h"
#include "core/twrule.h"

/* How a modelled backend stack treats a SYN that hits its TIME_WAIT. */
struct sim_stack {
    const char *name;          /* "linux", "freebsd", "windows", "strict", "custom", or
                                  whatever the caller sets (a static string) */
    enum twrule_kind rule;
    uint32_t tw_seconds;
    int reject_resets;         /* 1: a rejected SYN costs ~12 ms (Linux, rfc1337=0: the
                                  RST kills the TIME_WAIT); 0: it stalls until TIME_WAIT
                                  ends (rfc1337, FreeBSD-like, Windows, strict) */
};

/* Parse a stack profile: linux, freebsd, windows, strict, custom:RULE:SECONDS (RULE a
 * twrule_kind_parse() name, SECONDS 1..3600).  Returns 0, or -1 if unknown. */
int sim_stack_parse(const char *s, struct sim_stack *out);

/* Who picks ports and ISNs: twlb in each ISN mode, or a naive proxy that leaves both to
 * the kernel. */
enum sim_policy { SIM_EXPLICIT, SIM_KERNEL, SIM_OFF, SIM_NAIVE };
/* "twlb-explicit", "twlb-kernel", "twlb-off", "naive"; "?" for anything else. */
const char *sim_policy_name(enum sim_policy p);
/* The inverse of sim_policy_name().  Returns 0 and sets *out, or -1 if unknown. */
int sim_policy_parse(const char *s, enum sim_policy *out);

/* One backend of the pool: its name and weight (for the balancer) and its own stack. */
struct sim_backend {
    const char *name;
    uint32_t weight;           /* >= 1 */
    struct sim_stack stack;
};

/* The fleet: n_nodes twlb nodes share the offered connections evenly (ECMP or DNS spread
 * them; each node sees rate / n_nodes); each node has n_inside inside addresses of its
 * own (no 4-tuple is shared between nodes) and balances over the same backends with
 * <balance>.  Ports toward a backend: one port map per (node, inside address), used in
 * rotation, exactly as the proxy's path sets (core/pathset.h). */
struct sim_params {
    double rate;               /* offered connections per second, over all nodes */
    uint32_t duration_s;       /* virtual seconds */
    enum sim_policy policy;
    uint32_t n_backends;       /* >= 1 */
    const struct sim_backend *backends; /* n_backends entries; NULL: every backend has
                                           <stack> and weight 1 */
    struct sim_stack stack;    /* every backend's stack when <backends> is NULL */
    enum balance_algo balance; /* 0: round robin */
    uint32_t n_nodes;          /* 0 means 1 */
    uint32_t n_inside;         /* inside addresses per node; 0 means 1 */
    uint16_t port_lo, port_hi; /* source ports of each inside address */
    uint32_t hold_ms;          /* connection lifetime */
    uint64_t upload_bytes;     /* client bytes per connection */
    int closer_backend;        /* 1: the backend sends the first FIN */
    uint32_t connect_timeout_ms; /* a stall longer than this is a failure */
    uint32_t kernel_margin;    /* twlb-kernel's margin in sequence numbers; 0: the
                                  default, ISN_KERNEL_MARGIN */
};

/* One virtual second: connections that began in it, and the ports at its end. */
struct sim_second {
    uint32_t attempted, accepted, stalled, failed;
    uint32_t ports[5];         /* by enum pm_state: free, busy, remote_tw, local_tw,
                                  quarantined, summed over the backends */
};

struct sim_result {
    uint64_t attempted, accepted, stalled, failed;
    uint64_t max_node_accepted, min_node_accepted; /* the busiest and idlest node */
    double sustainable_rate;   /* accepted at once per second over the last TIME_WAIT
                                  period (or the second half of the run if shorter) */
    double capacity;           /* the analytic capacity, sim_capacity(); -1 for naive */
    struct sim_second *per_second; /* duration_s entries, second 1 first (caller frees) */
};

/* What the source ports of the fleet sustain by the formula the proxy's
 * twlb_port_capacity_cps gauge uses (core/capacity.h): for every node, inside address
 * and backend, ports / mean port cycle at hold_ms, upload_bytes and the closer, under
 * that backend's rule and the policy's ISN mode; summed.  Connections per second, or
 * -1 for the naive policy (the kernel picks its ports: no formula).  Needs no run. */
double sim_capacity(const struct sim_params *p);

/* Run one simulation.  Returns 0, or -1 on bad parameters (rate <= 0, no duration, no
 * backend, port_lo 0 or above port_hi) or out of memory; on -1 *out holds nothing to
 * free. */
int sim_run(const struct sim_params *p, struct sim_result *out);

/* The planning question: how many inside addresses per node does <target> connections
 * per second need, with zero failures and zero stalls, for the fleet in <p> (p->rate and
 * p->n_inside are ignored; p->duration_s should cover two TIME_WAIT periods)? */
struct sim_plan {
    int found;                 /* 0: not even max_inside addresses hold it */
    uint32_t inside_per_node;  /* the smallest that holds the target */
    uint32_t nodes;            /* p->n_nodes (at least 1) */
    double capacity;           /* connections per second that configuration holds */
    int capacity_is_lower_bound; /* 1: it held everything offered (ports are no bound) */
    double headroom;           /* capacity / target - 1 */
    uint32_t runs;             /* simulations it took */
};
/* Returns 0 with <out> filled, or -1 on bad parameters or out of memory. */
int sim_plan_run(const struct sim_params *p, double target, uint32_t max_inside,
                 struct sim_plan *out);

#endif
