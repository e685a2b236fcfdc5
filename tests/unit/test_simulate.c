/* Unit tests for lb/sim/model.c: the seed's arithmetic, and what each policy does against
 * each modelled stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_arithmetic_strict_240s),
        cmocka_unit_test(test_bsd_explicit_not_bounded_by_ports),
        cmocka_unit_test(test_naive_proxy_stalls_where_twlb_does_not),
        cmocka_unit_test(test_off_policy_is_the_port_bound),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_policy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
