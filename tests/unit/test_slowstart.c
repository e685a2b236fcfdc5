/* Unit tests for slow start and backup backends in the core: the ramp of
 * lb/core/slowstart.c, and how lb/core/balance.c treats weights that change between
 * picks (warming backends, weight 0) and backup backends.  Deterministic algorithms are
 * checked exactly; random_two with a fixed seed, within 5 standard deviations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/balance.h"
#include "core/slowstart.h"

#define FULL SLOWSTART_SCALE /* weight 1 at full */

static const uint8_t all[4] = {1, 1, 1, 1};

/* ---- the ramp ---------------------------------------------------------------------- */

static void test_ramp_is_linear_from_zero(void **state)
{
    const uint64_t t0 = 50000;
    assert_int_equal(slowstart_weight(1, t0, t0, 3000), 0);
    assert_int_equal(slowstart_weight(1, t0, t0 + 2, 3000), 0);   /* 0.67 rounds down */
    assert_int_equal(slowstart_weight(1, t0, t0 + 3, 3000), 1);
    assert_int_equal(slowstart_weight(1, t0, t0 + 1500, 3000), 500);
    assert_int_equal(slowstart_weight(1, t0, t0 + 2999, 3000), 999);
    assert_int_equal(slowstart_weight(1, t0, t0 + 3000, 3000), 1000);
    assert_int_equal(slowstart_weight(1, t0, t0 + 999999, 3000), 1000);
    assert_int_equal(slowstart_weight(4, t0, t0 + 750, 3000), 1000); /* a quarter of 4 */
    /* never decreasing, never above full, over a whole ramp */
    uint32_t prev = 0;
    for (uint64_t t = t0; t <= t0 + 3100; t++) {
        uint32_t w = slowstart_weight(7, t0, t, 3000);
        assert_true(w >= prev && w <= 7 * FULL);
        prev = w;
    }
    assert_int_equal(prev, 7 * FULL);
}

static void test_ramp_off_and_edges(void **state)
{
    assert_int_equal(slowstart_weight(3, 0, 10, 3000), 3 * FULL); /* never came back */
    assert_int_equal(slowstart_weight(3, 5, 10, 0), 3 * FULL);    /* no slow start */
    assert_int_equal(slowstart_weight(3, 100, 99, 3000), 0);      /* a clock behind */
    /* the largest config: weight 1000, a one-hour ramp; no overflow on the way */
    assert_int_equal(slowstart_weight(1000, 1, 1 + SLOWSTART_MAX_MS - 1, SLOWSTART_MAX_MS),
                     999999);
    assert_int_equal(slowstart_weight(1000, 1, 1 + SLOWSTART_MAX_MS / 2, SLOWSTART_MAX_MS),
                     500000);
    /* beyond what the config allows: saturates, does not wrap */
    assert_int_equal(slowstart_weight(UINT32_MAX, 0, 0, 0), UINT32_MAX);
}

/* ---- weight 0: only when nothing else is usable ------------------------------------ */

static void test_weight_zero_only_when_alone(void **state)
{
    const enum balance_algo algos[] = {BAL_ROUND_ROBIN, BAL_WEIGHTED_RR, BAL_LEAST_CONN,
                                       BAL_RANDOM_TWO};
    /* weight_full FULL: at the start of a ramp; 0: a caller without slow start */
    for (size_t k = 0; k < 2 * sizeof algos / sizeof algos[0]; k++) {
        size_t a = k / 2;
        uint32_t wf = k % 2 ? FULL : 0;
        struct balance_backend bk[3] = {{"a", 0, 0, wf, 0}, {"b", FULL, 0, wf, 0},
                                        {"c", 0, 5, wf, 0}};
        balancer *b = balancer_new(algos[a], bk, 3, 11);
        assert_non_null(b);
        for (int i = 0; i < 300; i++)
            assert_int_equal(balancer_pick(b, bk, all, 0), 1);
        /* without b, the two at weight 0 are all there is: they count as equals */
        uint8_t no_b[3] = {1, 0, 1};
        int seen[3] = {0};
        for (int i = 0; i < 300; i++)
            seen[balancer_pick(b, bk, no_b, 0)]++;
        assert_int_equal(seen[1], 0);
        if (algos[a] == BAL_LEAST_CONN || algos[a] == BAL_RANDOM_TWO) {
            assert_int_equal(seen[0], 300); /* 0 live connections against 5 */
        } else {
            assert_int_equal(seen[0], 150); /* turns, as with equal weights */
            assert_int_equal(seen[2], 150);
        }
        balancer_free(b);
    }
}

static void test_maglev_ignores_weights_at_pick(void **state)
{
    struct balance_backend bk[2] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_MAGLEV, bk, 2, 1);
    int before[64];
    for (uint64_t h = 0; h < 64; h++)
        before[h] = balancer_pick(b, bk, all, h * 7919);
    bk[0].weight = 0; /* static: the table was built, nothing moves */
    for (uint64_t h = 0; h < 64; h++)
        assert_int_equal(balancer_pick(b, bk, all, h * 7919), before[h]);
    balancer_free(b);
}

