/* Unit tests for lb/core/cidr.c: every prefix edge (/0, /1, /31, /32, /127, /128),
 * bits past the length, IPv4-mapped addresses and prefixes, the ACL rule (deny wins), the
 * text reader against the C library's inet_pton, and matching against a bit-by-bit
 * reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"

/* The test may use the socket library to make its inputs; the code under test may not. */
static void addr4(const char *ip, uint8_t out[4])
{
    assert_int_equal(inet_pton(AF_INET, ip, out), 1);
}

static void addr6(const char *ip, uint8_t out[16])
{
    assert_int_equal(inet_pton(AF_INET6, ip, out), 1);
}

static struct cidr parsed(const char *s)
{
    struct cidr c;
    const char *why = NULL;
    int r = cidr_parse(s, &c, &why);
    if (r != 0)
        fail_msg("\"%s\" does not parse (%d): %s", s, r, why ? why : "-");
    return c;
}

/* Address <ip> (either family) in prefix <prefix>? */
static int in(const char *prefix, const char *ip)
{
    struct cidr c = parsed(prefix);
    uint8_t a[16];
    if (strchr(ip, ':')) {
        addr6(ip, a);
        return cidr_contains(&c, AF_INET6, a);
    }
    addr4(ip, a);
    return cidr_contains(&c, AF_INET, a);
}

static void expect_prefix(const char *s, int family, const char *net, unsigned len)
{
    struct cidr c = parsed(s);
    uint8_t want[16] = {0};
    if (family == CIDR_INET)
        addr4(net, want);
    else
        addr6(net, want);
    assert_int_equal(c.family, family);
    assert_int_equal(c.len, len);
    assert_memory_equal(c.addr, want, 16);
}

static void test_families_match_the_kernel(void **state)
{
    assert_int_equal(CIDR_INET, AF_INET);
    assert_int_equal(CIDR_INET6, AF_INET6);
}

static void test_parse_edges(void **state)
{
    expect_prefix("0.0.0.0/0", CIDR_INET, "0.0.0.0", 0);
    expect_prefix("128.0.0.0/1", CIDR_INET, "128.0.0.0", 1);
    expect_prefix("198.18.0.0/15", CIDR_INET, "198.18.0.0", 15);
    expect_prefix("10.0.0.2/31", CIDR_INET, "10.0.0.2", 31);
    expect_prefix("10.0.0.1/32", CIDR_INET, "10.0.0.1", 32);
    expect_prefix("10.0.0.1", CIDR_INET, "10.0.0.1", 32); /* bare: one host */
    expect_prefix("255.255.255.255", CIDR_INET, "255.255.255.255", 32);
    expect_prefix("::/0", CIDR_INET6, "::", 0);
    expect_prefix("8000::/1", CIDR_INET6, "8000::", 1);
    expect_prefix("::/127", CIDR_INET6, "::", 127);
    expect_prefix("::1/128", CIDR_INET6, "::1", 128);
    expect_prefix("::1", CIDR_INET6, "::1", 128);
    expect_prefix("FD00:AB::/32", CIDR_INET6, "fd00:ab::", 32);
    expect_prefix("1:2:3:4:5:6:7:8", CIDR_INET6, "1:2:3:4:5:6:7:8", 128);
    expect_prefix("1:2:3:4:5:6:7::", CIDR_INET6, "1:2:3:4:5:6:7:0", 128);
    expect_prefix("::2:3:4:5:6:7:8", CIDR_INET6, "0:2:3:4:5:6:7:8", 128);
    expect_prefix("64:ff9b::198.18.0.1", CIDR_INET6, "64:ff9b::c612:1", 128);
    /* IPv4-mapped: the IPv4 prefix it denotes, since IPv4 clients are matched as IPv4. */
    expect_prefix("::ffff:198.18.0.0/111", CIDR_INET, "198.18.0.0", 15);
    expect_prefix("::ffff:1.2.3.4", CIDR_INET, "1.2.3.4", 32);
    expect_prefix("::FFFF:c612:0/112", CIDR_INET, "198.18.0.0", 16);
    expect_prefix("::ffff:0:0/96", CIDR_INET, "0.0.0.0", 0);
    /* Shorter than /96 it is an IPv6 prefix (that holds the mapped range and more). */
    expect_prefix("::fffe:0:0/95", CIDR_INET6, "::fffe:0:0", 95);
}

