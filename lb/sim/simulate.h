/* simulate.h - the capacity planner behind `twlb simulate`.
 *
 * Runs the proxy's own port bookkeeping, ISN and TIME_WAIT rule code (portmap_*, isn_*,
 * twrule_*) against virtual time and modelled backend stacks, so an operator can ask
 * "will one inside address hold R connections per second to these backends?" before
 * deploying.  Pure: no sockets; the only clock is the virtual one. */
#ifndef TWLB_SIMULATE_H
#define TWLB_SIMULATE_H

#include <stdint.h>
#include <stdio.h>

#include "core/twrule.h"

/* How a modelled backend stack treats a SYN that hits its TIME_WAIT. */
struct sim_stack {
    const char *name;          /* "linux", "freebsd", "windows", "strict", "custom" */
    enum twrule_kind rule;
    uint32_t tw_seconds;
    int reject_resets;         /* 1: a rejected SYN costs ~12 ms (Linux, rfc1337=0: the
                                  RST kills the TIME_WAIT); 0: it stalls until TIME_WAIT
                                  ends (rfc1337, FreeBSD-like, Windows, strict) */
};

enum sim_policy { SIM_EXPLICIT, SIM_KERNEL, SIM_OFF, SIM_NAIVE };
const char *sim_policy_name(enum sim_policy p);

struct sim_params {
    double rate;               /* offered connections per second */
    uint32_t duration_s;       /* virtual seconds */
    enum sim_policy policy;
    uint32_t n_backends;       /* >= 1, balanced round robin */
    struct sim_stack stack;    /* every backend's stack */
    uint16_t port_lo, port_hi; /* source ports of the one inside address */
    uint32_t hold_ms;          /* connection lifetime */
    uint64_t upload_bytes;     /* client bytes per connection */
    int closer_backend;        /* 1: the backend sends the first FIN */
    uint32_t connect_timeout_ms; /* a stall longer than this is a failure */
    FILE *csv;                 /* per-second rows, or NULL */
};

struct sim_second {
    uint32_t attempted, accepted, stalled, failed;
    uint32_t ports[5];         /* free, busy, remote_tw, local_tw, quarantined (summed) */
};

struct sim_result {
    uint64_t attempted, accepted, stalled, failed;
    double sustainable_rate;   /* accepted at once per second over the last TIME_WAIT
                                  period (or the second half of the run if shorter) */
    struct sim_second *per_second; /* duration_s entries (caller frees) */
};

/* Run one simulation.  Returns 0, or -1 on bad parameters or out of memory. */
int sim_run(const struct sim_params *p, struct sim_result *out);

/* Parse a stack profile: linux, freebsd, windows, strict, custom:RULE:SECONDS. */
int sim_stack_parse(const char *s, struct sim_stack *out);

/* Write the SVG plot (ports per state, and attempted/accepted/stalled/failed). */
int sim_write_svg(const char *path, const struct sim_params *p, const struct sim_result *r);

/* `twlb simulate ...`; argv[0] is "simulate".  Returns the exit status. */
int simulate_main(int argc, char **argv);

#endif
