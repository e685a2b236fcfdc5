/* proxyproto.h - the PROXY protocol header (HAProxy's spec, v1 text and v2 binary) that
 * tells a backend the client's original address, which the proxy hides.  Pure: addresses
 * come in as bytes, no socket types. */
#ifndef TWLB_PROXYPROTO_H
#define TWLB_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROXYPROTO_MAX 108 /* v1 worst case is 107 bytes + NUL; v2 with IPv6 is 52 */

struct proxyproto_addr {
    int family;        /* PROXYPROTO_INET (4 address bytes), PROXYPROTO_INET6 (16), or
                          anything else: unknown */
    uint8_t addr[16];  /* network order */
    uint16_t port;     /* host order */
};
#define PROXYPROTO_INET 4
#define PROXYPROTO_INET6 6

/* Write the header for a connection from <src> (the client) to <dst> (the address the
 * client connected to) into <out>.  <version> 1 or 2.  Both addresses must be of one
 * family (IPv4 or IPv6); otherwise v1 writes "PROXY UNKNOWN" and v2 a LOCAL header.
 * Returns the length. */
size_t proxyproto_build(int version, const struct proxyproto_addr *src,
                        const struct proxyproto_addr *dst, char out[PROXYPROTO_MAX]);

/* <a> as text, as inet_ntop() writes it (IPv6 per RFC 5952: lower case, the longest run
 * of two or more zero groups as "::", an embedded IPv4 address dotted).  Returns the
 * length; <out> holds at least 46 bytes. */
size_t proxyproto_addr_text(const struct proxyproto_addr *a, char out[46]);

#endif
