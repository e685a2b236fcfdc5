/* proxyproto.c - see proxyproto.h and https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt */
#include "core/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

size_t proxyproto_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
                        char out[PROXYPROTO_MAX])
{
    int fam = src->sa_family == dst->sa_family ? src->sa_family : AF_UNSPEC;
    if (fam != AF_INET && fam != AF_INET6)
        fam = AF_UNSPEC;
    const struct sockaddr_in *s4 = (const void *)src, *d4 = (const void *)dst;
    const struct sockaddr_in6 *s6 = (const void *)src, *d6 = (const void *)dst;

    if (version == 1) {
        if (fam == AF_UNSPEC)
            return (size_t)snprintf(out, PROXYPROTO_MAX, "PROXY UNKNOWN\r\n");
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        if (fam == AF_INET) {
            inet_ntop(AF_INET, &s4->sin_addr, sa, sizeof sa);
            inet_ntop(AF_INET, &d4->sin_addr, da, sizeof da);
            return (size_t)snprintf(out, PROXYPROTO_MAX, "PROXY TCP4 %s %s %u %u\r\n", sa, da,
                                    ntohs(s4->sin_port), ntohs(d4->sin_port));
        }
        inet_ntop(AF_INET6, &s6->sin6_addr, sa, sizeof sa);
        inet_ntop(AF_INET6, &d6->sin6_addr, da, sizeof da);
        return (size_t)snprintf(out, PROXYPROTO_MAX, "PROXY TCP6 %s %s %u %u\r\n", sa, da,
                                ntohs(s6->sin6_port), ntohs(d6->sin6_port));
    }

    unsigned char *p = (unsigned char *)out;
    memcpy(p, v2_sig, sizeof v2_sig);
    size_t alen = 0;
    if (fam == AF_INET) {
        p[12] = 0x21; /* version 2, PROXY */
        p[13] = 0x11; /* TCP over IPv4 */
        memcpy(p + 16, &s4->sin_addr, 4);
        memcpy(p + 20, &d4->sin_addr, 4);
        memcpy(p + 24, &s4->sin_port, 2); /* ports stay in network order */
        memcpy(p + 26, &d4->sin_port, 2);
        alen = 12;
    } else if (fam == AF_INET6) {
        p[12] = 0x21;
        p[13] = 0x21; /* TCP over IPv6 */
        memcpy(p + 16, &s6->sin6_addr, 16);
        memcpy(p + 32, &d6->sin6_addr, 16);
        memcpy(p + 48, &s6->sin6_port, 2);
        memcpy(p + 50, &d6->sin6_port, 2);
        alen = 36;
    } else {
        p[12] = 0x20; /* version 2, LOCAL: no address block */
        p[13] = 0x00;
    }
    p[14] = (unsigned char)(alen >> 8);
    p[15] = (unsigned char)(alen & 0xff);
    return 16 + alen;
}
