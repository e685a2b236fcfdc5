/* portrange.c - see portrange.h. */
#include "core/portrange.h"

#include <string.h>

/* A decimal port at *s (no sign), advancing *s: 0, or -1 without a digit or above 65535. */
static int port_at(const char **s, uint32_t *out)
{
    const char *p = *s;
    uint32_t v = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint32_t)(*p - '0');
        if (v > 65535)
            return -1;
    }
    *s = p;
    *out = v;
    return 0;
}

static const char *skip_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Only blanks and at most one newline left. */
static int at_end(const char *s)
{
    s = skip_blanks(s);
    if (*s == '\n')
        s++;
    return *s == 0;
}

int portrange_parse_pair(const char *s, struct portrange *out)
{
    struct portrange r;
    s = skip_blanks(s);
    if (port_at(&s, &r.lo) < 0 || (*s != ' ' && *s != '\t'))
        return -1;
    s = skip_blanks(s);
    if (port_at(&s, &r.hi) < 0 || !at_end(s) || r.lo > r.hi)
        return -1;
    *out = r;
    return 0;
}

int portrange_parse_reserved(const char *s, uint8_t bits[PORTRANGE_BITMAP_BYTES])
{
    memset(bits, 0, PORTRANGE_BITMAP_BYTES);
    if (at_end(s))
        return 0;
    for (;;) {
        uint32_t lo, hi;
        if (port_at(&s, &lo) < 0)
            return -1;
        hi = lo;
        if (*s == '-') {
            s++;
            if (port_at(&s, &hi) < 0 || hi < lo)
                return -1;
        }
        for (uint32_t p = lo; p <= hi; p++)
            bits[p / 8] |= (uint8_t)(1u << (p % 8));
        if (*s != ',')
            return at_end(s) ? 0 : -1;
        s++;
    }
}

uint32_t portrange_exposed(struct portrange r, struct portrange eph, const uint8_t *reserved,
                           uint32_t *first, uint32_t *last)
{
    uint32_t lo = r.lo > eph.lo ? r.lo : eph.lo, hi = r.hi < eph.hi ? r.hi : eph.hi;
    uint32_t n = 0;
    for (uint32_t p = lo; p <= hi && lo <= hi; p++) {
        if (reserved && (reserved[p / 8] >> (p % 8)) & 1)
            continue;
        if (n++ == 0)
            *first = p;
        *last = p;
    }
    return n;
}
