/* twrule.h - what a backend's TCP stack accepts on a 4-tuple it still holds in
 * TIME_WAIT (the backend sent the first FIN).  Pure: no sockets, no clocks.
 *
 * Facts behind the rules: docs/kernel-facts.md section 1.  rcv_nxt is the
 * old connection's last sequence number as the backend expects it:
 * old_isn + bytes_sent + 2 (SYN and FIN each take one). */
#ifndef TWLB_TWRULE_H
#define TWLB_TWRULE_H

#include <stdint.h>

enum twrule_kind {
    TWRULE_BSD,        /* accept iff SYN seq is "after" rcv_nxt (FreeBSD, Windows,
                          Linux without timestamps) */
    TWRULE_TIMESTAMPS, /* Linux with timestamps; treated as BSD for the ISN because the
                          timestamp rule fails within 1 ms and after a failover */
    TWRULE_STRICT,     /* never reuse before TIME_WAIT expires (RFC 1337 hosts,
                          appliances, unknown stacks) */
};

struct twrule {
    enum twrule_kind kind;
    uint64_t time_wait_ms; /* how long the backend keeps TIME_WAIT */
};

/* Name as written in the config ("bsd", "timestamps", "strict"). */
const char *twrule_kind_name(enum twrule_kind k);
/* Parse a name; returns 0 and sets *out, or -1 if unknown. */
int twrule_kind_parse(const char *s, enum twrule_kind *out);

/* RFC 793 "a after b" modulo 2^32: (a - b) mod 2^32 lies in [1, 2^31].
 * This is exactly the test the measured kernels apply (kernel-facts 1). */
int twrule_seq_after(uint32_t a, uint32_t b);

/* Would a backend under rule <r>, holding the 4-tuple in TIME_WAIT with <rcv_nxt>,
 * accept a SYN carrying <isn> at once?  STRICT: never.  Returns 1 or 0. */
int twrule_accepts(const struct twrule *r, uint32_t isn, uint32_t rcv_nxt);

#endif
