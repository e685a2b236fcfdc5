/* Unit tests for lb/core/hist.c: which bucket an observation lands in (the bounds are
 * inclusive, as Prometheus' "le"), merging, sums and quantile estimates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "core/hist.h"

#define MS 1000000ull

static void test_bounds_rise_by_two_to_two_and_a_half(void **state)
{
    assert_int_equal(hist_bounds_ns[0], MS / 2);
    assert_int_equal(hist_bounds_ns[HIST_NBOUNDS - 1], 10000 * MS);
    for (size_t i = 1; i < HIST_NBOUNDS; i++) {
        double r = (double)hist_bounds_ns[i] / (double)hist_bounds_ns[i - 1];
        assert_true(r >= 2.0 && r <= 2.5);
    }
    assert_true(fabs(hist_bound_s(0) - 0.0005) < 1e-12);
    assert_true(fabs(hist_bound_s(13) - 10.0) < 1e-12);
}

static void test_observation_lands_in_first_bound_not_exceeded(void **state)
{
    struct hist h;
    memset(&h, 0, sizeof h);
    hist_add(&h, 0);            /* le 0.0005 */
    hist_add(&h, MS / 2);       /* exactly on the bound: still le 0.0005 */
    hist_add(&h, MS / 2 + 1);   /* le 0.001 */
    hist_add(&h, 3 * MS);       /* le 0.005 */
    hist_add(&h, 10000 * MS);   /* le 10 */
    hist_add(&h, 10000 * MS + 1); /* +Inf */
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[2], 0);
    assert_int_equal(h.bucket[3], 1);
    assert_int_equal(h.bucket[13], 1);
    assert_int_equal(h.bucket[14], 1);
    assert_int_equal(h.count, 6);
    assert_int_equal(h.sum_ns, 0 + MS / 2 + MS / 2 + 1 + 3 * MS + 20000 * MS + 1);
    assert_true(fabs(hist_sum_s(&h) - 20.004000002) < 1e-9);
}

static void test_merge_adds_everything(void **state)
{
    struct hist a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    for (uint64_t i = 0; i < 100; i++) {
        hist_add(&a, i * MS);
        hist_add(&b, i * 7 * MS);
    }
    struct hist sum = a;
    hist_merge(&sum, &b);
    assert_int_equal(sum.count, 200);
    assert_int_equal(sum.sum_ns, a.sum_ns + b.sum_ns);
    uint64_t total = 0;
    for (size_t i = 0; i <= HIST_NBOUNDS; i++) {
        assert_int_equal(sum.bucket[i], a.bucket[i] + b.bucket[i]);
        total += sum.bucket[i];
    }
    assert_int_equal(total, 200);
}

static void test_quantiles(void **state)
{
    struct hist h;
    memset(&h, 0, sizeof h);
    assert_true(hist_quantile(&h, 0.5) < 0); /* empty: none */
    /* 100 observations in (5 ms, 10 ms]: every quantile lies in that bucket, linearly */
    for (int i = 0; i < 100; i++)
        hist_add(&h, 7 * MS);
    assert_true(fabs(hist_quantile(&h, 0.5) - 0.0075) < 1e-9);
    assert_true(fabs(hist_quantile(&h, 0.99) - 0.00995) < 1e-9);
    assert_true(fabs(hist_quantile(&h, 1.0) - 0.010) < 1e-9);
    /* one slow one in +Inf: p100 is reported as the top bound, p50 does not move */
    hist_add(&h, 60000 * MS);
    assert_true(fabs(hist_quantile(&h, 1.0) - 10.0) < 1e-9);
    assert_true(hist_quantile(&h, 0.5) > 0.005 && hist_quantile(&h, 0.5) <= 0.010);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_rise_by_two_to_two_and_a_half),
        cmocka_unit_test(test_observation_lands_in_first_bound_not_exceeded),
        cmocka_unit_test(test_merge_adds_everything),
        cmocka_unit_test(test_quantiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
