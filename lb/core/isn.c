/* isn.c - see isn.h.  SipHash-2-4 as in the reference implementation by Aumasson and
 * Bernstein. */
#include "core/isn.h"

#include <string.h>

const char *isn_mode_name(enum isn_mode m)
{
    switch (m) {
    case ISN_AUTO: return "auto";
    case ISN_EXPLICIT: return "explicit";
    case ISN_KERNEL: return "kernel";
    case ISN_OFF: return "off";
    }
    return "?";
}

int isn_mode_parse(const char *s, enum isn_mode *out)
{
    for (enum isn_mode m = ISN_AUTO; m <= ISN_OFF; m++)
        if (!strcmp(s, isn_mode_name(m))) {
            *out = m;
            return 0;
        }
    return -1;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                         \
    do {                                                                                 \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                        \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                           \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                           \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                        \
    } while (0)

static uint64_t load64_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t isn_siphash24(const uint8_t key[16], const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t k0 = load64_le(key), k1 = load64_le(key + 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t full = len - (len % 8);
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load64_le(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The tuple as hashed: saddr, daddr, sport, dport (and extra words), fixed layout. */
static size_t tuple_bytes(const struct isn_tuple *t, uint8_t out[64])
{
    size_t n = t->addr_len == 16 ? 16 : 4;
    memcpy(out, t->saddr, n);
    memcpy(out + n, t->daddr, n);
    out[2 * n] = (uint8_t)(t->sport >> 8);
    out[2 * n + 1] = (uint8_t)t->sport;
    out[2 * n + 2] = (uint8_t)(t->dport >> 8);
    out[2 * n + 3] = (uint8_t)t->dport;
    return 2 * n + 4;
}

uint32_t isn_fresh(const struct isn_key *key, const struct isn_tuple *t, uint64_t now_ns)
{
    uint8_t buf[64];
    size_t n = tuple_bytes(t, buf);
    /* RFC 6528: ISN = M + F(4-tuple, secret), M a clock; 64 ns per tick as Linux. */
    return (uint32_t)isn_siphash24(key->k, buf, n) + (uint32_t)(now_ns / 64);
}

/* [65537, 2^30): far enough above rcv_nxt that the backend's window of old segments is
 * passed (65537 is the kernel's own step when it reuses TIME_WAIT), and far enough
 * below 2^31 that the answer stays "after" whatever the backend's view of rcv_nxt. */
#define REUSE_MIN 65537u
#define REUSE_SPAN ((1u << 30) - REUSE_MIN)

uint32_t isn_reuse(const struct isn_key *key, const struct isn_tuple *t, uint32_t rcv_nxt,
                   uint64_t now_ns)
{
    uint8_t buf[64];
    size_t n = tuple_bytes(t, buf);
    for (int i = 0; i < 4; i++)
        buf[n + i] = (uint8_t)(rcv_nxt >> (8 * i));
    for (int i = 0; i < 8; i++)
        buf[n + 4 + i] = (uint8_t)(now_ns >> (8 * i));
    uint64_t h = isn_siphash24(key->k, buf, n + 12);
    return rcv_nxt + REUSE_MIN + (uint32_t)(h % REUSE_SPAN);
}

uint32_t isn_kernel_advance(uint64_t dt_ns) { return (uint32_t)(dt_ns / 64); }

uint64_t isn_kernel_skew_limit_ns(uint32_t margin)
{
    uint64_t half = (uint64_t)margin * 64 / 2;
    return half < 50000000ull ? half : 50000000ull;
}

uint32_t isn_kernel_margin_of_us(uint32_t us)
{
    uint64_t seq = ((uint64_t)us * 125 + 7) / 8; /* 1000 / 64 per us, rounded up */
    return seq > 0x40000000u ? 0x40000000u : (uint32_t)seq;
}

/* The window [lo, hi] of d = advance - (bytes + 2) that isn_kernel_reuse_safe()
 * accepts. */
static void kernel_window(uint32_t margin, uint32_t *lo, uint32_t *hi)
{
    if (margin > 0x40000000u)
        margin = 0x40000000u;
    uint32_t upper = margin > ISN_KERNEL_UPPER_GUARD ? margin : ISN_KERNEL_UPPER_GUARD;
    *lo = margin ? margin : 1;
    *hi = 0x80000000u - upper;
}

int isn_kernel_reuse_safe(uint64_t old_syn_real_ns, uint64_t old_syn_mono_ns,
                          uint64_t now_real_ns, uint64_t now_mono_ns, uint64_t bytes,
                          uint32_t margin)
{
    if (now_real_ns < old_syn_real_ns || now_mono_ns < old_syn_mono_ns)
        return 0;
    uint64_t dreal = now_real_ns - old_syn_real_ns, dmono = now_mono_ns - old_syn_mono_ns;
    uint64_t skew = dreal > dmono ? dreal - dmono : dmono - dreal;
    if (skew > isn_kernel_skew_limit_ns(margin)) /* the wall clock was stepped */
        return 0;
    /* new ISN - rcv_nxt = advance - (bytes + 2), modulo 2^32 */
    uint32_t d = isn_kernel_advance(dreal) - (uint32_t)(bytes + 2), lo, hi;
    kernel_window(margin, &lo, &hi);
    return d >= lo && d <= hi;
}

uint64_t isn_kernel_safe_at_ns(uint64_t dt_ns, uint64_t bytes, uint32_t margin)
{
    uint32_t lo, hi;
    kernel_window(margin, &lo, &hi);
    uint64_t ticks = dt_ns / 64;
    uint32_t d = (uint32_t)ticks - (uint32_t)(bytes + 2);
    if (d >= lo && d <= hi)
        return dt_ns;
    /* ticks until d reaches lo again, modulo 2^32 (d < lo, or d past the window) */
    uint32_t wait = lo - d;
    return (ticks + wait) * 64;
}
