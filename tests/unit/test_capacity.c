/* Unit tests for lb/core/capacity.c: how long a port stays blocked after each kind of
 * close under each policy (the kernel-mode wait checked against the predicate the port
 * map uses, isn_kernel_reuse_safe), the cycle and capacity arithmetic, and the running
 * averages with their merge.  That the simulator's sustainable rate agrees with the
 * formula is in test_simulate.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "core/capacity.h"
#include "core/isn.h"

static struct portmap_policy policy(enum isn_mode mode, enum twrule_kind rule, uint64_t tw_ms)
{
    return (struct portmap_policy){
        .rule = {.kind = rule, .time_wait_ms = tw_ms},
        .mode = mode,
        .local_tw = PM_LOCAL_TW_AVOID,
        .local_tw_ms = 60000,
        .quarantine_ms = 1000,
        .kernel_margin = ISN_KERNEL_MARGIN,
    };
}

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void test_blocked_after_backend_close(void **state)
{
    struct portmap_policy p = policy(ISN_EXPLICIT, TWRULE_STRICT, 3000);
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 5, 100, 0), 3000, 1e-9));
    p = policy(ISN_OFF, TWRULE_BSD, 3000);
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 5, 100, 0), 3000, 1e-9));
    p = policy(ISN_EXPLICIT, TWRULE_BSD, 3000);
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 5, 100, 0), 0, 1e-9));
    p = policy(ISN_EXPLICIT, TWRULE_TIMESTAMPS, 3000);
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 5, 100, 0), 0, 1e-9));
    p = policy(ISN_KERNEL, TWRULE_STRICT, 3000);
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 5, 100, 0), 3000, 1e-9));
    /* kernel, bsd: (100 + 2 + margin) x 64 ns after the SYN (4.1 ms with the default
     * margin), 1 ms of which the connection held the port */
    p = policy(ISN_KERNEL, TWRULE_BSD, 60000);
    double want = (100.0 + 2 + ISN_KERNEL_MARGIN) * 64e-6 - 1;
    assert_true(want > 1);
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 1, 100, 0), want, 1e-3));
    /* held long enough: the clock is past already */
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 2000, 100, 0), 0, 1e-9));
    /* 2 GiB sent: the clock needs ~138 s, the TIME_WAIT ends first */
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_BACKEND, 10, 2147483648.0, 0), 60000,
                     1e-9));
    /* reset, never blocked */
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_NONE, 10, 100, 0), 0, 1e-9));
}

/* The kernel-mode wait is exactly when the port map's own predicate turns true. */
static void test_kernel_wait_matches_reuse_predicate(void **state)
{
    struct portmap_policy p = policy(ISN_KERNEL, TWRULE_BSD, 3600000);
    const double holds[] = {0, 1, 10, 500, 1073, 1100, 30000, 136000, 140000};
    const double bytes[] = {0, 100, 1e6, 33554432, 1e9, 2147483000.0, 4294967290.0};
    const uint64_t syn = 1000000000000ull; /* real and monotonic clocks agree */
    for (size_t i = 0; i < sizeof holds / sizeof holds[0]; i++)
        for (size_t j = 0; j < sizeof bytes / sizeof bytes[0]; j++) {
            double w = capacity_blocked_ms(&p, PM_CLOSER_BACKEND, holds[i], bytes[j], 0);
            uint64_t at = syn + (uint64_t)((holds[i] + w) * 1e6);
            uint64_t b = (uint64_t)bytes[j];
            /* safe 1 us after the predicted moment, and not 1 us before (if it waits) */
            assert_true(isn_kernel_reuse_safe(syn, syn, at + 1000, at + 1000, b,
                                              ISN_KERNEL_MARGIN));
            if (w > 0.002)
                assert_false(isn_kernel_reuse_safe(syn, syn, at - 1000, at - 1000, b,
                                                   ISN_KERNEL_MARGIN));
        }
}

static void test_blocked_after_local_close(void **state)
{
    struct portmap_policy p = policy(ISN_EXPLICIT, TWRULE_BSD, 3000);
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_LOCAL, 5, 0, 0), 60000, 1e-9));
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_LOCAL, 5, 0, 1), 0, 1e-9));
    p.local_tw = PM_LOCAL_TW_DESTROY;
    assert_true(near(capacity_blocked_ms(&p, PM_CLOSER_LOCAL, 5, 0, 0), 0, 1e-9));
}

static void test_cycle_and_capacity(void **state)
{
    /* 20 ports, strict 3 s, hold 500 ms, backend first: 20 / 3.5 s */
    struct portmap_policy p = policy(ISN_EXPLICIT, TWRULE_STRICT, 3000);
    struct capacity_mix m = {.hold_ms = 500, .backend_first = 1};
    assert_true(near(capacity_cycle_ms(&p, &m), 3500, 1e-9));
    assert_true(near(capacity_cps(&p, 20, &m), 20 / 3.5, 1e-9));
    /* half the connections closed by us without timestamps (60 s), a quarter reset */
    m = (struct capacity_mix){.hold_ms = 100, .backend_first = 0.25, .local_first = 0.5};
    assert_true(near(capacity_cycle_ms(&p, &m), 100 + 0.25 * 3000 + 0.5 * 60000, 1e-9));
    m.local_timestamps = 1; /* ... with timestamps: reusable at once */
    assert_true(near(capacity_cycle_ms(&p, &m), 100 + 0.25 * 3000, 1e-9));
    /* explicit ISNs against bsd: only the hold counts, at least 1 ms */
    p = policy(ISN_EXPLICIT, TWRULE_BSD, 60000);
    m = (struct capacity_mix){.hold_ms = 20, .backend_first = 1};
    assert_true(near(capacity_cps(&p, 1000, &m), 50000, 1e-6));
    m.hold_ms = 0;
    assert_true(near(capacity_cycle_ms(&p, &m), CAPACITY_MIN_CYCLE_MS, 1e-12));
    assert_true(isfinite(capacity_cps(&p, 64511, &m)));
}

