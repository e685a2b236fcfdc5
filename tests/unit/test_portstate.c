/* Unit tests for lb/core/portstate.c: a slot round-trips every field the port map needs,
 * a torn or damaged slot is told from a good one, restarts are classified (same boot,
 * reboot, host crash, unreadable) and a record means what it should after each; and a
 * port map observed into slots, "killed" after random traffic, comes back with exactly
 * what it knew, its busy ports unknown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/portmap.h"
#include "core/portstate.h"

#define BASE 1700000000000000000ull /* a clock base: real - mono at creation, ns */

static void test_slot_round_trip(void **state)
{
    struct portstate_slot s;
    memset(&s, 0, sizeof s);
    struct portmap_entry e = {.port = 7, .state = PM_REMOTE_TW, .until_ms = 123456789,
                              .isn_known = 1, .rcv_nxt = 0xfedcba98,
                              .syn_real_ns = BASE + 5000000000123ull,
                              .syn_mono_ns = 5000000000123ull - 7000, /* a 7 us drift */
                              .bytes = (5ull << 32) + 77};
    portstate_store(&s, &e, BASE);
    assert_int_equal(s.seq % 2, 0);
    struct portmap_entry got = {.port = 7};
    assert_int_equal(portstate_load(&s, BASE, &got), 1);
    assert_int_equal(got.port, 7);
    assert_int_equal(got.state, PM_REMOTE_TW);
    assert_int_equal(got.until_ms, 123456789);
    assert_int_equal(got.isn_known, 1);
    assert_int_equal(got.rcv_nxt, 0xfedcba98);
    assert_int_equal(got.syn_real_ns, e.syn_real_ns);
    assert_int_equal(got.syn_mono_ns, e.syn_mono_ns); /* to the microsecond: exact here */
    assert_int_equal((uint32_t)got.bytes, 77);        /* all the prediction uses */
    assert_int_equal(got.unknown, 0);

    struct portmap_entry l = {.port = 8, .state = PM_LOCAL_TW, .until_ms = 9, .timestamps = 1};
    portstate_store(&s, &l, BASE);
    assert_int_equal(portstate_load(&s, BASE, &got), 1);
    assert_int_equal(got.state, PM_LOCAL_TW);
    assert_int_equal(got.timestamps, 1);
    assert_int_equal(got.syn_real_ns, 0);
    assert_int_equal(got.syn_mono_ns, 0);

    struct portmap_entry u = {.port = 9, .state = PM_REMOTE_TW, .until_ms = 5, .unknown = 1};
    portstate_store(&s, &u, BASE);
    assert_int_equal(portstate_load(&s, BASE, &got), 1);
    assert_int_equal(got.unknown, 1);
    assert_int_equal(got.isn_known, 0);

    /* FREE is an empty slot; a slot never written is empty too. */
    struct portmap_entry f = {.port = 9, .state = PM_FREE, .until_ms = 99};
    portstate_store(&s, &f, BASE);
    assert_int_equal(portstate_load(&s, BASE, &got), 0);
    struct portstate_slot zero;
    memset(&zero, 0, sizeof zero);
    assert_int_equal(portstate_load(&zero, BASE, &got), 0);

    struct portmap_entry b = {.port = 9, .state = PM_BUSY};
    portstate_store(&s, &b, BASE);
    assert_int_equal(portstate_load(&s, BASE, &got), 1);
    assert_int_equal(got.state, PM_BUSY);
}

static void test_torn_and_damaged_slots(void **state)
{
    struct portstate_slot s;
    memset(&s, 0, sizeof s);
    struct portmap_entry e = {.port = 1, .state = PM_REMOTE_TW, .until_ms = 1000,
                              .isn_known = 1, .rcv_nxt = 42};
    portstate_store(&s, &e, BASE);
    struct portmap_entry got = {.port = 1};
    struct portstate_slot t = s;
    t.seq |= 1; /* a SIGKILL between the first and the last store */
    assert_int_equal(portstate_load(&t, BASE, &got), -1);
    assert_int_equal(got.state, PM_BUSY);
    /* any one bit changed in the record is seen */
    int seen = 0, bits = 0;
    for (size_t byte = 1; byte < sizeof s; byte++)
        for (int bit = 0; bit < 8; bit++) {
            t = s;
            ((uint8_t *)&t)[byte] ^= (uint8_t)(1u << bit);
            bits++;
            seen += portstate_load(&t, BASE, &got) == -1;
        }
    assert_int_equal(seen, bits);
    /* a SYN time that does not fit the clock base: no prediction rather than a wrong one */
    struct portmap_entry far = {.port = 1, .state = PM_REMOTE_TW, .until_ms = 1,
                                .syn_real_ns = BASE * 2, .syn_mono_ns = 1};
    portstate_store(&s, &far, BASE);
    assert_int_equal(portstate_load(&s, BASE, &got), 1);
    assert_int_equal(got.syn_mono_ns, 0);
    assert_int_equal(got.syn_real_ns, 0);
}

