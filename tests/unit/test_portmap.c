/* Unit tests for lb/portmap.c: order of choice, memory, restore, and long random runs
 * against an independent model of the backend's TIME_WAIT rule, per ISN mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/isn.h"
#include "core/portmap.h"
#include "core/twrule.h"

static struct portmap_policy policy(enum isn_mode mode, enum twrule_kind rule,
                                    enum pm_local_tw ltw)
{
    struct portmap_policy p = {
        .rule = {.kind = rule, .time_wait_ms = 60000},
        .mode = mode,
        .local_tw = ltw,
        .local_tw_ms = 60000,
        .quarantine_ms = 1000,
        .kernel_margin = ISN_KERNEL_MARGIN,
    };
    return p;
}

static void release(portmap *pm, uint16_t port, enum pm_closer closer, uint32_t isn,
                    uint64_t now)
{
    struct portmap_release r = {.closer = closer, .isn_known = 1, .isn = isn,
                                .syn_mono_ns = 1, .bytes_to_backend = 100};
    portmap_release(pm, port, &r, now);
}

static void test_never_used_ports_first_then_lru(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(100, 103, &pol);
    struct portmap_pick pk;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
        assert_int_equal(pk.port, 100 + i);
        assert_int_equal(pk.kind, PM_PICK_FRESH);
    }
    release(pm, 102, PM_CLOSER_NONE, 0, 1);
    release(pm, 100, PM_CLOSER_NONE, 0, 2);
    assert_int_equal(portmap_acquire(pm, 3, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 102); /* released first, reused first */
    assert_int_equal(portmap_acquire(pm, 3, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 100);
    assert_int_equal(portmap_acquire(pm, 3, 0, 0, &pk), -1);
    portmap_free(pm);
}

static void test_remote_tw_reused_only_after_free_ports(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(1, 2, &pol);
    struct portmap_pick pk;
    portmap_acquire(pm, 0, 0, 0, &pk);
    release(pm, 1, PM_CLOSER_BACKEND, 1000, 0); /* rcv_nxt = 1000 + 100 + 2 */
    assert_int_equal(portmap_acquire(pm, 1, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 2);
    assert_int_equal(pk.kind, PM_PICK_FRESH);
    assert_int_equal(portmap_acquire(pm, 1, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 1);
    assert_int_equal(pk.kind, PM_PICK_REMOTE_TW);
    assert_int_equal(pk.rcv_nxt, 1102);
    portmap_free(pm);
}

static void test_strict_and_off_wait_for_expiry(void **state)
{
    enum isn_mode modes[2] = {ISN_EXPLICIT, ISN_OFF};
    enum twrule_kind rules[2] = {TWRULE_STRICT, TWRULE_BSD};
    for (int k = 0; k < 2; k++) {
        struct portmap_policy pol = policy(modes[k], rules[k], PM_LOCAL_TW_AVOID);
        portmap *pm = portmap_new(7, 7, &pol);
        struct portmap_pick pk;
        assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
        release(pm, 7, PM_CLOSER_BACKEND, 5, 0);
        assert_int_equal(portmap_acquire(pm, 59999, 0, 0, &pk), -1);
        uint32_t c[PM_NSTATES];
        portmap_counts(pm, c);
        assert_int_equal(c[PM_REMOTE_TW], 1);
        assert_int_equal(portmap_acquire(pm, 60000, 0, 0, &pk), 0);
        assert_int_equal(pk.kind, PM_PICK_FRESH);
        portmap_free(pm);
    }
}

static void test_local_tw_rules(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(1, 1, &pol);
    struct portmap_pick pk;
    portmap_acquire(pm, 0, 0, 0, &pk);
    struct portmap_release r = {.closer = PM_CLOSER_LOCAL, .timestamps = 0};
    portmap_release(pm, 1, &r, 0);
    assert_int_equal(portmap_acquire(pm, 10, 0, 0, &pk), -1); /* no timestamps: avoid */
    pol.local_tw = PM_LOCAL_TW_DESTROY;
    portmap_set_policy(pm, &pol);
    assert_int_equal(portmap_acquire(pm, 10, 0, 0, &pk), 0);
    assert_int_equal(pk.kind, PM_PICK_LOCAL_TW);
    assert_int_equal(pk.destroy_local_tw, 1);
    r.timestamps = 1;
    portmap_release(pm, 1, &r, 20);
    assert_int_equal(portmap_acquire(pm, 30, 0, 0, &pk), 0);
    assert_int_equal(pk.kind, PM_PICK_LOCAL_TW);
    assert_int_equal(pk.destroy_local_tw, 0); /* the kernel takes it over by itself */
    portmap_free(pm);
}

static void test_quarantine_and_restore(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(10, 12, &pol);
    struct portmap_pick pk;
    struct portmap_entry e = {.port = 11, .state = PM_REMOTE_TW, .until_ms = 5000,
                              .isn_known = 1, .rcv_nxt = 777};
    assert_int_equal(portmap_restore(pm, &e), 0);
    e.port = 13;
    assert_int_equal(portmap_restore(pm, &e), -1);
    assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 10);
    portmap_quarantine(pm, 10, 0);
    assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 12); /* 11 is remembered: skipped by the cursor */
    assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 11);
    assert_int_equal(pk.kind, PM_PICK_REMOTE_TW);
    assert_int_equal(pk.rcv_nxt, 777);
    uint32_t c[PM_NSTATES];
    portmap_expire(pm, 999);
    portmap_counts(pm, c);
    assert_int_equal(c[PM_QUARANTINED], 1);
    assert_int_equal(c[PM_BUSY], 2);
    portmap_expire(pm, 1000);
    portmap_counts(pm, c);
    assert_int_equal(c[PM_QUARANTINED], 0);
    assert_int_equal(c[PM_FREE], 1);
    portmap_free(pm);
}

