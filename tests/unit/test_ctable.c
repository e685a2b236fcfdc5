/* Unit tests for lb/core/ctable.c: the token bucket is exact over time; the table counts
 * live connections per client, refuses past max_conns and an empty bucket (a refused
 * connection costs nothing), forgets clients that nothing distinguishes from new ones,
 * holds at most its cap (idle clients give way, connected ones do not), and agrees with
 * a plain reference model over a long random run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/ctable.h"

static const uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void client(unsigned n, uint8_t out[16])
{
    memset(out, 0, 16);
    out[10] = out[11] = 0xff;
    out[12] = 198;
    out[13] = 18;
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
}

static void test_bucket_is_exact(void **state)
{
    /* Trying every millisecond for 3 s: burst + rate * 3 connections, to the one. */
    static const uint32_t rates[][2] = {{20, 10}, {7, 1}, {1000, 1}, {3, 50}, {1000000, 5}};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        uint32_t rate = rates[i][0], burst = rates[i][1];
        struct ctable_bucket b;
        ctable_bucket_fill(&b, burst, 5000);
        uint64_t got = 0;
        for (uint64_t t = 5000; t < 8000; t++) /* 5000 .. 7999: 2999 ms of refill */
            got += ctable_bucket_take(&b, rate, burst, t) == 0;
        uint64_t want = burst + (uint64_t)rate * 2999 / 1000;
        if (rate >= 1000) /* faster than one a millisecond: one per try */
            want = 3000;
        if (got != want)
            fail_msg("rate %u burst %u: %llu taken, want %llu", rate, burst,
                     (unsigned long long)got, (unsigned long long)want);
    }
}

static void test_bucket_edges(void **state)
{
    struct ctable_bucket b;
    ctable_bucket_fill(&b, 2, 1000);
    assert_int_equal(ctable_bucket_take(&b, 1, 2, 1000), 0);
    assert_int_equal(ctable_bucket_take(&b, 1, 2, 1000), 0);
    assert_int_equal(ctable_bucket_take(&b, 1, 2, 1000), -1);
    /* Time going back (another thread's older clock reading) refills nothing. */
    assert_int_equal(ctable_bucket_take(&b, 1, 2, 10), -1);
    assert_int_equal(ctable_bucket_take(&b, 1, 2, 1999), -1);
    assert_int_equal(ctable_bucket_take(&b, 1, 2, 2000), 0); /* 1 s: one token */
    assert_false(ctable_bucket_full(&b, 1, 2, 3999));
    assert_true(ctable_bucket_full(&b, 1, 2, 4000));
    /* Never above the burst, however long the pause; a lowered burst caps at once. */
    assert_true(ctable_bucket_full(&b, 1, 2, UINT64_MAX));
    assert_int_equal(ctable_bucket_take(&b, 1, 1, UINT64_MAX), 0);
    assert_int_equal(ctable_bucket_take(&b, 1, 1, UINT64_MAX), -1);
}

static void test_live_limit(void **state)
{
    ctable *t = ctable_new(100, key);
    struct ctable_limits lim = {.max_conns = 3};
    uint8_t a[16], b[16];
    client(1, a);
    client(2, b);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctable_admit(t, a, &lim, 0), CTABLE_OK);
    assert_int_equal(ctable_admit(t, a, &lim, 0), CTABLE_LIMIT);
    assert_int_equal(ctable_live(t, a), 3);
    assert_int_equal(ctable_admit(t, b, &lim, 0), CTABLE_OK); /* another client */
    ctable_release(t, a, 1);
    assert_int_equal(ctable_admit(t, a, &lim, 2), CTABLE_OK); /* a slot freed */
    assert_int_equal(ctable_admit(t, a, &lim, 2), CTABLE_LIMIT);
    /* A client handed between threads is counted without a check. */
    assert_int_equal(ctable_take(t, a, 3), 0);
    assert_int_equal(ctable_live(t, a), 4);
    for (int i = 0; i < 4; i++)
        ctable_release(t, a, 4);
    ctable_release(t, b, 4);
    /* No rate limit: a client with no live connection is forgotten at once. */
    assert_int_equal(ctable_size(t), 0);
    ctable_release(t, a, 5); /* unknown: ignored */
    assert_int_equal(ctable_live(t, a), 0);
    ctable_free(t);
}

static void test_rate_and_limit_together(void **state)
{
    ctable *t = ctable_new(100, key);
    struct ctable_limits lim = {.max_conns = 2, .rate = 10, .burst = 3};
    uint8_t a[16];
    client(7, a);
    assert_int_equal(ctable_admit(t, a, &lim, 0), CTABLE_OK);
    assert_int_equal(ctable_admit(t, a, &lim, 0), CTABLE_OK);
    /* The live limit first: a connection refused for it takes no token. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(ctable_admit(t, a, &lim, 0), CTABLE_LIMIT);
    ctable_release(t, a, 0);
    ctable_release(t, a, 0);
    assert_int_equal(ctable_admit(t, a, &lim, 0), CTABLE_OK); /* the third token */
    ctable_release(t, a, 0);
    /* A refused connection for the rate is not counted live either. */
    assert_int_equal(ctable_admit(t, a, &lim, 0), CTABLE_RATE);
    assert_int_equal(ctable_live(t, a), 0);
    assert_int_equal(ctable_admit(t, a, &lim, 99), CTABLE_RATE);
    assert_int_equal(ctable_admit(t, a, &lim, 100), CTABLE_OK); /* 100 ms: one token */
    ctable_release(t, a, 100);
    /* Remembered (its bucket is not full) until it has refilled: 3 tokens, 300 ms. */
    assert_int_equal(ctable_size(t), 1);
    assert_int_equal(ctable_expire(t, 399), 0);
    assert_int_equal(ctable_size(t), 1);
    assert_int_equal(ctable_expire(t, 400), 1);
    assert_int_equal(ctable_size(t), 0);
    ctable_free(t);
}

