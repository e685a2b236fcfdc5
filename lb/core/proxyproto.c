/* proxyproto.c - see proxyproto.h and https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt */
#include "core/proxyproto.h"

#include <stdio.h>
#include <string.h>

static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

static size_t ipv4_text(const uint8_t *a, char *out)
{
    return (size_t)sprintf(out, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
}

size_t proxyproto_addr_text(const struct proxyproto_addr *a, char out[46])
{
    if (a->family == PROXYPROTO_INET)
        return ipv4_text(a->addr, out);
    uint16_t w[8];
    for (int i = 0; i < 8; i++)
        w[i] = (uint16_t)(a->addr[2 * i] << 8 | a->addr[2 * i + 1]);
    /* The longest run of zero groups (two or more), the first one on a tie. */
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (w[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && !w[j])
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j;
    }
    if (best_len < 2)
        best = -1;
    char *p = out;
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            *p++ = ':';
            if (i + best_len == 8)
                *p++ = ':';
            i += best_len - 1;
            continue;
        }
        if (i)
            *p++ = ':';
        /* ::a.b.c.d and ::ffff:a.b.c.d carry an IPv4 address (what glibc prints). */
        if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
            p += ipv4_text(a->addr + 12, p);
            break;
        }
        p += sprintf(p, "%x", w[i]);
    }
    *p = 0;
    return (size_t)(p - out);
}

size_t proxyproto_build(int version, const struct proxyproto_addr *src,
                        const struct proxyproto_addr *dst, char out[PROXYPROTO_MAX])
{
    int fam = src->family == dst->family ? src->family : 0;
    if (fam != PROXYPROTO_INET && fam != PROXYPROTO_INET6)
        fam = 0;

    if (version == 1) {
        if (!fam)
            return (size_t)snprintf(out, PROXYPROTO_MAX, "PROXY UNKNOWN\r\n");
        char sa[46], da[46];
        proxyproto_addr_text(src, sa);
        proxyproto_addr_text(dst, da);
        return (size_t)snprintf(out, PROXYPROTO_MAX, "PROXY TCP%c %s %s %u %u\r\n",
                                fam == PROXYPROTO_INET ? '4' : '6', sa, da, src->port,
                                dst->port);
    }

    unsigned char *p = (unsigned char *)out;
    memcpy(p, v2_sig, sizeof v2_sig);
    size_t n = fam == PROXYPROTO_INET ? 4 : 16, alen = 0;
    if (fam) {
        p[12] = 0x21;                                  /* version 2, PROXY */
        p[13] = fam == PROXYPROTO_INET ? 0x11 : 0x21;  /* TCP over IPv4 / IPv6 */
        memcpy(p + 16, src->addr, n);
        memcpy(p + 16 + n, dst->addr, n);
        unsigned char *ports = p + 16 + 2 * n;         /* network order */
        ports[0] = (unsigned char)(src->port >> 8);
        ports[1] = (unsigned char)(src->port & 0xff);
        ports[2] = (unsigned char)(dst->port >> 8);
        ports[3] = (unsigned char)(dst->port & 0xff);
        alen = 2 * n + 4;
    } else {
        p[12] = 0x20; /* version 2, LOCAL: no address block */
        p[13] = 0x00;
    }
    p[14] = (unsigned char)(alen >> 8);
    p[15] = (unsigned char)(alen & 0xff);
    return 16 + alen;
}