/* ---- a warming backend's share ----------------------------------------------------- */

/* Picks of backend 1 out of <n>, a (full) and b (warming at <w> of FULL), both idle. */
static int warm_share(enum balance_algo algo, uint32_t w, int n)
{
    struct balance_backend bk[2] = {{"a", FULL, 0, FULL, 0}, {"b", w, 0, FULL, 0}};
    balancer *b = balancer_new(algo, bk, 2, 2024);
    int got = 0;
    for (int i = 0; i < n; i++)
        got += balancer_pick(b, bk, all, 0) == 1;
    balancer_free(b);
    return got;
}

static void test_warming_share_per_algorithm(void **state)
{
    /* At a quarter of its weight, b gets 0.25 / 1.25 = 1/5 of the picks: exactly with
     * the deterministic algorithms (round_robin and least_conn skip 3 of its 4 turns,
     * smooth WRR is exact), about with random_two (2000 expected, sd 40). */
    assert_int_equal(warm_share(BAL_ROUND_ROBIN, FULL / 4, 1000), 200);
    assert_int_equal(warm_share(BAL_LEAST_CONN, FULL / 4, 1000), 200);
    assert_int_equal(warm_share(BAL_WEIGHTED_RR, FULL / 4, 1000), 200);
    assert_in_range(warm_share(BAL_RANDOM_TWO, FULL / 4, 10000), 1800, 2200);
    /* at full weight: halves, as without slow start */
    assert_int_equal(warm_share(BAL_ROUND_ROBIN, FULL, 1000), 500);
    assert_int_equal(warm_share(BAL_LEAST_CONN, FULL, 1000), 500);
    /* at weight 1 of 1000: almost nothing, but not nothing */
    int rr = warm_share(BAL_ROUND_ROBIN, 1, 10000);
    assert_in_range(rr, 9, 11); /* 10000 / 1001 */
}