static struct portstate_clock clock_at(uint64_t real, uint64_t mono, uint64_t boot, int id)
{
    struct portstate_clock c = {.real_ms = real, .mono_ms = mono, .boot_ms = boot};
    if (id) {
        c.boot_id_known = 1;
        memset(c.boot_id, id, sizeof c.boot_id);
    }
    return c;
}

static void test_same_boot(void **state)
{
    struct portstate_clock a = clock_at(1000000, 5000, 6000, 1), b = a;
    b.real_ms += 3000, b.mono_ms += 3000, b.boot_ms += 3000;
    assert_true(portstate_same_boot(&a, &b));
    b.boot_id[3] = 9;
    assert_false(portstate_same_boot(&a, &b)); /* the ids decide when both are known */
    b.boot_id_known = 0;
    assert_true(portstate_same_boot(&a, &b)); /* same moment of boot */
    b.real_ms += 4000;                        /* the wall clock stepped 4 s: still */
    assert_true(portstate_same_boot(&a, &b));
    b.real_ms += 60000; /* a minute apart: another boot */
    assert_false(portstate_same_boot(&a, &b));
    b = a;
    b.boot_id_known = 0;
    b.boot_ms = a.boot_ms - 1; /* the boot clock went back */
    b.real_ms = a.real_ms - 1;
    assert_false(portstate_same_boot(&a, &b));
}

static void test_plans(void **state)
{
    struct portstate_clock now = clock_at(2000000000, 900000, 950000, 1);
    struct portstate_prev prev = {.alive = clock_at(1999990000, 890000, 940000, 1)};
    struct portstate_plan p;
    portstate_plan_from(&prev, &now, &p);
    assert_int_equal(p.kind, PORTSTATE_SAME_BOOT);
    assert_int_equal(p.risk_from_real_ms, 0);
    assert_int_equal(portstate_unknown_until_ms(&p, &now, 60000), 0);

    /* another boot, a clean stop: deadlines carried over by the wall clock */
    prev.alive = clock_at(1999990000, 7000000, 7000000, 2);
    prev.clean = 1;
    portstate_plan_from(&prev, &now, &p);
    assert_int_equal(p.kind, PORTSTATE_REBOOT);
    assert_int_equal(p.risk_from_real_ms, 0);
    /* 10 s ago on the old clock is 7000000 - 10000; a deadline 50 s after it ends 40 s
     * from now, at today's mono 900000 + 40000 */
    assert_int_equal((int64_t)(7000000 + 50000) + p.shift_ms, 900000 + 40000);

    /* another boot, no clean stop: a host crash */
    prev.clean = 0;
    portstate_plan_from(&prev, &now, &p);
    assert_int_equal(p.kind, PORTSTATE_HOST_CRASH);
    assert_int_equal(p.risk_from_real_ms, 1999990000 + PORTSTATE_SYNC_BOUND_MS);
    /* unknown until the last heartbeat + the bound + TIME_WAIT (60 s): 60 s from now */
    assert_int_equal(portstate_unknown_until_ms(&p, &now, 60000), 900000 + 60000);
    /* a longer stop: nothing left to fear */
    prev.alive.real_ms = 2000000000 - 71000;
    portstate_plan_from(&prev, &now, &p);
    assert_int_equal(portstate_unknown_until_ms(&p, &now, 60000), 0);
    /* a heartbeat in the future (a wall clock set back): from now, not later */
    prev.alive.real_ms = 2000000000 + 500000;
    portstate_plan_from(&prev, &now, &p);
    assert_int_equal(p.risk_from_real_ms, now.real_ms);

    /* a risk the previous run carried (it started after a host crash) stays */
    prev.alive = clock_at(1999999000, 899000, 949000, 1);
    prev.risk_from_real_ms = 1999970000;
    portstate_plan_from(&prev, &now, &p);
    assert_int_equal(p.kind, PORTSTATE_SAME_BOOT);
    assert_int_equal(portstate_unknown_until_ms(&p, &now, 60000), 900000 + 30000);

    portstate_plan_unreadable(0, &now, &p); /* no idea when: from now */
    assert_int_equal(p.kind, PORTSTATE_UNREADABLE);
    assert_int_equal(portstate_unknown_until_ms(&p, &now, 60000), 900000 + 60000);
    portstate_plan_unreadable(2000000000 - 30000, &now, &p);
    assert_int_equal(portstate_unknown_until_ms(&p, &now, 60000),
                     900000 + 30000 + PORTSTATE_SYNC_BOUND_MS);
    portstate_plan_fresh(&p);
    assert_int_equal(portstate_unknown_until_ms(&p, &now, 60000), 0);
}

