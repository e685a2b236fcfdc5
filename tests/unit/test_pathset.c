/* Unit tests for lb/core/pathset.c: rotation over inside addresses, what a reload shares
 * and what it seeds, and paths that can never reach the backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/pathset.h"

#define FAM4 2  /* AF_INET, passed through untouched */
#define FAM6 10 /* AF_INET6 */

static struct portmap_policy policy(void)
{
    struct portmap_policy p = {
        .rule = {.kind = TWRULE_BSD, .time_wait_ms = 60000},
        .mode = ISN_EXPLICIT,
        .local_tw = PM_LOCAL_TW_AVOID,
        .local_tw_ms = 60000,
        .quarantine_ms = 1000,
        .kernel_margin = ISN_KERNEL_MARGIN,
    };
    return p;
}

static struct pathset_inside v4(uint8_t last)
{
    struct pathset_inside in = {.family = FAM4, .len = 4, .addr = {198, 18, 0, last}};
    return in;
}

static struct pathset_inside v6(uint8_t last)
{
    struct pathset_inside in = {.family = FAM6, .len = 16};
    in.addr[0] = 0x20;
    in.addr[15] = last;
    return in;
}

static void backend_closes(pathset *ps, const struct pathset_pick *p, uint64_t now)
{
    struct portmap_release r = {.closer = PM_CLOSER_BACKEND, .isn_known = 1, .isn = 1000,
                                .bytes_to_backend = 10};
    pathset_release(ps, p, &r, now);
}

static void test_rotates_over_inside_addresses(void **state)
{
    struct portmap_policy pol = policy();
    struct pathset_inside in[3] = {v4(1), v4(2), v4(3)};
    pathset *ps = pathset_new(FAM4, in, 3, 20000, 20009, &pol, NULL);
    assert_non_null(ps);
    assert_int_equal(pathset_size(ps), 3);
    struct pathset_pick p;
    for (size_t k = 0; k < 6; k++) {
        assert_int_equal(pathset_acquire(ps, 0, 0, 0, &p), 0);
        assert_int_equal(p.path, k % 3);
    }
    pathset_free(ps);
}

static void test_exhausted_only_when_every_path_is(void **state)
{
    struct portmap_policy pol = policy();
    struct pathset_inside in[2] = {v4(1), v4(2)};
    pathset *ps = pathset_new(FAM4, in, 2, 20000, 20001, &pol, NULL);
    struct pathset_pick p;
    for (int k = 0; k < 4; k++)
        assert_int_equal(pathset_acquire(ps, 0, 0, 0, &p), 0);
    assert_int_equal(pathset_acquire(ps, 0, 0, 0, &p), -1);
    pathset_free(ps);
}

static void test_other_family_has_no_map(void **state)
{
    struct portmap_policy pol = policy();
    struct pathset_inside in[2] = {v6(1), v4(2)};
    pathset *ps = pathset_new(FAM4, in, 2, 20000, 20009, &pol, NULL);
    assert_null(pathset_map(ps, 0));
    assert_non_null(pathset_map(ps, 1));
    struct pathset_pick p;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(pathset_acquire(ps, 0, 0, 0, &p), 0);
        assert_int_equal(p.path, 1);
    }
    pathset_free(ps);
}

/* A reload with the same inside address and range shares the map: a port busy in the
 * old generation is busy in the new one, and its release is seen by both. */
static void test_reload_shares_unchanged_paths(void **state)
{
    struct portmap_policy pol = policy();
    struct pathset_inside in[1] = {v4(1)};
    pathset *old = pathset_new(FAM4, in, 1, 20000, 20000, &pol, NULL);
    struct pathset_pick busy;
    assert_int_equal(pathset_acquire(old, 0, 0, 0, &busy), 0);
    pathset_count_reuse(old, &busy);

    pathset *neu = pathset_new(FAM4, in, 1, 20000, 20000, &pol, old);
    assert_ptr_equal(pathset_map(old, 0), pathset_map(neu, 0));
    assert_int_equal(pathset_reuses(neu, 0), 1);
    struct pathset_pick p;
    assert_int_equal(pathset_acquire(neu, 0, 0, 0, &p), -1); /* the one port is busy */
    pathset_free(old);                                        /* the map lives on */
    backend_closes(neu, &busy, 5);
    uint32_t counts[PM_NSTATES];
    portmap_counts(pathset_map(neu, 0), counts);
    assert_int_equal(counts[PM_REMOTE_TW], 1);
    pathset_free(neu);
}