static void test_block_unknown(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(1, 100, &pol);
    struct portmap_pick pk;
    portmap_block_unknown(pm, 60000);
    uint32_t c[PM_NSTATES];
    portmap_counts(pm, c);
    assert_int_equal(c[PM_REMOTE_TW], 100);
    assert_int_equal(portmap_acquire(pm, 59999, 0, 0, &pk), -1);
    assert_int_equal(portmap_acquire(pm, 60000, 0, 0, &pk), 0);
    portmap_counts(pm, c);
    assert_int_equal(c[PM_REMOTE_TW], 0);
    assert_int_equal(c[PM_BUSY], 1);
    portmap_free(pm);
}

/* counts_at reads the map as of a later time and changes nothing. */
static void test_counts_at_changes_nothing(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(1, 10, &pol);
    struct portmap_pick pk;
    for (int i = 0; i < 6; i++)
        assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
    release(pm, 1, PM_CLOSER_BACKEND, 1, 0);  /* remote TW until 60000 */
    release(pm, 2, PM_CLOSER_BACKEND, 1, 10); /* until 60010 */
    struct portmap_release r = {.closer = PM_CLOSER_LOCAL};
    portmap_release(pm, 3, &r, 5); /* local TW until 60005 */
    portmap_quarantine(pm, 4, 0);  /* until 1000 */
    portmap_block_unknown(pm, 2000); /* ports 7..10, never used */
    uint32_t before[PM_NSTATES], c[PM_NSTATES], after[PM_NSTATES];
    portmap_counts(pm, before);
    size_t mem = portmap_memory(pm);

    portmap_counts_at(pm, 999, c);
    assert_int_equal(c[PM_BUSY], 2);
    assert_int_equal(c[PM_REMOTE_TW], 2 + 4);
    assert_int_equal(c[PM_LOCAL_TW], 1);
    assert_int_equal(c[PM_QUARANTINED], 1);
    assert_int_equal(c[PM_FREE], 0);
    portmap_counts_at(pm, 2000, c); /* quarantine over, unknown ports unblocked */
    assert_int_equal(c[PM_QUARANTINED], 0);
    assert_int_equal(c[PM_REMOTE_TW], 2);
    assert_int_equal(c[PM_FREE], 5);
    portmap_counts_at(pm, 60005, c); /* first remote and the local TW over */
    assert_int_equal(c[PM_REMOTE_TW], 1);
    assert_int_equal(c[PM_LOCAL_TW], 0);
    assert_int_equal(c[PM_FREE], 7);

    portmap_counts(pm, after);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(portmap_memory(pm), mem);
    portmap_expire(pm, 60005);
    portmap_counts(pm, after);
    assert_memory_equal(c, after, sizeof c);
    portmap_free(pm);
}

static void test_memory_shrinks_when_idle(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(1, 65535, &pol);
    size_t idle = portmap_memory(pm);
    struct portmap_pick pk;
    for (int i = 0; i < 65535; i++)
        assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
    assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), -1);
    assert_true(portmap_memory(pm) > 1000000);
    for (uint32_t p = 1; p <= 65535; p++)
        release(pm, (uint16_t)p, PM_CLOSER_BACKEND, p, 1);
    portmap_expire(pm, 60001);
    assert_true(portmap_memory(pm) <= 4096);
    assert_int_equal(portmap_memory(pm), idle);
    portmap_free(pm);

    /* 1,000 idle maps of 64k ports: a few MB, not gigabytes. */
    portmap *many[1000];
    size_t total = 0;
    for (int i = 0; i < 1000; i++) {
        many[i] = portmap_new(1, 65535, &pol);
        total += portmap_memory(many[i]);
    }
    assert_true(total < 10u * 1024 * 1024);
    for (int i = 0; i < 1000; i++)
        portmap_free(many[i]);
}

/* ---- random runs against a model --------------------------------------------------- */

/* M_UNK: restored as unknown (a crash): the backend may hold TIME_WAIT, rcv_nxt unknown */
enum { M_FREE, M_BUSY, M_RTW, M_LTW, M_Q, M_UNK };

struct mport {
    int st;
    int used;              /* handed out or restored since the start: not never-used */
    uint64_t until;
    uint32_t true_rcv_nxt; /* what the backend really expects */
    int ts;
    uint32_t isn;          /* ISN of the current (BUSY) connection */
    uint64_t syn_real, syn_mono; /* when its SYN left */
    uint64_t bytes;        /* RTW: what the old connection sent */
};

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

#define LO 1000
#define N 24

static uint32_t kernel_base(uint16_t port) { return port * 2654435761u; }

