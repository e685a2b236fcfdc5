/* Unit tests of the metric renderers (lb/admin/prom.c, walk.c) on snapshots made by hand:
 * a histogram family comes out as cumulative _bucket series with le, _sum and _count;
 * the pool scope (METRIC_POOL) has one object per pool, labelled pool, whose figures
 * snapshot_add() sums over the workers - what the queue metrics of issue 10 will be
 * rendered from (here through a table of the test's own, as admin/metrics.c has no pool
 * row yet). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/metrics.h"
#include "admin/prom.h"
#include "admin/walk.h"
#include "config/config.h"
#include "runtime/snapshot.h"

#define MS 1000000ull

static const char CONFIG[] =
    "{\"listeners\": [{\"name\": \"web\", \"bind\": \"127.0.0.1:1\", \"pool\": \"app\"}],\n"
    " \"pools\": [\n"
    "  {\"name\": \"app\", \"inside\": [\"198.18.0.1\"],\n"
    "   \"backends\": [{\"name\": \"b1\", \"address\": \"198.18.0.2:80\"}]},\n"
    "  {\"name\": \"api\", \"inside\": [\"198.18.0.1\"],\n"
    "   \"backends\": [{\"name\": \"b1\", \"address\": \"198.18.0.3:80\"}]}]}\n";

/* One worker's snapshot of <c>, every figure 0, as snapshot_take() lays it out. */
static struct snapshot *blank(struct config *c)
{
    struct snapshot *s = calloc(1, sizeof *s);
    assert_non_null(s);
    size_t nbe = 0, npath = 0;
    for (size_t p = 0; p < c->n_pools; p++) {
        nbe += c->pools[p].n_backends;
        npath += c->pools[p].n_backends * c->pools[p].n_inside;
    }
    s->cfg = config_ref(c);
    s->nworkers = 1;
    s->nbe = nbe;
    s->npath = npath;
    s->workers = calloc(1, sizeof *s->workers);
    s->listener_conns = calloc(c->n_listeners, sizeof *s->listener_conns);
    s->listener_rejected = calloc(c->n_listeners * REJ_N, sizeof *s->listener_rejected);
    s->pool = calloc(c->n_pools, sizeof *s->pool);
    s->be_base = calloc(c->n_pools, sizeof *s->be_base);
    s->be = calloc(nbe, sizeof *s->be);
    s->path_base = calloc(nbe, sizeof *s->path_base);
    s->path = calloc(npath, sizeof *s->path);
    assert_true(s->workers && s->listener_conns && s->listener_rejected && s->pool &&
                s->be_base && s->be && s->path_base && s->path);
    size_t k = 0, q = 0;
    for (size_t p = 0; p < c->n_pools; p++) {
        s->be_base[p] = k;
        for (size_t b = 0; b < c->pools[p].n_backends; b++, k++) {
            s->path_base[k] = q;
            q += c->pools[p].n_inside;
        }
    }
    return s;
}

static struct config *load(void)
{
    struct cfg_errors errs = {0};
    struct config *c = config_load_text("test.json", CONFIG, sizeof CONFIG - 1, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    cfg_errors_free(&errs);
    assert_non_null(c);
    return c;
}

static int64_t rd_queue_length(const struct metric_src *s, size_t k)
{
    return (int64_t)s->pool.queue_length;
}
static const struct hist *rd_queue_wait(const struct metric_src *s) { return s->pool.queue_wait; }

/* What the lead's rows may look like: a pool gauge and a pool histogram. */
static const struct metric_family table[] = {
    {"t_queue_length", METRIC_GAUGE, "Queued", METRIC_POOL, .nvalues = 1,
     .read = rd_queue_length},
    {"t_queue_wait_seconds", METRIC_HISTOGRAM, "Waited", METRIC_POOL, .nvalues = 1,
     .read_hist = rd_queue_wait},
};

static void test_pool_scope_sums_workers_and_renders(void **state)
{
    struct config *c = load();
    struct snapshot *w0 = blank(c), *w1 = blank(c);
    /* worker 0: 2 queued in app, waits of 3 ms and 40 ms; worker 1: 1 queued in app and
     * 5 in api, a wait of 12 s (above the top bound) in app */
    w0->pool[0].queue_length = 2;
    hist_add(&w0->pool[0].queue_wait, 3 * MS);
    hist_add(&w0->pool[0].queue_wait, 40 * MS);
    w1->pool[0].queue_length = 1;
    w1->pool[1].queue_length = 5;
    hist_add(&w1->pool[0].queue_wait, 12000 * MS);
    assert_int_equal(snapshot_add(w0, w1), 0);
    snapshot_free(w1);

    struct metric_src src;
    assert_int_equal(walk_at(view_of(w0), METRIC_POOL, 1, 0, 0, &src), 0);
    assert_string_equal(src.labels[0], "api");
    assert_int_equal(src.pool.queue_length, 5);
    assert_int_equal(walk_at(view_of(w0), METRIC_POOL, 2, 0, 0, &src), -1);

    size_t len;
    char *text = prom_render_families(view_of(w0), table, 2, &len);
    assert_non_null(text);
    const char *want =
        "# HELP t_queue_length Queued\n"
        "# TYPE t_queue_length gauge\n"
        "t_queue_length{pool=\"app\"} 3\n"
        "t_queue_length{pool=\"api\"} 5\n"
        "# HELP t_queue_wait_seconds Waited\n"
        "# TYPE t_queue_wait_seconds histogram\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.0005\"} 0\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.001\"} 0\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.0025\"} 0\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.005\"} 1\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.01\"} 1\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.025\"} 1\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.05\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.1\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.25\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"0.5\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"1\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"2.5\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"5\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"10\"} 2\n"
        "t_queue_wait_seconds_bucket{pool=\"app\",le=\"+Inf\"} 3\n"
        "t_queue_wait_seconds_sum{pool=\"app\"} 12.043\n"
        "t_queue_wait_seconds_count{pool=\"app\"} 3\n"
        "t_queue_wait_seconds_bucket{pool=\"api\",le=\"0.0005\"} 0\n";
    assert_true(len > strlen(want));
    assert_memory_equal(text, want, strlen(want));
    assert_non_null(strstr(text, "t_queue_wait_seconds_bucket{pool=\"api\",le=\"+Inf\"} 0\n"
                                 "t_queue_wait_seconds_sum{pool=\"api\"} 0\n"
                                 "t_queue_wait_seconds_count{pool=\"api\"} 0\n"));
    assert_int_equal(strlen(text), len);
    free(text);
    snapshot_free(w0);
    config_free(c);
}

/* The real table: every histogram family reads a histogram and has no extra label;
 * every other family reads exactly one way. */
static void test_table_is_consistent(void **state)
{
    for (size_t i = 0; i < metrics_count; i++) {
        const struct metric_family *f = &metrics_table[i];
        if (f->type == METRIC_HISTOGRAM) {
            assert_non_null(f->read_hist);
            assert_null(f->label);
            assert_true(f->json == METRIC_JSON_HIST || f->json == METRIC_JSON_NONE);
        } else {
            assert_null(f->read_hist);
            assert_true((f->read != NULL) != (f->read_real != NULL));
            assert_true(f->json != METRIC_JSON_HIST);
            assert_true(f->json != METRIC_JSON_NUMBER || f->read_real);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_scope_sums_workers_and_renders),
        cmocka_unit_test(test_table_is_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