static void test_bits_past_the_length(void **state)
{
    static const struct {
        const char *text, *net;
        int family;
        unsigned len;
    } cases[] = {
        {"198.18.0.1/15", "198.18.0.0", CIDR_INET, 15},
        {"198.19.0.0/15", "198.18.0.0", CIDR_INET, 15},
        {"10.0.0.1/31", "10.0.0.0", CIDR_INET, 31},
        {"1.0.0.0/0", "0.0.0.0", CIDR_INET, 0},
        {"128.0.0.0/0", "0.0.0.0", CIDR_INET, 0},
        {"192.0.0.0/1", "128.0.0.0", CIDR_INET, 1},
        {"::1/127", "::", CIDR_INET6, 127},
        {"::1/0", "::", CIDR_INET6, 0},
        {"c000::/1", "8000::", CIDR_INET6, 1},
        {"::ffff:1.2.3.4/120", "1.2.3.0", CIDR_INET, 24},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cidr c;
        const char *why = NULL;
        if (cidr_parse(cases[i].text, &c, &why) != CIDR_HOST_BITS)
            fail_msg("%s: bits past the length not reported", cases[i].text);
        uint8_t want[16] = {0};
        if (cases[i].family == CIDR_INET)
            addr4(cases[i].net, want);
        else
            addr6(cases[i].net, want);
        assert_int_equal(c.family, cases[i].family);
        assert_int_equal(c.len, cases[i].len);
        assert_memory_equal(c.addr, want, 16); /* the prefix it probably meant */
    }
}

static void test_bad_text(void **state)
{
    static const char *const bad[] = {
        "", "/", "/8", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "1.2.3.256", "1.2.3.4/",
        "1.2.3.4/033", "1.2.3.4/-1", "1.2.3.4/+8", "1.2.3.4/ 8", " 1.2.3.4", "1.2.3.4 ",
        "1.2.3.4/8/8", "1.2.3.4/1x", "1.2.3.4/1000", "1.2.3.-4", "1..2.3", ":::", "1::2::3",
        "12345::", "g::", ":1::", "1::2:", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7", "::1.2.3", "::1.2.3.4.5", "1.2.3.4::",
        "::1.2.3.4:5", "::ffff:01.2.3.4", "localhost", "[::1]", "::1/128 ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cidr c;
        const char *why = NULL;
        if (cidr_parse(bad[i], &c, &why) != -1)
            fail_msg("\"%s\" parses", bad[i]);
        assert_non_null(strstr(why, "is not an IPv4 or IPv6 prefix"));
    }
    const char *why = NULL;
    struct cidr c;
    assert_int_equal(cidr_parse("1.2.3.4/33", &c, &why), -1);
    assert_string_equal(why, "has a prefix length above 32 (the most for IPv4)");
    assert_int_equal(cidr_parse("::/129", &c, &why), -1);
    assert_string_equal(why, "has a prefix length above 128 (the most for IPv6)");
}

/* The reader agrees with glibc's inet_pton on bare addresses: random strings over each
 * family's alphabet, and real addresses printed by inet_ntop. */