/* A port's state at <now> in the model: a timed state that is over is FREE, and a
 * never-used port under portmap_block_unknown(<block>) is unknown until the block ends. */
static int model_state(const struct mport *p, uint64_t now, uint64_t block)
{
    int st = p->st;
    if ((st == M_RTW || st == M_LTW || st == M_Q || st == M_UNK) && now >= p->until)
        st = M_FREE;
    if (st == M_FREE && !p->used && now < block)
        st = M_UNK;
    return st;
}

static void run_random(enum isn_mode mode, enum twrule_kind rule, enum pm_local_tw ltw,
                       uint64_t seed)
{
    rng_state = seed;
    struct portmap_policy pol = policy(mode, rule, ltw);
    pol.rule.time_wait_ms = 30000;
    pol.local_tw_ms = 20000;
    portmap *pm = portmap_new(LO, LO + N - 1, &pol);
    struct mport m[N];
    memset(m, 0, sizeof m);
    struct isn_key key = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
    uint64_t now = 0, real_off = 1700000000ull * 1000000000ull;
    int ts_global = (int)(seed & 1);
    /* half the runs start as after a restart that knew nothing: every port unknown */
    uint64_t block = (seed >> 1) & 1 ? 30000 : 0;
    if (block)
        portmap_block_unknown(pm, block);
    long acquired = 0, reused = 0, unknowns = 0;
    for (int step = 0; step < 200000; step++) {
        uint64_t mono_ns = now * 1000000ull + 1 + rnd() % 1000000, real_ns = real_off + mono_ns;
        /* the model's expiry */
        for (int i = 0; i < N; i++)
            if ((m[i].st == M_RTW || m[i].st == M_LTW || m[i].st == M_Q || m[i].st == M_UNK) &&
                now >= m[i].until)
                m[i].st = M_FREE;
        uint64_t r64 = rnd();
        int op = (int)(r64 % 10);
        if ((r64 >> 32) % 64 == 0) {
            /* a port restored as unknown (a crash; or a reload's copy of one), with junk in
             * the fields that must not count; until now + TIME_WAIT keeps the FIFO order */
            int i = (int)(rnd() % N);
            if (m[i].st == M_UNK && rnd() % 2) {
                struct portmap_entry mine = {.port = (uint16_t)(LO + i), .state = PM_LOCAL_TW,
                                             .until_ms = now + 20000, .timestamps = 1};
                assert_int_equal(portmap_restore(pm, &mine), -1); /* keeps its place */
            } else if (m[i].st != M_BUSY) {
                struct portmap_entry u = {.port = (uint16_t)(LO + i), .state = PM_REMOTE_TW,
                                          .until_ms = now + 30000, .unknown = 1,
                                          .isn_known = (int)(rnd() % 2), .rcv_nxt = 7,
                                          .syn_real_ns = 1, .syn_mono_ns = 1, .bytes = 1};
                assert_int_equal(portmap_restore(pm, &u), 0);
                m[i].st = M_UNK;
                m[i].used = 1;
                m[i].until = now + 30000;
                unknowns++;
            }
        } else if (op < 4) {
            struct portmap_pick pk;
            int r = portmap_acquire(pm, now, real_ns, mono_ns, &pk);
            if (r == 0) {
                assert_true(pk.port >= LO && pk.port < LO + N);
                struct mport *p = &m[pk.port - LO];
                if (!p->used && now < block)
                    fail_msg("never-used port %u handed out under the block", pk.port);
                p->used = 1;
                acquired++;
                struct isn_tuple t = {.addr_len = 4, .sport = pk.port, .dport = 80};
                uint32_t isn;
                if (mode == ISN_EXPLICIT)
                    isn = pk.kind == PM_PICK_REMOTE_TW ? isn_reuse(&key, &t, pk.rcv_nxt, now)
                                                       : isn_fresh(&key, &t, real_ns);
                else
                    isn = kernel_base(pk.port) + isn_kernel_advance(real_ns);
                switch (p->st) {
                case M_FREE:
                    break;
                case M_RTW: {
                    assert_int_equal(pk.kind, PM_PICK_REMOTE_TW);
                    assert_true(mode != ISN_OFF && rule != TWRULE_STRICT);
                    struct twrule tr = {rule, 30000};
                    /* the backend's verdict on the SYN the proxy would send */
                    assert_true(twrule_accepts(&tr, isn, p->true_rcv_nxt));
                    reused++;
                    break;
                }
                case M_LTW:
                    assert_int_equal(pk.kind, PM_PICK_LOCAL_TW);
                    assert_true(p->ts || ltw == PM_LOCAL_TW_DESTROY);
                    assert_int_equal(pk.destroy_local_tw, !p->ts);
                    break;
                default:
                    fail_msg("port %u handed out in model state %d", pk.port, p->st);
                }
                p->st = M_BUSY;
                p->isn = isn;
                p->syn_real = real_ns;
                p->syn_mono = mono_ns;
            } else if (mode == ISN_EXPLICIT || mode == ISN_OFF) {
                /* nothing may be usable: no free port, no reusable TIME_WAIT */
                for (int i = 0; i < N; i++) {
                    assert_true(model_state(&m[i], now, block) != M_FREE);
                    if (mode == ISN_EXPLICIT && rule != TWRULE_STRICT)
                        assert_true(m[i].st != M_RTW);
                    if (m[i].st == M_LTW && ts_global)
                        fail_msg("reusable local TIME_WAIT on %d not handed out", LO + i);
                }
            }
        } else if (op < 7) {
            int i = (int)(rnd() % N);
            if (m[i].st == M_BUSY) {
                int c = (int)(rnd() % 3);
                uint64_t bytes = (rnd() % 4 == 0) ? rnd() % (64u << 20) : rnd() % 2000;
                struct portmap_release r = {
                    .closer = (enum pm_closer)c,
                    .isn_known = mode == ISN_EXPLICIT,
                    .isn = m[i].isn,
                    .syn_real_ns = m[i].syn_real,
                    .syn_mono_ns = m[i].syn_mono,
                    .bytes_to_backend = bytes,
                    .timestamps = ts_global,
                };
                portmap_release(pm, (uint16_t)(LO + i), &r, now);
                if (c == PM_CLOSER_BACKEND) {
                    m[i].st = M_RTW;
                    m[i].bytes = bytes;
                    m[i].until = now + 30000;
                    m[i].true_rcv_nxt = m[i].isn + (uint32_t)bytes + 2;
                } else if (c == PM_CLOSER_LOCAL) {
                    m[i].st = M_LTW;
                    m[i].until = now + 20000;
                    m[i].ts = ts_global;
                } else {
                    m[i].st = M_FREE;
                }
            }
        } else if (op == 7) {
            int i = (int)(rnd() % N);
            if (m[i].st == M_BUSY) {
                portmap_quarantine(pm, (uint16_t)(LO + i), now);
                m[i].st = M_Q;
                m[i].until = now + 1000;
            }
        } else {
            now += rnd() % 3000;
        }
        /* counts agree with the model, also when read without expiring first; unknown
         * ports are REMOTE_TW, and counted apart too */
        uint32_t c[PM_NSTATES], want[PM_NSTATES] = {0}, at[PM_NSTATES], unk = 0;
        portmap_counts_at(pm, now, at);
        uint32_t unk_at = portmap_unknown_at(pm, now);
        portmap_expire(pm, now);
        portmap_counts(pm, c);
        assert_memory_equal(at, c, sizeof c);
        for (int i = 0; i < N; i++) {
            int st = model_state(&m[i], now, block);
            unk += st == M_UNK;
            want[st == M_FREE ? PM_FREE : st == M_BUSY ? PM_BUSY
                 : st == M_RTW || st == M_UNK ? PM_REMOTE_TW
                 : st == M_LTW ? PM_LOCAL_TW : PM_QUARANTINED]++;
        }
        assert_memory_equal(c, want, sizeof c);
        assert_int_equal(unk_at, unk);
        assert_int_equal(portmap_unknown_at(pm, now), unk);
        /* headroom: what the model says may be handed out now, port by port (an unknown
         * port never, until its time is over) */
        uint32_t head = 0;
        for (int i = 0; i < N; i++) {
            int st = model_state(&m[i], now, block);
            if (st == M_FREE || (st == M_LTW && (m[i].ts || ltw == PM_LOCAL_TW_DESTROY)))
                head++;
            else if (st == M_RTW && rule != TWRULE_STRICT)
                head += mode == ISN_EXPLICIT ||
                        (mode == ISN_KERNEL &&
                         isn_kernel_reuse_safe(m[i].syn_real, m[i].syn_mono, real_ns, mono_ns,
                                               m[i].bytes, ISN_KERNEL_MARGIN));
        }
        assert_int_equal(portmap_headroom_at(pm, now, real_ns, mono_ns), head);
    }
    assert_true(acquired > 1000);
    assert_true(unknowns > 100);
    if (mode == ISN_EXPLICIT && rule != TWRULE_STRICT)
        assert_true(reused > 100); /* the engine really reuses TIME_WAIT */
    portmap_free(pm);
}

