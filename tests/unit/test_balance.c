/* Unit tests for lb/balance.c: each algorithm against its definition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "balance.h"

static struct balance_backend bk3[3] = {{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 0}};
static const uint8_t all3[3] = {1, 1, 1};

static void test_round_robin_rotation_and_skips(void **state)
{
    balancer *b = balancer_new(BAL_ROUND_ROBIN, bk3, 3, 1);
    for (int i = 0; i < 7; i++)
        assert_int_equal(balancer_pick(b, bk3, all3, 0), i % 3);
    uint8_t u[3] = {1, 0, 1};
    assert_int_equal(balancer_pick(b, bk3, u, 0), 2); /* after 0 comes 1: skipped */
    assert_int_equal(balancer_pick(b, bk3, u, 0), 0);
    uint8_t none[3] = {0, 0, 0};
    assert_int_equal(balancer_pick(b, bk3, none, 0), -1);
    balancer_free(b);
}

static void test_smooth_wrr_matches_nginx(void **state)
{
    struct balance_backend w[3] = {{"a", 5, 0}, {"b", 1, 0}, {"c", 1, 0}};
    balancer *b = balancer_new(BAL_WEIGHTED_RR, w, 3, 1);
    const int want[7] = {0, 0, 1, 0, 2, 0, 0}; /* a a b a c a a */
    for (int i = 0; i < 7; i++)
        assert_int_equal(balancer_pick(b, w, all3, 0), want[i]);
    balancer_free(b);

    struct balance_backend w2[3] = {{"a", 5, 0}, {"b", 3, 0}, {"c", 1, 0}};
    b = balancer_new(BAL_WEIGHTED_RR, w2, 3, 1);
    int count[3] = {0};
    for (int i = 0; i < 9000; i++)
        count[balancer_pick(b, w2, all3, 0)]++;
    assert_int_equal(count[0], 5000);
    assert_int_equal(count[1], 3000);
    assert_int_equal(count[2], 1000);
    balancer_free(b);
}

static void test_least_conn(void **state)
{
    struct balance_backend v[3] = {{"a", 1, 2}, {"b", 1, 1}, {"c", 1, 0}};
    balancer *b = balancer_new(BAL_LEAST_CONN, v, 3, 1);
    assert_int_equal(balancer_pick(b, v, all3, 0), 2); /* the idle one */
    v[2].active = 5;
    assert_int_equal(balancer_pick(b, v, all3, 0), 1);
    /* weights: 4 active on weight 4 is lighter than 2 on weight 1 */
    struct balance_backend w[2] = {{"a", 4, 4}, {"b", 1, 2}};
    uint8_t u2[2] = {1, 1};
    balancer *b2 = balancer_new(BAL_LEAST_CONN, w, 2, 1);
    assert_int_equal(balancer_pick(b2, w, u2, 0), 0);
    /* ties rotate */
    struct balance_backend t[3] = {{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 0}};
    int seen[3] = {0};
    for (int i = 0; i < 6; i++)
        seen[balancer_pick(b, t, all3, 0)]++;
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 2);
    assert_int_equal(seen[2], 2);
    balancer_free(b);
    balancer_free(b2);
}

static void test_random_two(void **state)
{
    struct balance_backend v[3] = {{"a", 1, 100}, {"b", 1, 0}, {"c", 1, 0}};
    balancer *b = balancer_new(BAL_RANDOM_TWO, v, 3, 42);
    int count[3] = {0};
    for (int i = 0; i < 3000; i++)
        count[balancer_pick(b, v, all3, 0)]++;
    assert_int_equal(count[0], 0); /* the loaded one loses every comparison */
    assert_true(count[1] > 1200 && count[2] > 1200);
    balancer_free(b);
    /* equal load: proportional to weight (two draws, then a coin on ties) */
    struct balance_backend w[2] = {{"a", 3, 0}, {"b", 1, 0}};
    uint8_t u2[2] = {1, 1};
    b = balancer_new(BAL_RANDOM_TWO, w, 2, 7);
    int c2[2] = {0};
    for (int i = 0; i < 4000; i++)
        c2[balancer_pick(b, w, u2, 0)]++;
    assert_true(c2[0] > 2600 && c2[0] < 3400);
    uint8_t one[2] = {0, 1};
    assert_int_equal(balancer_pick(b, w, one, 0), 1);
    balancer_free(b);
}

static void test_maglev_balance_and_stability(void **state)
{
    balancer *b = balancer_new(BAL_MAGLEV, bk3, 3, 0);
    int count[3] = {0};
    int first[100000];
    for (uint32_t i = 0; i < 100000; i++) {
        uint64_t h = balance_hash_addr(&i, sizeof i);
        first[i] = balancer_pick(b, bk3, all3, h);
        assert_int_equal(balancer_pick(b, bk3, all3, h), first[i]); /* sticky */
        count[first[i]]++;
    }
    for (int i = 0; i < 3; i++)
        assert_true(count[i] > 31000 && count[i] < 35700);
    /* one backend unusable: only its clients move */
    uint8_t u[3] = {1, 1, 0};
    for (uint32_t i = 0; i < 100000; i++) {
        uint64_t h = balance_hash_addr(&i, sizeof i);
        int p = balancer_pick(b, bk3, u, h);
        assert_int_not_equal(p, 2);
        if (first[i] != 2)
            assert_int_equal(p, first[i]);
    }
    /* a backend removed from the config: a new table over two; few others move */
    balancer *b2 = balancer_new(BAL_MAGLEV, bk3, 2, 0);
    uint8_t u2[2] = {1, 1};
    int moved = 0, others = 0;
    for (uint32_t i = 0; i < 100000; i++) {
        if (first[i] == 2)
            continue;
        others++;
        if (balancer_pick(b2, bk3, u2, balance_hash_addr(&i, sizeof i)) != first[i])
            moved++;
    }
    assert_true(moved * 100 <= others * 5);
    balancer_free(b);
    balancer_free(b2);
}

static void test_maglev_weights(void **state)
{
    struct balance_backend w[2] = {{"a", 2, 0}, {"b", 1, 0}};
    uint8_t u[2] = {1, 1};
    balancer *b = balancer_new(BAL_MAGLEV, w, 2, 0);
    int count[2] = {0};
    for (uint32_t i = 0; i < 90000; i++)
        count[balancer_pick(b, w, u, balance_hash_addr(&i, sizeof i))]++;
    assert_true(count[0] > 57000 && count[0] < 63000);
    balancer_free(b);
}

static void test_hash_is_pinned(void **state)
{
    const unsigned char ip[4] = {198, 18, 0, 1};
    /* Pinned: a change would move every maglev client between twlb versions. */
    assert_true(balance_hash_addr(ip, 4) == balance_hash_addr(ip, 4));
    /* FNV-1a 64 of 198.18.0.1, then splitmix64's finalizer (checked with Python). */
    assert_true(balance_hash_addr(ip, 4) == 0x39d1bad6fce9f530ull);
    enum balance_algo a;
    assert_int_equal(balance_algo_parse("maglev", &a), 0);
    assert_int_equal(a, BAL_MAGLEV);
    assert_int_equal(balance_algo_parse("roundrobin", &a), -1);
    assert_string_equal(balance_algo_name(BAL_WEIGHTED_RR), "weighted_round_robin");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_rotation_and_skips),
        cmocka_unit_test(test_smooth_wrr_matches_nginx),
        cmocka_unit_test(test_least_conn),
        cmocka_unit_test(test_random_two),
        cmocka_unit_test(test_maglev_balance_and_stability),
        cmocka_unit_test(test_maglev_weights),
        cmocka_unit_test(test_hash_is_pinned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
