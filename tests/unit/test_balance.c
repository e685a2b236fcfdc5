/* Unit tests for lb/balance.c: each algorithm against its definition, exact where the
 * algorithm is deterministic, with statistical bounds (fixed seeds, so reproducible)
 * where it is random.  Pinned values (hashes, a Maglev table checksum) come from an
 * independent Python implementation of the same definitions, so they guard that two twlb
 * processes, or two twlb versions, place a client on the same backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/balance.h"

#define M 65537u /* the Maglev table size, part of the placement contract */

static const uint8_t all[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* The test's own random client hashes (splitmix64), independent of balance.c. */
static uint64_t test_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Maglev slot s is served, when every backend is usable, by pick(hash = s): this reads
 * the whole table through the public API. */
static void maglev_slots(balancer *b, const struct balance_backend *bk, const uint8_t *usable,
                         int *count, size_t n)
{
    memset(count, 0, n * sizeof *count);
    for (uint32_t s = 0; s < M; s++) {
        int i = balancer_pick(b, bk, usable, s);
        assert_true(i >= 0 && (size_t)i < n);
        count[i]++;
    }
}

/* ---- names ------------------------------------------------------------------------- */

static void test_algo_names_round_trip(void **state)
{
    static const char *names[] = {"round_robin", "weighted_round_robin", "least_conn",
                                  "random_two", "maglev"};
    for (size_t i = 0; i < 5; i++) {
        enum balance_algo a = (enum balance_algo)99;
        assert_int_equal(balance_algo_parse(names[i], &a), 0);
        assert_string_equal(balance_algo_name(a), names[i]);
    }
    enum balance_algo a = BAL_MAGLEV;
    assert_int_equal(balance_algo_parse("roundrobin", &a), -1);
    assert_int_equal(balance_algo_parse("maglev ", &a), -1);
    assert_int_equal(balance_algo_parse("", &a), -1);
    assert_int_equal(a, BAL_MAGLEV); /* untouched on failure */
    assert_string_equal(balance_algo_name((enum balance_algo)99), "?");
}

/* ---- round robin ------------------------------------------------------------------- */

static void test_round_robin_rotation_and_skips(void **state)
{
    struct balance_backend bk[3] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_ROUND_ROBIN, bk, 3, 1);
    assert_non_null(b);
    for (int i = 0; i < 7; i++)
        assert_int_equal(balancer_pick(b, bk, all, 0), i % 3); /* ends after a pick of 0 */
    uint8_t u[3] = {1, 0, 1};
    assert_int_equal(balancer_pick(b, bk, u, 0), 2); /* after 0 comes 1: skipped */
    assert_int_equal(balancer_pick(b, bk, u, 0), 0);
    assert_int_equal(balancer_pick(b, bk, u, 0), 2);
    uint8_t none[3] = {0, 0, 0};
    assert_int_equal(balancer_pick(b, bk, none, 0), -1);
    /* nothing usable does not move the rotation: after 2 comes 0 */
    assert_int_equal(balancer_pick(b, bk, all, 0), 0);
    assert_int_equal(balancer_pick(b, bk, all, 0), 1);
    uint8_t only_b[3] = {0, 1, 0};
    assert_int_equal(balancer_pick(b, bk, only_b, 0), 1);
    assert_int_equal(balancer_pick(b, bk, all, 0), 2);
    balancer_free(b);
}

/* ---- smooth weighted round robin ------------------------------------------------- */