static void test_running_averages(void **state)
{
    struct capacity_obs o = {0};
    struct capacity_mix m;
    capacity_obs_mix(&o, &m); /* nothing seen: hold 0, the backend closing first */
    assert_true(m.hold_ms == 0 && m.backend_first == 1 && m.local_first == 0);
    struct portmap_release be = {.closer = PM_CLOSER_BACKEND, .bytes_to_backend = 1000};
    struct portmap_release lo = {.closer = PM_CLOSER_LOCAL, .timestamps = 1};
    struct portmap_release failed = {.closer = PM_CLOSER_NONE, .never_connected = 1};
    capacity_observe(&o, 10, &be);
    capacity_observe(&o, 30, &be);
    capacity_observe(&o, 20, &lo);
    capacity_observe(&o, 5000, &failed); /* never connected: not part of the mix */
    assert_int_equal(o.n, 3);
    assert_int_equal(o.n_backend, 2);
    assert_int_equal(o.n_local, 1);
    capacity_obs_mix(&o, &m);
    assert_true(near(m.hold_ms, 20, 1e-9)); /* the plain mean while few */
    assert_true(near(m.backend_first, 2.0 / 3, 1e-9));
    assert_true(near(m.local_first, 1.0 / 3, 1e-9));
    assert_true(near(m.bytes_to_backend, 1000, 1e-9));
    assert_true(near(m.local_timestamps, 1, 1e-9));
    /* then exponentially weighted: after many connections of 100 ms, the old ones are
     * forgotten */
    for (int i = 0; i < 20 * CAPACITY_EWMA_N; i++)
        capacity_observe(&o, 100, &be);
    assert_true(near(o.mix.hold_ms, 100, 1e-3));
    assert_true(near(o.mix.backend_first, 1, 1e-6));
}

static void test_merge_weights_by_connections(void **state)
{
    struct capacity_obs a = {0}, b = {0}, none = {0};
    struct portmap_release be = {.closer = PM_CLOSER_BACKEND, .bytes_to_backend = 100};
    struct portmap_release rst = {.closer = PM_CLOSER_NONE};
    for (int i = 0; i < 30; i++)
        capacity_observe(&a, 10, &be);
    for (int i = 0; i < 10; i++)
        capacity_observe(&b, 50, &rst);
    struct capacity_obs m = a;
    capacity_obs_merge(&m, &b);
    assert_int_equal(m.n, 40);
    assert_true(near(m.mix.hold_ms, (30 * 10 + 10 * 50) / 40.0, 1e-9));
    assert_true(near(m.mix.backend_first, 0.75, 1e-9));
    assert_true(near(m.mix.bytes_to_backend, 100, 1e-9)); /* b had no backend close */
    /* a worker that saw nothing changes nothing */
    struct capacity_obs m2 = a;
    capacity_obs_merge(&m2, &none);
    assert_true(near(m2.mix.hold_ms, 10, 1e-9) && m2.n == 30);
    struct capacity_obs m3 = none;
    capacity_obs_merge(&m3, &a);
    assert_true(near(m3.mix.hold_ms, 10, 1e-9) && m3.n == 30);
    /* weights stop growing at CAPACITY_EWMA_N: a busy worker does not drown the others
     * beyond the averages' own memory */
    struct capacity_obs big = {0}, small = {0};
    for (int i = 0; i < 4 * CAPACITY_EWMA_N; i++)
        capacity_observe(&big, 10, &be);
    for (int i = 0; i < CAPACITY_EWMA_N; i++)
        capacity_observe(&small, 30, &be);
    capacity_obs_merge(&big, &small);
    assert_true(near(big.mix.hold_ms, 20, 1e-6));
    /* three workers merged one after the other, in any order: each counts the same */
    struct capacity_obs w[3] = {{0}};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 2 * CAPACITY_EWMA_N; i++)
            capacity_observe(&w[k], 10 * (uint64_t)(k + 1), &be);
    const int orders[2][3] = {{0, 1, 2}, {2, 1, 0}};
    for (int o = 0; o < 2; o++) {
        struct capacity_obs sum = w[orders[o][0]];
        capacity_obs_merge(&sum, &w[orders[o][1]]);
        capacity_obs_merge(&sum, &w[orders[o][2]]);
        assert_true(near(sum.mix.hold_ms, 20, 1e-6));
        assert_int_equal(sum.n, 6 * CAPACITY_EWMA_N);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_after_backend_close),
        cmocka_unit_test(test_kernel_wait_matches_reuse_predicate),
        cmocka_unit_test(test_blocked_after_local_close),
        cmocka_unit_test(test_cycle_and_capacity),
        cmocka_unit_test(test_running_averages),
        cmocka_unit_test(test_merge_weights_by_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