static void test_random_against_model(void **state)
{
    enum isn_mode modes[] = {ISN_EXPLICIT, ISN_KERNEL, ISN_OFF};
    enum twrule_kind rules[] = {TWRULE_BSD, TWRULE_TIMESTAMPS, TWRULE_STRICT};
    enum pm_local_tw ltws[] = {PM_LOCAL_TW_AVOID, PM_LOCAL_TW_DESTROY};
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 2; c++)
                for (int s = 0; s < 2; s++)
                    run_random(modes[a], rules[b], ltws[c], seed + (uint64_t)(a * 12 + b * 4 + c * 2 + s));
}

/* A reuse whose handshake never completed (the SYN was ignored or refused) leaves the
 * backend's TIME_WAIT in place: the port goes back to REMOTE_TW with what was known of
 * it.  An established connection that is then aborted frees it, as before. */
static void test_failed_reuse_keeps_the_memory(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(20000, 20000, &pol);
    struct portmap_pick pk;
    assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
    release(pm, pk.port, PM_CLOSER_BACKEND, 1000, 10); /* rcv_nxt = 1000 + 100 + 2 */
    assert_int_equal(portmap_acquire(pm, 20, 0, 0, &pk), 0);
    assert_int_equal(pk.kind, PM_PICK_REMOTE_TW);
    assert_int_equal(pk.rcv_nxt, 1102);
    struct portmap_release failed = {.closer = PM_CLOSER_NONE, .never_connected = 1};
    portmap_release(pm, pk.port, &failed, 30);
    uint32_t counts[PM_NSTATES];
    portmap_counts(pm, counts);
    assert_int_equal(counts[PM_REMOTE_TW], 1);
    assert_int_equal(portmap_acquire(pm, 40, 0, 0, &pk), 0);
    assert_int_equal(pk.kind, PM_PICK_REMOTE_TW);
    assert_int_equal(pk.rcv_nxt, 1102); /* the same memory */
    struct portmap_release aborted = {.closer = PM_CLOSER_NONE};
    portmap_release(pm, pk.port, &aborted, 50);
    portmap_counts(pm, counts);
    assert_int_equal(counts[PM_FREE], 1);
    portmap_free(pm);
}

