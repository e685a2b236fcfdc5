/* portrange.h - source port ranges against the kernel's own: which of twlb's explicitly
 * bound ports (pools[].source_ports) the kernel may also hand out as ephemeral ports
 * (net.ipv4.ip_local_port_range) and has not set aside (net.ipv4.ip_local_reserved_ports).
 * A port in both is not unsafe, only contended: another socket of this host may hold it
 * when twlb binds it (EADDRINUSE, quarantined), so `twlb --check` warns about it.  Pure:
 * the texts of the two sysctls are passed in.  Return convention: 0 / -1, or a count. */
#ifndef TWLB_PORTRANGE_H
#define TWLB_PORTRANGE_H

#include <stdint.h>

struct portrange {
    uint32_t lo, hi; /* inclusive, 0..65535, lo <= hi */
};

/* One bit per port, for ip_local_reserved_ports. */
#define PORTRANGE_BITMAP_BYTES (65536 / 8)

/* "LO HI" as /proc/sys/net/ipv4/ip_local_port_range reads (blanks between, a newline
 * after them allowed): 0, or -1 for anything else or LO > HI. */
int portrange_parse_pair(const char *s, struct portrange *out);

/* "A-B,C,..." as /proc/sys/net/ipv4/ip_local_reserved_ports reads ("" or a lone newline:
 * none) into <bits> (cleared first): 0, or -1 for malformed text (<bits> then undefined). */
int portrange_parse_reserved(const char *s, uint8_t bits[PORTRANGE_BITMAP_BYTES]);

/* The ports of <r> that are in <eph> and not set in <reserved> (NULL: none reserved):
 * their count, and with a count above 0 the lowest and highest of them. */
uint32_t portrange_exposed(struct portrange r, struct portrange eph, const uint8_t *reserved,
                           uint32_t *first, uint32_t *last);

#endif
