/* Unit tests for lb/core/numparse.c: the whole string or nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/numparse.h"

static void test_counts(void **state)
{
    uint64_t v;
    assert_int_equal(numparse_count("10", 1, 100, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(numparse_count("1", 1, 100, &v), 0);
    assert_int_equal(numparse_count("100", 1, 100, &v), 0);
    const char *bad[] = {"10abc", " 5", "+5", "-5", "", "0", "101", "1e3", "5 ",
                         "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(numparse_count(bad[i], 1, 100, &v), -1);
}

static void test_numbers(void **state)
{
    double d;
    assert_int_equal(numparse_number("2.5", &d), 0);
    assert_true(d == 2.5);
    assert_int_equal(numparse_number("1e3", &d), 0);
    assert_true(d == 1000);
    const char *bad[] = {"10abc", " 5", "", "inf", "nan", "1e999", "2.5x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(numparse_number(bad[i], &d), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