/* Whenever acquire fails, portmap_next_usable_ms() names the first millisecond at which
 * it succeeds again with no port released meanwhile: one ms earlier it still fails. */
static void check_next_usable(enum isn_mode mode, enum twrule_kind rule, uint64_t seed)
{
    rng_state = seed;
    struct portmap_policy pol = policy(mode, rule, PM_LOCAL_TW_AVOID);
    pol.rule.time_wait_ms = 3000;
    pol.local_tw_ms = 2000;
    pol.quarantine_ms = 500;
    pol.kernel_margin = 1u << 20; /* 67 ms of the kernel clock */
    portmap *pm = portmap_new(LO, LO + 7, &pol);
    const uint64_t real_off = 1700000000ull * 1000000000ull;
    uint64_t now = 0;
    int checked = 0;
    if (seed % 2)
        portmap_block_unknown(pm, 3000); /* a restart that knew nothing */
    for (int round = 0; round < 300; round++) {
        struct portmap_pick pk;
        uint16_t held[8];
        int n = 0;
        while (n < 8 && portmap_acquire(pm, now, real_off + now * 1000000, now * 1000000, &pk) == 0)
            held[n++] = pk.port;
        for (int i = 0; i < n; i++) {
            int c = (int)(rnd() % 4);
            struct portmap_release r = {.closer = c == 0 ? PM_CLOSER_NONE
                                                  : c == 1 ? PM_CLOSER_LOCAL : PM_CLOSER_BACKEND,
                                        .isn_known = mode == ISN_EXPLICIT, .isn = (uint32_t)rnd(),
                                        .syn_real_ns = real_off + now * 1000000,
                                        .syn_mono_ns = now * 1000000 + 1,
                                        .bytes_to_backend = rnd() % (1u << 22)};
            if (c == 3)
                portmap_quarantine(pm, held[i], now);
            else
                portmap_release(pm, held[i], &r, now);
            now += rnd() % 3;
        }
        if (rnd() % 3 == 0) {
            /* a port restored as unknown: no policy may reuse it before its time, whatever
             * else the entry says (in order: until = now + TIME_WAIT) */
            struct portmap_entry u = {.port = (uint16_t)(LO + rnd() % 8), .state = PM_REMOTE_TW,
                                      .until_ms = now + 3000, .unknown = 1, .isn_known = 1,
                                      .syn_real_ns = real_off + 1, .syn_mono_ns = 1};
            assert_int_equal(portmap_restore(pm, &u), 0);
        }
        uint64_t at = portmap_next_usable_ms(pm, now, real_off + now * 1000000, now * 1000000);
        if (at == now) { /* usable now: acquire must agree */
            uint64_t real = real_off + now * 1000000, mono = now * 1000000;
            if (portmap_acquire(pm, now, real, mono, &pk) != 0)
                fail_msg("mode %d rule %d seed %llu: nothing usable at %llu, predicted now",
                         mode, rule, (unsigned long long)seed, (unsigned long long)now);
            struct portmap_release none = {.closer = PM_CLOSER_NONE};
            portmap_release(pm, pk.port, &none, now);
            continue;
        }
        assert_true(at > now && at != UINT64_MAX); /* nothing is BUSY: something ends */
        uint64_t before = at - 1;
        if (portmap_acquire(pm, before, real_off + before * 1000000, before * 1000000, &pk) == 0)
            fail_msg("mode %d rule %d seed %llu: port %u usable at %llu, predicted %llu", mode,
                     rule, (unsigned long long)seed, pk.port, (unsigned long long)before,
                     (unsigned long long)at);
        assert_int_equal(portmap_acquire(pm, at, real_off + at * 1000000, at * 1000000, &pk), 0);
        struct portmap_release none = {.closer = PM_CLOSER_NONE};
        portmap_release(pm, pk.port, &none, at);
        now = at;
        checked++;
    }
    assert_true(checked > 20);
    portmap_free(pm);
}

static void test_next_usable(void **state)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        check_next_usable(ISN_EXPLICIT, TWRULE_BSD, seed);
        check_next_usable(ISN_EXPLICIT, TWRULE_STRICT, seed);
        check_next_usable(ISN_KERNEL, TWRULE_BSD, seed);
        check_next_usable(ISN_OFF, TWRULE_BSD, seed);
    }
}

/* ---- the observer and unknown ports (the state file's hooks) ------------------------- */

struct seen {
    struct portmap_entry e[32];
    int n;
};

