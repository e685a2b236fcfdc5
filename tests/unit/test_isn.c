/* Unit tests for lb/isn.c and lb/twrule.c: SipHash known answers, the reuse ISN range
 * with its wrap-around cases, and the kernel ISN clock prediction against the measured
 * formula (kernel-facts 3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/isn.h"
#include "core/twrule.h"

#define NS 1000000000ull

static void test_siphash_reference_vectors(void **state)
{
    /* From the SipHash paper's reference implementation: key 00..0f, message 00..len-1. */
    static const uint64_t want[] = {
        [0] = 0x726fdb47dd0e0e31ull, [1] = 0x74f839c593dc67fdull,
        [7] = 0xab0200f58b01d137ull, [8] = 0x93f5f5799a932462ull,
        [15] = 0xa129ca6149be45e5ull, [63] = 0x958a324ceb064572ull,
    };
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    int lens[] = {0, 1, 7, 8, 15, 63};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        assert_true(isn_siphash24(key, msg, (size_t)lens[i]) == want[lens[i]]);
}

static void test_seq_after(void **state)
{
    assert_false(twrule_seq_after(5, 5));
    assert_true(twrule_seq_after(6, 5));
    assert_true(twrule_seq_after(5 + 0x80000000u, 5));   /* exactly 2^31 ahead: after */
    assert_false(twrule_seq_after(5 + 0x80000001u, 5));  /* one more: before */
    assert_true(twrule_seq_after(2, 0xfffffffeu));       /* across the wrap */
    assert_false(twrule_seq_after(0xfffffffeu, 2));
    struct twrule bsd = {TWRULE_BSD, 60000}, strict = {TWRULE_STRICT, 240000};
    assert_true(twrule_accepts(&bsd, 100, 99));
    assert_false(twrule_accepts(&bsd, 98, 99));          /* rcv_nxt - 1: the ~69 s case */
    assert_false(twrule_accepts(&strict, 1u << 20, 99));
}

static void test_reuse_isn_range_and_wrap(void **state)
{
    struct isn_key k = {{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6}};
    struct isn_tuple t = {.addr_len = 4, .saddr = {198, 18, 0, 1}, .daddr = {198, 18, 0, 2},
                          .sport = 30000, .dport = 9000};
    uint32_t rcvs[] = {0, 1, 0x7fffffffu, 0x80000000u, 0xfffeffffu, 0xffffffffu, 12345};
    struct twrule bsd = {TWRULE_BSD, 60000};
    for (size_t i = 0; i < sizeof rcvs / sizeof rcvs[0]; i++)
        for (uint64_t now = 0; now < 2000; now++) {
            uint32_t isn = isn_reuse(&k, &t, rcvs[i], now * 7919);
            uint32_t d = isn - rcvs[i];
            assert_true(d >= 65537 && d < (1u << 30));
            assert_true(isn != rcvs[i] - 1);
            assert_true(twrule_accepts(&bsd, isn, rcvs[i]));
        }
    /* keyed: another secret gives another ISN; the same inputs give the same one */
    struct isn_key k2 = k;
    k2.k[0] ^= 1;
    assert_true(isn_reuse(&k, &t, 5, 1) == isn_reuse(&k, &t, 5, 1));
    assert_true(isn_reuse(&k, &t, 5, 1) != isn_reuse(&k2, &t, 5, 1));
    /* RFC 6528: the fresh ISN moves with the clock, 64 ns per step */
    assert_int_equal(isn_fresh(&k, &t, 64 * 1000) - isn_fresh(&k, &t, 0), 1000);
}

