/* cidr.c - see cidr.h.  The text forms are read here, not by inet_pton (the core has no
 * socket headers); tests/unit/test_cidr.c checks this reader against inet_pton. */
#include "core/cidr.h"

#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four decimal parts 0..255 without leading zeros, and nothing else of <s>[0..n). */
static int parse_v4(const char *s, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return -1;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(s[i]) && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0') ||
            (i < n && is_digit(s[i])))
            return -1;
        out[part] = (uint8_t)v;
    }
    return i == n ? 0 : -1;
}

/* Groups of 1 to 4 hex digits separated by ':', one "::" standing for one or more zero
 * groups, optionally ending in a dotted IPv4 address (the last 32 bits). */
static int parse_v6(const char *s, size_t n, uint8_t out[16])
{
    uint8_t b[16] = {0};
    size_t nb = 0, i = 0;
    long gap = -1; /* where "::" stands, in bytes */
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        gap = 0;
        i = 2;
    }
    while (i < n) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && hex_value(s[i]) >= 0) {
            if (i - start == 4)
                return -1;
            v = v << 4 | (unsigned)hex_value(s[i++]);
        }
        if (i < n && s[i] == '.') { /* the dotted tail: the last thing there is */
            if (nb + 4 > 16 || parse_v4(s + start, n - start, b + nb) < 0)
                return -1;
            nb += 4;
            break;
        }
        if (i == start || nb + 2 > 16)
            return -1;
        b[nb++] = (uint8_t)(v >> 8);
        b[nb++] = (uint8_t)v;
        if (i == n)
            break;
        if (s[i++] != ':' || i == n)
            return -1; /* not a separator, or a lone ':' at the end */
        if (s[i] == ':') {
            if (gap >= 0)
                return -1;
            gap = (long)nb;
            i++;
        }
    }
    if (gap >= 0) {
        if (nb == 16)
            return -1; /* "::" must stand for at least one group */
        size_t tail = nb - (size_t)gap;
        memmove(b + 16 - tail, b + gap, tail);
        memset(b + gap, 0, 16 - nb);
    } else if (nb != 16) {
        return -1;
    }
    memcpy(out, b, 16);
    return 0;
}

/* Clear the bits of <addr> past <len>; returns 1 when any was set. */
static int mask(uint8_t *addr, size_t bytes, unsigned len)
{
    int had = 0;
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = len >= 8 * (i + 1) ? 8 : len > 8 * i ? len - 8 * (unsigned)i : 0;
        uint8_t m = (uint8_t)(keep ? 0xff << (8 - keep) : 0);
        had |= (addr[i] & ~m) != 0;
        addr[i] &= m;
    }
    return had;
}

int cidr_parse(const char *s, struct cidr *out, const char **why)
{
    static const char *syntax = "is not an IPv4 or IPv6 prefix (expected ADDRESS or "
                                "ADDRESS/LENGTH, e.g. 198.18.0.0/15 or ::1/128)";
    struct cidr c;
    memset(&c, 0, sizeof c);
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (parse_v4(s, alen, c.addr) == 0) {
        c.family = CIDR_INET;
        c.len = 32;
    } else if (parse_v6(s, alen, c.addr) == 0) {
        c.family = CIDR_INET6;
        c.len = 128;
    } else {
        *why = syntax;
        return -1;
    }
    if (slash) {
        const char *d = slash + 1;
        size_t nd = strlen(d);
        unsigned len = 0;
        for (size_t i = 0; i < nd && i < 4; i++)
            len = is_digit(d[i]) ? len * 10 + (unsigned)(d[i] - '0') : 1000;
        if (nd == 0 || nd > 3 || len >= 1000 || (nd > 1 && d[0] == '0')) {
            *why = syntax;
            return -1;
        }
        if (len > c.len) {
            *why = c.family == CIDR_INET ? "has a prefix length above 32 (the most for IPv4)"
                                         : "has a prefix length above 128 (the most for IPv6)";
            return -1;
        }
        c.len = len;
    }
    /* ::ffff:a.b.c.d/96+n is the IPv4 prefix a.b.c.d/n: IPv4 clients are matched as
     * IPv4, so only that form of it can ever match one. */
    if (c.family == CIDR_INET6 && c.len >= 96 && !memcmp(c.addr, v4_mapped, 12)) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = CIDR_INET;
        c.len -= 96;
    }
    int host_bits = mask(c.addr, c.family == CIDR_INET ? 4 : 16, c.len);
    *out = c;
    return host_bits ? CIDR_HOST_BITS : 0;
}

/* The address as it is matched: an IPv4-mapped IPv6 address is IPv4.  Returns its
 * family, or 0 for one that is neither. */
static int normalize(int family, const uint8_t *addr, uint8_t out[16])
{
    if (family == CIDR_INET) {
        memcpy(out, addr, 4);
        return CIDR_INET;
    }
    if (family != CIDR_INET6)
        return 0;
    if (!memcmp(addr, v4_mapped, 12)) {
        memcpy(out, addr + 12, 4);
        return CIDR_INET;
    }
    memcpy(out, addr, 16);
    return CIDR_INET6;
}

static int contains_normal(const struct cidr *c, int family, const uint8_t *a)
{
    if (family != c->family)
        return 0;
    unsigned full = c->len / 8, rest = c->len % 8;
    if (memcmp(a, c->addr, full))
        return 0;
    return !rest || ((a[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

int cidr_contains(const struct cidr *c, int family, const uint8_t *addr)
{
    uint8_t a[16];
    int f = normalize(family, addr, a);
    return f && contains_normal(c, f, a);
}

long cidr_find(const struct cidr *list, size_t n, int family, const uint8_t *addr)
{
    uint8_t a[16];
    int f = normalize(family, addr, a);
    for (size_t i = 0; f && i < n; i++)
        if (contains_normal(&list[i], f, a))
            return (long)i;
    return -1;
}

int cidr_acl_refuses(const struct cidr *allow, size_t n_allow, const struct cidr *deny,
                     size_t n_deny, int family, const uint8_t *addr)
{
    if (cidr_find(deny, n_deny, family, addr) >= 0)
        return 1;
    return n_allow > 0 && cidr_find(allow, n_allow, family, addr) < 0;
}

void cidr_client_key(int family, const uint8_t *addr, uint8_t out[16])
{
    uint8_t a[16];
    memset(out, 0, 16);
    int f = normalize(family, addr, a);
    if (f == CIDR_INET) {
        memcpy(out, v4_mapped, 12);
        memcpy(out + 12, a, 4);
    } else if (f == CIDR_INET6) {
        memcpy(out, a, 16);
    }
}