static void test_reader_agrees_with_inet_pton(void **state)
{
    static const char v6chars[] = "0123456789abcdefABCDEF:.:::f0";
    static const char v4chars[] = "0123456789....";
    srand(12345);
    unsigned accepted = 0;
    for (int round = 0; round < 400000; round++) {
        char s[48];
        int six = round % 2;
        size_t n = (size_t)(rand() % (six ? 24 : 17));
        for (size_t i = 0; i < n; i++)
            s[i] = six ? v6chars[rand() % (sizeof v6chars - 1)]
                       : v4chars[rand() % (sizeof v4chars - 1)];
        s[n] = 0;
        if (round % 5 == 0) { /* a real address, printed */
            uint8_t b[16];
            for (int i = 0; i < 16; i++)
                b[i] = (uint8_t)(rand() % 3 ? 0 : rand());
            inet_ntop(six ? AF_INET6 : AF_INET, b, s, sizeof s);
        }
        uint8_t want4[4], want6[16];
        int ok4 = inet_pton(AF_INET, s, want4) == 1, ok6 = inet_pton(AF_INET6, s, want6) == 1;
        struct cidr c;
        const char *why;
        int r = cidr_parse(s, &c, &why);
        if ((r == 0) != (ok4 || ok6))
            fail_msg("\"%s\": cidr_parse %d, inet_pton %d/%d", s, r, ok4, ok6);
        if (r != 0)
            continue;
        accepted++;
        if (ok4) {
            assert_int_equal(c.family, CIDR_INET);
            assert_int_equal(c.len, 32);
            assert_memory_equal(c.addr, want4, 4);
        } else if (!memcmp(want6, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
            assert_int_equal(c.family, CIDR_INET); /* IPv4-mapped */
            assert_int_equal(c.len, 32);
            assert_memory_equal(c.addr, want6 + 12, 4);
        } else {
            assert_int_equal(c.family, CIDR_INET6);
            assert_int_equal(c.len, 128);
            assert_memory_equal(c.addr, want6, 16);
        }
    }
    assert_true(accepted > 80000); /* the comparison saw plenty of valid addresses */
}

static void test_contains_edges(void **state)
{
    /* /0: every address of its family, none of the other. */
    assert_true(in("0.0.0.0/0", "0.0.0.0"));
    assert_true(in("0.0.0.0/0", "255.255.255.255"));
    assert_false(in("0.0.0.0/0", "::1"));
    assert_true(in("::/0", "::"));
    assert_true(in("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(in("::/0", "127.0.0.1"));
    /* /1 */
    assert_true(in("0.0.0.0/1", "127.255.255.255"));
    assert_false(in("0.0.0.0/1", "128.0.0.0"));
    assert_true(in("128.0.0.0/1", "128.0.0.0"));
    assert_true(in("8000::/1", "8000::"));
    assert_false(in("8000::/1", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_true(in("::/1", "::1"));
    /* /15 across a byte */
    assert_true(in("198.18.0.0/15", "198.18.0.0"));
    assert_true(in("198.18.0.0/15", "198.19.255.255"));
    assert_false(in("198.18.0.0/15", "198.20.0.0"));
    assert_false(in("198.18.0.0/15", "198.17.255.255"));
    /* /31 and /32 */
    assert_true(in("10.0.0.2/31", "10.0.0.2"));
    assert_true(in("10.0.0.2/31", "10.0.0.3"));
    assert_false(in("10.0.0.2/31", "10.0.0.1"));
    assert_false(in("10.0.0.2/31", "10.0.0.4"));
    assert_true(in("10.0.0.1/32", "10.0.0.1"));
    assert_false(in("10.0.0.1/32", "10.0.0.0"));
    assert_false(in("10.0.0.1/32", "10.0.0.2"));
    assert_false(in("10.0.0.1/32", "11.0.0.1"));
    /* /127 and /128 */
    assert_true(in("::/127", "::"));
    assert_true(in("::/127", "::1"));
    assert_false(in("::/127", "::2"));
    assert_true(in("::2/127", "::3"));
    assert_false(in("::2/127", "::1"));
    assert_true(in("::1/128", "::1"));
    assert_false(in("::1/128", "::"));
    assert_false(in("::1/128", "::2"));
    assert_false(in("::1/128", "8000::1"));
}

static void test_ipv4_mapped_clients_are_ipv4(void **state)
{
    /* A dual-stack listener sees ::ffff:a.b.c.d: matched against IPv4 prefixes. */
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.2"));
    assert_true(in("127.0.0.2/32", "::ffff:127.0.0.2"));
    assert_false(in("127.0.0.3/32", "::ffff:127.0.0.2"));
    assert_true(in("0.0.0.0/0", "::ffff:198.18.0.1"));
    assert_true(in("::ffff:127.0.0.0/104", "127.1.2.3")); /* written mapped, read as IPv4 */
    /* ...and never by IPv6 prefixes, not even those that hold ::ffff:0:0/96. */
    assert_false(in("::/0", "::ffff:127.0.0.2"));
    assert_false(in("::fffe:0:0/95", "::ffff:127.0.0.2"));
    assert_false(in("::fffe:0:0/95", "127.0.0.2"));
    /* ::a.b.c.d (IPv4-compatible, deprecated) is plain IPv6. */
    assert_false(in("127.0.0.0/8", "::127.0.0.2"));
    assert_true(in("::/96", "::127.0.0.2"));
    /* An unknown family matches nothing. */
    struct cidr all = parsed("0.0.0.0/0");
    uint8_t zero[16] = {0};
    assert_false(cidr_contains(&all, 1, zero));
}

/* cidr_contains against a bit-by-bit reference, for every length of both families. */
static int bit(const uint8_t *a, unsigned i)
{
    return (a[i / 8] >> (7 - i % 8)) & 1;
}

static void test_contains_matches_the_reference(void **state)
{
    srand(777);
    for (int six = 0; six < 2; six++) {
        unsigned maxlen = six ? 128 : 32, bytes = six ? 16 : 4;
        for (unsigned len = 0; len <= maxlen; len++)
            for (int round = 0; round < 300; round++) {
                uint8_t net[16] = {0}, a[16] = {0};
                for (unsigned i = 0; i < bytes; i++)
                    net[i] = (uint8_t)rand();
                if (six && round % 7 == 0) /* keep clear of the IPv4-mapped range */
                    net[0] |= 0x20;
                memcpy(a, net, bytes);
                /* flip one bit sometimes, inside or outside the prefix */
                if (round % 3)
                    a[(unsigned)rand() % bytes] ^= (uint8_t)(1u << (rand() % 8));
                char text[64], ip[48];
                inet_ntop(six ? AF_INET6 : AF_INET, net, ip, sizeof ip);
                snprintf(text, sizeof text, "%s/%u", ip, len);
                struct cidr c;
                const char *why;
                int r = cidr_parse(text, &c, &why);
                assert_true(r == 0 || r == CIDR_HOST_BITS);
                if (c.family != (six ? CIDR_INET6 : CIDR_INET))
                    continue; /* an IPv4-mapped prefix: tested above */
                int want = 1;
                for (unsigned i = 0; i < len; i++)
                    want &= bit(a, i) == bit(net, i);
                if (cidr_contains(&c, six ? AF_INET6 : AF_INET, a) != want)
                    fail_msg("%s: contains gives %d for a flipped address", text, !want);
            }
    }
}

static void test_acl_rule(void **state)
{
    struct cidr allow[2] = {parsed("198.18.0.0/15"), parsed("::1")};
    struct cidr deny[2] = {parsed("198.18.0.7"), parsed("0.0.0.0/0")};
    uint8_t a[16], b[16], c6[16], m[16];
    addr4("198.18.0.5", a);
    addr4("198.18.0.7", b);
    addr6("::1", c6);
    addr6("::ffff:198.18.0.5", m);
    /* No lists: everyone. */
    assert_false(cidr_acl_refuses(NULL, 0, NULL, 0, AF_INET, a));
    /* allow only: its prefixes, nobody else. */
    assert_false(cidr_acl_refuses(allow, 2, NULL, 0, AF_INET, a));
    assert_false(cidr_acl_refuses(allow, 2, NULL, 0, AF_INET6, c6));
    assert_false(cidr_acl_refuses(allow, 2, NULL, 0, AF_INET6, m));
    addr4("198.20.0.1", b);
    assert_true(cidr_acl_refuses(allow, 2, NULL, 0, AF_INET, b));
    /* deny wins over allow. */
    addr4("198.18.0.7", b);
    assert_true(cidr_acl_refuses(allow, 2, deny, 1, AF_INET, b));
    assert_false(cidr_acl_refuses(allow, 2, deny, 1, AF_INET, a));
    /* deny only: everyone else. */
    assert_true(cidr_acl_refuses(NULL, 0, deny, 1, AF_INET, b));
    assert_false(cidr_acl_refuses(NULL, 0, deny, 1, AF_INET, a));
    /* deny 0.0.0.0/0: every IPv4 client, mapped ones too, and no IPv6 one. */
    assert_true(cidr_acl_refuses(NULL, 0, deny + 1, 1, AF_INET, a));
    assert_true(cidr_acl_refuses(NULL, 0, deny + 1, 1, AF_INET6, m));
    assert_false(cidr_acl_refuses(NULL, 0, deny + 1, 1, AF_INET6, c6));
    assert_int_equal(cidr_find(allow, 2, AF_INET6, c6), 1);
    assert_int_equal(cidr_find(deny, 2, AF_INET, b), 0);
}

static void test_client_key(void **state)
{
    uint8_t v4[4], m[16], v6[16], k1[16], k2[16], k3[16];
    addr4("198.18.0.5", v4);
    addr6("::ffff:198.18.0.5", m);
    addr6("::c612:5", v6);
    cidr_client_key(AF_INET, v4, k1);
    cidr_client_key(AF_INET6, m, k2);
    cidr_client_key(AF_INET6, v6, k3);
    assert_memory_equal(k1, m, 16);  /* IPv4 is ::ffff:a.b.c.d */
    assert_memory_equal(k1, k2, 16); /* the same client on either listener */
    assert_memory_not_equal(k1, k3, 16);
    assert_memory_equal(k3, v6, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_match_the_kernel),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_bits_past_the_length),
        cmocka_unit_test(test_bad_text),
        cmocka_unit_test(test_reader_agrees_with_inet_pton),
        cmocka_unit_test(test_contains_edges),
        cmocka_unit_test(test_ipv4_mapped_clients_are_ipv4),
        cmocka_unit_test(test_contains_matches_the_reference),
        cmocka_unit_test(test_acl_rule),
        cmocka_unit_test(test_client_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