static void seen_fn(void *arg, const struct portmap_entry *e)
{
    struct seen *s = arg;
    if (s->n < 32)
        s->e[s->n] = *e;
    s->n++;
}

/* Every change of a port's state is told, with what a restart needs of it. */
static void test_observer_sees_every_change(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(10, 11, &pol);
    struct seen s = {.n = 0};
    portmap_observe(pm, seen_fn, &s);
    struct portmap_pick pk;
    assert_int_equal(portmap_acquire(pm, 0, 0, 0, &pk), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.e[0].port, 10);
    assert_int_equal(s.e[0].state, PM_BUSY);
    struct portmap_release r = {.closer = PM_CLOSER_BACKEND, .isn_known = 1, .isn = 1000,
                                .syn_real_ns = 5, .syn_mono_ns = 6, .bytes_to_backend = 98};
    portmap_release(pm, 10, &r, 100);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.e[1].state, PM_REMOTE_TW);
    assert_int_equal(s.e[1].until_ms, 60100);
    assert_int_equal(s.e[1].isn_known, 1);
    assert_int_equal(s.e[1].rcv_nxt, 1100);
    assert_int_equal(s.e[1].syn_real_ns, 5);
    assert_int_equal(s.e[1].syn_mono_ns, 6);
    assert_int_equal(s.e[1].bytes, 98);
    /* taken again from the backend's TIME_WAIT, the connect fails: back as it was */
    assert_int_equal(portmap_acquire(pm, 200, 0, 0, &pk), 0); /* 11, never used */
    assert_int_equal(portmap_acquire(pm, 200, 0, 0, &pk), 0);
    assert_int_equal(pk.port, 10);
    assert_int_equal(s.e[3].state, PM_BUSY);
    struct portmap_release failed = {.closer = PM_CLOSER_NONE, .never_connected = 1};
    portmap_release(pm, 10, &failed, 300);
    assert_int_equal(s.e[4].state, PM_REMOTE_TW);
    assert_int_equal(s.e[4].until_ms, 60100);
    assert_int_equal(s.e[4].rcv_nxt, 1100);
    portmap_quarantine(pm, 11, 300);
    assert_int_equal(s.e[5].state, PM_QUARANTINED);
    assert_int_equal(s.e[5].until_ms, 1300);
    portmap_expire(pm, 70000); /* both over: FREE, each told */
    assert_int_equal(s.n, 8);
    assert_int_equal(s.e[6].state, PM_FREE);
    assert_int_equal(s.e[7].state, PM_FREE);
    struct portmap_entry back = {.port = 11, .state = PM_LOCAL_TW, .until_ms = 80000,
                                 .timestamps = 1};
    assert_int_equal(portmap_restore(pm, &back), 0);
    assert_int_equal(s.e[8].state, PM_LOCAL_TW);
    assert_int_equal(s.e[8].timestamps, 1);
    portmap_free(pm);
}

/* A port restored as unknown is never reused before its time, in any mode, is counted
 * apart, and keeps its place against our kernel's TIME_WAIT. */
static void test_unknown_ports(void **state)
{
    enum isn_mode modes[] = {ISN_EXPLICIT, ISN_KERNEL};
    for (size_t m = 0; m < 2; m++) {
        struct portmap_policy pol = policy(modes[m], TWRULE_BSD, PM_LOCAL_TW_DESTROY);
        portmap *pm = portmap_new(1, 10, &pol);
        struct portmap_entry u = {.port = 3, .state = PM_REMOTE_TW, .until_ms = 5000,
                                  .unknown = 1};
        assert_int_equal(portmap_restore(pm, &u), 0);
        struct portmap_entry mine = {.port = 3, .state = PM_LOCAL_TW, .until_ms = 9000};
        assert_int_equal(portmap_restore(pm, &mine), -1); /* says nothing of the backend */
        assert_int_equal(portmap_unknown_at(pm, 0), 1);
        assert_int_equal(portmap_unknown_at(pm, 5000), 0); /* as counts_at would */
        struct portmap_pick pk;
        for (int i = 0; i < 9; i++) {
            assert_int_equal(portmap_acquire(pm, 10, 10000000, 10000000, &pk), 0);
            assert_int_not_equal(pk.port, 3);
        }
        assert_int_equal(portmap_acquire(pm, 4999, 4999000000ull, 4999000000ull, &pk), -1);
        assert_int_equal(portmap_next_usable_ms(pm, 4999, 4999000000ull, 4999000000ull),
                         5000);
        assert_int_equal(portmap_acquire(pm, 5000, 5000000000ull, 5000000000ull, &pk), 0);
        assert_int_equal(pk.port, 3);
        assert_int_equal(pk.kind, PM_PICK_FRESH);
        assert_int_equal(portmap_unknown_at(pm, 5000), 0);
        portmap_free(pm);
    }
    /* never-used ports under a block count as unknown until it ends */
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(1, 10, &pol);
    struct portmap_entry tw = {.port = 2, .state = PM_REMOTE_TW, .until_ms = 100,
                               .isn_known = 1, .rcv_nxt = 5};
    assert_int_equal(portmap_restore(pm, &tw), 0);
    portmap_block_unknown(pm, 3000);
    assert_int_equal(portmap_unknown_at(pm, 0), 9); /* 2 is known */
    uint32_t c[PM_NSTATES];
    portmap_counts_at(pm, 0, c);
    assert_int_equal(c[PM_REMOTE_TW], 10);
    assert_int_equal(portmap_unknown_at(pm, 3000), 0);
    portmap_free(pm);
}