static void test_kernel_clock_prediction(void **state)
{
    uint64_t t0 = 1700000000ull * NS, m0 = 1000 * NS;
    uint32_t margin = ISN_KERNEL_MARGIN;
    /* 15.625 M per second, wrapping every 2^32 * 64 ns = 274.88 s */
    assert_int_equal(isn_kernel_advance(NS), 15625000);
    assert_int_equal(isn_kernel_advance(274877906944ull), 0);
    /* idle 1 s, nothing sent: safe */
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + 2 * NS, m0 + 2 * NS, 0, margin));
    /* 32 MiB uploaded, reconnect 1 s later: the clock is behind (33.5 M > 15.6 M) */
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + NS, m0 + NS, 32u << 20, margin));
    /* ... but 4 s later it is ahead again */
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + 4 * NS, m0 + 4 * NS, 32u << 20, margin));
    /* 150 s idle: (age mod 274.9 s) in (137.4, 274.9): before (measured) */
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + 150 * NS, m0 + 150 * NS, 0, margin));
    /* 300 s idle: wrapped once, after again */
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + 300 * NS, m0 + 300 * NS, 0, margin));
    /* right after the SYN: within the margin (4.096 ms), refused; just past it, safe */
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + NS / 500, m0 + NS / 500, 0, margin));
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + NS / 200, m0 + NS / 200, 0, margin));
    /* the wall clock stepped back, or jumped away from the monotonic clock */
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 - NS, m0 + 2 * NS, 0, margin));
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + 10 * NS, m0 + 2 * NS, 0, margin));
}

/* The margin and what it bounds (docs/reuse.md, "The kernel-mode margin"). */
static void test_kernel_margin_bounds(void **state)
{
    uint64_t t0 = 1700000000ull * NS, m0 = 1000 * NS;
    /* reuse.kernel_margin_us in sequence numbers: 15.625 per us, rounded up, <= 2^30 */
    assert_int_equal(ISN_KERNEL_MARGIN, 64000);
    assert_int_equal(isn_kernel_margin_of_us(ISN_KERNEL_MARGIN_US), ISN_KERNEL_MARGIN);
    assert_int_equal(isn_kernel_margin_of_us(1), 16);
    assert_int_equal(isn_kernel_margin_of_us(10000000), 156250000);
    assert_int_equal(isn_kernel_margin_of_us(UINT32_MAX), 1u << 30);

    /* lower edge: d = margin is the first safe value (advance = d + bytes + 2) */
    uint32_t m = ISN_KERNEL_MARGIN;
    uint64_t ns = (uint64_t)(m + 2 + 1000) * 64;
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + ns, m0 + ns, 1000, m));
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + ns - 64, m0 + ns - 64, 1000, m));
    /* upper edge: at least ISN_KERNEL_UPPER_GUARD (2^24) below 2^31 whatever the margin */
    ns = (uint64_t)(0x80000000u - ISN_KERNEL_UPPER_GUARD + 2) * 64;
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + ns, m0 + ns, 0, m));
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + ns + 64, m0 + ns + 64, 0, m));
    /* ... and the margin itself when it is larger */
    uint32_t big = 1u << 26;
    ns = (uint64_t)(0x80000000u - big + 2) * 64;
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + ns, m0 + ns, 0, big));
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + ns + 64, m0 + ns + 64, 0, big));

    /* the step detector: half the margin, at most 50 ms (the bound before it was tied
     * to the margin) */
    assert_int_equal(isn_kernel_skew_limit_ns(ISN_KERNEL_MARGIN), 2048000);
    assert_int_equal(isn_kernel_skew_limit_ns(1u << 24), 50000000);
    assert_int_equal(isn_kernel_skew_limit_ns(1562500), 50000000); /* 100 ms: 50 ms */
    uint64_t lim = isn_kernel_skew_limit_ns(m), dt = NS;
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + dt + lim, m0 + dt, 0, m));
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + dt + lim + 1, m0 + dt, 0, m));
    assert_true(isn_kernel_reuse_safe(t0, m0, t0 + dt - lim, m0 + dt, 0, m));
    assert_false(isn_kernel_reuse_safe(t0, m0, t0 + dt - lim - 1, m0 + dt, 0, m));
    /* for every margin, a step the detector lets through (landing between a clock
     * reading and connect(), the only place it can shift a prediction) uses at most
     * half of the margin */
    for (uint32_t mm = 16; mm <= (1u << 30); mm *= 2)
        assert_true(isn_kernel_skew_limit_ns(mm) * 2 <= (uint64_t)mm * 64);
}