static void test_recover(void **state)
{
    struct portstate_clock now = clock_at(2000000000, 900000, 950000, 1);
    struct portstate_prev prev = {.alive = clock_at(1999999000, 899000, 949000, 1)};
    struct portstate_plan p;
    portstate_plan_from(&prev, &now, &p);
    struct portmap_entry tw = {.port = 5, .state = PM_REMOTE_TW, .until_ms = 930000,
                               .isn_known = 1, .rcv_nxt = 77, .syn_real_ns = 1,
                               .syn_mono_ns = 2, .bytes = 3};
    struct portmap_entry e = tw;
    assert_int_equal(portstate_recover(&p, &now, 60000, 1, &e), 1);
    assert_memory_equal(&e, &tw, sizeof e); /* the same boot: as it was */
    e = tw;
    e.until_ms = 900000; /* over */
    assert_int_equal(portstate_recover(&p, &now, 60000, 1, &e), 0);
    struct portmap_entry busy = {.port = 6, .state = PM_BUSY};
    assert_int_equal(portstate_recover(&p, &now, 240000, 1, &busy), 1);
    assert_int_equal(busy.state, PM_REMOTE_TW);
    assert_int_equal(busy.unknown, 1);
    assert_int_equal(busy.isn_known, 0);
    assert_int_equal(busy.until_ms, 900000 + 240000);
    struct portmap_entry torn = {.port = 6, .state = PM_BUSY};
    assert_int_equal(portstate_recover(&p, &now, 60000, -1, &torn), 1);
    assert_int_equal(torn.unknown, 1);
    struct portmap_entry none = {.port = 6};
    assert_int_equal(portstate_recover(&p, &now, 60000, 0, &none), 0);
    /* a takeover: the process taken over drains on for busy_grace_ms; its BUSY ports
     * (and torn slots) wait that long more, its TIME_WAIT records are as they were */
    p.busy_grace_ms = 20000;
    busy = (struct portmap_entry){.port = 6, .state = PM_BUSY};
    assert_int_equal(portstate_recover(&p, &now, 240000, 1, &busy), 1);
    assert_int_equal(busy.unknown, 1);
    assert_int_equal(busy.until_ms, 900000 + 240000 + 20000);
    torn = (struct portmap_entry){.port = 6, .state = PM_BUSY};
    assert_int_equal(portstate_recover(&p, &now, 60000, -1, &torn), 1);
    assert_int_equal(torn.until_ms, 900000 + 60000 + 20000);
    e = tw;
    assert_int_equal(portstate_recover(&p, &now, 60000, 1, &e), 1);
    assert_memory_equal(&e, &tw, sizeof e);
    p.busy_grace_ms = 0;

    /* a reboot after a clean stop: shifted, the SYN times dropped */
    prev.alive = clock_at(1999990000, 7000000, 7000000, 2);
    prev.clean = 1;
    portstate_plan_from(&prev, &now, &p);
    e = tw;
    e.until_ms = 7000000 + 50000;
    assert_int_equal(portstate_recover(&p, &now, 60000, 1, &e), 1);
    assert_int_equal(e.until_ms, 900000 + 40000);
    assert_int_equal(e.isn_known, 1);
    assert_int_equal(e.rcv_nxt, 77);
    assert_int_equal(e.syn_mono_ns, 0);
    assert_int_equal(e.syn_real_ns, 0);

    /* a host crash: what the block of every port covers is dropped; longer is unknown */
    prev.clean = 0;
    portstate_plan_from(&prev, &now, &p); /* unknown until now + 60 s */
    e = tw;
    e.until_ms = 7000000 + 50000;
    assert_int_equal(portstate_recover(&p, &now, 60000, 1, &e), 0);
    e = tw;
    e.until_ms = 7000000 + 250000; /* a 240 s TIME_WAIT */
    assert_int_equal(portstate_recover(&p, &now, 60000, 1, &e), 1);
    assert_int_equal(e.unknown, 1);
    assert_int_equal(e.isn_known, 0);
    assert_int_equal(e.until_ms, 900000 + 240000);
    busy = (struct portmap_entry){.port = 6, .state = PM_BUSY};
    assert_int_equal(portstate_recover(&p, &now, 60000, 1, &busy), 0); /* in the block */
}

/* ---- a map observed into slots, killed, and read back -------------------------------- */

#define LO 100
#define HI 163
#define TW 60000

struct table {
    struct portstate_slot s[HI - LO + 1];
};

static void observe(void *arg, const struct portmap_entry *e)
{
    struct table *t = arg;
    portstate_store(&t->s[e->port - LO], e, BASE);
}

