/* Unit tests for lb/health.c: HAProxy rise/fall semantics, passive ejection backoff, and
 * when a backend came back (where its slow start begins). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/health.h"

static void test_fall_then_rise(void **state)
{
    struct health h;
    health_init(&h, 2, 3, 0, 1000, 60000);
    assert_true(health_usable(&h, 0));
    assert_int_equal(health_check_result(&h, 0, 1), 0);
    assert_int_equal(health_check_result(&h, 0, 2), 0);
    assert_true(health_usable(&h, 2));
    assert_int_equal(health_check_result(&h, 0, 3), 1); /* third failure: down */
    assert_false(health_usable(&h, 3));
    assert_int_equal(health_check_result(&h, 1, 4), 0);
    assert_int_equal(health_check_result(&h, 1, 5), 1); /* second success: up */
    assert_true(health_usable(&h, 5));
}

static void test_streak_resets_on_agreeing_result(void **state)
{
    struct health h;
    health_init(&h, 2, 2, 0, 1000, 60000);
    health_check_result(&h, 0, 1);
    health_check_result(&h, 1, 2); /* agrees with "up": streak starts over */
    assert_int_equal(health_check_result(&h, 0, 3), 0);
    assert_true(health_usable(&h, 3));
    assert_int_equal(health_check_result(&h, 0, 4), 1);
}

static void test_passive_ejection_backoff_doubles(void **state)
{
    struct health h;
    health_init(&h, 1, 1, 3, 1000, 4000);
    assert_int_equal(health_connect_result(&h, 0, 0), 0);
    assert_int_equal(health_connect_result(&h, 0, 0), 0);
    assert_int_equal(health_connect_result(&h, 0, 0), 1); /* ejected for 1 s */
    assert_false(health_usable(&h, 999));
    assert_true(health_usable(&h, 1000));
    for (int i = 0; i < 3; i++)
        health_connect_result(&h, 0, 1000);
    assert_false(health_usable(&h, 2999)); /* 2 s this time */
    assert_true(health_usable(&h, 3000));
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 3; i++)
            health_connect_result(&h, 0, 10000);
    assert_false(health_usable(&h, 13999)); /* capped at max 4 s */
    assert_true(health_usable(&h, 14000));
}

static void test_success_clears_ejection_state(void **state)
{
    struct health h;
    health_init(&h, 1, 1, 2, 1000, 60000);
    health_connect_result(&h, 0, 0);
    health_connect_result(&h, 1, 0); /* a success in between: no ejection */
    assert_int_equal(health_connect_result(&h, 0, 0), 0);
    assert_true(health_usable(&h, 0));
    health_connect_result(&h, 0, 0);
    assert_false(health_usable(&h, 10));
    assert_int_equal(health_check_result(&h, 1, 10), 1); /* a good check ends it */
    assert_true(health_usable(&h, 10));
}

static void test_no_passive_ejection_when_disabled(void **state)
{
    struct health h;
    health_init(&h, 1, 1, 0, 1000, 60000);
    for (int i = 0; i < 100; i++)
        assert_int_equal(health_connect_result(&h, 0, 0), 0);
    assert_true(health_usable(&h, 0));
}

static void test_back_since_from_checks(void **state)
{
    struct health h;
    health_init(&h, 2, 1, 0, 1000, 60000);
    assert_true(h.back_since_ms == 0); /* up from the start: no slow start */
    health_check_result(&h, 1, 100);
    assert_true(h.back_since_ms == 0);
    health_check_result(&h, 0, 200); /* down */
    health_check_result(&h, 1, 300);
    assert_true(h.back_since_ms == 0); /* one good check of two */
    health_check_result(&h, 1, 400);   /* up again: from here */
    assert_true(h.back_since_ms == 400);
    health_check_result(&h, 1, 500);   /* staying up moves nothing */
    assert_true(h.back_since_ms == 400);
}

static void test_back_since_from_ejection(void **state)
{
    struct health h;
    health_init(&h, 1, 1, 2, 1000, 60000);
    health_connect_result(&h, 0, 5000);
    health_connect_result(&h, 0, 5000); /* ejected until 6000: back then */
    assert_true(h.back_since_ms == 6000);
    assert_false(health_usable(&h, 5999));
    /* a good check during the ejection ends it now */
    health_check_result(&h, 1, 5500);
    assert_true(h.back_since_ms == 5500);
    /* an ejection of a backend the checks hold down: back when the checks say so */
    health_check_result(&h, 0, 7000);
    health_connect_result(&h, 0, 7000);
    health_connect_result(&h, 0, 7000); /* until 8000 */
    health_check_result(&h, 0, 8500);
    assert_false(health_usable(&h, 8500));
    health_check_result(&h, 1, 9000);
    assert_true(health_usable(&h, 9000));
    assert_true(h.back_since_ms == 9000);
}

static void test_follow_takes_the_publisher_time(void **state)
{
    struct health h;
    health_init(&h, 2, 3, 2, 1000, 60000);
    health_follow(&h, 1, 0); /* up, the checks never brought it back: nothing changes */
    assert_true(h.back_since_ms == 0);
    health_follow(&h, 0, 0);
    assert_false(health_usable(&h, 1000));
    health_follow(&h, 1, 2000); /* the thread running the checks saw it come back at 2000 */
    assert_true(health_usable(&h, 2000));
    assert_true(h.back_since_ms == 2000);
    /* down and up again between two looks: still up here, but back since 2500 */
    health_follow(&h, 1, 2500);
    assert_true(h.back_since_ms == 2500);
    health_follow(&h, 1, 2500);
    assert_true(h.back_since_ms == 2500);
    /* our own ejection ends later than the checks' verdict: back at its end */
    health_connect_result(&h, 0, 3000);
    health_connect_result(&h, 0, 3000); /* until 4000 */
    health_follow(&h, 0, 0);
    health_follow(&h, 1, 3500);
    assert_true(h.back_since_ms == 4000);
    assert_false(health_usable(&h, 3999));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fall_then_rise),
        cmocka_unit_test(test_streak_resets_on_agreeing_result),
        cmocka_unit_test(test_passive_ejection_backoff_doubles),
        cmocka_unit_test(test_success_clears_ejection_state),
        cmocka_unit_test(test_no_passive_ejection_when_disabled),
        cmocka_unit_test(test_back_since_from_checks),
        cmocka_unit_test(test_back_since_from_ejection),
        cmocka_unit_test(test_follow_takes_the_publisher_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
