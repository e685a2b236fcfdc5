/* Unit tests for lb/sim/model.c: the seed's arithmetic, and what each policy does against
 * each modelled stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "core/portmap.h"
#include "core/isn.h"
#include "sim/model.h"

static struct sim_params base(const char *profile, enum sim_policy pol, double rate,
                              uint32_t secs)
{
    struct sim_params p = {.rate = rate, .duration_s = secs, .policy = pol, .n_backends = 1,
                           .port_lo = 1025, .port_hi = 65535, .hold_ms = 10,
                           .upload_bytes = 100, .closer_backend = 1,
                           .connect_timeout_ms = 2000};
    assert_int_equal(sim_stack_parse(profile, &p.stack), 0);
    return p;
}

static void test_seed_arithmetic_strict_240s(void **state)
{
    struct sim_params p = base("strict", SIM_EXPLICIT, 1000, 600);
    struct sim_result r;
    assert_int_equal(sim_run(&p, &r), 0);
    double want = 64511.0 / 240.0; /* 268.8 */
    assert_true(r.sustainable_rate > want * 0.99 && r.sustainable_rate < want * 1.01);
    assert_int_equal(r.stalled, 0); /* twlb never offers a TIME_WAIT port to a strict stack */
    assert_true(r.failed > 0);
    free(r.per_second);
}

static void test_bsd_explicit_not_bounded_by_ports(void **state)
{
    struct sim_params p = base("freebsd", SIM_EXPLICIT, 2000, 300);
    struct sim_result r;
    assert_int_equal(sim_run(&p, &r), 0);
    assert_int_equal(r.stalled, 0);
    assert_int_equal(r.failed, 0);
    assert_true(r.sustainable_rate > 1999.0);
    free(r.per_second);
    /* and far beyond what the ports alone allow: 64,511 / 240 s = 269 per second */
    p = base("windows", SIM_EXPLICIT, 5000, 600);
    assert_int_equal(sim_run(&p, &r), 0);
    assert_int_equal(r.failed + r.stalled, 0);
    free(r.per_second);
}

static void test_naive_proxy_stalls_where_twlb_does_not(void **state)
{
    struct sim_params p = base("freebsd", SIM_NAIVE, 2000, 120);
    p.upload_bytes = 32u << 20; /* the kernel's ISN clock falls behind */
    struct sim_result naive, kernel, expl;
    assert_int_equal(sim_run(&p, &naive), 0);
    assert_true(naive.stalled + naive.failed > 1000);
    p.policy = SIM_KERNEL;
    assert_int_equal(sim_run(&p, &kernel), 0);
    assert_int_equal(kernel.stalled, 0);
    p.policy = SIM_EXPLICIT;
    assert_int_equal(sim_run(&p, &expl), 0);
    assert_int_equal(expl.stalled + expl.failed, 0);
    free(naive.per_second);
    free(kernel.per_second);
    free(expl.per_second);
}

static void test_off_policy_is_the_port_bound(void **state)
{
    struct sim_params p = base("linux", SIM_OFF, 2000, 180);
    struct sim_result r;
    assert_int_equal(sim_run(&p, &r), 0);
    double want = 64511.0 / 60.0;
    assert_true(r.sustainable_rate > want * 0.97 && r.sustainable_rate < want * 1.03);
    assert_int_equal(r.stalled, 0);
    uint32_t sum = 0;
    for (int s = 0; s < 5; s++)
        sum += r.per_second[100].ports[s];
    assert_int_equal(sum, 64511); /* port states always add up */
    free(r.per_second);
}

