/* metrics.h - every metric family of twlb, declared once.
 *
 * A family is one row of metrics_table: name, type, help, the objects it has samples
 * for (its scope, which gives its first labels), at most one more label with a fixed
 * list of values, how a sample is read, and where it goes in /stats.  /metrics
 * (prom.c) and /stats (stats.c) are both rendered from this table and the runtime's
 * view; docs/metrics.md is generated from it (make metrics-doc).  Adding a metric is one
 * row here (a backend counter: one line of BACKEND_COUNTERS in runtime/types.h).
 *
 * This file reads only what walk.c has already taken from the view (struct metric_src),
 * so it links without the runtime (the doc generator links it alone). */
#ifndef TWLB_METRICS_H
#define TWLB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/hist.h"
#include "runtime/view.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };
const char *metric_type_name(enum metric_type t); /* "counter", "gauge", "histogram" */

/* The objects a family has samples for; each brings its labels. */
enum metric_scope {
    METRIC_GLOBAL,   /* the process: no label */
    METRIC_LISTENER, /* each listener: listener */
    METRIC_BACKEND,  /* each backend of each pool: pool, backend */
    METRIC_PATH,     /* each backend x inside address with a port map: pool, backend, inside */
    METRIC_POOL,     /* each pool: pool */
};
#define METRIC_SCOPE_LABELS 3
/* The label names of a scope, NULL-terminated. */
const char *const *metric_scope_labels(enum metric_scope s);

/* What the samples of one object are read from, taken from the view by walk.c. */
struct metric_src {
    enum metric_scope scope;
    size_t index[METRIC_SCOPE_LABELS];        /* listener; or pool (, backend, inside) */
    const char *labels[METRIC_SCOPE_LABELS];  /* values of the scope's labels */
    struct view_totals totals;                /* GLOBAL */
    enum isn_mode isn_mode;                   /* GLOBAL */
    struct view_process process;              /* GLOBAL: reloads, drain */
    uint64_t listener_connections;            /* LISTENER */
    uint64_t listener_rejected[REJ_N];        /* LISTENER, by reason */
    struct view_backend be;                   /* BACKEND, PATH */
    struct view_path path;                    /* PATH */
    struct view_pool pool;                    /* POOL */
};

/* How a family appears in /stats, in the object of its scope (root, listener, pool,
 * backend, or the backend's ports[inside]). */
enum metric_json {
    METRIC_JSON_NONE,   /* not in /stats */
    METRIC_JSON_INT,    /* json_key (+ label value): the sample */
    METRIC_JSON_NUMBER, /* json_key: the sample of read_real, a JSON real */
    METRIC_JSON_HIST,   /* json_key: {"count", "sum" (seconds), "p50", "p99" (estimates in
                           seconds, null when empty)} */
    METRIC_JSON_BOOL,   /* json_key: true when the sample is not 0 */
    METRIC_JSON_CHOICE, /* json_key: the label value whose sample is not 0 */
};

struct metric_family {
    const char *name;
    enum metric_type type;
    const char *help;
    enum metric_scope scope;
    const char *label;                /* one more label, NULL: none */
    size_t nvalues;                   /* samples per object: values of <label>, else 1 */
    const char *(*value)(size_t k);   /* the value of <label> of sample k */
    int64_t (*read)(const struct metric_src *src, size_t k); /* sample k */
    /* Instead of <read>: a gauge whose samples need not be whole numbers. */
    double (*read_real)(const struct metric_src *src, size_t k);
    /* Instead of <read>, for a METRIC_HISTOGRAM (no <label>: nvalues 1): its buckets,
     * rendered as name_bucket{..,le="bound"} (cumulative), name_sum and name_count. */
    const struct hist *(*read_hist)(const struct metric_src *src);
    enum metric_json json;
    const char *json_key; /* with <label> and METRIC_JSON_INT: prefix of key + value */
};

extern const struct metric_family metrics_table[];
extern const size_t metrics_count;

#endif