static void test_round_robin_still_ignores_weights(void **state)
{
    /* not warming (weight == weight_full, or weight_full 0): plain rotation, whatever
     * the weights */
    struct balance_backend bk[2] = {{"a", 3000, 0, 3000, 0}, {"b", 1000, 0, 0, 0}};
    balancer *b = balancer_new(BAL_ROUND_ROBIN, bk, 2, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(balancer_pick(b, bk, all, 0), i % 2);
    balancer_free(b);
}

static void test_least_conn_warming_under_load(void **state)
{
    /* with live connections the ratio decides: b at a quarter of its weight is "fuller"
     * with 3 connections than a with 10, and lighter with 2 */
    struct balance_backend bk[2] = {{"a", FULL, 10, FULL, 0}, {"b", FULL / 4, 3, FULL, 0}};
    balancer *b = balancer_new(BAL_LEAST_CONN, bk, 2, 1);
    assert_int_equal(balancer_pick(b, bk, all, 0), 0); /* 12 per 1000 > 10 */
    bk[1].active = 2;                                  /* 8 per 1000 < 10 */
    assert_int_equal(balancer_pick(b, bk, all, 0), 1);
    /* every equal one warming: one of them is picked, never -1 */
    struct balance_backend w2[2] = {{"a", 10, 0, FULL, 0}, {"b", 10, 0, FULL, 0}};
    for (int i = 0; i < 10; i++)
        assert_true(balancer_pick(b, w2, all, 0) >= 0);
    balancer_free(b);
}

static void test_round_robin_every_backend_warming(void **state)
{
    /* nothing at full: the rotation goes on rather than returning -1 */
    struct balance_backend bk[3] = {{"a", 10, 0, FULL, 0}, {"b", 20, 0, FULL, 0},
                                    {"c", 30, 0, FULL, 0}};
    balancer *b = balancer_new(BAL_ROUND_ROBIN, bk, 3, 1);
    int seen[3] = {0};
    for (int i = 0; i < 300; i++) {
        int k = balancer_pick(b, bk, all, 0);
        assert_true(k >= 0 && k < 3);
        seen[k]++;
    }
    assert_true(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    balancer_free(b);
}

/* The ramp as the runtime drives it: b's weight follows slowstart_weight() pick by pick
 * (one pick per ms over a 1000 ms ramp, a at full).  Its share at f of its weight is
 * f / (1 + f), so over the whole ramp about 1 - ln 2 = 30.7 % of the picks, fewer in the
 * first quarter than in the last. */
static void test_ramp_through_the_balancer(void **state)
{
    const enum balance_algo algos[] = {BAL_ROUND_ROBIN, BAL_WEIGHTED_RR, BAL_LEAST_CONN,
                                       BAL_RANDOM_TWO};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
        struct balance_backend bk[2] = {{"a", FULL, 0, FULL, 0}, {"b", 0, 0, FULL, 0}};
        balancer *b = balancer_new(algos[a], bk, 2, 77);
        int quarter[4] = {0}, total = 0;
        for (uint64_t t = 0; t < 1000; t++) {
            bk[1].weight = slowstart_weight(1, 1000, 1000 + t, 1000);
            if (balancer_pick(b, bk, all, 0) == 1) {
                quarter[t / 250]++;
                total++;
            }
        }
        /* random_two: 307 expected, sd about 14.6 */
        assert_in_range(total, 307 - 73, 307 + 73);
        if (algos[a] != BAL_RANDOM_TWO)
            assert_in_range(total, 300, 314);
        assert_true(quarter[0] < quarter[1] && quarter[1] < quarter[3]);
        /* the first quarter (f <= 1/4): at most 1/5 of 250 picks, plus rounding */
        assert_true(quarter[0] <= 50 + 2);
        balancer_free(b);
    }
}

/* ---- backups ----------------------------------------------------------------------- */

static void test_keep_primaries(void **state)
{
    struct balance_backend bk[4] = {{"a", FULL, 0, FULL, 0}, {"b", FULL, 0, FULL, 1},
                                    {"c", FULL, 0, FULL, 0}, {"d", FULL, 0, FULL, 1}};
    uint8_t u[4] = {1, 1, 1, 1};
    assert_int_equal(balance_keep_primaries(bk, u, 4), 2);
    assert_memory_equal(u, ((uint8_t[]){1, 0, 1, 0}), 4);
    /* one primary left is enough to keep the backups out */
    memcpy(u, (uint8_t[]){0, 1, 1, 1}, 4);
    assert_int_equal(balance_keep_primaries(bk, u, 4), 1);
    assert_memory_equal(u, ((uint8_t[]){0, 0, 1, 0}), 4);
    /* no primary usable: every usable backup serves (allbackups) */
    memcpy(u, (uint8_t[]){0, 1, 0, 1}, 4);
    assert_int_equal(balance_keep_primaries(bk, u, 4), 2);
    assert_memory_equal(u, ((uint8_t[]){0, 1, 0, 1}), 4);
    memcpy(u, (uint8_t[]){0, 0, 0, 1}, 4);
    assert_int_equal(balance_keep_primaries(bk, u, 4), 1);
    assert_memory_equal(u, ((uint8_t[]){0, 0, 0, 1}), 4);
    memset(u, 0, 4);
    assert_int_equal(balance_keep_primaries(bk, u, 4), 0);
    /* a pool of backups only: as a pool without backups */
    struct balance_backend only[2] = {{"x", FULL, 0, FULL, 1}, {"y", FULL, 0, FULL, 1}};
    uint8_t u2[2] = {1, 1};
    assert_int_equal(balance_keep_primaries(only, u2, 2), 2);
    assert_memory_equal(u2, ((uint8_t[]){1, 1}), 2);
}

static void test_backups_balanced_by_the_algorithm(void **state)
{
    /* the primaries down: the two backups share by weight (3:1) under WRR */
    struct balance_backend bk[3] = {{"p", FULL, 0, FULL, 0}, {"b1", 3 * FULL, 0, 3 * FULL, 1},
                                    {"b2", FULL, 0, FULL, 1}};
    balancer *b = balancer_new(BAL_WEIGHTED_RR, bk, 3, 1);
    int seen[3] = {0};
    for (int i = 0; i < 400; i++) {
        uint8_t u[3] = {0, 1, 1};
        balance_keep_primaries(bk, u, 3);
        seen[balancer_pick(b, bk, u, 0)]++;
    }
    assert_int_equal(seen[0], 0);
    assert_int_equal(seen[1], 300);
    assert_int_equal(seen[2], 100);
    /* p back: everything to it */
    for (int i = 0; i < 50; i++) {
        uint8_t u[3] = {1, 1, 1};
        balance_keep_primaries(bk, u, 3);
        assert_int_equal(balancer_pick(b, bk, u, 0), 0);
    }
    balancer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ramp_is_linear_from_zero),
        cmocka_unit_test(test_ramp_off_and_edges),
        cmocka_unit_test(test_weight_zero_only_when_alone),
        cmocka_unit_test(test_maglev_ignores_weights_at_pick),
        cmocka_unit_test(test_warming_share_per_algorithm),
        cmocka_unit_test(test_round_robin_still_ignores_weights),
        cmocka_unit_test(test_least_conn_warming_under_load),
        cmocka_unit_test(test_round_robin_every_backend_warming),
        cmocka_unit_test(test_ramp_through_the_balancer),
        cmocka_unit_test(test_keep_primaries),
        cmocka_unit_test(test_backups_balanced_by_the_algorithm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