static void test_cap(void **state)
{
    ctable *t = ctable_new(4, key);
    struct ctable_limits lim = {.max_conns = 10, .rate = 1, .burst = 5};
    uint8_t c[16];
    for (unsigned i = 0; i < 4; i++) {
        client(i, c);
        assert_int_equal(ctable_admit(t, c, &lim, 0), CTABLE_OK);
    }
    client(4, c);
    /* Every client in the table is connected: a new one is refused, nothing changes. */
    assert_int_equal(ctable_admit(t, c, &lim, 0), CTABLE_FULL);
    assert_int_equal(ctable_take(t, c, 0), -1);
    assert_int_equal(ctable_size(t), 4);
    /* Clients 1 then 2 close: they stay (buckets not full) but give way, oldest first. */
    client(1, c);
    ctable_release(t, c, 10);
    client(2, c);
    ctable_release(t, c, 20);
    client(4, c);
    assert_int_equal(ctable_admit(t, c, &lim, 30), CTABLE_OK);
    assert_int_equal(ctable_size(t), 4);
    client(1, c);
    assert_int_equal(ctable_live(t, c), 0);
    /* Client 1 was forgotten: it comes back with a full bucket (5 at once). */
    for (int i = 0; i < 5; i++)
        assert_int_equal(ctable_admit(t, c, &lim, 40), CTABLE_OK); /* evicts client 2 */
    assert_int_equal(ctable_admit(t, c, &lim, 40), CTABLE_RATE);
    assert_int_equal(ctable_size(t), 4);
    client(2, c);
    assert_int_equal(ctable_admit(t, c, &lim, 40), CTABLE_FULL); /* all connected again */
    ctable_free(t);
}

/* Many clients: the table grows its buckets and finds every one. */
static void test_many_clients(void **state)
{
    ctable *t = ctable_new(20000, key);
    struct ctable_limits lim = {.max_conns = 2};
    uint8_t c[16];
    for (unsigned i = 0; i < 20000; i++) {
        client(i, c);
        c[13] = (uint8_t)(i >> 16);
        assert_int_equal(ctable_admit(t, c, &lim, 0), CTABLE_OK);
    }
    assert_int_equal(ctable_size(t), 20000);
    for (unsigned i = 0; i < 20000; i += 7) {
        client(i, c);
        c[13] = (uint8_t)(i >> 16);
        assert_int_equal(ctable_live(t, c), 1);
        assert_int_equal(ctable_admit(t, c, &lim, 0), CTABLE_OK);
        assert_int_equal(ctable_admit(t, c, &lim, 0), CTABLE_LIMIT);
    }
    ctable_free(t);
}

/* A plain model of the same rules, without a cap: arrays indexed by client. */
#define NCLIENTS 40
struct model {
    uint32_t live[NCLIENTS];
    int known[NCLIENTS];
    struct ctable_bucket b[NCLIENTS];
};

static enum ctable_verdict model_admit(struct model *m, unsigned i,
                                       const struct ctable_limits *lim, uint64_t now)
{
    if (!m->known[i]) {
        m->known[i] = 1;
        ctable_bucket_fill(&m->b[i], lim->burst, now);
    } else if (lim->max_conns && m->live[i] >= lim->max_conns) {
        return CTABLE_LIMIT;
    }
    if (lim->rate && ctable_bucket_take(&m->b[i], lim->rate, lim->burst, now) < 0)
        return CTABLE_RATE;
    m->live[i]++;
    return CTABLE_OK;
}

static void model_release(struct model *m, unsigned i, const struct ctable_limits *lim,
                          uint64_t now)
{
    if (!m->live[i] || --m->live[i])
        return;
    if (!lim->rate || ctable_bucket_full(&m->b[i], lim->rate, lim->burst, now))
        m->known[i] = 0;
}

static void test_agrees_with_a_model(void **state)
{
    srand(4242);
    for (int run = 0; run < 20; run++) {
        struct ctable_limits lim = {.max_conns = (uint32_t)(rand() % 4),
                                    .rate = (uint32_t)(rand() % 3 ? rand() % 50 : 0)};
        lim.burst = lim.rate ? 1 + (uint32_t)(rand() % 8) : 0;
        ctable *t = ctable_new(1000, key);
        struct model *m = calloc(1, sizeof *m);
        uint64_t now = 1000;
        for (int step = 0; step < 20000; step++) {
            unsigned i = (unsigned)(rand() % NCLIENTS);
            uint8_t c[16];
            client(i, c);
            now += (uint64_t)(rand() % 5);
            if (rand() % 2) {
                enum ctable_verdict want = model_admit(m, i, &lim, now);
                enum ctable_verdict got = ctable_admit(t, c, &lim, now);
                if (got != want)
                    fail_msg("run %d step %d client %u: %d, model %d", run, step, i, got,
                             want);
            } else {
                model_release(m, i, &lim, now);
                ctable_release(t, c, now);
            }
            if (step % 100 == 0) {
                /* Expiry forgets only clients the model would treat as new anyway. */
                ctable_expire(t, now);
                for (unsigned j = 0; j < NCLIENTS; j++) {
                    client(j, c);
                    assert_int_equal(ctable_live(t, c), m->live[j]);
                }
            }
        }
        ctable_free(t);
        free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_is_exact),
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_live_limit),
        cmocka_unit_test(test_rate_and_limit_together),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_many_clients),
        cmocka_unit_test(test_agrees_with_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