struct snap {
    struct portmap_entry e[HI - LO + 1];
    int have[HI - LO + 1];
};

static void take(void *arg, const struct portmap_entry *e)
{
    struct snap *s = arg;
    s->e[e->port - LO] = *e;
    s->have[e->port - LO] = 1;
}

static void test_killed_map_comes_back(void **state)
{
    struct portmap_policy pol = {
        .rule = {.kind = TWRULE_BSD, .time_wait_ms = TW}, .mode = ISN_EXPLICIT,
        .local_tw = PM_LOCAL_TW_DESTROY, .local_tw_ms = 60000, .quarantine_ms = 1000,
        .kernel_margin = ISN_KERNEL_MARGIN};
    srand(7);
    for (int round = 0; round < 200; round++) {
        struct table t;
        memset(&t, 0, sizeof t);
        portmap *pm = portmap_new(LO, HI, &pol);
        portmap_observe(pm, observe, &t);
        uint64_t now = 1000000;
        uint16_t busy[HI - LO + 1];
        size_t nbusy = 0;
        int steps = rand() % 400;
        for (int i = 0; i < steps; i++) {
            now += (uint64_t)(rand() % 400);
            struct portmap_pick pk;
            if (rand() % 2 && portmap_acquire(pm, now, BASE + now * 1000000, now * 1000000,
                                              &pk) == 0) {
                busy[nbusy++] = pk.port;
            } else if (nbusy) {
                size_t k = (size_t)rand() % nbusy;
                uint16_t port = busy[k];
                busy[k] = busy[--nbusy];
                int how = rand() % 4;
                if (how == 3) {
                    portmap_quarantine(pm, port, now);
                    continue;
                }
                struct portmap_release r = {
                    .closer = how == 0 ? PM_CLOSER_BACKEND : how == 1 ? PM_CLOSER_LOCAL
                                                                     : PM_CLOSER_NONE,
                    .isn_known = 1, .isn = (uint32_t)rand(),
                    .syn_real_ns = BASE + now * 1000000, .syn_mono_ns = now * 1000000,
                    .bytes_to_backend = (uint64_t)rand(), .timestamps = rand() % 2};
                portmap_release(pm, port, &r, now);
            }
        }
        portmap_expire(pm, now);
        struct snap before;
        memset(&before, 0, sizeof before);
        portmap_foreach(pm, take, &before);
        /* SIGKILL: the map is gone, the slots are what the page cache holds */
        portmap_free(pm);
        struct portstate_clock c = clock_at(1 << 30, now, now, 1);
        struct portstate_prev prev = {.alive = c};
        struct portstate_plan plan;
        portstate_plan_from(&prev, &c, &plan);
        assert_int_equal(plan.kind, PORTSTATE_SAME_BOOT);
        portmap *back = portmap_new(LO, HI, &pol);
        for (uint16_t port = LO; port <= HI; port++) {
            struct portmap_entry e = {.port = port};
            int got = portstate_load(&t.s[port - LO], BASE, &e);
            e.port = port;
            if (portstate_recover(&plan, &c, TW, got, &e))
                assert_int_equal(portmap_restore(back, &e), 0);
        }
        struct snap after;
        memset(&after, 0, sizeof after);
        portmap_foreach(back, take, &after);
        for (int i = 0; i <= HI - LO; i++) {
            const struct portmap_entry *b = &before.e[i], *a = &after.e[i];
            assert_int_equal(before.have[i], after.have[i]);
            if (!before.have[i])
                continue;
            if (b->state == PM_BUSY) { /* its end is unknown: one TIME_WAIT, no reuse */
                assert_int_equal(a->state, PM_REMOTE_TW);
                assert_int_equal(a->unknown, 1);
                assert_int_equal(a->isn_known, 0);
                assert_int_equal(a->until_ms, now + TW);
                continue;
            }
            assert_int_equal(a->state, b->state);
            assert_int_equal(a->until_ms, b->until_ms);
            assert_int_equal(a->isn_known, b->isn_known);
            if (b->isn_known)
                assert_int_equal(a->rcv_nxt, b->rcv_nxt);
            assert_int_equal(a->timestamps, b->timestamps);
            assert_int_equal(a->syn_real_ns, b->syn_real_ns);
            assert_int_equal(a->syn_mono_ns, b->syn_mono_ns);
            assert_int_equal((uint32_t)a->bytes, (uint32_t)b->bytes);
        }
        portmap_free(back);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_round_trip),
        cmocka_unit_test(test_torn_and_damaged_slots),
        cmocka_unit_test(test_same_boot),
        cmocka_unit_test(test_plans),
        cmocka_unit_test(test_recover),
        cmocka_unit_test(test_killed_map_comes_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
