/* Unit tests for lb/core/timeq.c: order, moves and cancels against a plain model, with a
 * fixed seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "core/timeq.h"

static void test_earliest_first(void **state)
{
    struct timeq q;
    timeq_init(&q);
    struct timeq_item it[5] = {{0}};
    uint64_t at[5] = {50, 10, 40, 20, 30};
    for (int i = 0; i < 5; i++)
        assert_int_equal(timeq_set(&q, &it[i], at[i]), 0);
    assert_null(timeq_pop_due(&q, 9));
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        struct timeq_item *x = timeq_pop_due(&q, 100);
        assert_non_null(x);
        assert_true(x->at >= last);
        assert_int_equal(x->pos, 0);
        last = x->at;
    }
    assert_null(timeq_first(&q));
    timeq_free(&q);
}

/* Random sets, moves and cancels; after each step the first item is the model's minimum
 * and popping everything at the end yields every scheduled item in order. */
static void test_random_against_model(void **state)
{
    enum { N = 300 };
    struct timeq q;
    timeq_init(&q);
    struct timeq_item it[N] = {{0}};
    int scheduled[N] = {0};
    uint64_t at[N] = {0};
    srand(42);
    for (int step = 0; step < 20000; step++) {
        int i = rand() % N;
        if (rand() % 4 == 0) {
            timeq_cancel(&q, &it[i]);
            scheduled[i] = 0;
        } else {
            at[i] = (uint64_t)(rand() % 1000);
            assert_int_equal(timeq_set(&q, &it[i], at[i]), 0);
            scheduled[i] = 1;
        }
        uint64_t min = UINT64_MAX;
        size_t count = 0;
        for (int k = 0; k < N; k++)
            if (scheduled[k]) {
                count++;
                if (at[k] < min)
                    min = at[k];
            }
        assert_int_equal(q.n, count);
        if (count)
            assert_int_equal(timeq_first(&q)->at, min);
    }
    uint64_t last = 0;
    struct timeq_item *x;
    while ((x = timeq_pop_due(&q, UINT64_MAX))) {
        assert_true(x->at >= last);
        last = x->at;
    }
    timeq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_earliest_first),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