/* A new range gets a new map that remembers the old TIME_WAIT entries still in range. */
static void test_reload_with_new_range_seeds_what_is_remembered(void **state)
{
    struct portmap_policy pol = policy();
    struct pathset_inside in[1] = {v4(1)};
    pathset *old = pathset_new(FAM4, in, 1, 20000, 20001, &pol, NULL);
    struct pathset_pick a, b;
    assert_int_equal(pathset_acquire(old, 0, 0, 0, &a), 0);
    assert_int_equal(pathset_acquire(old, 0, 0, 0, &b), 0);
    backend_closes(old, &a, 10);                   /* remembered: REMOTE_TW */
    pathset *neu = pathset_new(FAM4, in, 1, 20000, 20005, &pol, old);
    assert_ptr_not_equal(pathset_map(old, 0), pathset_map(neu, 0));
    uint32_t counts[PM_NSTATES];
    portmap_counts(pathset_map(neu, 0), counts);
    assert_int_equal(counts[PM_REMOTE_TW], 1);
    assert_int_equal(counts[PM_BUSY], 0);          /* b stays the old map's business */
    assert_int_equal(counts[PM_FREE], 5);
    pathset_free(old);
    pathset_free(neu);
}

static void test_bad_arguments(void **state)
{
    struct portmap_policy pol = policy();
    struct pathset_inside in[1] = {v4(1)};
    assert_null(pathset_new(FAM4, in, 0, 20000, 20001, &pol, NULL));
    assert_null(pathset_new(FAM4, in, 1, 20001, 20000, &pol, NULL));
    assert_null(pathset_new(FAM4, in, 1, 0, 20000, &pol, NULL));
}

/* Every release feeds its path's running averages: the hold time from the pick's
 * acquired_ms, who closed first, the bytes; a connect that never completed does not.
 * A reload keeps them with a shared path and a re-seeded one. */
static void test_releases_feed_the_capacity_mix(void **state)
{
    struct portmap_policy pol = policy();
    struct pathset_inside in[2] = {v4(1), v4(2)};
    pathset *ps = pathset_new(FAM4, in, 2, 20000, 20009, &pol, NULL);
    struct pathset_pick a, b, c;
    assert_int_equal(pathset_acquire(ps, 1000, 0, 0, &a), 0);
    assert_int_equal(a.acquired_ms, 1000);
    assert_int_equal(pathset_acquire(ps, 1000, 0, 0, &b), 0); /* the other path */
    assert_int_equal(pathset_acquire(ps, 1100, 0, 0, &c), 0); /* path 0 again */
    assert_int_equal(a.path, 0);
    assert_int_equal(c.path, 0);
    backend_closes(ps, &a, 1040); /* held 40 ms */
    struct portmap_release local = {.closer = PM_CLOSER_LOCAL, .timestamps = 1};
    pathset_release(ps, &c, &local, 1180); /* held 80 ms */
    struct portmap_release failed = {.closer = PM_CLOSER_NONE, .never_connected = 1};
    pathset_release(ps, &b, &failed, 3000);
    const struct capacity_obs *o = pathset_capacity_obs(ps, 0);
    assert_int_equal(o->n, 2);
    assert_true(o->mix.hold_ms > 59.999 && o->mix.hold_ms < 60.001);
    assert_true(o->mix.backend_first > 0.499 && o->mix.backend_first < 0.501);
    assert_true(o->mix.bytes_to_backend > 9.999 && o->mix.bytes_to_backend < 10.001);
    assert_true(o->mix.local_timestamps > 0.999);
    assert_int_equal(pathset_capacity_obs(ps, 1)->n, 0); /* the failed connect */
    assert_int_equal(pathset_capacity_obs(ps, 7)->n, 0); /* no such path */
    /* a reload: path 0 shared (same range), then re-seeded (a new range) */
    pathset *same = pathset_new(FAM4, in, 2, 20000, 20009, &pol, ps);
    pathset *wider = pathset_new(FAM4, in, 2, 20000, 20019, &pol, ps);
    assert_int_equal(pathset_capacity_obs(same, 0)->n, 2);
    assert_int_equal(pathset_capacity_obs(wider, 0)->n, 2);
    assert_true(pathset_capacity_obs(wider, 0)->mix.hold_ms > 59.999);
    pathset_free(wider);
    pathset_free(same);
    pathset_free(ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotates_over_inside_addresses),
        cmocka_unit_test(test_exhausted_only_when_every_path_is),
        cmocka_unit_test(test_other_family_has_no_map),
        cmocka_unit_test(test_reload_shares_unchanged_paths),
        cmocka_unit_test(test_reload_with_new_range_seeds_what_is_remembered),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_releases_feed_the_capacity_mix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
