/* Unit tests for lb/proxyproto.c against the examples of the PROXY protocol spec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "core/proxyproto.h"

static struct sockaddr_in v4(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *ip, int port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

static void test_v1_tcp4(void **state)
{
    struct sockaddr_in s = v4("192.0.2.1", 56324), d = v4("192.0.2.2", 443);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(1, (struct sockaddr *)&s, (struct sockaddr *)&d, out);
    const char *want = "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_v1_tcp6_and_unknown(void **state)
{
    struct sockaddr_in6 s = v6("2001:db8::1", 65535), d = v6("2001:db8::2", 1);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(1, (struct sockaddr *)&s, (struct sockaddr *)&d, out);
    const char *want = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 1\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    struct sockaddr_in d4 = v4("192.0.2.2", 443);
    n = proxyproto_build(1, (struct sockaddr *)&s, (struct sockaddr *)&d4, out);
    assert_int_equal(n, strlen("PROXY UNKNOWN\r\n"));
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", n);
}

static void test_v1_longest_fits(void **state)
{
    struct sockaddr_in6 s = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(1, (struct sockaddr *)&s, (struct sockaddr *)&s, out);
    assert_int_equal(n, 104); /* the spec's worst case is 107 with the longest forms */
    assert_true(n < PROXYPROTO_MAX);
}

static void test_v2_tcp4(void **state)
{
    struct sockaddr_in s = v4("198.18.0.1", 0x1234), d = v4("198.18.0.2", 80);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(2, (struct sockaddr *)&s, (struct sockaddr *)&d, out);
    const unsigned char want[28] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
                                    0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 198,  18,   0,    1,
                                    198,  18,   0,    2,    0x12, 0x34, 0x00, 0x50};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, n);
}

static void test_v2_tcp6_length(void **state)
{
    struct sockaddr_in6 s = v6("2001:db8::1", 1), d = v6("2001:db8::2", 2);
    char out[PROXYPROTO_MAX];
    size_t n = proxyproto_build(2, (struct sockaddr *)&s, (struct sockaddr *)&d, out);
    assert_int_equal(n, 52);
    assert_int_equal((unsigned char)out[13], 0x21);
    assert_int_equal((unsigned char)out[15], 36);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),         cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_longest_fits), cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