/* A restore keeps what kernel ISN mode needs: the old SYN's times and bytes, so the
 * prediction works after a restart as before it. */
static void test_restore_keeps_the_kernel_prediction(void **state)
{
    struct portmap_policy pol = policy(ISN_KERNEL, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(1, 1, &pol);
    uint64_t syn = 1000000000ull;
    struct portmap_entry e = {.port = 1, .state = PM_REMOTE_TW, .until_ms = 60000,
                              .syn_real_ns = syn, .syn_mono_ns = syn, .bytes = 100};
    assert_int_equal(portmap_restore(pm, &e), 0);
    struct portmap_pick pk;
    /* 2 s later the kernel's clock is 31 M past 100 bytes, beyond the margin: safe */
    assert_int_equal(portmap_acquire(pm, 3000, syn + 2000000000ull, syn + 2000000000ull, &pk),
                     0);
    assert_int_equal(pk.kind, PM_PICK_REMOTE_TW);
    portmap_free(pm);
    /* without the times (twlb 0.1's state file) it waits for the TIME_WAIT to end */
    pm = portmap_new(1, 1, &pol);
    e.syn_real_ns = e.syn_mono_ns = 0;
    assert_int_equal(portmap_restore(pm, &e), 0);
    assert_int_equal(portmap_acquire(pm, 3000, syn + 2000000000ull, syn + 2000000000ull, &pk),
                     -1);
    portmap_free(pm);
}

/* Take every port acquire hands out at <now>; returns how many. */
static uint32_t drain(portmap *pm, uint64_t now, uint64_t real_ns, uint64_t mono_ns)
{
    struct portmap_pick pk;
    uint32_t n = 0;
    while (portmap_acquire(pm, now, real_ns, mono_ns, &pk) == 0)
        n++;
    return n;
}

/* Eight ports (no more than acquire scans, so it sees every entry): 2 busy, 2 closed by
 * the backend with a known ISN, 2 by us (one with timestamps), 1 reset, 1 quarantined.
 * The headroom is what acquire then hands out, policy by policy, now and after each
 * kind of TIME_WAIT or quarantine ends, and reading it changes nothing. */
static void test_headroom_is_what_acquire_hands_out(void **state)
{
    const struct {
        enum isn_mode mode;
        enum twrule_kind rule;
        enum pm_local_tw ltw;
        uint32_t at_5, at_1100, at_20000, at_30000;
    } cases[] = {
        /* free 1; + backend TW 2 (explicit, bsd); + local TW 1 (timestamps) or 2 (destroy) */
        {ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID, 4, 5, 6, 6},
        {ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_DESTROY, 5, 6, 6, 6},
        /* strict or reuse off: the backend's TIME_WAIT (30 s) only when over */
        {ISN_EXPLICIT, TWRULE_STRICT, PM_LOCAL_TW_AVOID, 2, 3, 4, 6},
        {ISN_OFF, TWRULE_BSD, PM_LOCAL_TW_AVOID, 2, 3, 4, 6},
        /* kernel ISNs: 100 bytes, safe (102 + 2^24) x 64 ns = 1.074 s after the SYN */
        {ISN_KERNEL, TWRULE_BSD, PM_LOCAL_TW_AVOID, 2, 5, 6, 6},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct portmap_policy pol = policy(cases[c].mode, cases[c].rule, cases[c].ltw);
        pol.kernel_margin = 1u << 24; /* the times below assume 1.07 s of margin */
        pol.rule.time_wait_ms = 30000;
        pol.local_tw_ms = 20000;
        pol.quarantine_ms = 1000;
        for (int round = 0; round < 4; round++) {
            uint64_t at = round == 0 ? 5 : round == 1 ? 1100 : round == 2 ? 20000 : 30000;
            uint32_t want = round == 0 ? cases[c].at_5 : round == 1 ? cases[c].at_1100
                          : round == 2 ? cases[c].at_20000 : cases[c].at_30000;
            portmap *pm = portmap_new(100, 107, &pol);
            struct portmap_pick pk;
            for (int i = 0; i < 8; i++)
                assert_int_equal(portmap_acquire(pm, 0, 1, 1, &pk), 0);
            struct portmap_release be = {.closer = PM_CLOSER_BACKEND, .isn_known = 1,
                                         .isn = 7, .syn_real_ns = 1, .syn_mono_ns = 1,
                                         .bytes_to_backend = 100};
            struct portmap_release lo = {.closer = PM_CLOSER_LOCAL, .syn_mono_ns = 1};
            struct portmap_release lo_ts = {.closer = PM_CLOSER_LOCAL, .timestamps = 1};
            struct portmap_release rst = {.closer = PM_CLOSER_NONE};
            portmap_release(pm, 102, &be, 0);
            portmap_release(pm, 103, &be, 0);
            portmap_release(pm, 104, &lo, 0);
            portmap_release(pm, 105, &lo_ts, 0);
            portmap_release(pm, 106, &rst, 0);
            portmap_quarantine(pm, 107, 0);
            uint64_t ns = at * 1000000ull + 1;
            uint32_t before[PM_NSTATES], after[PM_NSTATES];
            portmap_counts(pm, before);
            size_t mem = portmap_memory(pm);
            uint32_t h = portmap_headroom_at(pm, at, ns, ns);
            portmap_counts(pm, after);
            assert_memory_equal(before, after, sizeof before);
            assert_int_equal(portmap_memory(pm), mem);
            if (h != want)
                fail_msg("case %zu at %llu ms: headroom %u, want %u", c,
                         (unsigned long long)at, h, want);
            assert_int_equal(drain(pm, at, ns, ns), h);
            assert_int_equal(portmap_headroom_at(pm, at, ns, ns), 0);
            portmap_free(pm);
        }
    }
}

/* Never-used ports blocked after a restart without a state file are no headroom until
 * the block ends; restored entries count by their own state. */
static void test_headroom_after_restart(void **state)
{
    struct portmap_policy pol = policy(ISN_EXPLICIT, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    portmap *pm = portmap_new(100, 109, &pol);
    portmap_block_unknown(pm, 60000);
    struct portmap_entry known = {.port = 101, .state = PM_REMOTE_TW, .until_ms = 30000,
                                  .isn_known = 1, .rcv_nxt = 5000};
    struct portmap_entry unknown_isn = {.port = 102, .state = PM_REMOTE_TW, .until_ms = 30000};
    /* a port restored as unknown (a crash): nothing else of it counts */
    struct portmap_entry crashed = {.port = 103, .state = PM_REMOTE_TW, .until_ms = 45000,
                                    .unknown = 1, .isn_known = 1, .rcv_nxt = 5000};
    assert_int_equal(portmap_restore(pm, &known), 0);
    assert_int_equal(portmap_restore(pm, &unknown_isn), 0);
    assert_int_equal(portmap_restore(pm, &crashed), 0);
    assert_int_equal(portmap_unknown_at(pm, 10), 8); /* 103 and the 7 never used */
    /* explicit: the entry with a known rcv_nxt only */
    assert_int_equal(portmap_headroom_at(pm, 10, 0, 0), 1);
    assert_int_equal(drain(pm, 10, 0, 0), 1);
    assert_int_equal(portmap_headroom_at(pm, 30000, 0, 0), 1); /* 102's TIME_WAIT over */
    assert_int_equal(portmap_headroom_at(pm, 44999, 0, 0), 1);
    assert_int_equal(portmap_headroom_at(pm, 45000, 0, 0), 2); /* 103's time over */
    assert_int_equal(portmap_headroom_at(pm, 60000, 0, 0), 9); /* and the 7 never used */
    assert_int_equal(drain(pm, 60000, 0, 0), 9);
    portmap_free(pm);
}

/* In kernel mode the backend's TIME_WAIT is judged entry by entry, oldest first, for at
 * most PORTMAP_HEADROOM_SCAN entries: past that the headroom is a lower bound. */
static void test_headroom_kernel_scan_is_bounded(void **state)
{
    struct portmap_policy pol = policy(ISN_KERNEL, TWRULE_BSD, PM_LOCAL_TW_AVOID);
    pol.kernel_margin = 1u << 24; /* "too soon" at 0.5 s assumes 1.07 s of margin */
    const uint32_t n = PORTMAP_HEADROOM_SCAN + 1000;
    portmap *pm = portmap_new(1000, (uint16_t)(1000 + n - 1), &pol);
    struct portmap_pick pk;
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(portmap_acquire(pm, 0, 1, 1, &pk), 0);
    struct portmap_release be = {.closer = PM_CLOSER_BACKEND, .syn_real_ns = 1,
                                 .syn_mono_ns = 1, .bytes_to_backend = 100};
    for (uint32_t i = 0; i < n; i++)
        portmap_release(pm, (uint16_t)(1000 + i), &be, 10);
    assert_int_equal(portmap_headroom_at(pm, 500, 500000001, 500000001), 0); /* too soon */
    uint64_t t = 2000000001; /* 2 s after the SYNs: every one is safe */
    assert_int_equal(portmap_headroom_at(pm, 2000, t, t), PORTMAP_HEADROOM_SCAN);
    assert_int_equal(drain(pm, 2000, t, t), n); /* acquire takes them all */
    portmap_free(pm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_used_ports_first_then_lru),
        cmocka_unit_test(test_remote_tw_reused_only_after_free_ports),
        cmocka_unit_test(test_strict_and_off_wait_for_expiry),
        cmocka_unit_test(test_local_tw_rules),
        cmocka_unit_test(test_quarantine_and_restore),
        cmocka_unit_test(test_block_unknown),
        cmocka_unit_test(test_counts_at_changes_nothing),
        cmocka_unit_test(test_memory_shrinks_when_idle),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_failed_reuse_keeps_the_memory),
        cmocka_unit_test(test_next_usable),
        cmocka_unit_test(test_observer_sees_every_change),
        cmocka_unit_test(test_unknown_ports),
        cmocka_unit_test(test_restore_keeps_the_kernel_prediction),
        cmocka_unit_test(test_headroom_is_what_acquire_hands_out),
        cmocka_unit_test(test_headroom_after_restart),
        cmocka_unit_test(test_headroom_kernel_scan_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