static void test_profiles(void **state)
{
    struct sim_stack s;
    assert_int_equal(sim_stack_parse("custom:bsd:120", &s), 0);
    assert_int_equal(s.tw_seconds, 120);
    assert_int_equal(s.rule, TWRULE_BSD);
    assert_int_equal(sim_stack_parse("custom:nope:120", &s), -1);
    assert_int_equal(sim_stack_parse("solaris", &s), -1);
    assert_int_equal(sim_stack_parse("windows", &s), 0);
    assert_int_equal(s.tw_seconds, 240);
    assert_int_equal(sim_stack_parse("custom:timestamps:3600", &s), 0);
    assert_int_equal(s.rule, TWRULE_TIMESTAMPS);
    const char *bad[] = {"custom:bsd:0", "custom:bsd:3601", "custom:bsd:", "custom::60",
                         "custom:bsd", "custom:bsd:60s", "custom:bsd:-60", "custom:bsd: 60",
                         "custom:bsd:99999999999", "custom:bsdbsdbsdbsdbsdbsdbsdbsdbsdbsd:60"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(sim_stack_parse(bad[i], &s), -1);
}

static void test_policy_names(void **state)
{
    enum sim_policy p;
    for (enum sim_policy k = SIM_EXPLICIT; k <= SIM_NAIVE; k++) {
        assert_int_equal(sim_policy_parse(sim_policy_name(k), &p), 0);
        assert_int_equal(p, k);
    }
    assert_int_equal(sim_policy_parse("twlb", &p), -1);
    assert_string_equal(sim_policy_name(SIM_NAIVE), "naive");
}

/* Ports scale with inside addresses and nodes: twice the paths, twice the port bound. */
static void test_inside_addresses_and_nodes_add_ports(void **state)
{
    struct sim_params p = base("strict", SIM_EXPLICIT, 2000, 600);
    struct sim_result one, two, fleet;
    assert_int_equal(sim_run(&p, &one), 0);
    p.n_inside = 2;
    assert_int_equal(sim_run(&p, &two), 0);
    p.n_inside = 1;
    p.n_nodes = 2;
    assert_int_equal(sim_run(&p, &fleet), 0);
    double want = 64511.0 / 240.0;
    assert_true(two.sustainable_rate > 2 * want * 0.99 && two.sustainable_rate < 2 * want * 1.01);
    assert_true(fleet.sustainable_rate > 2 * want * 0.99 && fleet.sustainable_rate < 2 * want * 1.01);
    assert_true(one.sustainable_rate < want * 1.01);
    /* two nodes share the load evenly */
    assert_true(fleet.max_node_accepted - fleet.min_node_accepted <= fleet.max_node_accepted / 100);
    free(one.per_second);
    free(two.per_second);
    free(fleet.per_second);
}

/* Each backend keeps its own rule: a strict backend next to a bsd one runs out of ports
 * alone, and the balancer sends its share to the other, so nothing is refused. */
static void test_each_backend_its_own_rule(void **state)
{
    struct sim_backend be[2] = {{"bsd", 1, {0}}, {"strict", 1, {0}}};
    assert_int_equal(sim_stack_parse("freebsd", &be[0].stack), 0);
    assert_int_equal(sim_stack_parse("strict", &be[1].stack), 0);
    struct sim_params p = base("freebsd", SIM_EXPLICIT, 1000, 600);
    p.port_lo = 30000;
    p.port_hi = 30999; /* 1,000 ports: the strict one holds 4.2 per second */
    p.n_backends = 2;
    p.backends = be;
    struct sim_result r;
    assert_int_equal(sim_run(&p, &r), 0);
    assert_int_equal(r.failed + r.stalled, 0);
    /* at the end the strict backend's ports are all in its TIME_WAIT or busy, the bsd
     * one's mostly reused: more than 1,000 ports are held in backend TIME_WAIT */
    assert_true(r.per_second[599].ports[PM_REMOTE_TW] > 1000);
    free(r.per_second);
    /* the same pool with every backend strict refuses most connections */
    be[0].stack = be[1].stack;
    assert_int_equal(sim_run(&p, &r), 0);
    assert_true(r.failed > r.accepted);
    free(r.per_second);
}

/* Every balance algorithm runs through the core's balancer and spreads the load. */
static void test_every_balance_algorithm(void **state)
{
    struct sim_backend be[3] = {{"a", 1, {0}}, {"b", 2, {0}}, {"c", 1, {0}}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(sim_stack_parse("custom:strict:60", &be[i].stack), 0);
    for (enum balance_algo a = BAL_ROUND_ROBIN; a <= BAL_MAGLEV; a++) {
        struct sim_params p = base("strict", SIM_EXPLICIT, 300, 130);
        p.port_lo = 30000;
        p.port_hi = 30999; /* 1,000 ports per backend: 16.7 per second each when strict */
        p.n_backends = 3;
        p.backends = be;
        p.balance = a;
        struct sim_result r;
        assert_int_equal(sim_run(&p, &r), 0);
        /* three strict backends: 3 x 1000 / 60 = 50 per second in steady state, whatever
         * the algorithm, because exhausted backends are skipped */
        assert_true(r.sustainable_rate > 48 && r.sustainable_rate < 52);
        free(r.per_second);
    }
}

/* The planner: the seed's strict backend at 1,000 per second needs 4 inside addresses
 * (4 x 268.8 = 1,075), 2 per node on 3 nodes, one with the sequence rule. */
static void test_plan_answers_the_seed(void **state)
{
    struct sim_params p = base("strict", SIM_EXPLICIT, 1, 490);
    struct sim_plan pl;
    assert_int_equal(sim_plan_run(&p, 1000, 64, &pl), 0);
    assert_true(pl.found);
    assert_int_equal(pl.inside_per_node, 4);
    assert_true(pl.capacity > 1075 * 0.99 && pl.capacity < 1075 * 1.01);
    assert_false(pl.capacity_is_lower_bound);
    assert_true(pl.headroom > 0.06 && pl.headroom < 0.09);
    p.n_nodes = 3;
    assert_int_equal(sim_plan_run(&p, 1000, 64, &pl), 0);
    assert_int_equal(pl.inside_per_node, 2);
    p.n_nodes = 1;
    assert_int_equal(sim_stack_parse("freebsd", &p.stack), 0);
    assert_int_equal(sim_plan_run(&p, 2000, 64, &pl), 0);
    assert_int_equal(pl.inside_per_node, 1);
    assert_true(pl.capacity_is_lower_bound);
    /* not held: too few addresses allowed */
    assert_int_equal(sim_stack_parse("strict", &p.stack), 0);
    assert_int_equal(sim_plan_run(&p, 1000, 3, &pl), 0);
    assert_false(pl.found);
}

/* The simulator's sustainable rate against the capacity formula the proxy's gauge uses
 * (core/capacity.h, sim_capacity()), for rules x ISN modes x closers, 50 ports offered
 * 200 per second (more than any of these holds).  An overloaded range takes its ports
 * back in bursts one port cycle apart, so the sustainable rate (measured over one
 * TIME_WAIT period) is exact only when that window holds a whole number of cycles or
 * the cycle is the window plus the hold: each case is chosen so.  Tolerance 1 %
 * (measured: at most 0.2 %, the 10 ms hold the window leaves out). */
static void test_capacity_formula_agrees_with_the_simulator(void **state)
{
    const struct {
        const char *profile;
        enum sim_policy policy;
        int closer_backend;
        uint32_t hold_ms;
        uint64_t bytes;
        double want; /* what the formula gives, by hand */
    } cases[] = {
        /* backend closes first: strict, or reuse off: a port per TIME_WAIT + hold */
        {"custom:strict:5", SIM_EXPLICIT, 1, 10, 100, 50 / 5.010},
        {"custom:bsd:5", SIM_OFF, 1, 10, 100, 50 / 5.010},
        {"custom:strict:5", SIM_KERNEL, 1, 10, 100, 50 / 5.010},
        /* explicit ISNs: reused at once, the hold is the cycle */
        {"custom:bsd:5", SIM_EXPLICIT, 1, 1000, 100, 50 / 1.0},
        {"custom:timestamps:5", SIM_EXPLICIT, 1, 1000, 100, 50 / 1.0},
        /* kernel ISNs: the clock must pass (bytes + 2 + margin) x 64 ns = 2.5 s exactly
         * (the default margin is 64,000: 39,062,500 - 2 - 64,000 bytes) */
        {"custom:bsd:5", SIM_KERNEL, 1, 10, 39062500 - 2 - ISN_KERNEL_MARGIN, 50 / 2.5},
        /* ... or is past it when the hold is longer than that (4.1 ms for 100 bytes) */
        {"custom:bsd:5", SIM_KERNEL, 1, 1250, 100, 50 / 1.25},
        /* we close first: our TIME_WAIT (60 s) unless timestamps */
        {"custom:bsd:60", SIM_EXPLICIT, 0, 10, 100, 50 / 60.010},
        {"custom:strict:60", SIM_OFF, 0, 10, 100, 50 / 60.010},
        {"custom:timestamps:5", SIM_EXPLICIT, 0, 1000, 100, 50 / 1.0},
        {"custom:timestamps:5", SIM_KERNEL, 0, 500, 100, 50 / 0.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sim_params p = base(cases[i].profile, cases[i].policy, 200, 20);
        p.port_lo = 30000;
        p.port_hi = 30049;
        p.closer_backend = cases[i].closer_backend;
        p.hold_ms = cases[i].hold_ms;
        p.upload_bytes = cases[i].bytes;
        /* four TIME_WAIT periods, and two of our own 60 s when we close first */
        p.duration_s = p.closer_backend ? 4 * p.stack.tw_seconds : 130;
        struct sim_result r;
        assert_int_equal(sim_run(&p, &r), 0);
        double cap = sim_capacity(&p);
        assert_true(fabs(r.capacity - cap) < 1e-9);
        if (fabs(cap - cases[i].want) > 1e-6 * cases[i].want ||
            fabs(r.sustainable_rate - cap) > 0.01 * cap)
            fail_msg("case %zu (%s, %s, closer %s): formula %.4f (by hand %.4f), simulated "
                     "%.4f", i, cases[i].profile, sim_policy_name(cases[i].policy),
                     p.closer_backend ? "backend" : "proxy", cap, cases[i].want,
                     r.sustainable_rate);
        assert_int_equal(r.stalled, 0);
        free(r.per_second);
    }
}

/* Where the window holds no whole number of cycles (kernel ISNs, 16 MiB uploads: a
 * 1.078 s cycle), the capacity is still the threshold: 2 % below it nothing is refused,
 * 2 % above it some are.  And the naive policy has no formula. */
static void test_capacity_is_the_threshold(void **state)
{
    struct sim_params p = base("custom:bsd:5", SIM_KERNEL, 1, 20);
    p.port_lo = 30000;
    p.port_hi = 30049;
    p.upload_bytes = 1u << 24;
    double cap = sim_capacity(&p);
    assert_true(fabs(cap - 50 / ((2.0 + (1u << 24) + ISN_KERNEL_MARGIN) * 64e-9)) < 0.01);
    struct sim_result r;
    p.rate = 0.98 * cap;
    assert_int_equal(sim_run(&p, &r), 0);
    assert_int_equal(r.failed + r.stalled, 0);
    free(r.per_second);
    p.rate = 1.02 * cap;
    assert_int_equal(sim_run(&p, &r), 0);
    assert_true(r.failed > 0);
    assert_int_equal(r.stalled, 0);
    free(r.per_second);
    p.policy = SIM_NAIVE;
    assert_true(sim_capacity(&p) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_arithmetic_strict_240s),
        cmocka_unit_test(test_bsd_explicit_not_bounded_by_ports),
        cmocka_unit_test(test_naive_proxy_stalls_where_twlb_does_not),
        cmocka_unit_test(test_off_policy_is_the_port_bound),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_policy_names),
        cmocka_unit_test(test_inside_addresses_and_nodes_add_ports),
        cmocka_unit_test(test_each_backend_its_own_rule),
        cmocka_unit_test(test_every_balance_algorithm),
        cmocka_unit_test(test_capacity_formula_agrees_with_the_simulator),
        cmocka_unit_test(test_capacity_is_the_threshold),
        cmocka_unit_test(test_plan_answers_the_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
