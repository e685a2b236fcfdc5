/* stats.c - see stats.h. */
#include "admin/stats.h"

#include <jansson.h>
#include <stdio.h>

#include "admin/walk.h"

static void put_family(json_t *obj, const struct metric_family *f, const struct metric_src *src)
{
    switch (f->json) {
    case METRIC_JSON_NONE:
        return;
    case METRIC_JSON_INT:
        if (!f->label) {
            json_object_set_new(obj, f->json_key, json_integer((json_int_t)f->read(src, 0)));
            return;
        }
        for (size_t k = 0; k < f->nvalues; k++) {
            char key[128];
            snprintf(key, sizeof key, "%s%s", f->json_key, f->value(k));
            json_object_set_new(obj, key, json_integer((json_int_t)f->read(src, k)));
        }
        return;
    case METRIC_JSON_NUMBER:
        json_object_set_new(obj, f->json_key, json_real(f->read_real(src, 0)));
        return;
    case METRIC_JSON_HIST: {
        const struct hist *h = f->read_hist(src);
        double p50 = hist_quantile(h, 0.5), p99 = hist_quantile(h, 0.99);
        json_object_set_new(obj, f->json_key,
                            json_pack("{s:I, s:f, s:o, s:o}", "count", (json_int_t)h->count,
                                      "sum", hist_sum_s(h), "p50",
                                      p50 < 0 ? json_null() : json_real(p50), "p99",
                                      p99 < 0 ? json_null() : json_real(p99)));
        return;
    }
    case METRIC_JSON_BOOL:
        json_object_set_new(obj, f->json_key, json_boolean(f->read(src, 0) != 0));
        return;
    case METRIC_JSON_CHOICE:
        for (size_t k = 0; k < f->nvalues; k++)
            if (f->read(src, k)) {
                json_object_set_new(obj, f->json_key, json_string(f->value(k)));
                return;
            }
        json_object_set_new(obj, f->json_key, json_null());
        return;
    }
}

/* Every family of <scope> into <obj>, read from the object at (i, j, k). */
static void put_scope(json_t *obj, const struct view *v, enum metric_scope scope, size_t i,
                      size_t j, size_t k)
{
    struct metric_src src;
    if (walk_at(v, scope, i, j, k, &src) < 0)
        return;
    for (size_t n = 0; n < metrics_count; n++)
        if (metrics_table[n].scope == scope)
            put_family(obj, &metrics_table[n], &src);
}

static json_t *backend_json(const struct view *v, size_t p, size_t b)
{
    const struct cfg_pool *pc = &view_config(v)->pools[p];
    const struct cfg_backend *bc = &pc->backends[b];
    struct view_backend vb;
    if (view_backend(v, p, b, &vb) < 0)
        return NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "name", bc->name, "address",
                          bc->addr.text, "resolved", bc->addr.resolved, "weight",
                          (int)bc->weight, "time_wait_rule", twrule_kind_name(vb.rule),
                          "admin", vb.admin, "health", vb.health);
    if (!o)
        return NULL;
    put_scope(o, v, METRIC_BACKEND, p, b, 0);
    json_t *ports = json_object();
    for (size_t k = 0; k < pc->n_inside; k++) {
        struct view_path vp;
        if (view_path(v, p, b, k, &vp) < 0)
            continue; /* no port map on that path */
        json_t *po = json_object();
        put_scope(po, v, METRIC_PATH, p, b, k);
        /* what capacity_cps was computed from ("connections": 0, the default) */
        json_object_set_new(
            po, "capacity_mix",
            json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "connections", (json_int_t)vp.observed,
                      "hold_ms", vp.mix.hold_ms, "bytes_to_backend", vp.mix.bytes_to_backend,
                      "backend_first", vp.mix.backend_first, "local_first",
                      vp.mix.local_first, "local_timestamps", vp.mix.local_timestamps));
        json_object_set_new(ports, pc->inside[k].text, po);
    }
    json_object_set_new(o, "ports", ports);
    return o;
}

char *stats_render(const struct view *v)
{
    const struct config *c = view_config(v);
    json_t *root = json_object();
    if (!root)
        return NULL;
    put_scope(root, v, METRIC_GLOBAL, 0, 0, 0);
    json_t *ls = json_array();
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct cfg_listener *lc = &c->listeners[i];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "name", lc->name, "bind", lc->bind.text,
                              "resolved", lc->bind.resolved, "pool", lc->pool_name);
        put_scope(o, v, METRIC_LISTENER, i, 0, 0);
        json_array_append_new(ls, o);
    }
    json_object_set_new(root, "listeners", ls);
    json_t *pools = json_array();
    for (size_t p = 0; p < c->n_pools; p++) {
        const struct cfg_pool *pc = &c->pools[p];
        json_t *bs = json_array();
        for (size_t b = 0; b < pc->n_backends; b++)
            json_array_append_new(bs, backend_json(v, p, b));
        char range[16]; /* the port range the figures of "ports" add up to */
        snprintf(range, sizeof range, "%u-%u", (unsigned)pc->port_lo, (unsigned)pc->port_hi);
        json_t *po = json_pack("{s:s, s:s, s:s, s:o}", "name", pc->name, "balance",
                               balance_algo_name(pc->balance), "source_ports", range,
                               "backends", bs);
        /* the queue's settings, null without one (a client nothing can serve is reset) */
        const struct cfg_queue *q = &pc->queue;
        json_object_set_new(po, "queue", q->max ? json_pack("{s:I, s:I}", "max",
                                                            (json_int_t)q->max, "timeout_ms",
                                                            (json_int_t)q->timeout_ms)
                                                : json_null());
        put_scope(po, v, METRIC_POOL, p, 0, 0);
        json_array_append_new(pools, po);
    }
    json_object_set_new(root, "pools", pools);
    /* Per worker (event loop): how the kernel spread the clients between them. */
    json_t *ws = json_array();
    for (size_t i = 0; i < view_workers(v); i++) {
        struct view_totals t;
        if (view_worker(v, i, &t) == 0)
            json_array_append_new(
                ws, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "index", (json_int_t)i,
                              "sessions_active", (json_int_t)t.sessions_active,
                              "sessions_total", (json_int_t)t.sessions_total,
                              "no_backend_total", (json_int_t)t.no_backend_total,
                              "buffers_in_use", (json_int_t)t.buffers_in_use,
                              "pipes_in_use", (json_int_t)t.pipes_in_use));
    }
    json_object_set_new(root, "workers", ws);
    /* 10 significant digits: thousandths print as 0.333, not 0.33300000000000002 */
    char *out = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(root);
    return out;
}
