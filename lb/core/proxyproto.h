/* proxyproto.h - the PROXY protocol header (HAProxy's spec, v1 text and v2 binary) that
 * tells a backend the client's original address, which the proxy hides.  Pure. */
#ifndef TWLB_PROXYPROTO_H
#define TWLB_PROXYPROTO_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXYPROTO_MAX 108 /* v1 worst case is 107 bytes + NUL; v2 with IPv6 is 52 */

/* Write the header for a connection from <src> (the client) to <dst> (the address the
 * client connected to) into <out>.  <version> 1 or 2.  Both addresses must be of one
 * family (IPv4 or IPv6); otherwise v1 writes "PROXY UNKNOWN" and v2 a LOCAL header.
 * Returns the length. */
size_t proxyproto_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
                        char out[PROXYPROTO_MAX]);

#endif