static void test_smooth_wrr_matches_nginx(void **state)
{
    struct balance_backend w[3] = {{"a", 5, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_WEIGHTED_RR, w, 3, 1);
    assert_non_null(b);
    /* nginx's documented sequence for 5,1,1, twice: the state returns to zero after
     * each cycle of sum(weights) picks. */
    const int want[7] = {0, 0, 1, 0, 2, 0, 0}; /* a a b a c a a */
    for (int i = 0; i < 14; i++)
        assert_int_equal(balancer_pick(b, w, all, 0), want[i % 7]);
    int count[3] = {0};
    for (int i = 0; i < 7000; i++)
        count[balancer_pick(b, w, all, 0)]++;
    assert_int_equal(count[0], 5000);
    assert_int_equal(count[1], 1000);
    assert_int_equal(count[2], 1000);
    balancer_free(b);

    struct balance_backend w2[3] = {{"a", 5, 0, 0, 0}, {"b", 3, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    b = balancer_new(BAL_WEIGHTED_RR, w2, 3, 1);
    memset(count, 0, sizeof count);
    int run = 0, longest = 0, prev = -1;
    for (int i = 0; i < 9000; i++) {
        int p = balancer_pick(b, w2, all, 0);
        count[p]++;
        run = p == prev ? run + 1 : 1;
        prev = p;
        if (run > longest)
            longest = run;
    }
    assert_int_equal(count[0], 5000);
    assert_int_equal(count[1], 3000);
    assert_int_equal(count[2], 1000);
    assert_true(longest <= 2); /* smooth: a b a c a b a b a, never a a a */
    balancer_free(b);
}

static void test_smooth_wrr_unusable_gain_nothing(void **state)
{
    struct balance_backend w[3] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_WEIGHTED_RR, w, 3, 1);
    uint8_t no_b[3] = {1, 0, 1};
    for (int i = 0; i < 10; i++)
        assert_int_equal(balancer_pick(b, w, no_b, 0), i % 2 ? 2 : 0);
    /* b was skipped 10 times; had it gained weight meanwhile it would now take a burst */
    int seen[3] = {0};
    for (int i = 0; i < 3; i++)
        seen[balancer_pick(b, w, all, 0)]++;
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 1);
    uint8_t none[3] = {0, 0, 0};
    assert_int_equal(balancer_pick(b, w, none, 0), -1);
    balancer_free(b);
}

/* ---- least_conn -------------------------------------------------------------------- */

static void test_least_conn_prefers_lightest(void **state)
{
    struct balance_backend v[3] = {{"a", 1, 2, 0, 0}, {"b", 1, 1, 0, 0}, {"c", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_LEAST_CONN, v, 3, 1);
    assert_non_null(b);
    assert_int_equal(balancer_pick(b, v, all, 0), 2); /* the idle one */
    v[2].active = 5;
    assert_int_equal(balancer_pick(b, v, all, 0), 1);
    uint8_t no_b[3] = {1, 0, 1};
    assert_int_equal(balancer_pick(b, v, no_b, 0), 0); /* 2 < 5 among the usable */
    uint8_t none[3] = {0, 0, 0};
    assert_int_equal(balancer_pick(b, v, none, 0), -1);
    balancer_free(b);

    /* weights: 4 active on weight 4 (1 per unit) beats 2 on weight 1 (2 per unit) ... */
    struct balance_backend w[2] = {{"a", 4, 4, 0, 0}, {"b", 1, 2, 0, 0}};
    b = balancer_new(BAL_LEAST_CONN, w, 2, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(balancer_pick(b, w, all, 0), 0);
    /* ... and 9 on weight 4 (2.25) loses to 2 on weight 1 (2) */
    w[0].active = 9;
    assert_int_equal(balancer_pick(b, w, all, 0), 1);
    /* products beyond 32 bits: 5000 on weight 1000 against 4294968 on weight 1 */
    w[0] = (struct balance_backend){"a", 1000, 5000, 0, 0};
    w[1] = (struct balance_backend){"b", 1, 4294968, 0, 0};
    assert_int_equal(balancer_pick(b, w, all, 0), 0);
    /* ratios that only exact cross-multiplication tells apart */
    w[0] = (struct balance_backend){"a", 1000, 4000000000u, 0, 0};
    w[1] = (struct balance_backend){"b", 999, 3996000001u, 0, 0}; /* 4000000.001 per unit */
    assert_int_equal(balancer_pick(b, w, all, 0), 0);
    w[1].active = 3995999999u; /* 3999999.999 per unit */
    assert_int_equal(balancer_pick(b, w, all, 0), 1);
    balancer_free(b);
}

static void test_least_conn_ties_rotate(void **state)
{
    struct balance_backend t[4] = {{"a", 1, 3, 0, 0}, {"b", 1, 3, 0, 0}, {"c", 1, 3, 0, 0}, {"d", 1, 7, 0, 0}};
    balancer *b = balancer_new(BAL_LEAST_CONN, t, 4, 1);
    /* among the equals a, b, c the rotation goes on; d is heavier and never picked */
    const int want[7] = {0, 1, 2, 0, 1, 2, 0};
    for (int i = 0; i < 7; i++)
        assert_int_equal(balancer_pick(b, t, all, 0), want[i]);
    /* an unusable equal is skipped and the rotation continues after it */
    uint8_t no_b[4] = {1, 0, 1, 1};
    assert_int_equal(balancer_pick(b, t, no_b, 0), 2);
    assert_int_equal(balancer_pick(b, t, all, 0), 0);
    /* with weights: equal ratios 2/2 and 1/1 tie and also take turns */
    struct balance_backend w[2] = {{"a", 2, 2, 0, 0}, {"b", 1, 1, 0, 0}};
    balancer *b2 = balancer_new(BAL_LEAST_CONN, w, 2, 1);
    assert_int_equal(balancer_pick(b2, w, all, 0), 0);
    assert_int_equal(balancer_pick(b2, w, all, 0), 1);
    assert_int_equal(balancer_pick(b2, w, all, 0), 0);
    balancer_free(b);
    balancer_free(b2);
}

/* ---- random_two -------------------------------------------------------------------- */

static void test_random_two_avoids_load(void **state)
{
    /* a loaded backend is always drawn against a distinct idle one, so it never wins */
    struct balance_backend v[3] = {{"a", 1, 100, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_RANDOM_TWO, v, 3, 42);
    assert_non_null(b);
    int count[3] = {0};
    for (int i = 0; i < 3000; i++)
        count[balancer_pick(b, v, all, 0)]++;
    assert_int_equal(count[0], 0);
    assert_in_range(count[1], 1350, 1650); /* b vs c: the first draw, 1/2 each */
    balancer_free(b);

    /* loads 0, 1, 2: the lightest wins whenever drawn (2/3 of the pairs), the middle
     * one only against the heaviest (1/3), the heaviest never.  Choosing the global
     * minimum instead would give 6000, 0, 0. */
    struct balance_backend l[3] = {{"a", 1, 0, 0, 0}, {"b", 1, 1, 0, 0}, {"c", 1, 2, 0, 0}};
    b = balancer_new(BAL_RANDOM_TWO, l, 3, 7);
    memset(count, 0, sizeof count);
    for (int i = 0; i < 6000; i++)
        count[balancer_pick(b, l, all, 0)]++;
    assert_in_range(count[0], 3800, 4200); /* 4000 expected, sd 37 */
    assert_in_range(count[1], 1800, 2200);
    assert_int_equal(count[2], 0);
    /* only one usable: it; none: -1 */
    uint8_t only_c[3] = {0, 0, 1}, none[3] = {0, 0, 0};
    assert_int_equal(balancer_pick(b, l, only_c, 0), 2);
    assert_int_equal(balancer_pick(b, l, none, 0), -1);
    balancer_free(b);

    /* per weight: 3 on weight 3 (1 per unit) beats 2 on weight 1, whichever is drawn
     * first (with two backends both are always drawn) */
    struct balance_backend w[2] = {{"a", 3, 3, 0, 0}, {"b", 1, 2, 0, 0}};
    b = balancer_new(BAL_RANDOM_TWO, w, 2, 9);
    for (int i = 0; i < 100; i++)
        assert_int_equal(balancer_pick(b, w, all, 0), 0);
    balancer_free(b);
}

static void test_random_two_weight_proportional(void **state)
{
    /* equal load: the first draw wins, so picks follow the weights 1:2:3 */
    struct balance_backend w[3] = {{"a", 1, 0, 0, 0}, {"b", 2, 0, 0, 0}, {"c", 3, 0, 0, 0}};
    balancer *b = balancer_new(BAL_RANDOM_TWO, w, 3, 2024);
    int count[3] = {0};
    for (int i = 0; i < 12000; i++)
        count[balancer_pick(b, w, all, 0)]++;
    assert_in_range(count[0], 1750, 2250); /* 2000 expected, sd 41 */
    assert_in_range(count[1], 3750, 4250); /* 4000, sd 52 */
    assert_in_range(count[2], 5750, 6250); /* 6000, sd 55 */
    /* an unusable backend is never drawn: a and b share 1:2 */
    uint8_t no_c[3] = {1, 1, 0};
    memset(count, 0, sizeof count);
    for (int i = 0; i < 6000; i++)
        count[balancer_pick(b, w, no_c, 0)]++;
    assert_int_equal(count[2], 0);
    assert_in_range(count[1], 3800, 4200); /* 4000, sd 37 */
    balancer_free(b);

    /* the seed decides the sequence, and only the seed */
    balancer *x = balancer_new(BAL_RANDOM_TWO, w, 3, 5), *y = balancer_new(BAL_RANDOM_TWO, w, 3, 5);
    balancer *z = balancer_new(BAL_RANDOM_TWO, w, 3, 6);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int px = balancer_pick(x, w, all, 0);
        assert_int_equal(balancer_pick(y, w, all, 0), px);
        differ += balancer_pick(z, w, all, 0) != px;
    }
    assert_true(differ > 0);
    balancer_free(x);
    balancer_free(y);
    balancer_free(z);
}

/* ---- maglev ------------------------------------------------------------------------ */

static void test_maglev_slots_even(void **state)
{
    /* Filling in turns gives every backend floor(M/N) or ceil(M/N) slots. */
    struct balance_backend bk[3] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_MAGLEV, bk, 3, 0);
    assert_non_null(b);
    int count[100];
    maglev_slots(b, bk, all, count, 3);
    for (int i = 0; i < 3; i++)
        assert_in_range(count[i], M / 3, M / 3 + 1);
    balancer_free(b);

    /* 100 backends of weight 1000: the weights sum to more than M, yet each gets its
     * 1/100; w turns in a row per round would leave most of them without a slot. */
    static struct balance_backend many[100];
    static char names[100][16];
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "be%02d", i);
        many[i] = (struct balance_backend){names[i], 1000, 0, 0, 0};
    }
    uint8_t u[100];
    memset(u, 1, sizeof u);
    b = balancer_new(BAL_MAGLEV, many, 100, 0);
    maglev_slots(b, many, u, count, 100);
    for (int i = 0; i < 100; i++)
        assert_in_range(count[i], M / 100, M / 100 + 1);
    balancer_free(b);
}

