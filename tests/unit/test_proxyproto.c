/* Unit tests for lb/proxyproto.c against the examples of the PROXY protocol spec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "core/proxyproto.h"

/* The test may use the socket library to make its inputs; the code under test may not. */
static struct proxyproto_addr v4(const char *ip, int port)
{
    struct proxyproto_addr a = {.family = PROXYPROTO_INET, .port = (uint16_t)port};
    assert_int_equal(inet_pton(AF_INET, ip, a.addr), 1);
    return a;
}

static struct proxyproto_addr v6(const char *ip, int port)
{
    struct proxyproto_addr a = {.family = PROXYPROTO_INET6, .port = (uint16_t)port};
    assert_int_equal(inet_pton(AF_INET6, ip, a.addr), 1);
    return a;
}

static void test_v1_tcp4(void **state)
{
    struct proxyproto_addr s = v4("192.0.2.1", 56324), d = v4("192.0.2.2", 443);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(1, &s, &d, out);
    const char *want = "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_v1_tcp6_and_unknown(void **state)
{
    struct proxyproto_addr s = v6("2001:db8::1", 65535), d = v6("2001:db8::2", 1);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(1, &s, &d, out);
    const char *want = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 1\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    struct proxyproto_addr d4 = v4("192.0.2.2", 443);
    n = proxyproto_build(1, &s, &d4, out);
    assert_int_equal(n, strlen("PROXY UNKNOWN\r\n"));
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", n);
}

static void test_v1_longest_fits(void **state)
{
    struct proxyproto_addr s = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(1, &s, &s, out);
    assert_int_equal(n, 104); /* the spec's worst case is 107 with the longest forms */
    assert_true(n < PROXYPROTO_MAX);
}

static void test_v2_tcp4(void **state)
{
    struct proxyproto_addr s = v4("198.18.0.1", 0x1234), d = v4("198.18.0.2", 80);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(2, &s, &d, out);
    const unsigned char want[28] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
                                    0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 198,  18,   0,    1,
                                    198,  18,   0,    2,    0x12, 0x34, 0x00, 0x50};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, n);
}

static void test_v2_tcp6_length(void **state)
{
    struct proxyproto_addr s = v6("2001:db8::1", 1), d = v6("2001:db8::2", 2);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(2, &s, &d, out);
    assert_int_equal(n, 52);
    assert_int_equal((unsigned char)out[13], 0x21);
    assert_int_equal((unsigned char)out[15], 36);
}

/* The text form is inet_ntop's, for the edge cases of RFC 5952 and for random addresses
 * with many zero groups (fixed seed). */
static void check_text(const uint8_t b[16])
{
    struct proxyproto_addr a = {.family = PROXYPROTO_INET6};
    memcpy(a.addr, b, 16);
    char want[INET6_ADDRSTRLEN], got[46];
    assert_non_null(inet_ntop(AF_INET6, b, want, sizeof want));
    size_t n = proxyproto_addr_text(&a, got);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
}

static void test_ipv6_text_is_inet_ntop(void **state)
{
    const char *edges[] = {"::", "::1", "1::", "::ffff:1.2.3.4", "::1.2.3.4", "1:0:0:2::3",
                           "1::2:0:0:3", "0:1::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7::",
                           "2001:db8:0:0:1:0:0:1", "fe80::1:0:0:0", "::ffff:0:1.2.3.4"};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        uint8_t b[16];
        assert_int_equal(inet_pton(AF_INET6, edges[i], b), 1);
        check_text(b);
    }
    uint32_t x = 12345;
    for (int k = 0; k < 20000; k++) {
        uint8_t b[16];
        for (int g = 0; g < 8; g++) {
            x = x * 1103515245u + 12345u;
            int zero = (x >> 16) % 3 == 0; /* a third of the groups are zero */
            b[2 * g] = zero ? 0 : (uint8_t)(x >> 8);
            b[2 * g + 1] = zero ? 0 : (uint8_t)(x >> 24);
        }
        check_text(b);
    }
    struct proxyproto_addr a4 = v4("198.18.0.255", 0);
    char t[46];
    assert_int_equal(proxyproto_addr_text(&a4, t), strlen("198.18.0.255"));
    assert_string_equal(t, "198.18.0.255");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),         cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_longest_fits), cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6_length), cmocka_unit_test(test_ipv6_text_is_inet_ntop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