/* isn_kernel_safe_at_ns is the inverse of isn_kernel_reuse_safe with both edges: the
 * first 64 ns tick at which it says yes, for margins from 16 sequence numbers (1 us) to
 * 2^30, whatever the bytes and the age (wrap-arounds included). */
static void test_kernel_safe_at_is_the_inverse(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    const uint64_t r0 = 1700000000ull * NS, m0 = 1000;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t bytes = x % (1ull << 33), dt = (x >> 20) % (600ull * NS);
        uint32_t margin = 16u << ((x >> 3) % 27); /* 16 .. 2^30 */
        if (i % 4 == 0)
            bytes = x % 4096; /* small requests: the margin alone decides */
        uint64_t at = isn_kernel_safe_at_ns(dt, bytes, margin);
        assert_true(at >= dt);
        assert_true(isn_kernel_reuse_safe(r0, m0, r0 + at, m0 + at, bytes, margin));
        if (at > dt && at - 64 >= dt)
            assert_false(isn_kernel_reuse_safe(r0, m0, r0 + at - 64, m0 + at - 64, bytes, margin));
    }
    /* the default margin, 100 bytes, nothing waited yet: safe (102 + 64,000) x 64 ns on */
    assert_int_equal(isn_kernel_safe_at_ns(0, 100, ISN_KERNEL_MARGIN), (102 + 64000) * 64);
    /* near 2^31 the window ends ISN_KERNEL_UPPER_GUARD early and comes back past 2^32 */
    uint64_t past = (uint64_t)(0x80000000u - ISN_KERNEL_UPPER_GUARD + 2 + 1) * 64;
    assert_int_equal(isn_kernel_safe_at_ns(past, 0, ISN_KERNEL_MARGIN),
                     ((1ull << 32) + 2 + ISN_KERNEL_MARGIN) * 64);
}

static void test_names(void **state)
{
    enum isn_mode m;
    assert_int_equal(isn_mode_parse("explicit", &m), 0);
    assert_int_equal(m, ISN_EXPLICIT);
    assert_int_equal(isn_mode_parse("Explicit", &m), -1);
    enum twrule_kind k;
    assert_int_equal(twrule_kind_parse("timestamps", &k), 0);
    assert_int_equal(k, TWRULE_TIMESTAMPS);
    assert_string_equal(twrule_kind_name(TWRULE_STRICT), "strict");
}

/* isn_kernel_safe_at_ns names the first 64 ns tick at which isn_kernel_reuse_safe says yes. */
static void test_kernel_safe_at(void **state)
{
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t bytes = x % (1ull << 33), dt = (x >> 20) % (600ull * 1000000000ull);
        uint32_t margin = 1u << (16 + (unsigned)(x % 10));
        uint64_t at = isn_kernel_safe_at_ns(dt, bytes, margin);
        assert_true(at >= dt);
        const uint64_t r0 = 1700000000ull * 1000000000ull, m0 = 1000;
        assert_true(isn_kernel_reuse_safe(r0, m0, r0 + at, m0 + at, bytes, margin));
        if (at > dt && at - 64 >= dt)
            assert_false(isn_kernel_reuse_safe(r0, m0, r0 + at - 64, m0 + at - 64, bytes, margin));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_safe_at),
        cmocka_unit_test(test_siphash_reference_vectors),
        cmocka_unit_test(test_seq_after),
        cmocka_unit_test(test_reuse_isn_range_and_wrap),
        cmocka_unit_test(test_kernel_clock_prediction),
        cmocka_unit_test(test_kernel_margin_bounds),
        cmocka_unit_test(test_kernel_safe_at_is_the_inverse),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
