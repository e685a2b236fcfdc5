/* Unit tests for lb/core/portrange.c: the kernel's two port sysctls as they read, and the
 * ports of a source port range that the kernel may hand out too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/portrange.h"

static void test_parse_pair(void **state)
{
    struct portrange r;
    assert_int_equal(portrange_parse_pair("32768\t60999\n", &r), 0); /* as the kernel prints */
    assert_int_equal(r.lo, 32768);
    assert_int_equal(r.hi, 60999);
    assert_int_equal(portrange_parse_pair("1024 1024", &r), 0);
    assert_int_equal(r.lo, 1024);
    assert_int_equal(r.hi, 1024);
    const char *bad[] = {"", "32768", "32768\t", "60999 32768", "1 65536", "-1 5", "1 2 3",
                         "1\t2\n\n", "a b", "1-2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(portrange_parse_pair(bad[i], &r), -1);
}

static int is_set(const uint8_t *bits, uint32_t p)
{
    return (bits[p / 8] >> (p % 8)) & 1;
}

static void test_parse_reserved(void **state)
{
    static uint8_t bits[PORTRANGE_BITMAP_BYTES];
    assert_int_equal(portrange_parse_reserved("\n", bits), 0);
    for (uint32_t p = 0; p < 65536; p++)
        assert_false(is_set(bits, p));
    assert_int_equal(portrange_parse_reserved("20000-20002,20005,65535\n", bits), 0);
    uint32_t n = 0;
    for (uint32_t p = 0; p < 65536; p++)
        n += (uint32_t)is_set(bits, p);
    assert_int_equal(n, 5);
    assert_true(is_set(bits, 20000) && is_set(bits, 20002) && is_set(bits, 20005) &&
                is_set(bits, 65535));
    assert_false(is_set(bits, 20003));
    const char *bad[] = {"1,", ",1", "5-4", "1-", "70000", "1;2", "1 - 2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(portrange_parse_reserved(bad[i], bits), -1);
}

static void test_exposed(void **state)
{
    static uint8_t bits[PORTRANGE_BITMAP_BYTES];
    uint32_t first = 0, last = 0;
    struct portrange pool = {20000, 29999}, linux_default = {32768, 60999};
    /* The defaults do not meet. */
    assert_int_equal(portrange_exposed(pool, linux_default, NULL, &first, &last), 0);
    /* Overlapping at one end, the other, inside and around. */
    assert_int_equal(portrange_exposed(pool, (struct portrange){29000, 40000}, NULL, &first,
                                       &last), 1000);
    assert_int_equal(first, 29000);
    assert_int_equal(last, 29999);
    assert_int_equal(portrange_exposed(pool, (struct portrange){1024, 20000}, NULL, &first,
                                       &last), 1);
    assert_int_equal(first, 20000);
    assert_int_equal(last, 20000);
    assert_int_equal(portrange_exposed(pool, (struct portrange){1024, 65535}, NULL, &first,
                                       &last), 10000);
    assert_int_equal(portrange_exposed((struct portrange){65535, 65535},
                                       (struct portrange){1024, 65535}, NULL, &first, &last), 1);
    assert_int_equal(first, 65535);
    /* Reserved ports are not handed out: only what is left counts. */
    assert_int_equal(portrange_parse_reserved("20000-29999", bits), 0);
    assert_int_equal(portrange_exposed(pool, (struct portrange){1024, 65535}, bits, &first,
                                       &last), 0);
    assert_int_equal(portrange_parse_reserved("20000-20099,29900-29999", bits), 0);
    assert_int_equal(portrange_exposed(pool, (struct portrange){1024, 65535}, bits, &first,
                                       &last), 9800);
    assert_int_equal(first, 20100);
    assert_int_equal(last, 29899);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_pair),
        cmocka_unit_test(test_parse_reserved),
        cmocka_unit_test(test_exposed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