static void test_maglev_weights(void **state)
{
    struct balance_backend w[2] = {{"a", 2, 0, 0, 0}, {"b", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_MAGLEV, w, 2, 0);
    int count[5];
    maglev_slots(b, w, all, count, 2);
    assert_in_range(count[0], 2 * M / 3 - 1, 2 * M / 3 + 2); /* 43691.3 */
    /* clients follow the slots */
    uint64_t s = 1;
    int clients[2] = {0};
    for (int i = 0; i < 90000; i++)
        clients[balancer_pick(b, w, all, test_rand(&s))]++;
    assert_in_range(clients[0], 59000, 61000); /* 60000 expected, sd 141 */
    balancer_free(b);

    /* 1..5: within two slots of M * w / 15 */
    struct balance_backend f[5] = {{"v", 1, 0, 0, 0}, {"w", 2, 0, 0, 0}, {"x", 3, 0, 0, 0}, {"y", 4, 0, 0, 0}, {"z", 5, 0, 0, 0}};
    b = balancer_new(BAL_MAGLEV, f, 5, 0);
    maglev_slots(b, f, all, count, 5);
    for (int i = 0; i < 5; i++) {
        int64_t want = (int64_t)M * (i + 1) / 15;
        assert_in_range(count[i], want - 2, want + 2);
    }
    balancer_free(b);
}

static void test_maglev_sticky_and_unusable(void **state)
{
    struct balance_backend bk[3] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    balancer *b = balancer_new(BAL_MAGLEV, bk, 3, 0);
    enum { N = 100000 };
    static int first[N];
    static uint64_t hash[N];
    uint64_t s = 99;
    int count[3] = {0};
    for (int i = 0; i < N; i++) {
        hash[i] = test_rand(&s);
        first[i] = balancer_pick(b, bk, all, hash[i]);
        count[first[i]]++;
        bk[0].active = (uint32_t)i; /* load does not matter to maglev */
        assert_int_equal(balancer_pick(b, bk, all, hash[i]), first[i]);
    }
    for (int i = 0; i < 3; i++)
        assert_in_range(count[i], 32500, 34200); /* 33333, sd 149 */

    /* c unusable: exactly its clients move, and they spread over a and b */
    uint8_t no_c[3] = {1, 1, 0};
    int to[3] = {0}, moved = 0;
    for (int i = 0; i < N; i++) {
        int p = balancer_pick(b, bk, no_c, hash[i]);
        assert_int_not_equal(p, 2);
        if (first[i] != 2)
            assert_int_equal(p, first[i]);
        else {
            to[p]++;
            moved++;
        }
    }
    /* half each (sd 0.3%); probing slot + 1 instead gives 62% to a with these names */
    print_message("maglev: c unusable, %d%% of its %d clients went to a\n", to[0] * 100 / moved,
                  moved);
    assert_in_range(to[0], moved * 47 / 100, moved * 53 / 100);
    /* c back: everyone is home again */
    for (int i = 0; i < N; i++)
        assert_int_equal(balancer_pick(b, bk, all, hash[i]), first[i]);
    uint8_t none[3] = {0, 0, 0};
    assert_int_equal(balancer_pick(b, bk, none, hash[0]), -1);
    balancer_free(b);

    /* weights 2:1:1, c unusable: its clients go 2:1 to a and b, as the slots do */
    struct balance_backend w[3] = {{"a", 2, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    b = balancer_new(BAL_MAGLEV, w, 3, 0);
    memset(to, 0, sizeof to);
    moved = 0;
    for (int i = 0; i < N; i++) {
        int p = balancer_pick(b, w, no_c, hash[i]);
        if (balancer_pick(b, w, all, hash[i]) == 2) {
            to[p]++;
            moved++;
        }
    }
    assert_in_range(to[0], moved * 63 / 100, moved * 70 / 100);
    balancer_free(b);

    /* one usable backend out of ten, with its 1/10 of the slots (a few clients reach it
     * only by the sweep after the independent probes): everyone finds it */
    static struct balance_backend ten[10];
    static char names[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        ten[i] = (struct balance_backend){names[i], 1, 0, 0, 0};
    }
    uint8_t only7[10] = {[7] = 1};
    b = balancer_new(BAL_MAGLEV, ten, 10, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(balancer_pick(b, ten, only7, hash[i]), 7);
    balancer_free(b);
    /* the same with about 7 of the 65537 slots: nearly every client needs the sweep */
    for (int i = 0; i < 10; i++)
        ten[i].weight = i == 7 ? 1 : 1000;
    b = balancer_new(BAL_MAGLEV, ten, 10, 0);
    int slots[10];
    maglev_slots(b, ten, all, slots, 10);
    assert_in_range(slots[7], 1, 10);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(balancer_pick(b, ten, only7, hash[i]), 7);
    balancer_free(b);
}

/* Clients on the backends that stay, moved by rebuilding over <to> instead of <from>
 * (matched by name), in parts per million of those clients. */
static long maglev_moved_ppm(const struct balance_backend *from, size_t nf,
                             const struct balance_backend *to, size_t nt, long *others)
{
    balancer *a = balancer_new(BAL_MAGLEV, from, nf, 0), *b = balancer_new(BAL_MAGLEV, to, nt, 0);
    assert_non_null(a);
    assert_non_null(b);
    uint64_t s = 7;
    long stay = 0, moved = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t h = test_rand(&s);
        const char *before = from[balancer_pick(a, from, all, h)].name;
        const char *after = to[balancer_pick(b, to, all, h)].name;
        int kept = 0;
        for (size_t k = 0; k < nt; k++)
            kept |= !strcmp(to[k].name, before);
        if (!kept)
            continue; /* its backend is gone: it must move */
        stay++;
        moved += strcmp(before, after) != 0;
    }
    balancer_free(a);
    balancer_free(b);
    *others = stay;
    return moved * 1000000 / stay;
}

static void test_maglev_removal_moves_few(void **state)
{
    struct balance_backend abc[3] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    struct balance_backend ab[2] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}};
    struct balance_backend ac[2] = {{"a", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    long others, ppm;
    /* remove the last, then the middle one (indices shift; names do not) */
    ppm = maglev_moved_ppm(abc, 3, ab, 2, &others);
    print_message("maglev: removing c moved %ld.%02ld%% of %ld other clients\n", ppm / 10000,
                  ppm / 100 % 100, others);
    assert_true(ppm <= 50000);
    ppm = maglev_moved_ppm(abc, 3, ac, 2, &others);
    print_message("maglev: removing b moved %ld.%02ld%% of %ld other clients\n", ppm / 10000,
                  ppm / 100 % 100, others);
    assert_true(ppm <= 50000);
    /* one out of ten */
    static struct balance_backend ten[10], nine[9];
    static char names[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "s%d", i);
        ten[i] = (struct balance_backend){names[i], 1, 0, 0, 0};
    }
    memcpy(nine, ten, 4 * sizeof *ten);
    memcpy(nine + 4, ten + 5, 5 * sizeof *ten);
    ppm = maglev_moved_ppm(ten, 10, nine, 9, &others);
    print_message("maglev: removing 1 of 10 moved %ld.%02ld%% of %ld other clients\n",
                  ppm / 10000, ppm / 100 % 100, others);
    assert_true(ppm <= 50000);
    /* adding one back is the same change in reverse */
    ppm = maglev_moved_ppm(nine, 9, ten, 10, &others);
    assert_true(ppm >= 90000 && ppm <= 160000); /* ~1/10 go to the new one, few others */
}

static void test_maglev_ignores_array_order(void **state)
{
    struct balance_backend fwd[4] = {{"web1", 1, 0, 0, 0}, {"web2", 3, 0, 0, 0}, {"web3", 1, 0, 0, 0}, {"web4", 2, 0, 0, 0}};
    struct balance_backend rev[4] = {fwd[3], fwd[2], fwd[1], fwd[0]};
    balancer *a = balancer_new(BAL_MAGLEV, fwd, 4, 0), *b = balancer_new(BAL_MAGLEV, rev, 4, 123);
    for (uint32_t s = 0; s < M; s++)
        assert_string_equal(fwd[balancer_pick(a, fwd, all, s)].name,
                            rev[balancer_pick(b, rev, all, s)].name);
    balancer_free(a);
    balancer_free(b);
}

/* The whole table, one backend index per slot, folded into one number. */
static uint64_t maglev_checksum(const struct balance_backend *bk, size_t n)
{
    balancer *b = balancer_new(BAL_MAGLEV, bk, n, 0);
    uint64_t c = 0;
    for (uint32_t s = 0; s < M; s++)
        c = c * 1000003u + (uint64_t)balancer_pick(b, bk, all, s) + 1;
    balancer_free(b);
    return c;
}

static void test_maglev_pinned_placement(void **state)
{
    /* Computed with an independent Python implementation of the definitions in
     * balance.c.  A change here moves clients between twlb versions. */
    struct balance_backend abc[3] = {{"a", 1, 0, 0, 0}, {"b", 1, 0, 0, 0}, {"c", 1, 0, 0, 0}};
    struct balance_backend a2b1[2] = {{"a", 2, 0, 0, 0}, {"b", 1, 0, 0, 0}};
    assert_true(maglev_checksum(abc, 3) == 0x372c38049014e635ull);
    assert_true(maglev_checksum(a2b1, 2) == 0xad9b61cc0ae84c40ull);
    static struct balance_backend ten[10];
    static char names[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "be%d", i);
        ten[i] = (struct balance_backend){names[i], (uint32_t)i + 1, 0, 0, 0};
    }
    assert_true(maglev_checksum(ten, 10) == 0xcf41e7a682f2b455ull);

    balancer *b = balancer_new(BAL_MAGLEV, abc, 3, 0);
    static const struct {
        uint8_t ip[4];
        int want;
    } v[] = {{{198, 18, 0, 1}, 2}, {{198, 18, 0, 2}, 1}, {{10, 0, 0, 1}, 1},
             {{127, 0, 0, 1}, 0},  {{192, 0, 2, 7}, 0}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal(balancer_pick(b, abc, all, balance_hash_addr(v[i].ip, 4)), v[i].want);
    balancer_free(b);
}

/* ---- client address hash ----------------------------------------------------------- */

static void test_hash_addr_pinned_and_spread(void **state)
{
    /* FNV-1a 64, then splitmix64's finalizer; values from the Python reference. */
    const uint8_t v4[4] = {198, 18, 0, 1};
    uint8_t v6[16] = {0};
    v6[15] = 1; /* ::1 */
    assert_true(balance_hash_addr(v4, 4) == 0x39d1bad6fce9f530ull);
    assert_true(balance_hash_addr(v6, 16) == 0xf7fd696371eda0abull);
    assert_true(balance_hash_addr(v4, 0) == 0xc3817c016ba4ff30ull);

    /* 65536 consecutive IPv4 addresses over the top byte of the hash: 256 each expected
     * (sd 16).  FNV-1a without the finalizer puts 0 in some buckets and 19271 in one. */
    static int top[256];
    for (uint32_t i = 0; i < 65536; i++) {
        uint8_t ip[4] = {10, 0, (uint8_t)(i >> 8), (uint8_t)i};
        top[balance_hash_addr(ip, 4) >> 56]++;
    }
    for (int i = 0; i < 256; i++)
        assert_in_range(top[i], 160, 352);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_algo_names_round_trip),
        cmocka_unit_test(test_round_robin_rotation_and_skips),
        cmocka_unit_test(test_smooth_wrr_matches_nginx),
        cmocka_unit_test(test_smooth_wrr_unusable_gain_nothing),
        cmocka_unit_test(test_least_conn_prefers_lightest),
        cmocka_unit_test(test_least_conn_ties_rotate),
        cmocka_unit_test(test_random_two_avoids_load),
        cmocka_unit_test(test_random_two_weight_proportional),
        cmocka_unit_test(test_maglev_slots_even),
        cmocka_unit_test(test_maglev_weights),
        cmocka_unit_test(test_maglev_sticky_and_unusable),
        cmocka_unit_test(test_maglev_removal_moves_few),
        cmocka_unit_test(test_maglev_ignores_array_order),
        cmocka_unit_test(test_maglev_pinned_placement),
        cmocka_unit_test(test_hash_addr_pinned_and_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
